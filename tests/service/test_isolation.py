"""Every object belongs to its owner: others' ids answer 404 and never appear in lists."""

from __future__ import annotations

import pytest

from .conftest import run_queued

pytestmark = pytest.mark.django_db

V1 = "/api/v1"


@pytest.fixture
def alice_objects(api, small_doc):
    cluster = api.post(f"{V1}/clusters/import/", {"scenario": small_doc}, format="json").json()
    job = api.post(f"{V1}/jobs/", {"cluster": cluster["id"], "workload": {"arrival_rate": 0.3},
                                   "options": {"simulate_requests": 100}}, format="json").json()
    run_queued()
    plan = api.get(f"{V1}/jobs/{job['id']}/").json()["plans"][0]
    return {"cluster": cluster["id"], "model": cluster["model"], "job": job["id"], "plan": plan["id"]}


def test_lists_show_only_own_objects(other_api, alice_objects):
    for kind in ("clusters", "models", "jobs", "plans"):
        assert other_api.get(f"{V1}/{kind}/").json()["count"] == 0, kind
    # filters on another user's ids find nothing either
    assert other_api.get(f"{V1}/jobs/?cluster={alice_objects['cluster']}").status_code in (200, 400)
    assert other_api.get(f"{V1}/plans/?job={alice_objects['job']}").json().get("count", 0) == 0


def test_others_objects_answer_404_for_every_verb(api, other_api, alice_objects):
    o = alice_objects
    reads = [f"clusters/{o['cluster']}/", f"clusters/{o['cluster']}/export/", f"models/{o['model']}/",
             f"jobs/{o['job']}/", f"plans/{o['plan']}/", f"plans/{o['plan']}/curve/",
             f"plans/{o['plan']}/petals-commands/"]
    for path in reads:
        assert other_api.get(f"{V1}/{path}").status_code == 404, path
    assert other_api.patch(f"{V1}/clusters/{o['cluster']}/", {"name": "x"}, format="json").status_code == 404
    assert other_api.put(f"{V1}/models/{o['model']}/", {"name": "x"}, format="json").status_code == 404
    assert other_api.delete(f"{V1}/clusters/{o['cluster']}/").status_code == 404
    assert other_api.delete(f"{V1}/models/{o['model']}/").status_code == 404
    assert other_api.post(f"{V1}/jobs/{o['job']}/cancel/").status_code == 404
    assert other_api.post(f"{V1}/clusters/{o['cluster']}/servers/a/probe-token/").status_code == 404
    # nothing changed for the owner
    assert api.get(f"{V1}/clusters/{o['cluster']}/").json()["name"] == "small"


def test_cannot_plan_or_link_with_others_cluster_or_model(other_api, alice_objects):
    r = other_api.post(f"{V1}/jobs/", {"cluster": alice_objects["cluster"], "workload": {"arrival_rate": 0.3}},
                       format="json")
    assert r.status_code == 400
    assert r.json()["errors"][0]["field"] == "cluster"
    r = other_api.post(f"{V1}/clusters/", {"name": "mine", "model": alice_objects["model"]}, format="json")
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "model"


def test_replanning_endpoints_are_per_owner(api, other_api, alice_objects):
    o = alice_objects
    c = o["cluster"]
    assert api.post(f"{V1}/plans/{o['plan']}/adopt/").status_code == 201
    sched = api.post(f"{V1}/clusters/{c}/schedules/", {"kind": "cron", "cron": "0 * * * *"}, format="json").json()
    reads = [f"clusters/{c}/adopted-plan/", f"clusters/{c}/adoptions/", f"clusters/{c}/candidates/",
             f"clusters/{c}/apply/", f"clusters/{c}/schedules/", f"clusters/{c}/schedules/{sched['id']}/",
             f"plans/diff/?new={o['plan']}", f"plans/diff/?new={o['plan']}&old={o['plan']}"]
    for path in reads:
        assert other_api.get(f"{V1}/{path}").status_code == 404, path
        assert api.get(f"{V1}/{path}").status_code == 200, path
    writes = [("post", f"plans/{o['plan']}/adopt/", None), ("post", f"clusters/{c}/replan/", {}),
              ("post", f"clusters/{c}/observed-load/", {"arrival_rate": 9.0}),
              ("post", f"clusters/{c}/schedules/", {"kind": "cron", "cron": "0 * * * *"}),
              ("patch", f"clusters/{c}/schedules/{sched['id']}/", {"enabled": False}),
              ("delete", f"clusters/{c}/schedules/{sched['id']}/", None)]
    for method, path, body in writes:
        assert getattr(other_api, method)(f"{V1}/{path}", body, format="json").status_code == 404, path
    # nothing changed for the owner
    assert api.get(f"{V1}/clusters/{c}/").json()["observed_arrival_rate"] is None
    assert api.get(f"{V1}/clusters/{c}/schedules/").json()[0]["enabled"] is True
    assert api.get(f"{V1}/clusters/{c}/adoptions/").json()["count"] == 1
    # another user's own cluster cannot diff against alice's plans either
    mine = other_api.post(f"{V1}/clusters/", {"name": "mine"}, format="json").json()
    assert other_api.get(f"{V1}/clusters/{mine['id']}/adoptions/").json()["count"] == 0
