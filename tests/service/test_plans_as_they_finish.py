"""Plans are stored as each algorithm finishes; a resumed job keeps the ones already done."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from planner_app.models import Job, Plan
from planner_app.planning import services

pytestmark = pytest.mark.django_db

V1 = "/api/v1"


def _job(api, small_doc, algorithms):
    body = {"scenario": small_doc, "algorithms": algorithms, "options": {"simulate_requests": 100}}
    return Job.objects.get(pk=api.post(f"{V1}/jobs/", body, format="json").json()["id"])


def test_a_running_job_lists_the_plans_finished_so_far(api, small_doc):
    job = _job(api, small_doc, ["proposed", "whole-model"])
    attempt = services.claim_job(job.pk, "w1").attempts
    services._save_plan(job.pk, attempt, {"algorithm": "proposed", "feasible": True, "total_capacity": 3})
    shown = api.get(f"{V1}/jobs/{job.pk}/").json()
    assert shown["status"] == "running"
    assert [p["algorithm"] for p in shown["plans"]] == ["proposed"]
    listed = api.get(f"{V1}/jobs/").json()["results"]
    assert [p["algorithm"] for p in next(j for j in listed if j["id"] == job.pk)["plans"]] == ["proposed"]
    # a cancelled job refuses further plans, and keeps the one it has
    api.post(f"{V1}/jobs/{job.pk}/cancel/")
    with pytest.raises(services.JobAbandoned):
        services._save_plan(job.pk, attempt, {"algorithm": "whole-model", "feasible": False})
    assert list(Plan.objects.filter(job=job).values_list("algorithm", flat=True)) == ["proposed"]


def test_a_resumed_job_keeps_the_plans_an_earlier_attempt_stored(api, small_doc, settings):
    job = _job(api, small_doc, ["proposed", "whole-model"])
    first = services.claim_job(job.pk, "w1")
    services._save_plan(job.pk, first.attempts, {"algorithm": "proposed", "feasible": True, "marker": "attempt 1"})
    kept = Plan.objects.get(job=job)
    # the first worker dies after its first algorithm; another takes the job over
    stale = timezone.now() - timedelta(seconds=settings.JOB_STALE_AFTER_S + 1)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=stale)
    assert services.execute_job(job.pk, "w2") == "done"
    rows = list(Plan.objects.filter(job=job).order_by("id"))
    assert [p.algorithm for p in rows] == ["proposed", "whole-model"]
    assert rows[0].pk == kept.pk and rows[0].document["marker"] == "attempt 1"
    assert rows[1].document["explanation"]["summary"]
    job.refresh_from_db()
    assert job.status == "succeeded" and job.attempts == 2
