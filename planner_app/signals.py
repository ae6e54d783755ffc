"""Keeps a re-planning schedule and its django-celery-beat periodic task together."""

from django.db.models.signals import post_delete
from django.dispatch import receiver

from .models import ReplanSchedule


@receiver(post_delete, sender=ReplanSchedule)
def _drop_periodic_task(sender, instance, **kwargs):
    # a schedule deleted with its cluster would otherwise leave beat a task pointing at nothing
    from django_celery_beat.models import PeriodicTask
    PeriodicTask.objects.filter(pk=instance.periodic_task_id).delete()
