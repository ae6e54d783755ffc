"""The Celery application: planning jobs run on workers, results go to the database."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "planner_app.settings")

app = Celery("planner_app")
app.config_from_object("django.conf:settings", namespace="CELERY")
# each domain with Celery tasks (its tasks.py); the task names are fixed in the domains' services
app.autodiscover_tasks(["planner_app.planning", "planner_app.replanning"])


@app.on_after_configure.connect
def _schedule_sweep(sender, **kwargs):
    from django.conf import settings

    # The sweep re-queues or fails jobs whose worker died (see services.sweep_jobs).
    sender.add_periodic_task(settings.JOB_SWEEP_INTERVAL_S, sender.signature("planner_app.sweep_jobs"),
                             name="sweep stuck jobs")
