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
