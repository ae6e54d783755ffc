"""End to end over HTTP: gunicorn on PostgreSQL, a real Celery worker process on Redis."""

from __future__ import annotations

import json
import time

import pytest

from solvers.runner import DEFAULT_ALGORITHMS
from solvers.instances import paper_scenario_doc

from .conftest import SMALL

pytestmark = [pytest.mark.services, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def alice(live):
    return live.client("e2e-alice")


def test_submit_scenario_and_read_the_finished_plan(live, alice):
    doc = paper_scenario_doc(num_servers=20)
    r = alice.post("/api/v1/jobs/", json={"scenario": doc, "options": {"simulate_requests": 5000}})
    assert r.status_code == 201, r.text
    job = alice.wait_job(r.json()["id"], timeout=60)
    assert job["status"] == "succeeded", job
    assert job["worker"].startswith("main@") and job["attempts"] == 1
    assert [p["algorithm"] for p in job["plans"]] == DEFAULT_ALGORITHMS
    plan = alice.get(f"/api/v1/plans/{job['plans'][0]['id']}/").json()
    document = plan["document"]
    assert document["feasible"] and document["simulation"]["requests"] == 5000
    assert plan["mean_response_s"] == document["simulation"]["mean_response_s"] > 0
    for chain in document["chains"]:
        assert sum(chain["blocks"]) == 70
    # the plan is stored in PostgreSQL, written once
    rows = live_db_rows(live, "SELECT count(*) FROM planner_app_plan WHERE job_id = %s", (job["id"],))
    assert rows == [(len(DEFAULT_ALGORITHMS),)]


def live_db_rows(live, sql, params=()):
    import psycopg
    with psycopg.connect(live.env["DATABASE_URL"], autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def test_cluster_import_then_plan_by_reference(alice):
    cluster = alice.post("/api/v1/clusters/import/", json={"scenario": SMALL}).json()
    r = alice.post("/api/v1/jobs/", json={"cluster": cluster["id"], "workload": {"arrival_rate": 0.4}})
    assert r.status_code == 201, r.text
    job = alice.wait_job(r.json()["id"])
    assert job["status"] == "succeeded" and job["plans"][0]["feasible"]
    listed = alice.get(f"/api/v1/jobs/?cluster={cluster['id']}&status=succeeded").json()
    assert [j["id"] for j in listed["results"]] == [job["id"]]


def test_infeasible_model_fails_with_reason(alice):
    doc = json.loads(json.dumps(SMALL))
    doc["model"]["num_blocks"] = 70
    job = alice.wait_job(alice.post("/api/v1/jobs/", json={"scenario": doc}).json()["id"])
    assert job["status"] == "failed" and "of 70 blocks" in job["error"] and job["plans"] == []


def test_burst_of_jobs_all_finish_exactly_once(live, alice):
    ids = []
    for i in range(40):
        doc = json.loads(json.dumps(SMALL))
        doc["workload"]["arrival_rate"] = 0.1 + 0.01 * i
        r = alice.post("/api/v1/jobs/", json={"scenario": doc, "options": {"simulate_requests": 200}})
        assert r.status_code == 201
        ids.append(r.json()["id"])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        rows = live_db_rows(live, "SELECT status, count(*) FROM planner_app_job WHERE id = ANY(%s) GROUP BY status",
                            (ids,))
        if dict(rows).get("succeeded") == len(ids):
            break
        time.sleep(0.3)
    assert dict(rows) == {"succeeded": len(ids)}
    plans = live_db_rows(live, "SELECT job_id, algorithm, count(*) FROM planner_app_plan WHERE job_id = ANY(%s) "
                               "GROUP BY job_id, algorithm", (ids,))
    assert len(plans) == len(ids) * len(DEFAULT_ALGORITHMS) and all(n == 1 for _, _, n in plans)


def test_bad_input_through_the_real_server(live, alice):
    # 50 MB body: refused from the header, before it is read
    r = alice.post("/api/v1/jobs/", data=b"{" + b" " * (50 * 1024 * 1024) + b"}",
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["errors"]
    # 100 000 servers (about 7 MB, under the size limit): refused by the server-count limit
    doc = json.loads(json.dumps(SMALL))
    doc["servers"] = [{"id": f"s{i}", "memory_gb": 40, "comm_time_s": 1, "block_time_s": 0.1}
                      for i in range(100_000)]
    r = alice.post("/api/v1/jobs/", json={"scenario": doc})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "scenario.servers"
    # NUL characters, which PostgreSQL cannot store, are a 400 not a 500
    r = alice.post("/api/v1/clusters/import/", json={"scenario": SMALL | {"name": "bad\u0000name"}})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "scenario.name"
    r = alice.post("/api/v1/jobs/", data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "Traceback" not in r.text
    # an id beyond PostgreSQL's bigint
    r = alice.post("/api/v1/jobs/", json={"cluster": 10**30, "workload": {"arrival_rate": 1}})
    assert r.status_code == 400
    assert alice.get(f"/api/v1/jobs/{10**30}/").status_code == 404


def test_isolation_over_http(live, alice):
    bob = live.client("e2e-bob")
    job = alice.post("/api/v1/jobs/", json={"scenario": SMALL}).json()
    assert bob.get(f"/api/v1/jobs/{job['id']}/").status_code == 404
    assert bob.post(f"/api/v1/jobs/{job['id']}/cancel/").status_code == 404
    assert all(j["id"] != job["id"] for j in bob.get("/api/v1/jobs/").json()["results"])
    alice.wait_job(job["id"])


def test_schema_is_served(live, alice):
    schema = alice.get("/api/v1/schema/?format=json").json()
    assert "/api/v1/jobs/{id}/" in schema["paths"]
