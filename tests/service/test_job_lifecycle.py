"""Job state machine in process: idempotent claims, conditional writes, the sweep."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from planner_app.planning import services
from planner_app.models import Job, Plan

pytestmark = pytest.mark.django_db

V1 = "/api/v1"


@pytest.fixture
def job(api, small_doc):
    return Job.objects.get(pk=api.post(f"{V1}/jobs/", {"scenario": small_doc, "options": {"simulate_requests": 100}},
                                       format="json").json()["id"])


def test_second_delivery_of_a_finished_job_does_nothing(job):
    assert services.execute_job(job.pk, "w1") == "done"
    assert services.execute_job(job.pk, "w2") == "skipped"
    job.refresh_from_db()
    assert job.status == "succeeded" and job.attempts == 1 and job.worker == "w1"
    assert Plan.objects.filter(job=job).count() == len(job.algorithms)


def test_duplicate_delivery_while_a_live_worker_runs_it_is_skipped(job):
    claimed = services.claim_job(job.pk, "w1")
    assert services.claim_job(job.pk, "w2") is None          # heartbeat is fresh
    job.refresh_from_db()
    assert job.worker == "w1" and job.attempts == claimed.attempts == 1


def test_stale_running_job_is_taken_over_and_the_old_attempt_cannot_write(job, settings):
    old = services.claim_job(job.pk, "w1")
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=settings.JOB_STALE_AFTER_S + 1))
    assert services.execute_job(job.pk, "w2") == "done"
    job.refresh_from_db()
    assert job.attempts == 2 and job.worker == "w2" and "w1 stopped responding" in job.reason
    # the first worker comes back to life and tries to write: refused
    assert services._finish(job.pk, old.attempts, plans=[{"algorithm": "proposed", "feasible": True}]) is False
    assert Plan.objects.filter(job=job).count() == len(job.algorithms)


def test_sweep_requeues_stale_jobs_then_gives_up(job, settings, django_capture_on_commit_callbacks):
    settings.JOB_MAX_ATTEMPTS = 2
    stale = timezone.now() - timedelta(seconds=settings.JOB_STALE_AFTER_S + 5)
    services.claim_job(job.pk, "w1")
    Job.objects.filter(pk=job.pk).update(heartbeat_at=stale)
    with django_capture_on_commit_callbacks() as callbacks:
        assert services.sweep_jobs()["requeued"] == 1
    assert len(callbacks) == 1                                   # the job's message is sent again
    job.refresh_from_db()
    assert job.status == "queued" and job.reason == "re-queued: w1 stopped responding"
    services.claim_job(job.pk, "w2")
    Job.objects.filter(pk=job.pk).update(heartbeat_at=stale)
    assert services.sweep_jobs()["failed"] == 1
    job.refresh_from_db()
    assert job.status == "failed" and "gave up after 2 attempts" in job.error and job.finished_at


def test_sweep_leaves_live_and_finished_jobs_alone(job, api, small_doc):
    services.claim_job(job.pk, "w1")
    done = Job.objects.get(pk=api.post(f"{V1}/jobs/", {"scenario": small_doc}, format="json").json()["id"])
    services.execute_job(done.pk, "w1")
    assert services.sweep_jobs() == {"requeued": 0, "failed": 0, "resent": 0}
    assert Job.objects.get(pk=job.pk).status == "running"
    assert Job.objects.get(pk=done.pk).status == "succeeded"


def test_sweep_resends_long_queued_jobs(job, settings):
    Job.objects.filter(pk=job.pk).update(
        enqueued_at=timezone.now() - timedelta(seconds=settings.JOB_REQUEUE_QUEUED_AFTER_S + 1))
    assert services.sweep_jobs()["resent"] == 1
    job.refresh_from_db()
    assert job.status == "queued" and job.enqueued_at > timezone.now() - timedelta(seconds=5)


def test_hard_time_limit_marks_the_job_failed(job):
    services.claim_job(job.pk, "w1")
    services.fail_after_hard_timeout(job.pk, 330)
    job.refresh_from_db()
    assert job.status == "failed" and job.error == "stopped: the job hit the hard time limit of 330 s"


def test_progress_is_reported_while_running(job):
    claimed = services.claim_job(job.pk, "w1")
    heartbeat = services._Heartbeat(job.pk, claimed.attempts)
    progress = services._Progress(job.pk, claimed.attempts, ["proposed", "other"], heartbeat)
    progress.start(1)
    progress(0.5, "halfway")
    job.refresh_from_db()
    assert job.progress_algorithm == "other" and job.progress_fraction == pytest.approx(0.5)
    progress.report(0.5, "halfway", force=True)
    job.refresh_from_db()
    assert job.progress_fraction == pytest.approx(0.75) and job.progress_message == "halfway"
    Job.objects.filter(pk=job.pk).update(status="cancelled")
    with pytest.raises(services.JobAbandoned):
        progress.report(0.9, "more", force=True)
