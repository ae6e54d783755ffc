"""A cluster's default workload is checked against the scenario limits when it is stored, not when a job uses it."""

from __future__ import annotations

import pytest

from planner_app.models import Cluster

pytestmark = pytest.mark.django_db

V1 = "/api/v1"
SERVERS = [{"server_id": "s1", "memory_gb": 12, "comm_time_s": 0.5, "block_time_s": 0.1}]


def _fields(response) -> set[str]:
    return {e["field"] for e in response.json()["errors"]}


@pytest.mark.parametrize("workload, field", [
    ({"arrival_rate": -1}, "default_workload.arrival_rate"),
    ({"arrival_rate": 0}, "default_workload.arrival_rate"),
    ({"target_load": 1.5}, "default_workload.target_load"),
    ({"target_load": 0}, "default_workload.target_load"),
    ({"output_tokens": 0}, "default_workload.output_tokens"),
    ({"max_tokens": 10**12}, "default_workload.max_tokens"),
    ({"trace": [[0.0, 10, 0]]}, "default_workload.trace[0].output_tokens"),
])
def test_out_of_range_default_workload_is_400_and_nothing_changes(api, workload, field):
    r = api.post(f"{V1}/clusters/", {"name": "c", "servers": SERVERS, "default_workload": {"arrival_rate": 0.5}},
                 format="json")
    assert r.status_code == 201, r.json()
    cid = r.json()["id"]
    r = api.patch(f"{V1}/clusters/{cid}/", {"default_workload": workload}, format="json")
    assert r.status_code == 400, r.json()
    assert field in _fields(r), r.json()
    assert Cluster.objects.get(pk=cid).default_workload == {"arrival_rate": 0.5}


def test_valid_default_workload_is_stored(api):
    r = api.post(f"{V1}/clusters/", {"name": "c", "servers": SERVERS}, format="json")
    cid = r.json()["id"]
    body = {"arrival_rate": 2.0, "target_load": 0.6, "input_tokens": 300, "output_tokens": 40}
    r = api.patch(f"{V1}/clusters/{cid}/", {"default_workload": body}, format="json")
    assert r.status_code == 200, r.json()
    assert r.json()["default_workload"] == body
