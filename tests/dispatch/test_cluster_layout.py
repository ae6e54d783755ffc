"""The key layout that lets a planning cluster live on one Redis Cluster shard, and the cluster's settings."""

from __future__ import annotations

import subprocess
import sys

import pytest
import redis
from redis.crc import key_slot

from serving.dispatch.redis_store import AsyncRedisStore, RedisStore, cluster_seeds, cluster_url

from .conftest import ROOT, TWO, backend_url, run, snapshot


@pytest.mark.parametrize("backend", ["redis", "cluster"])
def test_every_key_of_planning_cluster_n_carries_its_tag_and_lands_in_one_slot(backend, prefix):
    url = backend_url(backend)

    async def work():
        s = AsyncRedisStore(url, prefix=prefix)
        try:
            await s.set_plan(42, snapshot(TWO))
            held = [await s.acquire(42, wait_s=1) for _ in range(5)]      # every slot
            import asyncio
            run_wait = asyncio.create_task(s.acquire(42, wait_s=5))       # a ticket and its mailbox
            await asyncio.sleep(0.3)
            await s.release(42, held[0]["lease"])
            waiter = await run_wait
            await s.heartbeat(42, "a", info={"gpu": "x"})                 # liveness keys
            await s.set_server_state(42, "c", "draining", cause="test")   # events, masks
            await s.set_plan(42, snapshot(TWO, plan_id=2))                # a second generation
            await s.put_token("d" * 64, 42)
            assert await s.token_cluster("d" * 64) == 42 and 42 in await s.clusters()
            for lease in [*held[1:], waiter]:
                await s.release(42, lease["lease"])
        finally:
            await s.close()
    run(work())
    store = RedisStore(url, prefix=prefix)
    try:
        keys = list(store.redis.scan_iter(match=prefix + ":*", count=1000))
        cluster_keys = [k for k in keys if "{c42}" in k]
        index_keys = [k for k in keys if k.startswith(prefix + ":{idx}:")]
        assert sorted(cluster_keys + index_keys) == sorted(keys), keys
        names = {k[len(f"{prefix}:{{c42}}:"):] for k in cluster_keys}
        # the fixed keys, the per-generation ones, the liveness ones: all of them under the tag
        assert {"m", "gen", "st", "sv", "svi", "ev", "free:2", "pg:2", "plan:2"} <= names, names
        assert {key_slot(k.encode()) for k in cluster_keys} == {key_slot(b"{c42}")}
        assert all(k.startswith(f"{prefix}:{{c42}}:") for k in cluster_keys)
        assert {key_slot(k.encode()) for k in index_keys} == {key_slot(b"{idx}")}
        if backend == "cluster":      # Redis agrees: CLUSTER KEYSLOT {c42} names the shard
            node = store.redis.get_node_from_key(cluster_keys[0])
            assert store.redis.cluster_keyslot(cluster_keys[0]) == key_slot(b"{c42}")
            assert node.port == store.redis.get_node_from_key("{c42}").port
    finally:
        store.clear()
        store.close()


def test_the_prefix_refuses_braces_the_store_adds_the_tag():
    for bad in ("a{b", "a}b", "x{c1}"):
        with pytest.raises(ValueError, match="invalid key prefix"):
            RedisStore("redis://127.0.0.1:1/0", prefix=bad)
    s = RedisStore("redis://127.0.0.1:1/0", prefix="p")
    assert s.cluster(7) == "p:{c7}:" and s.token("ab") == "p:{idx}:tok:ab" and s.clusters_key == "p:{idx}:clusters"


def test_cluster_seed_lists_are_checked():
    assert cluster_url("127.0.0.1:7000, 127.0.0.1:7001") == "redis+cluster://127.0.0.1:7000,127.0.0.1:7001"
    assert cluster_seeds("redis://127.0.0.1:6379/0") is None
    for bad in ("127.0.0.1", "h:port", ":7000", "h:70000", "h:7000,"):
        with pytest.raises(ValueError, match="host:port"):
            cluster_url(bad)


def test_the_cli_names_a_bad_seed_list_without_a_traceback():
    out = subprocess.run([sys.executable, "-m", "serving.dispatch", "--redis-cluster", "nohost", "token", "1", "t"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--redis-cluster" in out.stderr and "host:port" in out.stderr
    assert "Traceback" not in out.stderr
    both = subprocess.run([sys.executable, "-m", "serving.dispatch", "--redis", "redis://x", "--redis-cluster",
                           "h:1", "token", "1", "t"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert both.returncode == 2 and "not allowed with" in both.stderr


def test_the_cli_plan_and_token_work_on_the_cluster(tmp_path, prefix):
    seeds = backend_url("cluster")[len("redis+cluster://"):]
    doc = {"chains": [{"servers": ["a", "b"], "blocks": [2, 3], "service_time_s": 1.0, "capacity": 2}]}
    import json
    (tmp_path / "plan.json").write_text(json.dumps(doc))
    base = [sys.executable, "-m", "serving.dispatch", "--redis-cluster", seeds.split(",")[0], "--prefix", prefix]
    tok = subprocess.run([*base, "token", "5", "secret"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert tok.returncode == 0, tok.stderr
    plan = subprocess.run([*base, "plan", "5", str(tmp_path / "plan.json")], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    store = RedisStore(cluster_url(seeds), prefix=prefix)
    try:
        if plan.returncode == 0:
            assert plan.stdout.strip() == "1" and store.clusters() == [5]
            assert store.state(5)["chains"][0]["capacity"] == 2
        else:   # the document format is snapshot_from_document's: the error names it, no traceback
            assert "Traceback" not in plan.stderr, plan.stderr
            pytest.fail(plan.stderr)
        from serving.dispatch.http import digest
        r = redis.RedisCluster.from_url("redis://" + seeds.split(",")[0], decode_responses=True)
        assert r.get(store.token(digest("secret"))) == "5"
        r.close()
    finally:
        store.clear()
        store.close()


@pytest.mark.parametrize("backend", ["redis", "cluster"])
def test_the_metrics_count_replies_no_replica_acknowledged(backend, prefix):
    """Each dispatcher process reports the answers it gave before a replica had them (none here: the
    replicas keep up); a Redis store reports the count, 0 included."""
    import httpx

    from serving.dispatch.http import DispatchApp

    async def work():
        s = AsyncRedisStore(backend_url(backend), prefix=prefix)
        try:
            await s.set_plan(5, snapshot(TWO))
            lease = await s.acquire(5, wait_s=1)
            await s.release(5, lease["lease"])
            app = DispatchApp(s)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://d") as http:
                return (await http.get("/api/v1/dispatch/metrics")).text
        finally:
            await s.close()
    text = run(work())
    assert "chainplan_dispatch_unacknowledged_replies_total 0.0" in text, text[-500:]

