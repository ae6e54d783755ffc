"""Bad input gets a 4xx naming the field, or a job that fails with a reason; never a 500."""

from __future__ import annotations

import json

import pytest
from django.test import override_settings

from planner_app.models import Cluster, Job, Plan

from .conftest import run_queued

pytestmark = pytest.mark.django_db

V1 = "/api/v1"


def post_raw(api, path, body: bytes | str, content_type="application/json"):
    return api.generic("POST", f"{V1}/{path}", body, content_type=content_type)


def fields(response) -> set[str]:
    return {e["field"] for e in response.json()["errors"]}


@pytest.mark.parametrize("body", [b"{", b"{'a': 1}", b"[1, 2", b"\xff\xfe", b"NaN", b'{"x": Infinity}',
                                  b"[" * 100_000 + b"]" * 100_000])
def test_malformed_json_is_400(api, body):
    r = post_raw(api, "jobs/", body)
    assert r.status_code == 400
    assert "JSON" in r.json()["detail"]


def test_body_that_is_not_an_object(api):
    r = post_raw(api, "jobs/", b"[1, 2, 3]")
    assert r.status_code == 400 and r.json()["detail"]


def test_wrong_types_name_their_fields(api, small_doc):
    small_doc["servers"][1]["memory_gb"] = "lots"
    small_doc["model"]["num_blocks"] = 2.5
    small_doc["workload"] = "fast"
    r = api.post(f"{V1}/jobs/", {"scenario": small_doc}, format="json")
    assert r.status_code == 400
    assert {"scenario.servers[1].memory_gb", "scenario.model.num_blocks", "scenario.workload"} <= fields(r)
    r = api.post(f"{V1}/jobs/", {"scenario": "not a document"}, format="json")
    assert r.status_code == 400 and fields(r) == {"scenario"}
    r = api.post(f"{V1}/jobs/", {"scenario": small_doc | {"workload": {"arrival_rate": 1}},
                                 "options": {"seed": "x", "c": 0, "simulate_requests": -1, "bogus": 1}},
                 format="json")
    assert {"options.seed", "options.c", "options.simulate_requests", "options.bogus"} <= fields(r)


def test_unknown_algorithms(api, small_doc):
    r = api.post(f"{V1}/jobs/", {"scenario": small_doc, "algorithms": ["proposed", "magic"]}, format="json")
    assert r.status_code == 400
    assert r.json()["errors"] == [{"field": "algorithms[1]",
                                   "message": r.json()["errors"][0]["message"]}]
    assert "unknown algorithm 'magic'" in r.json()["errors"][0]["message"]
    r = api.post(f"{V1}/jobs/", {"scenario": small_doc, "algorithms": []}, format="json")
    assert r.status_code == 400 and fields(r) == {"algorithms"}


@pytest.mark.parametrize("value", [-1, 0, 1e999, -1e999, "nan", "inf"])
def test_negative_zero_and_non_finite_numbers(api, small_doc, value):
    small_doc["servers"][0]["memory_gb"] = value
    body = json.dumps({"scenario": small_doc})           # 1e999 is written as Infinity by json
    body = body.replace("Infinity", "1e999")             # ... so send a literal that parses to inf
    r = post_raw(api, "jobs/", body)
    assert r.status_code == 400
    assert "scenario.servers[0].memory_gb" in fields(r)
    # the same through the cluster API
    r = post_raw(api, "clusters/", json.dumps({"name": "c", "servers": [
        {"server_id": "s", "memory_gb": value, "comm_time_s": 1, "block_time_s": 1}]}).replace("Infinity", "1e999"))
    assert r.status_code == 400 and "servers[0].memory_gb" in fields(r)


def test_negative_times_and_rates(api, small_doc):
    small_doc["servers"][2]["block_time_s"] = -0.1
    small_doc["workload"]["arrival_rate"] = -3
    r = api.post(f"{V1}/jobs/", {"scenario": small_doc}, format="json")
    assert {"scenario.servers[2].block_time_s", "scenario.workload.arrival_rate"} <= fields(r)


def test_duplicate_server_ids(api, small_doc):
    small_doc["servers"][2]["id"] = "a"
    r = api.post(f"{V1}/jobs/", {"scenario": small_doc}, format="json")
    assert r.status_code == 400 and "scenario.servers[2].id" in fields(r)
    r = api.post(f"{V1}/clusters/", {"name": "c", "servers": [
        {"server_id": "x", "memory_gb": 1, "comm_time_s": 1, "block_time_s": 1},
        {"server_id": "x", "memory_gb": 2, "comm_time_s": 1, "block_time_s": 1}]}, format="json")
    assert r.status_code == 400 and fields(r) == {"servers[1].server_id"}
    assert not Cluster.objects.exists()


def test_server_without_times_or_hardware(api):
    r = api.post(f"{V1}/clusters/", {"name": "c", "servers": [{"server_id": "x", "memory_gb": 1}]}, format="json")
    assert r.status_code == 400 and fields(r) == {"servers[0].comm_time_s"}


def test_model_the_cluster_cannot_hold_fails_the_job_with_a_reason(api, small_doc):
    small_doc["model"]["num_blocks"] = 70
    r = api.post(f"{V1}/jobs/", {"scenario": small_doc}, format="json")
    assert r.status_code == 201
    run_queued()
    job = api.get(f"{V1}/jobs/{r.json()['id']}/").json()
    assert job["status"] == "failed"
    assert "servers can hold" in job["error"] and "of 70 blocks" in job["error"]
    assert job["plans"] == [] and not Plan.objects.exists()


def test_arrival_rate_nothing_can_serve_fails_with_a_reason(api, small_doc):
    small_doc["workload"]["arrival_rate"] = 1e6
    r = api.post(f"{V1}/jobs/", {"scenario": small_doc, "options": {"simulate_requests": 100}}, format="json")
    assert r.status_code == 201
    run_queued()
    job = api.get(f"{V1}/jobs/{r.json()['id']}/").json()
    assert job["status"] == "failed" and job["error"].startswith("no feasible plan")
    # the stored plans (if any) are whole documents that say why
    for summary in job["plans"]:
        assert api.get(f"{V1}/plans/{summary['id']}/").json()["document"]["reason"]


def test_body_over_the_limit_is_413(api, settings):
    r = post_raw(api, "jobs/", b" " * (settings.MAX_REQUEST_BYTES + 1))
    assert r.status_code == 413 and r.json()["errors"]
    r = post_raw(api, "jobs/", b'{"scenario": "' + b"x" * (50 * 1024 * 1024) + b'"}')
    assert r.status_code == 413
    assert not Job.objects.exists()


def test_100000_servers_is_400(api, small_doc):
    servers = [{"id": f"s{i}", "memory_gb": 40, "comm_time_s": 1, "block_time_s": 0.1} for i in range(100_000)]
    small_doc["servers"] = servers
    r = api.post(f"{V1}/jobs/", {"scenario": small_doc}, format="json")
    assert r.status_code == 400
    assert fields(r) == {"scenario.servers"} and "at most" in r.json()["detail"]
    r = api.post(f"{V1}/clusters/", {"name": "c", "servers": [
        {"server_id": s["id"], "memory_gb": 40, "comm_time_s": 1, "block_time_s": 0.1} for s in servers]},
        format="json")
    assert r.status_code == 400 and fields(r) == {"servers"}
    assert not Cluster.objects.exists() and not Job.objects.exists()


@override_settings(MAX_SERVERS_PER_CLUSTER=5)
def test_server_limit_is_configurable(api, small_doc):
    small_doc["servers"] = [{"id": f"s{i}", "memory_gb": 40, "comm_time_s": 1, "block_time_s": 0.1}
                            for i in range(6)]
    assert api.post(f"{V1}/jobs/", {"scenario": small_doc}, format="json").status_code == 400
    small_doc["servers"] = small_doc["servers"][:5]
    assert api.post(f"{V1}/jobs/", {"scenario": small_doc}, format="json").status_code == 201


def test_nul_characters_are_refused_before_the_database(api, small_doc):
    small_doc["servers"][0]["id"] = "a\x00b"
    r = api.post(f"{V1}/jobs/", {"scenario": small_doc}, format="json")
    assert r.status_code == 400 and "scenario.servers[0].id" in fields(r)
    r = api.post(f"{V1}/clusters/", {"name": "c\x00", "servers": []}, format="json")
    assert r.status_code == 400 and "name" in fields(r)
    r = api.post(f"{V1}/models/", {"name": "m", "architecture": {"preset": "x\x00"}}, format="json")
    assert r.status_code == 400


def test_job_request_shapes(api, small_doc):
    r = api.post(f"{V1}/jobs/", {}, format="json")
    assert r.status_code == 400 and fields(r) == {"cluster", "workload"}
    r = api.post(f"{V1}/jobs/", {"scenario": small_doc, "workload": {"arrival_rate": 1}}, format="json")
    assert r.status_code == 400 and fields(r) == {"workload"}
    empty = api.post(f"{V1}/clusters/", {"name": "empty", "servers": []}, format="json").json()
    r = api.post(f"{V1}/jobs/", {"cluster": empty["id"], "workload": {"arrival_rate": 1}}, format="json")
    assert r.status_code == 400 and fields(r) == {"model"}
    r = api.post(f"{V1}/jobs/", {"cluster": 10**12, "workload": {"arrival_rate": 1}}, format="json")
    assert r.status_code == 400 and fields(r) == {"cluster"}
    r = api.post(f"{V1}/jobs/", {"scenario": small_doc, "options": {"time_limit_s": 1e9}}, format="json")
    assert r.status_code == 400 and fields(r) == {"options.time_limit_s"}


def test_bad_query_parameters(api, small_doc):
    assert api.get(f"{V1}/jobs/?status=bogus").status_code == 400
    assert api.get(f"{V1}/jobs/?created_after=yesterday").status_code == 400
    assert api.get(f"{V1}/jobs/?page=999").status_code == 404
    assert api.get(f"{V1}/jobs/?page=abc").status_code == 400      # named, not a guess
    assert api.get(f"{V1}/jobs/?ordering=secret_field").status_code == 200
    assert api.get(f"{V1}/jobs/abc/").status_code == 404
    job = api.post(f"{V1}/jobs/", {"scenario": small_doc, "options": {"simulate_requests": 0}},
                   format="json").json()
    run_queued()
    pid = api.get(f"{V1}/jobs/{job['id']}/").json()["plans"][0]["id"]
    for query in ("rates=a,b", "rates=-1", "rates=nan", "points=0", "points=x", "points=100000"):
        r = api.get(f"{V1}/plans/{pid}/curve/?{query}")
        assert r.status_code == 400 and r.json()["errors"], query
    cluster = api.post(f"{V1}/clusters/import/", {"scenario": small_doc}, format="json").json()
    assert api.get(f"{V1}/clusters/{cluster['id']}/export/?arrival_rate=-2").status_code == 400
    assert api.get(f"{V1}/clusters/{cluster['id']}/export/?model=999999").status_code == 400


def test_unsupported_media_type_and_method(api):
    r = post_raw(api, "jobs/", b"a=1", content_type="application/x-www-form-urlencoded")
    assert r.status_code == 415
    assert api.delete(f"{V1}/jobs/1/").status_code in (404, 405)
    assert api.put(f"{V1}/algorithms/", {}, format="json").status_code == 405


def test_curve_reads_a_stored_plans_chains_and_names_a_malformed_one(api, user):
    """The curve needs only the chains: a plan stored without later fields keeps its curve; a bad chain is a
    400 naming the field (it was a KeyError, a 500)."""
    job = Job.objects.create(owner=user, scenario={}, input_scenario={}, algorithms=["proposed"])
    chain = {"servers": ["a", "b"], "blocks": [6, 4], "service_time_s": 2.0, "capacity": 3}
    old = Plan.objects.create(job=job, algorithm="proposed", feasible=True,
                              document={"algorithm": "proposed", "chains": [chain]})
    r = api.get(f"{V1}/plans/{old.pk}/curve/?rates=0.5,2")
    assert r.status_code == 200 and [p["stable"] for p in r.json()["points"]] == [True, False]
    bad = Plan.objects.create(job=job, algorithm="search", feasible=True, document={
        "algorithm": "search", "chains": [chain, {k: v for k, v in chain.items() if k != "capacity"}]})
    r = api.get(f"{V1}/plans/{bad.pk}/curve/")
    assert r.status_code == 400 and fields(r) == {"document.chains[1].capacity"}
