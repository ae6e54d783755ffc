"""servers[].batch_slowdown in the catalog (issue 21): stored, checked, planned with, and re-planning on a new curve."""

from __future__ import annotations

import pytest

from planner_app.catalog.curves import curve_change
from planner_app.models import Job

from .conftest import run_queued

pytestmark = pytest.mark.django_db

V1 = "/api/v1"
CURVE = [[1, 1], [8, 1.5], [64, 4]]


def fields(r) -> dict[str, str]:
    return {e["field"]: e["message"] for e in r.json()["errors"]}


@pytest.fixture
def cluster(api, small_doc):
    small_doc["servers"][0]["batch_slowdown"] = CURVE
    r = api.post(f"{V1}/clusters/import/", {"scenario": small_doc}, format="json")
    assert r.status_code == 201, r.content
    return r.json()


def editable(api, cluster_id) -> list[dict]:
    servers = api.get(f"{V1}/clusters/{cluster_id}/").json()["servers"]
    for s in servers:
        s.pop("latest_calibration")
    return servers


def test_import_stores_the_curve_export_gives_it_back_and_plans_use_it(api, cluster):
    by_id = {s["server_id"]: s for s in cluster["servers"]}
    assert by_id["a"]["batch_slowdown"] == CURVE and by_id["b"]["batch_slowdown"] is None
    exported = api.get(f"{V1}/clusters/{cluster['id']}/export/").json()
    assert [s.get("batch_slowdown") for s in exported["servers"]] == [CURVE, None, None]
    assert "batch_slowdown" not in exported["servers"][1]      # absent, not null: the batch-1 model
    r = api.post(f"{V1}/jobs/", {"cluster": cluster["id"], "algorithms": ["proposed"]}, format="json")
    assert r.status_code == 201, r.content
    assert r.json()["scenario"]["servers"][0]["batch_slowdown"] == CURVE
    run_queued()
    job = api.get(f"{V1}/jobs/{r.json()['id']}/").json()
    assert job["status"] == "succeeded", job
    plan = api.get(f"{V1}/plans/{job['plans'][0]['id']}/").json()["document"]
    assert plan["saturation_rate_rps"] < plan["total_service_rate"]     # server a slows with its batch


def test_a_bad_curve_is_a_400_naming_the_entry(api, cluster):
    servers = editable(api, cluster["id"])
    servers[2]["batch_slowdown"] = [[1, 1], [8, 0.5]]
    r = api.patch(f"{V1}/clusters/{cluster['id']}/", {"servers": servers}, format="json")
    assert r.status_code == 400 and set(fields(r)) == {"servers[2].batch_slowdown[1]"}
    assert "factor" in fields(r)["servers[2].batch_slowdown[1]"]
    for bad, where in (([[2, 1]], "servers[2].batch_slowdown[0]"), ("1:1", "servers[2].batch_slowdown"),
                       ([[1, 1], [4]], "servers[2].batch_slowdown[1]"), ([], "servers[2].batch_slowdown")):
        servers[2]["batch_slowdown"] = bad
        r = api.patch(f"{V1}/clusters/{cluster['id']}/", {"servers": servers}, format="json")
        assert r.status_code == 400 and where in fields(r), (bad, r.json())
    # an import names it in the scenario's own terms
    doc = api.get(f"{V1}/clusters/{cluster['id']}/export/").json()
    doc["servers"][1]["batch_slowdown"] = [[1, 1], [4, 2], [2, 3]]
    r = api.post(f"{V1}/clusters/import/", {"scenario": doc}, format="json")
    assert r.status_code == 400 and "scenario.servers[1].batch_slowdown[2]" in fields(r)


def test_a_curve_can_be_set_changed_and_cleared(api, cluster):
    servers = editable(api, cluster["id"])
    servers[1]["batch_slowdown"] = [[1, 1], [2, 2]]
    servers[0]["batch_slowdown"] = None
    r = api.put(f"{V1}/clusters/{cluster['id']}/", {"name": "c", "servers": servers}, format="json")
    assert r.status_code == 200, r.content
    assert [s["batch_slowdown"] for s in r.json()["servers"]] == [None, [[1, 1], [2, 2]], None]


def test_a_changed_curve_replans_past_the_calibration_threshold(api, cluster):
    servers = editable(api, cluster["id"])
    servers[0]["batch_slowdown"] = [[1, 1], [8, 1.5], [64, 8]]
    assert api.patch(f"{V1}/clusters/{cluster['id']}/", {"servers": servers}, format="json").status_code == 200
    assert not Job.objects.filter(trigger="calibration").exists()           # nothing adopted yet
    r = api.post(f"{V1}/clusters/{cluster['id']}/replan/", {}, format="json")
    assert r.status_code == 201
    run_queued()
    servers[0]["batch_slowdown"] = [[1, 1], [8, 1.5], [64, 8.8]]             # +10 %: under the 20 % threshold
    assert api.patch(f"{V1}/clusters/{cluster['id']}/", {"servers": servers}, format="json").status_code == 200
    assert not Job.objects.filter(trigger="calibration").exists()
    servers[0]["batch_slowdown"] = None                                      # back to batch 1: 8.8x -> 1x at 64
    assert api.patch(f"{V1}/clusters/{cluster['id']}/", {"servers": servers}, format="json").status_code == 200
    job = Job.objects.get(trigger="calibration")
    assert job.trigger_detail.startswith("batch_slowdown of server a at ") and "-> 1x" in job.trigger_detail
    assert "batch_slowdown" not in job.input_scenario["servers"][0]          # planned with the new model
    run_queued()
    job.refresh_from_db()
    assert job.status == "succeeded"


def test_curve_change_is_the_largest_relative_change_of_the_factor():
    assert curve_change(None, None) is None and curve_change(CURVE, [list(p) for p in CURVE]) is None
    assert curve_change(None, [[1, 1], [64, 1]]) is None                      # flat: the batch-1 model
    change = curve_change([[1, 1], [8, 2]], [[1, 1], [4, 2], [8, 2]])         # apart most at 4 jobs
    assert change.concurrency == 4 and change.before == pytest.approx(1 + 3 / 7) and change.after == 2
    assert change.relative == pytest.approx(2 / (1 + 3 / 7) - 1)
    # past both last points each follows its last segment
    far = curve_change([[1, 1], [2, 2]], [[1, 1], [2, 2], [4, 3]])
    assert far.concurrency == 8 and far.before == 8 and far.after == 5
