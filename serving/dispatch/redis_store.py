"""The dispatcher's state in Redis: every change is one Lua script run (dispatch.lua).

Any number of dispatcher processes (and co-located gateways using the
Redis-direct client) may share one cluster's state: the script is atomic, time
is Redis's clock, and a waiter blocks on its own mailbox key (BLPOP), which the
script that frees a slot fills.  A waiter whose wait ends runs ``cancel``,
which either removes its ticket from the queue or hands it the lease granted in
the meantime, so a grant is never lost to a timeout race.

Connection errors are retried with back-off (a restarted Redis is reconnected
to by itself).  The scripts are re-loaded when Redis lost them (NOSCRIPT).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import redis
import redis.asyncio as aioredis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeoutError
from redis.retry import Retry

from .pipelined import PipelinedRedis, ScriptChannel
from .plan import POLICIES, snapshot_json

LUA = (Path(__file__).with_name("dispatch.lua")).read_text()
MAX_WAIT_S = 300.0
SWEEP_SLICE_S = 0.25     # a waiter sweeps expired leases this often


class DispatchError(Exception):
    """Base of the dispatcher's answers that are not a lease."""


class NoPlan(DispatchError):
    def __init__(self, cluster: int):
        super().__init__(f"cluster {cluster} has no adopted plan to dispatch to: adopt a plan first "
                         f"(POST /api/v1/plans/{{id}}/adopt/)")


class NotGranted(DispatchError):
    """No slot freed within the wait; ``position`` is where the request stood (or would stand) in the queue."""

    def __init__(self, position: int, wait_s: float):
        self.position = position
        self.wait_s = wait_s
        if wait_s > 0:
            msg = f"no chain had a free slot within {wait_s:g} s (position {position} in the queue when it gave up)"
        else:
            msg = f"no chain has a free slot now; {position - 1} request(s) are waiting ahead"
        super().__init__(msg)


def iso_ms(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000.0, tz=timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def lease_from_raw(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The contract's lease body from the script's answer (times in ms on Redis's clock)."""
    return {
        "lease": raw["lease"], "chain": raw["chain"], "servers": raw["servers"],
        "ttl_s": raw["ttl_ms"] / 1000.0, "expires_at": iso_ms(raw["expires_ms"]),
        "waited_s": raw["waited_ms"] / 1000.0, "plan": raw.get("plan"),
    }


def renewal_from_raw(raw: Mapping[str, Any]) -> dict[str, Any] | None:
    if raw.get("gone"):
        return None
    return {"ttl_s": raw["ttl_ms"] / 1000.0, "expires_at": iso_ms(raw["expires_ms"])}


def _aslist(v: Any) -> list:
    return v if isinstance(v, list) else []    # cjson writes an empty array as {}


def state_from_raw(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The state body (contract keys first) plus ``observations`` with everything else."""
    chains = _aslist(raw.get("chains"))
    state = {
        "plan": raw.get("plan"), "policy": raw.get("policy"),
        "chains": [{"chain": c["chain"], "capacity": c["capacity"], "in_progress": c["in_progress"]}
                   for c in chains],
        "queue_length": raw.get("waiting", 0), "arrival_rate": raw.get("arrival_rate"),
    }
    stats = raw.get("stats") or {}
    if not isinstance(stats, dict):
        stats = {}
    grants = int(stats.get("grants", 0))
    gens = _aslist(raw.get("generations"))
    state["observations"] = {
        "chains": [{"chain": c["chain"], "predicted_service_time_s": c["service_time_s"],
                    "measured_service_time_s": c.get("measured_service_time_s"),
                    "completed": c.get("completed", 0), "waiting": c.get("waiting", 0)} for c in chains],
        "servers": [{"server": s, "used_slots": v.get("used", 0), "slot_limit": v.get("limit")}
                    for s, v in sorted((raw.get("servers") or {}).items())] if isinstance(raw.get("servers"), dict) else [],
        "arrivals": int(stats.get("arrivals", 0)), "grants": grants,
        "releases": int(stats.get("releases", 0)), "expiries": int(stats.get("expiries", 0)),
        "timeouts": int(stats.get("timeouts", 0)),
        "mean_wait_s": (stats.get("wait_ms", 0) / grants / 1000.0) if grants else None,
        "wait_histogram_ms": {"buckets": raw.get("wait_buckets_ms", []),
                              "counts": {int(b): int(n) for b, n in _aslist(raw.get("wait_histogram"))}},
        "in_flight_by_plan": [{"plan": g.get("plan"), "generation": g["generation"], "in_flight": g["in_flight"]}
                              for g in gens],
        "generation": raw.get("generation"),
    }
    state["_raw"] = raw
    return state


_ID_BYTES = 12                # lease ids: 96 random bits, 16 URL-safe characters, as secrets.token_urlsafe(12)
_ID_BATCH = 256
_id_pool: list[str] = []
os.register_at_fork(after_in_child=_id_pool.clear)     # a forked process never reuses its parent's ids


def new_id() -> str:
    """An unguessable lease id (os.urandom, read in batches: one system call per 256 ids)."""
    if not _id_pool:
        raw = os.urandom(_ID_BYTES * _ID_BATCH)
        _id_pool.extend(base64.urlsafe_b64encode(raw[i:i + _ID_BYTES]).decode()
                        for i in range(0, len(raw), _ID_BYTES))
    return _id_pool.pop()


def check_args(wait_s: Any, policy: Any) -> tuple[float, str]:
    if isinstance(wait_s, bool) or not isinstance(wait_s, (int, float)) or wait_s != wait_s:
        raise ValueError(f"wait_s must be a number of seconds between 0 and {MAX_WAIT_S:g}, got {wait_s!r}")
    if not 0 <= wait_s <= MAX_WAIT_S:
        raise ValueError(f"wait_s must be between 0 and {MAX_WAIT_S:g} s, got {wait_s!r}")
    if policy is None:
        policy = ""
    elif policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    return float(wait_s), policy


def _retry() -> Retry:
    return Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=40)


_RETRY_ON = [RedisConnectionError, RedisTimeoutError, ConnectionRefusedError]


class _Keys:
    def __init__(self, prefix: str):
        if not prefix or any(ch in prefix for ch in "*?[]{} \n"):
            raise ValueError(f"invalid key prefix {prefix!r}")
        self.prefix = prefix

    def cluster(self, cluster: int) -> str:
        return f"{self.prefix}:c{int(cluster)}:"

    def token(self, digest: str) -> str:
        return f"{self.prefix}:tok:{digest}"

    @property
    def clusters_key(self) -> str:
        return f"{self.prefix}:clusters"


class AsyncRedisStore(_Keys):
    """asyncio store on one Redis; shared by the HTTP dispatcher and the async Redis-direct client."""

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", prefix: str = "chainplan:dispatch",
                 max_connections: int = 1024, rng: random.Random | None = None):
        super().__init__(prefix)
        self.redis = aioredis.Redis.from_url(
            url, retry=_retry(), retry_on_error=_RETRY_ON, max_connections=max_connections,
            socket_connect_timeout=2, health_check_interval=10, decode_responses=True)
        self._script = self.redis.register_script(LUA)
        self._rng = rng or random.Random()
        # the scripts and token look-ups go down one auto-pipelined connection (see pipelined.py);
        # blocking commands (BLPOP) and the rest use redis-py's pool
        try:
            self._fast: PipelinedRedis | None = PipelinedRedis(url)
        except ValueError:
            self._fast = None
        self._channel = ScriptChannel(self._fast, LUA) if self._fast is not None else None

    async def _run(self, cluster: int, *args: Any) -> Any:
        if self._channel is not None:
            return await self._channel([self.cluster(cluster)], args)
        return await self._script(keys=[self.cluster(cluster)], args=list(args))

    async def _run_batched(self, cluster: int, *args: Any) -> Any:
        """acquire, release and renew: batched with the process's other calls of the same event-loop turn."""
        if self._channel is not None:
            return await self._channel.batched(self.cluster(cluster), args)
        return await self._script(keys=[self.cluster(cluster)], args=list(args))

    async def acquire(self, cluster: int, *, wait_s: float = 30.0, policy: str | None = None,
                      uniform: float | None = None) -> dict[str, Any]:
        wait_s, policy = check_args(wait_s, policy)
        lid = new_id()
        u = self._rng.random() if uniform is None else uniform
        d = json.loads(await self._run_batched(cluster, "acquire", lid, policy, repr(u), int(wait_s * 1000)))
        if "lease" in d:
            return lease_from_raw(d)
        if d.get("error") == "no_plan":
            raise NoPlan(cluster)
        if not d.get("queued"):
            raise NotGranted(d.get("position", 1), 0)
        try:
            got = await self._wait(cluster, lid, wait_s)
        except (asyncio.CancelledError, Exception):
            # the caller went away (or Redis did) while waiting: leave the queue, or hand back what was granted
            try:
                d2 = json.loads(await self._run(cluster, "cancel", lid))
                if "lease" in d2:
                    await self.release(cluster, d2["lease"])
            except Exception:  # noqa: BLE001 - the ticket then times out by itself
                pass
            raise
        if got:
            return lease_from_raw(json.loads(got[1]))
        d2 = json.loads(await self._run(cluster, "cancel", lid))
        if "lease" in d2:
            return lease_from_raw(d2)
        raise NotGranted(d.get("position", 1), wait_s)

    async def _wait(self, cluster: int, lid: str, wait_s: float):
        # in slices, sweeping between them: a lease that expires with nobody calling frees its slot anyway
        end = time.monotonic() + wait_s
        key = self.cluster(cluster) + "w:" + lid
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return None
            try:
                got = await self.redis.blpop([key], timeout=min(left, SWEEP_SLICE_S))
                if got:
                    return got
                await self._run(cluster, "sweep")
            except tuple(_RETRY_ON):
                await asyncio.sleep(0.1)     # Redis away (restarting): keep the place in the queue, wait on

    async def enqueue(self, cluster: int, *, policy: str | None = None, wait_s: float = 30.0,
                      uniform: float | None = None) -> tuple[str, dict[str, Any]]:
        """Step one of acquire (the script only): (lease id, answer). For replays that order events exactly."""
        wait_s, policy = check_args(wait_s, policy)
        lid = new_id()
        u = self._rng.random() if uniform is None else uniform
        d = json.loads(await self._run(cluster, "acquire", lid, policy, repr(u), int(wait_s * 1000)))
        return lid, d

    async def granted(self, cluster: int, lid: str) -> dict[str, Any] | None:
        """The lease granted to a ticket that ``enqueue`` queued, once it was granted."""
        raw = await self.redis.lpop(self.cluster(cluster) + "w:" + lid)
        return lease_from_raw(json.loads(raw)) if raw else None

    async def release(self, cluster: int, lease: str) -> bool:
        return bool(await self._run_batched(cluster, "release", str(lease)))

    async def renew(self, cluster: int, lease: str) -> dict[str, Any] | None:
        return renewal_from_raw(json.loads(await self._run_batched(cluster, "renew", str(lease))))

    async def state(self, cluster: int) -> dict[str, Any]:
        return state_from_raw(json.loads(await self._run(cluster, "state")))

    async def sweep(self, cluster: int) -> int:
        return int(await self._run(cluster, "sweep"))

    async def set_plan(self, cluster: int, snapshot: Mapping[str, Any] | None) -> int:
        if snapshot is None:
            await self.redis.srem(self.clusters_key, int(cluster))
            return int(await self._run(cluster, "plan", "", ""))
        text, fp = snapshot_json(snapshot)
        await self.redis.sadd(self.clusters_key, int(cluster))
        return int(await self._run(cluster, "plan", text, fp))

    async def clusters(self) -> list[int]:
        return sorted(int(c) for c in await self.redis.smembers(self.clusters_key))

    async def put_token(self, digest: str, cluster: int) -> None:
        await self.redis.set(self.token(digest), int(cluster))

    async def drop_token(self, digest: str) -> None:
        await self.redis.delete(self.token(digest))

    async def token_cluster(self, digest: str) -> int | None:
        if self._fast is not None:
            try:
                v = await self._fast.execute("GET", self.token(digest))
            except (RedisConnectionError, OSError):
                v = await self.redis.get(self.token(digest))     # redis-py's retries and back-off
        else:
            v = await self.redis.get(self.token(digest))
        return int(v) if v is not None else None

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    async def claim(self, name: str, ttl_s: float) -> bool:
        """True for one caller per ``ttl_s`` across all processes (periodic work done once)."""
        return bool(await self.redis.set(f"{self.prefix}:claim:{name}", "1", nx=True, px=int(ttl_s * 1000)))

    async def clear(self) -> None:
        """Drop every key under this prefix (tests)."""
        async for key in self.redis.scan_iter(match=self.prefix + ":*", count=1000):
            await self.redis.delete(key)

    async def close(self) -> None:
        if self._fast is not None:
            self._fast.close()
        await self.redis.aclose()


class RedisStore(_Keys):
    """The same store, blocking (for threads and the sync Redis-direct client)."""

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", prefix: str = "chainplan:dispatch",
                 rng: random.Random | None = None):
        super().__init__(prefix)
        self.redis = redis.Redis.from_url(url, retry=_retry(), retry_on_error=_RETRY_ON,
                                          socket_connect_timeout=2, health_check_interval=10,
                                          decode_responses=True)
        self._script = self.redis.register_script(LUA)
        self._rng = rng or random.Random()

    def _run(self, cluster: int, *args: Any) -> Any:
        return self._script(keys=[self.cluster(cluster)], args=list(args))

    def acquire(self, cluster: int, *, wait_s: float = 30.0, policy: str | None = None,
                uniform: float | None = None) -> dict[str, Any]:
        wait_s, policy = check_args(wait_s, policy)
        lid = new_id()
        u = self._rng.random() if uniform is None else uniform
        d = json.loads(self._run(cluster, "acquire", lid, policy, repr(u), int(wait_s * 1000)))
        if "lease" in d:
            return lease_from_raw(d)
        if d.get("error") == "no_plan":
            raise NoPlan(cluster)
        if not d.get("queued"):
            raise NotGranted(d.get("position", 1), 0)
        end = time.monotonic() + wait_s
        got = None
        while got is None and (left := end - time.monotonic()) > 0:
            try:
                got = self.redis.blpop([self.cluster(cluster) + "w:" + lid], timeout=min(left, SWEEP_SLICE_S))
                if got is None:
                    self._run(cluster, "sweep")
            except tuple(_RETRY_ON):
                time.sleep(0.1)
        if got:
            return lease_from_raw(json.loads(got[1]))
        d2 = json.loads(self._run(cluster, "cancel", lid))
        if "lease" in d2:
            return lease_from_raw(d2)
        raise NotGranted(d.get("position", 1), wait_s)

    def release(self, cluster: int, lease: str) -> bool:
        return bool(self._run(cluster, "release", str(lease)))

    def renew(self, cluster: int, lease: str) -> dict[str, Any] | None:
        return renewal_from_raw(json.loads(self._run(cluster, "renew", str(lease))))

    def state(self, cluster: int) -> dict[str, Any]:
        return state_from_raw(json.loads(self._run(cluster, "state")))

    def sweep(self, cluster: int) -> int:
        return int(self._run(cluster, "sweep"))

    def set_plan(self, cluster: int, snapshot: Mapping[str, Any] | None) -> int:
        if snapshot is None:
            self.redis.srem(self.clusters_key, int(cluster))
            return int(self._run(cluster, "plan", "", ""))
        text, fp = snapshot_json(snapshot)
        self.redis.sadd(self.clusters_key, int(cluster))
        return int(self._run(cluster, "plan", text, fp))

    def put_token(self, digest: str, cluster: int) -> None:
        self.redis.set(self.token(digest), int(cluster))

    def drop_token(self, digest: str) -> None:
        self.redis.delete(self.token(digest))

    def clear(self) -> None:
        for key in self.redis.scan_iter(match=self.prefix + ":*", count=1000):
            self.redis.delete(key)

    def close(self) -> None:
        self.redis.close()
