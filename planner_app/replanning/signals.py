"""Keeps a re-planning schedule and its django-celery-beat periodic task together, and re-plans on server edits."""

from django.db.models.signals import post_delete
from django.dispatch import receiver

from ..catalog.signals import server_curves_changed, servers_changed
from ..planning.models import Trigger
from .models import ReplanSchedule
from .services import replan_trigger


@receiver(post_delete, sender=ReplanSchedule)
def _drop_periodic_task(sender, instance, **kwargs):
    # a schedule deleted with its cluster would otherwise leave beat a task pointing at nothing
    from django_celery_beat.models import PeriodicTask
    PeriodicTask.objects.filter(pk=instance.periodic_task_id).delete()


@receiver(servers_changed)
def _replan_on_server_change(sender, cluster, added, removed, **kwargs):
    if not cluster.replan_on_server_change:
        return
    parts = [f"{label}: {', '.join(ids[:10])}{' …' if len(ids) > 10 else ''}"
             for label, ids in (("removed", removed), ("added", added)) if ids]
    replan_trigger(cluster.pk, Trigger.SERVERS, "servers " + "; ".join(parts))


@receiver(server_curves_changed)
def _replan_on_curve_change(sender, cluster, changes, **kwargs):
    # a new batch curve is a calibration change (catalog/curves.py): held to the same threshold, and only
    # worth a re-plan when a plan is adopted
    if cluster.adopted_plan_id is None:
        return
    over = [(sid, c) for sid, c in changes if c.relative > cluster.replan_calibration_threshold]
    if over:
        replan_trigger(cluster.pk, Trigger.CALIBRATION, "; ".join(c.text(sid) for sid, c in over))
