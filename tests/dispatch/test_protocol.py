"""The declared store protocol: both stores implement it, and a refusal keeps its class from store to client."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import subprocess
import sys
import warnings

import httpx
import pytest

from serving.dispatch import client
from serving.dispatch.http import DispatchApp, digest
from serving.dispatch.lua_keys import LUA_KEYS, lua_key
from serving.dispatch.memory_store import ClusterState, MemoryStore
from serving.dispatch.protocol import (DispatchError, DispatchStore, InvalidRequest, LeaseGone, NoAdoptedPlan,
                                       NoFreeChain, ServerDown, SyncDispatchStore, check_args, error_from_http)
from serving.dispatch.redis_store import AsyncRedisStore, RedisStore

from .conftest import ROOT, run, snapshot


def _same_signature(cls, proto) -> list[str]:
    wrong = []
    for name, member in vars(proto).items():
        if name.startswith("_") or not callable(member):
            continue
        want = list(inspect.signature(member).parameters)
        got = list(inspect.signature(getattr(cls, name)).parameters)
        if got != want or inspect.iscoroutinefunction(member) != inspect.iscoroutinefunction(getattr(cls, name)):
            wrong.append(f"{cls.__name__}.{name}{inspect.signature(getattr(cls, name))}")
    return wrong


@pytest.mark.parametrize("cls", [MemoryStore, AsyncRedisStore])
def test_both_async_stores_implement_the_protocol(cls):
    assert _same_signature(cls, DispatchStore) == []
    store = MemoryStore() if cls is MemoryStore else AsyncRedisStore("redis://127.0.0.1:1/0")   # connects lazily
    assert isinstance(store, DispatchStore)


def test_the_blocking_redis_store_implements_the_sync_protocol():
    assert _same_signature(RedisStore, SyncDispatchStore) == []
    assert isinstance(RedisStore("redis://127.0.0.1:1/0"), SyncDispatchStore)


def test_memory_store_imports_neither_redis_nor_numpy():
    code = ("import sys, serving.dispatch.memory_store, serving.dispatch.snapshot; "
            "sys.exit(1 if {'redis', 'numpy'} & set(sys.modules) else 0)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env).returncode == 0


def test_every_memory_store_field_has_its_lua_key():
    fields = {f.name for f in dataclasses.fields(ClusterState)}
    assert fields <= set(LUA_KEYS), fields - set(LUA_KEYS)
    assert lua_key("committed_queues", g=2, k=0) == "q:2:0" and lua_key("mailbox", id="x") == "w:x"


REFUSALS = [NoAdoptedPlan.for_cluster(4), NoFreeChain.after_wait(3, 0.5), NoFreeChain.after_wait(2, 0),
            LeaseGone.for_lease("abc"), InvalidRequest("wait_s must be between 0 and 300 s, got -1")]


@pytest.mark.parametrize("exc", REFUSALS, ids=lambda e: type(e).__name__)
def test_a_refusal_crosses_http_as_itself(exc):
    status, body, headers = exc.http_answer()
    assert body["detail"] == exc.detail and status == exc.status
    retry = dict(headers).get(b"retry-after")
    back = error_from_http(status, json.loads(json.dumps(body)), "", retry.decode() if retry else None)
    assert type(back) is type(exc) and back.detail == exc.detail and back.status == exc.status
    assert isinstance(back, DispatchError)
    if isinstance(exc, NoFreeChain):
        assert body["queued"] is False and back.retry_after_s == exc.retry_after_s == 1.0


def test_statuses_and_check_args():
    assert [e.status for e in REFUSALS] == [409, 503, 503, 410, 400]
    assert isinstance(InvalidRequest("x"), ValueError)
    assert type(error_from_http(502, None, "bad gateway", None)) is DispatchError
    with pytest.raises(InvalidRequest, match="'round-robin' exists only in the simulator"):
        check_args(1, "round-robin")
    assert check_args(2, None) == (2.0, "")


def test_http_answers_and_client_errors_from_one_translation():
    """The HTTP app over a MemoryStore: each refusal's status and JSON, and the client's class for it."""
    store = MemoryStore()
    app = DispatchApp(store)
    auth = {"Authorization": "Dispatch tok"}

    async def body():
        await store.put_token(digest("tok"), 1)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://d") as http:
            url = "/api/v1/clusters/1/dispatch/"
            r = await http.post(url + "acquire/", json={"wait_s": 0}, headers=auth)
            assert r.status_code == 409 and set(r.json()) == {"detail"}
            with pytest.raises(NoAdoptedPlan, match="dispatcher answered 409: cluster 1 has no adopted plan"):
                client._raise_for(r)
            await store.set_plan(1, snapshot([(["a"], [4], 1.0, 1)]))
            assert (await http.post(url + "acquire/", json={"wait_s": 0}, headers=auth)).status_code == 200
            r = await http.post(url + "acquire/", json={"wait_s": 0}, headers=auth)
            assert r.status_code == 503 and r.json() == {
                "queued": False, "detail": "no chain has a free slot now; 0 request(s) are waiting ahead"}
            assert r.headers["retry-after"] == "1"
            with pytest.raises(NoFreeChain) as got:
                client._raise_for(r)
            assert got.value.retry_after_s == 1.0
            r = await http.post(url + "renew/", json={"lease": "gone"}, headers=auth)
            assert r.status_code == 410 and r.json() == {"detail": "lease gone expired or was released; "
                                                                   "acquire a new one"}
            with pytest.raises(LeaseGone):
                client._raise_for(r)
            for bad, words in (({"wait_s": -1}, "wait_s must be between"), ({"policy": "jiq"}, "only in the simulator"),
                               ({"policy": "fifo"}, "unknown policy 'fifo'")):
                r = await http.post(url + "acquire/", json=bad, headers=auth)
                assert r.status_code == 400 and words in r.json()["detail"]
                with pytest.raises(InvalidRequest):
                    client._raise_for(r)
            r = await http.post(url + "acquire/", json={"nope": 1}, headers=auth)
            assert r.status_code == 400 and "unknown key(s) 'nope'" in r.json()["detail"]
    run(body())


def test_old_plan_module_still_works_and_warns():
    sys.modules.pop("serving.dispatch.plan", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from serving.dispatch import plan
    assert any(issubclass(w.category, DeprecationWarning) and "serving.dispatch.snapshot" in str(w.message)
               for w in caught)
    from serving.dispatch import snapshot as new
    assert plan.compile_snapshot is new.compile_snapshot and plan.PlanError is new.PlanError
    assert plan.POLICIES == ("jffc", "jsq", "sed", "random")
    assert plan.snapshot_from_document(1, {"chains": [{"servers": ["a"], "blocks": [2], "service_time_s": 1.0,
                                                       "capacity": 1}]})["order"] == [0]


def test_old_error_names_of_the_redis_store_are_the_protocols():
    from serving.dispatch.redis_store import NoPlan, NotGranted
    assert NoPlan is NoAdoptedPlan and NotGranted is NoFreeChain


def test_server_down_crosses_http_as_itself_naming_the_server():
    exc = ServerDown.for_lease("abc", "gpu-7")
    status, body, headers = exc.http_answer()
    assert (status, body) == (410, {"detail": exc.detail, "server": "gpu-7"}) and "'gpu-7'" in exc.detail
    back = error_from_http(status, json.loads(json.dumps(body)), "", None)
    assert type(back) is ServerDown and back.server == "gpu-7" and isinstance(back, LeaseGone)
    assert type(error_from_http(410, {"detail": "gone"}, "", None)) is LeaseGone


def test_http_failure_reports_masks_and_410_over_a_memory_store():
    """The app every deployment mounts (standalone and in the service), over a MemoryStore."""
    from serving.dispatch.liveness import LivenessConfig
    store = MemoryStore(liveness=LivenessConfig(suspect_s=30, suspect_max_s=60, heartbeat_timeout_s=30))
    app = DispatchApp(store)
    auth = {"Authorization": "Dispatch tok"}

    async def body():
        await store.put_token(digest("tok"), 1)
        await store.set_plan(1, snapshot([(["a", "b"], [2, 2], 1.0, 3), (["c"], [4], 2.0, 1)]))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://d") as http:
            url = "/api/v1/clusters/1/dispatch/"
            leases = [(await http.post(url + "acquire/", json={"wait_s": 0}, headers=auth)).json()["lease"]
                      for _ in range(3)]
            for bad, words in (({"server": "c", "error": "x"}, "server 'c' is not on lease"),
                               ({"server": "a", "why": "x"}, "unknown key(s) 'why' in 'failed'"),
                               ({"error": "x"}, "needs 'server'"), (None, "must be an object"),
                               ("a", "must be an object"), ({"server": "a", "error": ["x"]}, "must be a string")):
                r = await http.post(url + "release/", json={"lease": leases[0], "failed": bad}, headers=auth)
                assert r.status_code == 400 and words in r.json()["detail"], (bad, r.text)
            r = await http.post(url + "release/", json={"lease": leases[0], "failed": {"server": "b", "error": "EOF"}},
                                headers=auth)
            assert r.status_code == 200 and r.json() == {"released": True, "server_state": "suspect"}
            r = await http.post(url + "release/", json={"lease": leases[1], "failed": {"server": "b"}}, headers=auth)
            assert r.json() == {"released": True, "server_state": "down"}
            r = await http.post(url + "release/", json={"lease": leases[1], "failed": {"server": "b"}}, headers=auth)
            assert r.json() == {"released": False, "server_state": "down"}
            r = await http.post(url + "renew/", json={"lease": leases[2]}, headers=auth)
            assert r.status_code == 410 and r.json()["server"] == "b" and "'b', which is down" in r.json()["detail"]
            with pytest.raises(ServerDown) as got:
                client._raise_for(r)
            assert got.value.server == "b"
            r = await http.post(url + "release/", json={"lease": leases[2]}, headers=auth)
            assert r.json() == {"released": False}
            st = (await http.get(url + "state/", headers=auth)).json()
            assert st["chains"] == [{"chain": 0, "capacity": 3, "in_progress": 0, "masked": True},
                                    {"chain": 1, "capacity": 1, "in_progress": 0, "masked": False}]
            assert [(s["server"], s["state"]) for s in st["servers"]] == [("a", "up"), ("b", "down"), ("c", "up")]
            assert st["servers"][0]["since"] is None and st["servers"][1]["since"].endswith("Z")
            assert (st["observations"]["failures"], st["observations"]["revoked"]) == (2, 1)
            m = (await http.get("/api/v1/dispatch/metrics")).text
            assert 'chainplan_dispatch_chain_masked{chain="0",cluster="1"} 1.0' in m
            assert 'chainplan_dispatch_server_state{cluster="1",server="b",state="down"} 1.0' in m
            assert 'chainplan_dispatch_revoked_total{cluster="1"} 1.0' in m
            assert "unacknowledged" not in m          # an in-memory store has no replica to wait for
    run(body())
