"""The live dispatcher inside the real service: uvicorn (planner_app.asgi), PostgreSQL, Redis, Celery worker.

A re-plan adopted by the worker reaches the dispatcher; dispatch tokens made by the owner
work only for their cluster; owner tokens work too; the OpenAPI schema lists the endpoints
as served; and the embedded default (no Redis for the dispatcher) works the same in one process.
"""

from __future__ import annotations

import pytest
import requests

from serving.dispatch import DispatchClient, NoAdoptedPlan

from .conftest import SMALL
from .live import wait_for

pytestmark = pytest.mark.services


def check_dispatch(stack, client, other) -> None:
    cid, plan = client.import_adopted(SMALL)
    tokens = f"/api/v1/clusters/{cid}/dispatch/tokens/"
    assert other.post(tokens, json={}).status_code == 404          # not their cluster
    r = client.post(tokens, json={})
    assert r.status_code == 201, r.text
    token = r.json()["token"]

    dc = DispatchClient(stack.url, cid, token)
    # the adoption was made by the worker: the dispatcher follows within its sync period
    state = wait_for(lambda: (s := dc.state())["plan"] == plan["id"] and s, 20, "the adopted plan in the dispatcher")
    chains = plan["document"]["chains"]
    assert [c["capacity"] for c in state["chains"]] == [c["capacity"] for c in chains]
    fastest = min(range(len(chains)), key=lambda k: (chains[k]["service_time_s"], k))
    with dc.acquire(wait_s=5) as lease:
        assert lease.chain == fastest
        assert [h.server for h in lease.servers] == chains[fastest]["servers"]
        assert [h.num_blocks for h in lease.servers] == chains[fastest]["blocks"]
        assert lease.servers[0].start_block == 0
        assert dc.state()["chains"][fastest]["in_progress"] == 1
    assert dc.state()["chains"][fastest]["in_progress"] == 0

    # the owner's API token works too; another user's does not, nor this token on another cluster
    owner = DispatchClient(stack.url, cid, client.headers["Authorization"].split()[1], auth_scheme="Token")
    owner.release(owner.acquire_lease(wait_s=0))
    r = requests.post(f"{stack.url}/api/v1/clusters/{cid}/dispatch/acquire/", json={},
                      headers={"Authorization": other.headers["Authorization"]}, timeout=10)
    assert r.status_code == 404
    bare = client.post("/api/v1/clusters/import/", json={"scenario": SMALL}).json()["id"]
    r = requests.post(f"{stack.url}/api/v1/clusters/{bare}/dispatch/acquire/", json={},
                      headers={"Authorization": f"Dispatch {token}"}, timeout=10)
    assert r.status_code == 403
    with pytest.raises(NoAdoptedPlan, match="no adopted plan"):
        DispatchClient(stack.url, bare, client.headers["Authorization"].split()[1], auth_scheme="Token") \
            .acquire_lease(wait_s=0)

    panel = client.get(f"/api/v1/clusters/{cid}/dispatcher/").json()
    assert panel["state"]["plan"] == plan["id"] and panel["error"] is None and panel["tokens"] == 1
    assert panel["state"]["observations"]["grants"] == 2
    metrics = requests.get(stack.url + "/api/v1/dispatch/metrics", timeout=10).text
    assert f'chainplan_dispatch_grants_total{{cluster="{cid}"}} 2.0' in metrics

    # a failure report masks the reported server's chains at once (docs/dispatcher.md, "Liveness and masking")
    lease = dc.acquire_lease(wait_s=5)
    server = lease.servers[-1].server
    r = requests.post(f"{stack.url}/api/v1/clusters/{cid}/dispatch/release/", timeout=10,
                      json={"lease": lease.lease, "failed": {"server": server, "cause": "x"}},
                      headers={"Authorization": f"Dispatch {token}"})
    assert r.status_code == 400 and "unknown key(s) 'cause'" in r.json()["detail"]
    assert dc.release(lease, failed={"server": server, "error": "test: hop failed"}) == {
        "released": True, "server": server, "server_state": "suspect"}
    st = dc.state()
    assert {s["server"]: s["state"] for s in st["servers"]}[server] == "suspect"
    masked = [c["chain"] for c in st["chains"] if c["masked"]]
    assert lease.chain in masked and all(server in chains[k]["servers"] for k in masked)


def test_dispatcher_in_the_service_with_redis(live):
    check_dispatch(live, live.client("dispatch-alice"), live.client("dispatch-bob"))
    schema = requests.get(live.url + "/api/v1/schema/?format=json", timeout=30).json()
    paths = schema["paths"]
    for action in ("acquire", "release", "renew", "state"):
        assert f"/api/v1/clusters/{{id}}/dispatch/{action}/" in paths
    assert "/api/v1/clusters/{id}/dispatch/tokens/" in paths
    assert "/api/v1/dispatch/metrics" in paths
    lease = paths["/api/v1/clusters/{id}/dispatch/acquire/"]["post"]["responses"]["200"]["content"][
        "application/json"]["schema"]
    ref = lease["$ref"].rsplit("/", 1)[1]
    assert set(schema["components"]["schemas"][ref]["properties"]) == {
        "lease", "chain", "servers", "ttl_s", "expires_at", "waited_s"}
    components = schema["components"]["schemas"]
    release = paths["/api/v1/clusters/{id}/dispatch/release/"]["post"]["requestBody"]["content"]["application/json"]
    assert set(components[release["schema"]["$ref"].rsplit("/", 1)[1]]["properties"]) == {"lease", "failed"}
    assert set(components["DispatchState"]["properties"]) >= {"servers", "chains"}
    assert "masked" in components["DispatchChainState"]["properties"]


def test_embedded_dispatcher_without_redis(stack_factory):
    """scripts/serve.sh's default: the dispatcher's state in the one web process."""
    stack = stack_factory(CHAINPLAN_DISPATCH_REDIS="")
    stack.start_web(workers=1)
    stack.start_worker("embedded", concurrency=1, beat=False)
    check_dispatch(stack, stack.client("embedded-alice"), stack.client("embedded-bob"))
