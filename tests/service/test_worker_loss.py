"""Workers die and jobs survive: real worker processes on Redis and PostgreSQL, killed with SIGKILL."""

from __future__ import annotations

import time

import pytest

from solvers.instances import paper_scenario_doc

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.timeout(300)]

# A job that computes for a few seconds: a large cluster and a long simulation.
LONG_JOB = {"scenario": paper_scenario_doc(num_servers=1000, arrival_rate=10.0),
            "algorithms": ["proposed"], "options": {"simulate_requests": 2_000_000}}


def wait_status(client, job_id, statuses, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/v1/jobs/{job_id}/").json()
        if job["status"] in statuses:
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} never reached {statuses}: {job}")


def plan_rows(stack, job_id):
    import psycopg
    with psycopg.connect(stack.env["DATABASE_URL"], autocommit=True) as conn:
        return conn.execute("SELECT algorithm, count(*) FROM planner_app_plan WHERE job_id = %s GROUP BY algorithm",
                            (job_id,)).fetchall()


def test_killed_worker_mid_job_the_job_still_completes_once(stack_factory):
    stack = stack_factory()
    stack.start_web()
    client = stack.client("loss-alice")
    first = stack.start_worker("first")
    job_id = client.post("/api/v1/jobs/", json=LONG_JOB).json()["id"]
    running = wait_status(client, job_id, {"running", "succeeded", "failed"})
    assert running["status"] == "running", "the job finished before the worker could be killed"
    assert running["worker"].startswith("first@") and running["attempts"] == 1
    stack.kill(first)                         # no ack, no clean-up, no final write

    time.sleep(1)
    job = client.get(f"/api/v1/jobs/{job_id}/").json()
    assert job["status"] == "running" and job["plans"] == []       # nothing half-written

    stack.start_worker("second")
    job = client.wait_job(job_id, timeout=120)
    assert job["status"] == "succeeded", job
    # normally attempt 2; on a starved machine the sweep may also time out the second attempt's
    # heartbeat and run a third: wasted work, but still exactly one result (checked below)
    assert job["worker"].startswith("second@") and job["attempts"] >= 2
    assert "stopped responding" in job["reason"]
    assert plan_rows(stack, job_id) == [("proposed", 1)]
    # a late redelivery of the original message changes nothing
    time.sleep(2)
    again = client.get(f"/api/v1/jobs/{job_id}/").json()
    assert again["status"] == "succeeded" and again["attempts"] == job["attempts"] and len(again["plans"]) == 1


def test_worker_that_keeps_dying_fails_the_job_with_a_reason(stack_factory):
    stack = stack_factory(CHAINPLAN_MAX_ATTEMPTS="2")
    stack.start_web()
    client = stack.client("loss-bob")
    job_id = client.post("/api/v1/jobs/", json=LONG_JOB).json()["id"]
    for attempt in (1, 2):
        worker = stack.start_worker(f"doomed{attempt}")
        job = wait_status(client, job_id, {"running", "succeeded", "failed"})
        while job["status"] == "running" and job["attempts"] < attempt:
            job = wait_status(client, job_id, {"running", "succeeded", "failed"})
        assert job["status"] == "running" and job["attempts"] == attempt
        stack.kill(worker)
    stack.start_worker("survivor")
    job = client.wait_job(job_id, timeout=60)
    assert job["status"] == "failed", (job, [stack.log(f"worker-{n}.log")[-3000:] for n in ("doomed2", "survivor")])
    assert "gave up after 2 attempts" in job["error"] and "stopped responding" in job["error"]
    assert job["plans"] == [] and plan_rows(stack, job_id) == []


def test_soft_time_limit_fails_the_job_with_a_clear_reason(stack_factory):
    stack = stack_factory(CELERY_TASK_SOFT_TIME_LIMIT="1", CELERY_TASK_TIME_LIMIT="20")
    stack.start_web()
    client = stack.client("limit-carol")
    stack.start_worker("limited")
    job_id = client.post("/api/v1/jobs/", json=LONG_JOB).json()["id"]
    job = client.wait_job(job_id, timeout=60)
    assert job["status"] == "failed"
    assert job["error"] == "stopped: the job ran past its time limit (1 s) while running proposed"
    assert job["plans"] == []


def test_job_submitted_while_no_worker_runs_is_picked_up_later(stack_factory):
    stack = stack_factory()
    stack.start_web()
    client = stack.client("late-dave")
    job_id = client.post("/api/v1/jobs/", json={"scenario": paper_scenario_doc(num_servers=20)}).json()["id"]
    time.sleep(1)
    assert client.get(f"/api/v1/jobs/{job_id}/").json()["status"] == "queued"
    stack.start_worker("late")
    assert client.wait_job(job_id, timeout=60)["status"] == "succeeded"
