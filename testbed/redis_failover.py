"""Fail-over of a Redis Cluster primary under dispatch load (tests/dispatch/test_cluster_failover.py and
bench/bench_failover.py).

Clients (asyncio tasks of one process, sharing one ``AsyncRedisStore`` as the dispatcher's processes do)
acquire, hold and release leases on several planning clusters whose hash tags lie on every shard; the
primary owning the first of them is killed with SIGKILL while they run, its replica takes over, the
clients go on.  Recorded, from the clients' side (the truth a lost grant cannot hide from):

* ``gap_s``: the longest time without a grant on the victim shard's planning clusters, around the kill;
  ``other_gap_s`` the same on the other shards, ``other_grants_during`` their grants meanwhile;
* ``over_capacity``: instants at which the clients held more leases on a chain than its capacity (checked at
  every grant: a grant lost by the fail-over and given again shows here), and ``store_over``: sampled
  store states showing a chain over its capacity;
* ``leaked``: chains' jobs in progress left in the store once every client released;
* ``served`` / ``told``: acquires that got a lease / a refusal (NoFreeChain, after their wait);
  ``hung``: acquires that did neither within their wait plus 10 s; ``lost``: leases their holder was told
  at release that the store no longer had (a grant a fail-over lost); ``release_retried``: releases sent
  before the kill and answered after it with false (the first try may have gone through on the old primary:
  the retry on the new one finds nothing to release), counted apart;
* ``unacked``: replies handed out after a WAIT that timed out.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# two chains: capacity 2 (fast) and 3 (slow), no server shared
PLAN = [(["a", "b"], [2, 3], 1.0, 2), (["c", "d"], [1, 4], 2.0, 3)]


def cluster_dir(base_port: int) -> Path:
    return Path(os.environ.get("CHAINPLAN_REDIS_CLUSTER_DIR", f"/tmp/chainplan-redis-cluster-{base_port}"))


def start_cluster(base_port: int) -> str:
    """scripts/redis_cluster.sh start on ``base_port`` (idempotent: restarts a killed node); the seed list."""
    out = subprocess.run(["bash", str(ROOT / "scripts" / "redis_cluster.sh"), "start"],
                         env=dict(os.environ, CHAINPLAN_REDIS_CLUSTER_PORT=str(base_port)),
                         capture_output=True, text=True, timeout=180)
    if out.returncode != 0:
        raise RuntimeError(f"redis_cluster.sh start failed: {out.stderr.strip()[-800:]}")
    return out.stdout.strip().splitlines()[-1]


def primaries(seed_host: str, seed_port: int) -> dict[tuple[int, int], int]:
    """(first slot, last slot) -> port of the primary serving it (CLUSTER SLOTS)."""
    import redis
    r = redis.Redis(host=seed_host, port=seed_port, decode_responses=True, socket_connect_timeout=2)
    try:
        return {(int(row[0]), int(row[1])): int(row[2][1]) for row in r.execute_command("CLUSTER SLOTS")}
    finally:
        r.close()


def owner(slot_map: dict[tuple[int, int], int], slot: int) -> int:
    for (a, b), port in slot_map.items():
        if a <= slot <= b:
            return port
    raise LookupError(slot)


def spread_clusters(store, slot_map, per_shard: int = 2) -> dict[int, list[int]]:
    """Planning cluster ids, ``per_shard`` on each primary (by their {cN} tag's slot): port -> ids."""
    from redis.crc import key_slot
    out: dict[int, list[int]] = {p: [] for p in set(slot_map.values())}
    n = 1
    while any(len(v) < per_shard for v in out.values()):
        port = owner(slot_map, key_slot(store.cluster(n).encode()))
        if len(out[port]) < per_shard:
            out[port].append(n)
        n += 1
    return out


def kill_node(base_port: int, port: int) -> int:
    pid = int((cluster_dir(base_port) / str(port) / "redis.pid").read_text().strip())
    os.kill(pid, signal.SIGKILL)
    return pid


@dataclass
class Result:
    victim_port: int = 0
    victim_clusters: list[int] = field(default_factory=list)
    other_clusters: list[int] = field(default_factory=list)
    gap_s: float = 0.0                # longest time without a grant on the victim shard's clusters (after the kill)
    other_gap_s: float = 0.0          # the same on the other shards over the same window
    other_grants_during: int = 0      # grants on the other shards while the victim shard had none
    promoted_s: float = 0.0           # kill -> the slot answered by a new primary
    grants: int = 0
    served: int = 0
    told: int = 0
    hung: int = 0
    lost: int = 0
    release_retried: int = 0          # releases in flight at the kill answered false (see client())
    over_capacity: int = 0
    store_over: int = 0
    samples: int = 0
    leaked: int = 0
    unacked: int = 0
    errors: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "errors"} | {"errors": len(self.errors)}


async def run_failover(seeds: str, base_port: int, *, clients: int = 32, seconds: float = 8.0,
                       kill_at_s: float = 3.0, hold_s: tuple[float, float] = (0.005, 0.05),
                       wait_s: float = 10.0, ttl_s: float = 30.0, prefix: str = "failover",
                       seed: int = 1, stop_replica_s: float = 0.0) -> Result:
    """One run; ``stop_replica_s`` > 0 SIGSTOPs the victim's replica that long before the kill (a lagging
    replica: the WAITs time out, the grants meanwhile are handed out unacknowledged) and SIGCONTs it right
    after, so the replica that takes over lacks them: the bound's worst case."""
    from serving.dispatch.protocol import NoFreeChain
    from serving.dispatch.redis_store import AsyncRedisStore, RedisStore, cluster_url
    from serving.dispatch.snapshot import chain_specs, compile_snapshot

    url = cluster_url(seeds)
    host, port = seeds.split(",")[0].rsplit(":", 1)
    slot_map = primaries(host, int(port))
    store = AsyncRedisStore(url, prefix=prefix)
    admin = RedisStore(url, prefix=prefix)
    res = Result()
    by_shard = spread_clusters(store, slot_map)
    victim_port = owner(slot_map, __import__("redis.crc", fromlist=["key_slot"]).key_slot(
        store.cluster(min(min(v) for v in by_shard.values())).encode()))
    res.victim_port = victim_port
    res.victim_clusters = by_shard[victim_port]
    res.other_clusters = [c for p, v in by_shard.items() if p != victim_port for c in v]
    ids = res.victim_clusters + res.other_clusters
    snap = compile_snapshot(1, chain_specs(PLAN), policy="jffc", ttl_s=ttl_s)
    cap = {k: c for k, c in enumerate(snap["c"])}
    for c in ids:
        await store.set_plan(c, snap)

    held: dict[tuple[int, int], int] = {}
    grant_times: dict[int, list[float]] = {c: [] for c in ids}
    stop = asyncio.Event()
    kill_t = [0.0]

    async def client(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        c = ids[i % len(ids)]
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                lease = await asyncio.wait_for(store.acquire(c, wait_s=wait_s), wait_s + 10)
            except NoFreeChain:
                res.told += 1
                continue
            except asyncio.TimeoutError:
                res.hung += 1
                res.errors.append(f"client {i}: acquire on {c} hung {time.monotonic() - t0:.1f}s")
                continue
            except Exception as exc:  # noqa: BLE001 - recorded: the run must show none
                res.errors.append(f"client {i}: {type(exc).__name__}: {exc}")
                await asyncio.sleep(0.05)
                continue
            res.served += 1
            res.grants += 1
            grant_times[c].append(time.monotonic())
            key = (c, lease["chain"])
            held[key] = held.get(key, 0) + 1
            if held[key] > cap[lease["chain"]]:
                res.over_capacity += 1
                res.errors.append(f"over capacity: cluster {c} chain {lease['chain']} held {held[key]}")
            await asyncio.sleep(rng.uniform(*hold_s))
            held[key] -= 1                    # the holder stops using the slot, then gives it back
            r0 = time.monotonic()
            try:
                ok = await store.release(c, lease["lease"])
            except Exception as exc:  # noqa: BLE001
                res.errors.append(f"client {i}: release: {type(exc).__name__}: {exc}")
                continue
            if not ok:
                if kill_t[0] and r0 < kill_t[0] < time.monotonic():
                    # sent before the kill, answered after: its first try may have released it on the old
                    # primary (and reached the replica) before the answer was lost; the retry finds nothing
                    res.release_retried += 1
                else:
                    res.lost += 1             # the store no longer had it: its holder is told at release

    async def sampler() -> None:
        while not stop.is_set():
            for c in ids:
                try:
                    st = await store.state(c)
                except Exception:  # noqa: BLE001 - the victim shard is away: sample the others
                    continue
                res.samples += 1
                for ch in st["chains"]:
                    if ch["in_progress"] > ch["capacity"]:
                        res.store_over += 1
            await asyncio.sleep(0.05)

    async def killer() -> None:
        replica_pid = None
        if stop_replica_s > 0:
            await asyncio.sleep(max(0.0, kill_at_s - stop_replica_s))
            import redis.asyncio as aioredis
            r = aioredis.Redis(host="127.0.0.1", port=victim_port, decode_responses=True)
            role = await r.execute_command("ROLE")
            await r.aclose()
            rport = int(role[2][0][1])
            replica_pid = int((cluster_dir(base_port) / str(rport) / "redis.pid").read_text().strip())
            os.kill(replica_pid, signal.SIGSTOP)
            await asyncio.sleep(stop_replica_s)
        else:
            await asyncio.sleep(kill_at_s)
        kill_t[0] = time.monotonic()
        kill_node(base_port, victim_port)
        if replica_pid is not None:
            os.kill(replica_pid, signal.SIGCONT)
        # when does a surviving node name a new primary for the victim's slot?
        import redis.asyncio as aioredis
        from redis.crc import key_slot
        slot = key_slot(store.cluster(res.victim_clusters[0]).encode())
        alive = next(p for p in set(slot_map.values()) if p != victim_port)
        r = aioredis.Redis(host="127.0.0.1", port=alive, socket_connect_timeout=0.5)
        try:
            while time.monotonic() - kill_t[0] < 30:
                await asyncio.sleep(0.02)
                rows = await r.execute_command("CLUSTER SLOTS")
                now_map = {(int(row[0]), int(row[1])): int(row[2][1]) for row in rows}
                if owner(now_map, slot) != victim_port:
                    res.promoted_s = time.monotonic() - kill_t[0]
                    return
        finally:
            await r.aclose()

    tasks = [asyncio.create_task(client(i)) for i in range(clients)]
    samp = asyncio.create_task(sampler())
    kill = asyncio.create_task(killer())
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*tasks, samp, kill, return_exceptions=False)

    # around the kill: the longest gap between grants on the victim shard, and what the others did meanwhile
    k = kill_t[0]

    def gap(times: list[float]) -> tuple[float, float, float]:
        ts = sorted(t for t in times if t >= k - 1.0)
        best = (0.0, k, k)
        prev = max([t for t in times if t <= k], default=k)
        for t in ts:
            if t > k and t - prev > best[0]:
                best = (t - prev, prev, t)
            prev = max(prev, t)
        return best

    v = gap([t for c in res.victim_clusters for t in grant_times[c]])
    res.gap_s = v[0]
    others = [t for c in res.other_clusters for t in grant_times[c]]
    res.other_grants_during = sum(1 for t in others if v[1] < t < v[2])
    o_ts = sorted(t for t in others if v[1] <= t <= v[2])
    res.other_gap_s = max((b - a for a, b in zip([v[1], *o_ts], [*o_ts, v[2]])), default=0.0)

    # every client has released: nothing may be left in progress
    for c in ids:
        st = await store.state(c)
        res.leaked += sum(ch["in_progress"] for ch in st["chains"]) + st["queue_length"]
    res.unacked = store.unacked
    await store.close()
    admin.clear()
    admin.close()
    return res
