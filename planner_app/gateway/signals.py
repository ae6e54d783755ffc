"""A gateway key deleted with its cluster is dropped from the dispatcher's store."""

from django.db.models.signals import post_delete
from django.dispatch import receiver

from .models import GatewayKey
from .services import key_forget


@receiver(post_delete, sender=GatewayKey, dispatch_uid="gateway-forget-deleted-key")
def _deleted(sender, instance, **kwargs):
    key_forget(instance)
