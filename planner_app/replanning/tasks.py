"""Celery tasks of re-planning (beat runs ``planner_app.replan_scheduled``: its name is stored in the database)."""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(name=services.REPLAN_SCHEDULED, ignore_result=True)
def replan_scheduled(cluster_id: int, schedule_id: int | None = None) -> int | None:
    """Run by beat for a cluster's re-planning schedule: queues an ordinary re-plan job."""
    return services.replan_scheduled(int(cluster_id), schedule_id)


@shared_task(name=services.NOTIFY_ADOPTION, ignore_result=True)
def notify_adoption(adoption_id: int) -> str:
    return services.adoption_notify(int(adoption_id))
