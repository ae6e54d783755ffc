"""The REST API of docs/api-contract.md, in process (Django test client, jobs run by the task body)."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from planner_app.planning import services
from planner_app.models import Job, Plan, Server, ServerCalibration
from solvers.runner import DEFAULT_ALGORITHMS

from .conftest import run_queued

pytestmark = pytest.mark.django_db

V1 = "/api/v1"


# ---------------------------------------------------------------------------
# auth
# ---------------------------------------------------------------------------

def test_token_exchange_and_token_auth(user):
    client = APIClient()
    assert client.get(f"{V1}/clusters/").status_code in (401, 403)
    r = client.post(f"{V1}/auth/token/", {"username": "alice", "password": "alice-pw"}, format="json")
    assert r.status_code == 200
    token = r.json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get(f"{V1}/clusters/").status_code == 200
    assert client.get(f"{V1}/auth/me/").json() == {"username": "alice"}


def test_token_exchange_rejects_wrong_password(user):
    r = APIClient().post(f"{V1}/auth/token/", {"username": "alice", "password": "nope"}, format="json")
    assert r.status_code == 400
    assert "unable to log in" in r.json()["detail"]


def test_session_login_needs_csrf_then_works(user):
    client = APIClient(enforce_csrf_checks=True)
    r = client.post(f"{V1}/auth/login/", {"username": "alice", "password": "alice-pw"}, format="json")
    assert r.status_code == 403                       # no CSRF cookie yet
    assert client.get(f"{V1}/auth/csrf/").status_code == 204
    csrf = client.cookies["csrftoken"].value
    r = client.post(f"{V1}/auth/login/", {"username": "alice", "password": "alice-pw"}, format="json",
                    HTTP_X_CSRFTOKEN=csrf)
    assert r.status_code == 200 and r.json() == {"username": "alice"}
    assert client.get(f"{V1}/auth/me/").json() == {"username": "alice"}
    csrf = client.cookies["csrftoken"].value          # rotated at login
    # a session-authenticated write without the CSRF header is refused
    assert client.post(f"{V1}/models/", {"name": "m"}, format="json").status_code == 403
    r = client.post(f"{V1}/models/", {"name": "m", "num_blocks": 4, "block_size_gb": 1, "cache_size_gb": 0.1},
                    format="json", HTTP_X_CSRFTOKEN=csrf)
    assert r.status_code == 201
    assert client.post(f"{V1}/auth/logout/", HTTP_X_CSRFTOKEN=csrf).status_code == 204
    # signed out is an answer, not an error (a 403 would log a console error in the browser)
    r = client.get(f"{V1}/auth/me/")
    assert r.status_code == 200 and r.json() == {"username": None}


def test_create_api_user_command_prints_a_working_token(db):
    from io import StringIO

    from django.core.management import call_command
    out = StringIO()
    call_command("create_api_user", "carol", stdout=out)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {out.getvalue().strip()}")
    assert client.get(f"{V1}/auth/me/").json() == {"username": "carol"}


# ---------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------

def test_model_sizes_derived_from_architecture_explicit_numbers_win(api):
    r = api.post(f"{V1}/models/", {"name": "llama", "architecture": {"preset": "llama-2-7b"}}, format="json")
    assert r.status_code == 201, r.json()
    derived = r.json()
    assert derived["num_blocks"] == 32
    assert 0.38 < derived["block_size_gb"] < 0.45
    assert derived["cache_size_gb"] == pytest.approx(2 * 32 * 128 * 4096 * 2 / 1e9)
    r = api.post(f"{V1}/models/", {"name": "llama", "architecture": {"preset": "llama-2-7b"},
                                   "block_size_gb": 0.5}, format="json")
    assert r.json()["block_size_gb"] == 0.5 and r.json()["num_blocks"] == 32
    # PATCH of the name keeps the numbers; a new architecture re-derives them
    mid = r.json()["id"]
    assert api.patch(f"{V1}/models/{mid}/", {"name": "renamed"}, format="json").json()["block_size_gb"] == 0.5
    r = api.patch(f"{V1}/models/{mid}/", {"architecture": {"preset": "bloom-176b"}}, format="json")
    assert r.json()["num_blocks"] == 70


def test_model_derive_and_presets(api):
    r = api.post(f"{V1}/models/derive/", {"architecture": {"preset": "bloom-176b"}, "max_tokens": 2048},
                 format="json")
    assert r.status_code == 200
    assert r.json()["num_blocks"] == 70 and r.json()["block_size_gb"] == pytest.approx(1.32, rel=0.05)
    presets = api.get(f"{V1}/models/presets/").json()
    assert {"llama-2-7b", "bloom-176b"} <= {p["name"] for p in presets}
    assert all("hidden_size" in p["architecture"] for p in presets)


def test_model_without_sizes_or_architecture_names_the_fields(api):
    r = api.post(f"{V1}/models/", {"name": "x"}, format="json")
    assert r.status_code == 400
    fields = {e["field"] for e in r.json()["errors"]}
    assert {"num_blocks", "block_size_gb", "cache_size_gb"} <= fields


# ---------------------------------------------------------------------------
# clusters
# ---------------------------------------------------------------------------

def _cluster_body(**extra):
    return {"name": "c1", "description": "test", "servers": [
        {"server_id": "s1", "memory_gb": 12, "comm_time_s": 0.5, "block_time_s": 0.1},
        {"server_id": "s2", "memory_gb": 8, "tflops": 80, "mem_bandwidth_gb_s": 510, "rtt_ms": 20},
    ], **extra}


def test_cluster_crud_with_nested_servers(api):
    r = api.post(f"{V1}/clusters/", _cluster_body(), format="json")
    assert r.status_code == 201, r.json()
    cluster = r.json()
    assert cluster["server_count"] == 2
    assert [s["server_id"] for s in cluster["servers"]] == ["s1", "s2"]
    assert cluster["servers"][0]["latest_calibration"] is None
    assert cluster["servers"][1]["tflops"] == 80
    cid = cluster["id"]
    # PUT replaces the server list, keeping rows of servers that stay
    s1_pk = Server.objects.get(cluster_id=cid, server_id="s1").pk
    body = _cluster_body(name="c1b")
    body["servers"] = [body["servers"][0] | {"memory_gb": 16}, {"server_id": "s3", "memory_gb": 10,
                                                                "comm_time_s": 1, "block_time_s": 0.2}]
    r = api.put(f"{V1}/clusters/{cid}/", body, format="json")
    assert r.status_code == 200, r.json()
    assert [s["server_id"] for s in r.json()["servers"]] == ["s1", "s3"]
    assert Server.objects.get(cluster_id=cid, server_id="s1").pk == s1_pk
    assert r.json()["servers"][0]["memory_gb"] == 16
    r = api.patch(f"{V1}/clusters/{cid}/", {"description": "patched"}, format="json")
    assert r.json()["description"] == "patched" and r.json()["server_count"] == 2
    assert api.get(f"{V1}/clusters/").json()["count"] == 1
    assert api.delete(f"{V1}/clusters/{cid}/").status_code == 204
    assert api.get(f"{V1}/clusters/{cid}/").status_code == 404


def test_latest_calibration_is_shown(api):
    cid = api.post(f"{V1}/clusters/", _cluster_body(), format="json").json()["id"]
    server = Server.objects.get(cluster_id=cid, server_id="s1")
    cal = ServerCalibration.objects.create(server=server, model_name="toy", report={"raw": 1},
                                           figures={"block_time_s": 0.09, "comm_time_s": 0.4})
    server.latest_calibration = cal
    server.save()
    shown = api.get(f"{V1}/clusters/{cid}/").json()["servers"][0]["latest_calibration"]
    assert shown["figures"] == {"block_time_s": 0.09, "comm_time_s": 0.4} and shown["id"] == cal.id


def test_import_creates_cluster_and_model_and_export_round_trips(api, small_doc):
    r = api.post(f"{V1}/clusters/import/", {"scenario": small_doc}, format="json")
    assert r.status_code == 201, r.json()
    cluster = r.json()
    assert cluster["name"] == "small" and cluster["server_count"] == 3 and cluster["model"] is not None
    exported = api.get(f"{V1}/clusters/{cluster['id']}/export/").json()
    assert exported["servers"] == small_doc["servers"]
    assert exported["workload"] == small_doc["workload"]
    assert {k: exported["model"][k] for k in small_doc["model"]} == small_doc["model"]
    again = api.get(f"{V1}/clusters/{cluster['id']}/export/?arrival_rate=0.9").json()
    assert again["workload"]["arrival_rate"] == 0.9
    # the export is itself a valid scenario to import
    assert api.post(f"{V1}/clusters/import/", {"scenario": exported}, format="json").status_code == 201


def test_probe_token_for_one_server(api):
    cid = api.post(f"{V1}/clusters/", _cluster_body(), format="json").json()["id"]
    r = api.post(f"{V1}/clusters/{cid}/servers/s1/probe-token/")
    assert r.status_code == 201 and len(r.json()["token"]) >= 32
    assert api.post(f"{V1}/clusters/{cid}/servers/nope/probe-token/").status_code == 404


# ---------------------------------------------------------------------------
# algorithms, jobs, plans
# ---------------------------------------------------------------------------

def test_algorithms_list_marks_defaults(api):
    algos = api.get(f"{V1}/algorithms/").json()
    assert "proposed" in {a["name"] for a in algos}
    assert {a["name"] for a in algos if a["default"]} == set(DEFAULT_ALGORITHMS)


def test_inline_scenario_job_runs_to_a_stored_plan(api, small_doc):
    r = api.post(f"{V1}/jobs/", {"scenario": small_doc, "options": {"simulate_requests": 500, "seed": 3}},
                 format="json")
    assert r.status_code == 201, r.json()
    job = r.json()
    assert job["status"] == "queued" and job["plans"] == [] and job["cluster"] is None
    assert job["algorithms"] == DEFAULT_ALGORITHMS
    assert job["options"]["simulate_requests"] == 500 and job["options"]["seed"] == 3
    assert job["scenario"]["servers"][0]["id"] == "a"
    assert run_queued() == ["done"]
    job = api.get(f"{V1}/jobs/{job['id']}/").json()
    assert job["status"] == "succeeded", job
    assert job["progress"]["fraction"] == 1.0 and job["worker"] == "test-worker"
    assert job["started_at"] and job["finished_at"] and job["error"] is None
    assert [p["algorithm"] for p in job["plans"]] == DEFAULT_ALGORITHMS
    summary = job["plans"][0]
    plan = api.get(f"{V1}/plans/{summary['id']}/").json()
    doc = plan["document"]
    assert doc["feasible"] is True and plan["feasible"] is True
    assert plan["total_capacity"] == doc["total_capacity"] > 0
    assert plan["mean_response_s"] == doc["simulation"]["mean_response_s"]
    assert doc["simulation"]["requests"] == 500 and doc["simulation"]["seed"] == 3
    for chain in doc["chains"]:
        assert sum(chain["blocks"]) == small_doc["model"]["num_blocks"]


def test_cluster_job_uses_cluster_model_and_workload(api, small_doc):
    cluster = api.post(f"{V1}/clusters/import/", {"scenario": small_doc}, format="json").json()
    r = api.post(f"{V1}/jobs/", {"cluster": cluster["id"], "workload": {"arrival_rate": 0.3},
                                 "algorithms": ["proposed"], "options": {"c": 1, "simulate_requests": 0}},
                 format="json")
    assert r.status_code == 201, r.json()
    job = r.json()
    assert job["cluster"] == cluster["id"] and job["model"] == cluster["model"]
    assert job["scenario"]["workload"]["arrival_rate"] == 0.3
    run_queued()
    job = api.get(f"{V1}/jobs/{job['id']}/").json()
    assert job["status"] == "succeeded"
    plan = api.get(f"{V1}/plans/{job['plans'][0]['id']}/").json()
    assert plan["document"]["c"] == 1
    # without simulation the summary falls back to the closed-form upper bound
    assert plan["mean_response_s"] == plan["document"]["bounds"]["response_time_upper_s"]


def test_measured_calibration_wins_unless_datasheet_is_asked(api, small_doc):
    cluster = api.post(f"{V1}/clusters/import/", {"scenario": small_doc}, format="json").json()
    server = Server.objects.get(cluster_id=cluster["id"], server_id="a")
    server.latest_calibration = ServerCalibration.objects.create(
        server=server, figures={"block_time_s": 0.05}, report={})
    server.save()
    body = {"cluster": cluster["id"], "workload": {"arrival_rate": 0.3}}
    measured = api.post(f"{V1}/jobs/", body, format="json").json()
    datasheet = api.post(f"{V1}/jobs/", {**body, "options": {"calibration": "datasheet"}}, format="json").json()
    assert measured["scenario"]["servers"][0]["block_time_s"] == 0.05
    assert datasheet["scenario"]["servers"][0]["block_time_s"] == 0.1


def test_job_list_filters_and_ordering(api, small_doc):
    cluster = api.post(f"{V1}/clusters/import/", {"scenario": small_doc}, format="json").json()
    j1 = api.post(f"{V1}/jobs/", {"scenario": small_doc}, format="json").json()
    j2 = api.post(f"{V1}/jobs/", {"cluster": cluster["id"], "workload": {"arrival_rate": 0.2}},
                  format="json").json()
    services.execute_job(j1["id"], "w")
    listed = api.get(f"{V1}/jobs/").json()
    assert listed["count"] == 2 and [j["id"] for j in listed["results"]] == [j2["id"], j1["id"]]
    assert [j["id"] for j in api.get(f"{V1}/jobs/?status=succeeded").json()["results"]] == [j1["id"]]
    assert [j["id"] for j in api.get(f"{V1}/jobs/?status=queued").json()["results"]] == [j2["id"]]
    assert [j["id"] for j in api.get(f"{V1}/jobs/?cluster={cluster['id']}").json()["results"]] == [j2["id"]]
    assert api.get(f"{V1}/jobs/?algorithm=search").json()["count"] == 2          # the default
    assert api.get(f"{V1}/jobs/?algorithm=nonexistent").json()["count"] == 0
    assert [j["id"] for j in api.get(f"{V1}/jobs/?ordering=created_at").json()["results"]] == [j1["id"], j2["id"]]
    assert api.get(f"{V1}/jobs/?created_after=2000-01-01T00:00:00Z").json()["count"] == 2
    assert api.get(f"{V1}/jobs/?created_before=2000-01-01T00:00:00Z").json()["count"] == 0
    page = api.get(f"{V1}/jobs/?page_size=1&page=2").json()
    assert page["count"] == 2 and len(page["results"]) == 1 and page["previous"] and page["next"] is None


def test_plan_list_filters_sorts_and_curve_and_commands(api, small_doc):
    ids = []
    for rate in (0.2, 0.6):
        doc = small_doc | {"workload": {"arrival_rate": rate}}
        ids.append(api.post(f"{V1}/jobs/", {"scenario": doc, "options": {"simulate_requests": 300}},
                            format="json").json()["id"])
    run_queued()
    plans = api.get(f"{V1}/plans/?ordering=mean_response_s").json()["results"]
    assert len(plans) == 2 and "document" not in plans[0]
    means = [p["mean_response_s"] for p in plans]
    assert means == sorted(means)
    assert [p["job"] for p in api.get(f"{V1}/plans/?job={ids[0]}").json()["results"]] == [ids[0]]
    assert api.get(f"{V1}/plans/?algorithm=search").json()["count"] == 2          # the default
    pid = plans[0]["id"]
    curve = api.get(f"{V1}/plans/{pid}/curve/?rates=0.1,0.2,100").json()["points"]
    assert [p["arrival_rate"] for p in curve] == [0.1, 0.2, 100]
    assert curve[0]["stable"] and curve[0]["response_time_lower_s"] <= curve[0]["response_time_upper_s"]
    assert curve[1]["response_time_lower_s"] >= curve[0]["response_time_lower_s"]
    assert curve[2]["stable"] is False and curve[2]["response_time_lower_s"] is None
    assert len(api.get(f"{V1}/plans/{pid}/curve/?points=7").json()["points"]) == 7
    commands = api.get(f"{V1}/plans/{pid}/petals-commands/").json()["commands"]
    document = api.get(f"{V1}/plans/{pid}/").json()["document"]
    assert len(commands) == len(document["placement"])
    first = document["placement"][0]
    assert f"--block_indices {first['start_block']}:{first['start_block'] + first['num_blocks']}" in commands[0]


def test_cancel_queued_job_then_conflict(api, small_doc):
    job = api.post(f"{V1}/jobs/", {"scenario": small_doc}, format="json").json()
    r = api.post(f"{V1}/jobs/{job['id']}/cancel/")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert r.json()["reason"] == "cancelled by alice" and r.json()["finished_at"]
    # a cancelled job is never run, and cannot be cancelled again
    assert services.execute_job(job["id"], "w") == "skipped"
    assert Plan.objects.filter(job_id=job["id"]).count() == 0
    r = api.post(f"{V1}/jobs/{job['id']}/cancel/")
    assert r.status_code == 409 and "cancelled" in r.json()["detail"]


def test_cancel_running_job_discards_its_result(api, small_doc):
    job = api.post(f"{V1}/jobs/", {"scenario": small_doc}, format="json").json()
    claimed = services.claim_job(job["id"], "w1")
    assert claimed.status == "running"
    assert api.post(f"{V1}/jobs/{job['id']}/cancel/").json()["status"] == "cancelled"
    # the worker's conditional final write finds the job no longer its own
    assert services._finish(job["id"], claimed.attempts, plans=[]) is False
    assert api.get(f"{V1}/jobs/{job['id']}/").json()["status"] == "cancelled"


def test_openapi_schema_and_docs(api):
    r = api.get(f"{V1}/schema/?format=json")
    assert r.status_code == 200
    schema = r.json()
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    for p in ("/api/v1/jobs/", "/api/v1/jobs/{id}/", "/api/v1/jobs/{id}/cancel/", "/api/v1/clusters/import/",
              "/api/v1/clusters/{id}/export/", "/api/v1/plans/{id}/curve/", "/api/v1/auth/token/",
              "/api/v1/models/derive/", "/api/v1/algorithms/",
              "/api/v1/clusters/{id}/servers/{server_id}/probe-token/"):
        assert p in paths, p
    job_props = schema["components"]["schemas"]["Job"]["properties"]
    assert {"status", "progress", "plans", "scenario", "error", "worker"} <= set(job_props)
    assert APIClient().get(f"{V1}/docs/").status_code == 200


def test_web_ui_route_and_unknown_api_path_is_json(api):
    assert APIClient().get("/").status_code == 200
    assert APIClient().get("/jobs/12").status_code == 200        # client-side route
    r = api.get(f"{V1}/nope/")
    assert r.status_code == 404 and r.json()["detail"]


def test_admin_lists_every_model(db, django_user_model):
    admin_user = django_user_model.objects.create_superuser("root", password="pw")
    client = APIClient()
    client.force_login(admin_user)
    for name in ("cluster", "server", "modelspec", "job", "plan", "servercalibration", "probetoken"):
        assert client.get(f"/admin/planner_app/{name}/").status_code == 200, name


def test_seed_demo_creates_plannable_demo(db):
    from io import StringIO

    from django.core.management import call_command
    out = StringIO()
    call_command("seed_demo", stdout=out)
    call_command("seed_demo", stdout=StringIO())        # idempotent
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {out.getvalue().strip()}")
    clusters = client.get(f"{V1}/clusters/").json()["results"]
    assert len(clusters) == len({c["name"] for c in clusters}) >= 1
    paper = [c for c in clusters if c["name"].startswith("paper-J20")]
    if paper:
        r = client.post(f"{V1}/jobs/", {"cluster": paper[0]["id"], "workload": {
            "arrival_rate": 0.2, "input_tokens": 2000, "output_tokens": 20, "max_tokens": 2048}}, format="json")
        assert r.status_code == 201, r.json()
        run_queued()
        assert Job.objects.get(pk=r.json()["id"]).status == "succeeded"


def test_fast_job_representation_equals_the_generic_one(api, small_doc):
    from planner_app.planning.serializers import JobSerializer
    queued = api.post(f"{V1}/jobs/", {"scenario": small_doc}, format="json").json()
    done = api.post(f"{V1}/jobs/", {"scenario": small_doc}, format="json").json()
    services.execute_job(done["id"], "w")
    for job_id in (queued["id"], done["id"]):
        job = Job.objects.get(pk=job_id)
        serializer = JobSerializer(job)
        assert serializer.to_representation(job) == serializer.generic_representation(job)
        assert api.get(f"{V1}/jobs/{job_id}/").json() == json.loads(json.dumps(serializer.generic_representation(job),
                                                                              default=str))


def test_finished_job_cache_respects_the_owner(api, other_api, small_doc):
    job = api.post(f"{V1}/jobs/", {"scenario": small_doc}, format="json").json()
    services.execute_job(job["id"], "w")
    assert api.get(f"{V1}/jobs/{job['id']}/").status_code == 200       # now cached
    assert api.get(f"{V1}/jobs/{job['id']}/").json()["status"] == "succeeded"
    assert other_api.get(f"{V1}/jobs/{job['id']}/").status_code == 404


def test_openapi_schema_generates_without_warnings(tmp_path):
    from django.core.management import call_command
    # --fail-on-warn: an untyped field or unresolved parameter would make generated clients guess
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    assert "/api/v1/probe/reports/" in (tmp_path / "schema.yaml").read_text()


def test_create_api_user_works_on_a_fresh_database(tmp_path):
    """The README's command on a fresh clone: no tables yet, no serve.sh run before it."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")}
    env["CHAINPLAN_VAR_DIR"] = str(tmp_path / "var")
    run = subprocess.run([sys.executable, "manage.py", "create_api_user", "newuser", "--password", "x"],
                         cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    token = run.stdout.strip()
    assert len(token) >= 20 and "\n" not in token
    again = subprocess.run([sys.executable, "manage.py", "create_api_user", "newuser"],
                           cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stdout.strip() == token, again.stderr
