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
import json
import random
import time
from pathlib import Path
from typing import Any, Mapping

import redis
import redis.asyncio as aioredis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeoutError
from redis.retry import Retry

from . import liveness as lv
from .lua_keys import lua_key
from .pipelined import PipelinedRedis, ScriptChannel
from .protocol import (HEARTBEAT_STATES, MAX_WAIT_S, SWEEP_SLICE_S, DispatchError, EventJSON,  # noqa: F401
                       LeaseJSON, NoAdoptedPlan, NoFreeChain, ReleasedJSON, RenewalJSON, ServerStateJSON,
                       check_args, check_cause, check_events_args, check_failed, check_info, check_server,
                       check_server_state, events_from_raw, iso_ms, lease_from_raw, new_id, released_from_raw,
                       renewal_from_raw, server_list_from_raw, server_state_from_raw, state_from_raw)
from .snapshot import snapshot_json

LUA = (Path(__file__).with_name("dispatch.lua")).read_text()

# the names these refusals had here before protocol.py declared them
NoPlan = NoAdoptedPlan
NotGranted = NoFreeChain


def _retry() -> Retry:
    return Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=40)


_RETRY_ON = [RedisConnectionError, RedisTimeoutError, ConnectionRefusedError]



def acquire_queued(cluster: int, answer: dict[str, Any]) -> bool:
    """What the acquire script answered: True when the request waits in the queue, False when it holds a
    lease; the refusals raise (no adopted plan, or no free chain and no wait asked for)."""
    if "lease" in answer:
        return False
    if answer.get("error") == "no_plan":
        raise NoAdoptedPlan.for_cluster(cluster)
    if not answer.get("queued"):
        raise NoFreeChain.after_wait(answer.get("position", 1), 0)
    return True

class _Keys:
    def __init__(self, prefix: str, liveness: lv.LivenessConfig | None = None):
        if not prefix or any(ch in prefix for ch in "*?[]{} \n"):
            raise ValueError(f"invalid key prefix {prefix!r}")
        self.prefix = prefix
        self.liveness = liveness or lv.LivenessConfig.from_env()
        self._lv_args = self.liveness.args()

    def _fail_args(self, lease: str, failed: Mapping[str, str]) -> list[Any]:
        f = check_failed(failed)
        return ["fail", str(lease), f["server"], f["error"][:lv.MAX_CAUSE], *self._lv_args[:2]]

    def _heartbeat_args(self, server: str, state: str, info: Any) -> list[Any]:
        server, state = check_server(server), check_server_state(state, HEARTBEAT_STATES)
        return ["heartbeat", server, state, check_info(info), self._lv_args[2]]

    def _setstate_args(self, server: str, state: str, cause: str) -> list[Any]:
        server, state = check_server(server), check_server_state(state)
        return ["setstate", server, state, check_cause(cause), *self._lv_args]

    def cluster(self, cluster: int) -> str:
        return f"{self.prefix}:c{int(cluster)}:"

    def mailbox(self, cluster: int, lid: str) -> str:
        """Where the script puts the lease it grants to waiter ``lid``."""
        return self.cluster(cluster) + lua_key("mailbox", id=lid)

    def token(self, digest: str) -> str:
        return f"{self.prefix}:tok:{digest}"

    @property
    def clusters_key(self) -> str:
        return f"{self.prefix}:clusters"


class AsyncRedisStore(_Keys):
    """asyncio store on one Redis (a ``protocol.DispatchStore``); shared by the HTTP dispatcher and the async
    Redis-direct client."""

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", prefix: str = "chainplan:dispatch",
                 max_connections: int = 1024, rng: random.Random | None = None,
                 liveness: lv.LivenessConfig | None = None):
        super().__init__(prefix, liveness)
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
                      uniform: float | None = None) -> LeaseJSON:
        wait_s, policy = check_args(wait_s, policy)
        lid = new_id()
        u = self._rng.random() if uniform is None else uniform
        d = json.loads(await self._run_batched(cluster, "acquire", lid, policy, repr(u), int(wait_s * 1000)))
        if not acquire_queued(cluster, d):
            return lease_from_raw(d)
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
        raise NoFreeChain.after_wait(d.get("position", 1), wait_s)

    async def _wait(self, cluster: int, lid: str, wait_s: float):
        # in slices, sweeping between them: a lease that expires with nobody calling frees its slot anyway
        end = time.monotonic() + wait_s
        key = self.mailbox(cluster, lid)
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

    async def granted(self, cluster: int, lid: str) -> LeaseJSON | None:
        """The lease granted to a ticket that ``enqueue`` queued, once it was granted."""
        raw = await self.redis.lpop(self.mailbox(cluster, lid))
        return lease_from_raw(json.loads(raw)) if raw else None

    async def release(self, cluster: int, lease: str, *, failed: Mapping[str, str] | None = None
                      ) -> "bool | ReleasedJSON":
        if failed is None:
            return bool(await self._run_batched(cluster, "release", str(lease)))
        return released_from_raw(str(lease), json.loads(await self._run(cluster, *self._fail_args(lease, failed))))

    async def renew(self, cluster: int, lease: str) -> RenewalJSON | None:
        return renewal_from_raw(json.loads(await self._run_batched(cluster, "renew", str(lease))), str(lease))

    async def set_server_state(self, cluster: int, server: str, state: str, *, cause: str = ""
                               ) -> ServerStateJSON:
        args = self._setstate_args(server, state, cause)
        return server_state_from_raw(server, json.loads(await self._run(cluster, *args)))

    async def heartbeat(self, cluster: int, server: str, *, state: str = "up",
                        info: Mapping[str, Any] | None = None) -> ServerStateJSON:
        args = self._heartbeat_args(server, state, info)
        return server_state_from_raw(server, json.loads(await self._run(cluster, *args)))

    async def server_states(self, cluster: int) -> list[ServerStateJSON]:
        return server_list_from_raw(json.loads(await self._run(cluster, "servers")))

    async def events(self, cluster: int, after: int | None = None, limit: int = 500) -> list[EventJSON]:
        after, limit = check_events_args(after, limit)
        raw = json.loads(await self._run(cluster, "events", f"0-{after + 1}", limit))
        return events_from_raw(raw if isinstance(raw, list) else [])

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
    """The same store, blocking (a ``protocol.SyncDispatchStore``: threads, Django, the sync Redis-direct client)."""

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", prefix: str = "chainplan:dispatch",
                 rng: random.Random | None = None, liveness: lv.LivenessConfig | None = None):
        super().__init__(prefix, liveness)
        self.redis = redis.Redis.from_url(url, retry=_retry(), retry_on_error=_RETRY_ON,
                                          socket_connect_timeout=2, health_check_interval=10,
                                          decode_responses=True)
        self._script = self.redis.register_script(LUA)
        self._rng = rng or random.Random()

    def _run(self, cluster: int, *args: Any) -> Any:
        return self._script(keys=[self.cluster(cluster)], args=list(args))

    def acquire(self, cluster: int, *, wait_s: float = 30.0, policy: str | None = None,
                uniform: float | None = None) -> LeaseJSON:
        wait_s, policy = check_args(wait_s, policy)
        lid = new_id()
        u = self._rng.random() if uniform is None else uniform
        d = json.loads(self._run(cluster, "acquire", lid, policy, repr(u), int(wait_s * 1000)))
        if not acquire_queued(cluster, d):
            return lease_from_raw(d)
        end = time.monotonic() + wait_s
        got = None
        while got is None and (left := end - time.monotonic()) > 0:
            try:
                got = self.redis.blpop([self.mailbox(cluster, lid)], timeout=min(left, SWEEP_SLICE_S))
                if got is None:
                    self._run(cluster, "sweep")
            except tuple(_RETRY_ON):
                time.sleep(0.1)
        if got:
            return lease_from_raw(json.loads(got[1]))
        d2 = json.loads(self._run(cluster, "cancel", lid))
        if "lease" in d2:
            return lease_from_raw(d2)
        raise NoFreeChain.after_wait(d.get("position", 1), wait_s)

    def release(self, cluster: int, lease: str, *, failed: Mapping[str, str] | None = None
                ) -> "bool | ReleasedJSON":
        if failed is None:
            return bool(self._run(cluster, "release", str(lease)))
        return released_from_raw(str(lease), json.loads(self._run(cluster, *self._fail_args(lease, failed))))

    def renew(self, cluster: int, lease: str) -> RenewalJSON | None:
        return renewal_from_raw(json.loads(self._run(cluster, "renew", str(lease))), str(lease))

    def set_server_state(self, cluster: int, server: str, state: str, *, cause: str = "") -> ServerStateJSON:
        args = self._setstate_args(server, state, cause)
        return server_state_from_raw(server, json.loads(self._run(cluster, *args)))

    def heartbeat(self, cluster: int, server: str, *, state: str = "up",
                  info: Mapping[str, Any] | None = None) -> ServerStateJSON:
        args = self._heartbeat_args(server, state, info)
        return server_state_from_raw(server, json.loads(self._run(cluster, *args)))

    def server_states(self, cluster: int) -> list[ServerStateJSON]:
        return server_list_from_raw(json.loads(self._run(cluster, "servers")))

    def events(self, cluster: int, after: int | None = None, limit: int = 500) -> list[EventJSON]:
        after, limit = check_events_args(after, limit)
        raw = json.loads(self._run(cluster, "events", f"0-{after + 1}", limit))
        return events_from_raw(raw if isinstance(raw, list) else [])

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

    def clusters(self) -> list[int]:
        return sorted(int(c) for c in self.redis.smembers(self.clusters_key))

    def put_token(self, digest: str, cluster: int) -> None:
        self.redis.set(self.token(digest), int(cluster))

    def drop_token(self, digest: str) -> None:
        self.redis.delete(self.token(digest))

    def clear(self) -> None:
        for key in self.redis.scan_iter(match=self.prefix + ":*", count=1000):
            self.redis.delete(key)

    def close(self) -> None:
        self.redis.close()
