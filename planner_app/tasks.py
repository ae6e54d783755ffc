"""Celery tasks: thin wrappers; the logic is in services (idempotent per job id)."""

from __future__ import annotations

import socket

from billiard.exceptions import TimeLimitExceeded
from celery import Task, shared_task

from . import services


class JobTask(Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo):
        # The pool killed the child at the hard limit: the task body could not record it.
        if isinstance(exc, TimeLimitExceeded) and args:
            limit = float(exc.args[0]) if exc.args else 0.0
            services.fail_after_hard_timeout(int(args[0]), limit)


@shared_task(bind=True, base=JobTask, name="planner_app.run_job", acks_late=True, reject_on_worker_lost=True)
def run_job(self, job_id: int) -> str:
    limits = self.request.timelimit or (None, None)     # (hard, soft) as sent with the message
    return services.execute_job(int(job_id), self.request.hostname or socket.gethostname(),
                                soft_limit_s=limits[1] or None)


@shared_task(name="planner_app.sweep_jobs", ignore_result=True)
def sweep_jobs() -> dict[str, int]:
    return services.sweep_jobs()


@shared_task(name="planner_app.replan_scheduled", ignore_result=True)
def replan_scheduled(cluster_id: int, schedule_id: int | None = None) -> int | None:
    """Run by beat for a cluster's re-planning schedule: queues an ordinary re-plan job."""
    return services.replan_scheduled(int(cluster_id), schedule_id)


@shared_task(name="planner_app.notify_adoption", ignore_result=True)
def notify_adoption(adoption_id: int) -> str:
    return services.adoption_notify(int(adoption_id))
