"""Beat schedules: a cluster's re-planning schedule is a django-celery-beat periodic task running
``replan_scheduled``."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from ...catalog.models import Cluster
from ...planning.models import Trigger
from ..models import ReplanSchedule
from ..selectors import schedule_description
from .replans import replan_trigger

# Registered task name (tasks.py); beat's PeriodicTask rows store it, so it never changes.
REPLAN_SCHEDULED = "planner_app.replan_scheduled"


def replan_scheduled(cluster_id: int, schedule_id: int | None = None) -> int | None:
    """Body of the beat task of a ReplanSchedule; returns the job id (None when refused)."""
    detail = f"schedule {schedule_id}" if schedule_id else "schedule"
    schedule = ReplanSchedule.objects.select_related("periodic_task").filter(pk=schedule_id).first()
    if schedule is not None:
        detail = f"schedule {schedule.pk}: {schedule_description(schedule)}"
    job = replan_trigger(cluster_id, Trigger.SCHEDULE, detail)
    return job.pk if job else None


@transaction.atomic
def schedule_save(cluster: Cluster, data: dict[str, Any], *, instance: ReplanSchedule | None = None) -> ReplanSchedule:
    """Create or change a schedule; ``data`` is validated by ScheduleSerializer (kind + every/period or cron)."""
    import json
    import uuid

    from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

    task = instance.periodic_task if instance else PeriodicTask(
        name=f"re-plan cluster {cluster.pk} ({uuid.uuid4().hex[:8]})", task=REPLAN_SCHEDULED,
        kwargs=json.dumps({"cluster_id": cluster.pk}))
    kind = data.get("kind") or ("interval" if task.interval_id else "cron")
    if kind == "interval":
        every = data.get("every") or (task.interval.every if task.interval_id else None)
        period = data.get("period") or (task.interval.period if task.interval_id else "minutes")
        task.interval, _ = IntervalSchedule.objects.get_or_create(every=every, period=period)
        task.crontab = None
    else:
        fields = data.get("cron_fields")
        if fields is None and task.crontab_id:
            c = task.crontab
            fields = {"minute": c.minute, "hour": c.hour, "day_of_month": c.day_of_month,
                      "month_of_year": c.month_of_year, "day_of_week": c.day_of_week}
        task.crontab, _ = CrontabSchedule.objects.get_or_create(**fields, timezone="UTC")
        task.interval = None
    if "enabled" in data:
        task.enabled = data["enabled"]
    task.save()
    schedule = instance or ReplanSchedule.objects.create(cluster=cluster, periodic_task=task)
    if instance is None:
        task.kwargs = json.dumps({"cluster_id": cluster.pk, "schedule_id": schedule.pk})
        task.save(update_fields=["kwargs"])
    return schedule


def schedule_delete(schedule: ReplanSchedule) -> None:
    # deleting the periodic task cascades to the schedule
    schedule.periodic_task.delete()
