"""The live dispatcher follows adoptions: every new PlanAdoption, and cluster edits (policy), push the plan."""

from django.db.models.signals import post_save
from django.dispatch import receiver

from ..catalog.models import Cluster
from ..replanning.models import PlanAdoption
from .services import push_plan


@receiver(post_save, sender=PlanAdoption, dispatch_uid="dispatch-follow-adoption")
def _adopted(sender, instance, created, **kwargs):
    if created:
        push_plan(instance.cluster_id)


@receiver(post_save, sender=Cluster, dispatch_uid="dispatch-follow-cluster")
def _cluster_saved(sender, instance, created, **kwargs):
    if not created and instance.adopted_plan_id:
        push_plan(instance.pk)
