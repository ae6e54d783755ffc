"""Lists stay small with a 20,000-server cluster: summaries in lists, details on the object endpoints."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(300)]

N = 20_000


def test_list_pages_under_100_kb_with_20000_servers(api):
    servers = [{"server_id": f"gpu-{i:05d}", "memory_gb": 24 + i % 3 * 16, "comm_time_s": 0.01 + (i % 7) / 1000,
                "block_time_s": 0.02 + (i % 5) / 1000} for i in range(N)]
    model = api.post("/api/v1/models/", {"name": "big", "num_blocks": 80, "block_size_gb": 1.5,
                                          "cache_size_gb": 0.05}, format="json")
    assert model.status_code == 201, model.content[:500]
    cluster = api.post("/api/v1/clusters/", {"name": "huge", "model": model.json()["id"], "servers": servers,
                                              "default_workload": {"arrival_rate": 5.0}}, format="json")
    assert cluster.status_code == 201, cluster.content[:500]
    cid = cluster.json()["id"]
    for _ in range(3):
        job = api.post("/api/v1/jobs/", {"cluster": cid}, format="json")
        assert job.status_code == 201, job.content[:500]

    clusters = api.get("/api/v1/clusters/")
    jobs = api.get("/api/v1/jobs/")
    assert clusters.status_code == jobs.status_code == 200
    assert len(clusters.content) < 100_000, len(clusters.content)
    assert len(jobs.content) < 100_000, len(jobs.content)
    listed = clusters.json()["results"][0]
    assert listed["server_count"] == N and "servers" not in listed
    summary = jobs.json()["results"][0]["scenario"]
    assert summary == {"name": "huge", "server_count": N, "num_blocks": 80, "arrival_rate": 5.0}
    # the details are on the object endpoints
    assert len(api.get(f"/api/v1/clusters/{cid}/").json()["servers"]) == N
    assert len(api.get(f"/api/v1/jobs/{jobs.json()['results'][0]['id']}/").json()["scenario"]["servers"]) == N
