"""Celery tasks of planning jobs: thin wrappers; the logic is in services (idempotent per job id).

Task names are stable: queued messages and beat entries refer to them.
"""

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


@shared_task(bind=True, base=JobTask, name=services.RUN_JOB, acks_late=True, reject_on_worker_lost=True)
def run_job(self, job_id: int) -> str:
    limits = self.request.timelimit or (None, None)     # (hard, soft) as sent with the message
    return services.execute_job(int(job_id), self.request.hostname or socket.gethostname(),
                                soft_limit_s=limits[1] or None)


@shared_task(name=services.SWEEP_JOBS, ignore_result=True)
def sweep_jobs() -> dict[str, int]:
    return services.sweep_jobs()
