"""Re-planning end to end: gunicorn, a Celery worker with beat (DatabaseScheduler) on PostgreSQL and Redis.

A schedule that comes due makes beat queue a re-plan job that the worker finishes; a probe report
that changes a server's figures triggers one; a server leaving triggers one whose plan never uses it;
an adoption calls the webhook (a local http.server) with the diff.
"""

from __future__ import annotations

import time

import pytest

from .conftest import SMALL
from .live import wait_for

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]


def replan_jobs(client, cluster_id, trigger):
    jobs = client.get(f"/api/v1/jobs/?cluster={cluster_id}&trigger={trigger}&ordering=-created_at").json()
    return jobs["results"]


def used(doc) -> set[str]:
    return {p["server"] for p in doc["placement"] if p["num_blocks"] > 0} | {
        s for ch in doc["chains"] for s in ch["servers"]}


def test_schedule_and_triggers_with_real_beat_and_worker(live, hook):
    alice = live.client("replan-alice")
    url, received = hook
    cluster = alice.post("/api/v1/clusters/import/", json={"scenario": SMALL}).json()
    cid = cluster["id"]
    assert alice.patch(f"/api/v1/clusters/{cid}/", json={"replan_webhook_url": url}).status_code == 200

    # a first re-plan is adopted (nothing was) and the webhook gets the diff
    job = alice.wait_job(alice.post(f"/api/v1/clusters/{cid}/replan/", json={}).json()["id"])
    assert job["status"] == "succeeded" and job["replan_outcome"]["adopted"], job
    first_plan = job["plans"][0]["id"]
    hooked = wait_for(lambda: list(received), 20, "webhook call")
    assert hooked[0]["plan"] == first_plan and hooked[0]["trigger"] == "manual" and hooked[0]["diff"]["servers"]
    adoption = wait_for(lambda: [a for a in alice.get(f"/api/v1/clusters/{cid}/adoptions/").json()["results"]
                                 if a["webhook_status"] == 204], 10, "recorded webhook status")
    assert adoption[0]["plan"] == first_plan

    # a schedule that comes due: beat sends the task, the worker queues and runs the re-plan
    sched = alice.post(f"/api/v1/clusters/{cid}/schedules/",
                       json={"kind": "interval", "every": 2, "period": "seconds"})
    assert sched.status_code == 201, sched.text
    scheduled = wait_for(lambda: [j for j in replan_jobs(alice, cid, "schedule") if j["status"] == "succeeded"],
                         60, "finished scheduled re-plan")[0]
    assert alice.delete(f"/api/v1/clusters/{cid}/schedules/{sched.json()['id']}/").status_code == 204
    assert scheduled["trigger_detail"].startswith(f"schedule {sched.json()['id']}: every 2 seconds")
    # nothing changed: the scheduled re-plan gains nothing and stays a candidate
    assert not scheduled["replan_outcome"]["adopted"], scheduled["replan_outcome"]
    assert alice.get(f"/api/v1/clusters/{cid}/adopted-plan/").json()["plan"]["id"] == first_plan
    assert alice.get(f"/api/v1/clusters/{cid}/schedules/").json() == []
    time.sleep(1)      # let a schedule run that was already sent finish queueing

    # a server of the adopted plan leaves: the re-plan never uses it and replaces the adopted plan
    gone = sorted(used(alice.get(f"/api/v1/plans/{first_plan}/").json()["document"]))[0]
    servers = [{k: v for k, v in s.items() if k != "latest_calibration"}
               for s in alice.get(f"/api/v1/clusters/{cid}/").json()["servers"] if s["server_id"] != gone]
    assert alice.patch(f"/api/v1/clusters/{cid}/", json={"servers": servers}).status_code == 200
    left = wait_for(lambda: replan_jobs(alice, cid, "servers"), 10, "server re-plan")[0]
    left = alice.wait_job(left["id"])
    assert left["status"] == "succeeded" and left["replan_outcome"]["adopted"], left
    new_doc = alice.get(f"/api/v1/plans/{left['plans'][0]['id']}/").json()["document"]
    assert gone not in used(new_doc)
    apply = alice.get(f"/api/v1/clusters/{cid}/apply/").json()
    assert apply["plan"]["id"] == left["plans"][0]["id"] and apply["missing_servers"] == []
    assert all(not c.startswith(f"# on {gone}\n") for c in apply["petals_commands"])
    assert wait_for(lambda: [h for h in received if h["plan"] == left["plans"][0]["id"]], 20, "second webhook")

    # a probe report that changes a server's figures past the threshold triggers a re-plan
    torch = pytest.importorskip("torch")
    from .test_probe_reports import report
    from gpu_probe.measure import measure_block
    from gpu_probe.models import ModelSpec
    from solvers.calibration import Architecture
    from .test_probe_reports import TINY_ARCH
    torch.set_num_threads(1)
    spec = ModelSpec(name="tiny-llama", source="config", architecture=Architecture(**TINY_ARCH))
    measurement = measure_block(spec, "fp32", torch.device("cpu"), prefill_lengths=[16, 256],
                                decode_contexts=[16, 1024], warmup=1, repeats=2, activation_tokens=32)
    server = servers[0]["server_id"]
    token = alice.post(f"/api/v1/clusters/{cid}/servers/{server}/probe-token/").json()["token"]
    r = alice.post("/api/v1/probe/reports/", json=report(measurement, cid, server),
                   headers={"Authorization": f"Probe {token}"})
    assert r.status_code == 201, r.text
    calibrated = wait_for(lambda: replan_jobs(alice, cid, "calibration"), 10, "calibration re-plan")[0]
    assert f"server {server}" in calibrated["trigger_detail"]
    assert alice.wait_job(calibrated["id"])["status"] == "succeeded"
