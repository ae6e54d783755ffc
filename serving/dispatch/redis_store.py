"""The dispatcher's state in Redis: every change is one Lua script run (dispatch.lua).

Any number of dispatcher processes (and co-located gateways using the
Redis-direct client) may share one cluster's state: the script is atomic, time
is Redis's clock, and a waiter blocks on its own mailbox key (BLPOP), which the
script that frees a slot fills.  A waiter whose wait ends runs ``cancel``,
which either removes its ticket from the queue or hands it the lease granted in
the meantime, so a grant is never lost to a timeout race.

Connection errors are retried with back-off (a restarted Redis is reconnected
to by itself).  The scripts are re-loaded when Redis lost them (NOSCRIPT).  A
waiter whose wait is interrupted (Redis restarted, a fail-over) asks again with
the same ticket: it is still queued, or holds the lease granted meanwhile, or is
queued afresh when the new Redis never heard of it.

Redis Cluster (``redis+cluster://host:port,host:port``, see ``cluster_url``):
every key of planning cluster N carries the hash tag ``{cN}``
(``prefix:{cN}:...``), so one script call touches one slot, on one shard; the
token and cluster index keys carry their own tag ``{idx}``.  The script calls
and token look-ups go down one auto-pipelined connection per primary
(``pipelined.ClusterPipelined``: routed by slot, MOVED/ASK and fail-overs
followed), each turn's replies released after ``WAIT 1 250`` (one replica
acknowledged them) while the primary has a replica; the rest uses redis-py's
cluster clients.  See docs/dispatcher.md, "Deployment".
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import time
from pathlib import Path
from typing import Any, Mapping

import redis
import redis.asyncio as aioredis
from redis.backoff import ExponentialBackoff
from redis.exceptions import (AskError, BusyLoadingError, ClusterDownError, MovedError, ReadOnlyError,
                              ResponseError, TryAgainError)
from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeoutError
from redis.retry import Retry

from . import liveness as lv
from .lua_keys import lua_key
from .pipelined import WAIT_TIMEOUT_MS, ClusterPipelined, PipelinedRedis, ScriptChannel, _has_replicas
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

CLUSTER_SCHEME = "redis+cluster://"


def cluster_url(seeds: str) -> str:
    """``host:port[,host:port...]`` (the ``--redis-cluster`` list) as a store URL; a bad list raises ValueError."""
    return CLUSTER_SCHEME + ",".join(f"{h}:{p}" for h, p in cluster_seeds(CLUSTER_SCHEME + seeds.strip()))


def cluster_seeds(url: str) -> list[tuple[str, int]] | None:
    """The seed nodes of a ``redis+cluster://h:p,h:p`` URL; None for a plain Redis URL."""
    if not url.startswith(CLUSTER_SCHEME):
        return None
    out = []
    for part in url[len(CLUSTER_SCHEME):].strip("/").split(","):
        host, sep, port = part.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"a Redis Cluster node is host:port, not {part.strip()!r}")
        out.append((host, int(port)))
    if not out:
        raise ValueError("a Redis Cluster needs at least one seed host:port")
    return out


def store_url_from_env(default: str = "") -> str:
    """The store URL the environment names: ``CHAINPLAN_DISPATCH_REDIS_CLUSTER`` (a seed list host:port,...)
    first, else ``CHAINPLAN_DISPATCH_REDIS`` (a Redis URL), else ``default``."""
    seeds = os.environ.get("CHAINPLAN_DISPATCH_REDIS_CLUSTER", "").strip()
    if seeds:
        try:
            return cluster_url(seeds)
        except ValueError as exc:
            raise ValueError(f"CHAINPLAN_DISPATCH_REDIS_CLUSTER: {exc}") from None
    return os.environ.get("CHAINPLAN_DISPATCH_REDIS") or default


def wait_ms_from_env() -> int:
    """``CHAINPLAN_DISPATCH_REDIS_WAIT_MS``: how long a cluster call waits for its replica (default 250; 0: never)."""
    raw = os.environ.get("CHAINPLAN_DISPATCH_REDIS_WAIT_MS", "")
    try:
        v = int(raw) if raw.strip() else WAIT_TIMEOUT_MS
    except ValueError:
        raise ValueError(f"CHAINPLAN_DISPATCH_REDIS_WAIT_MS must be an integer (ms), not {raw!r}") from None
    if v < 0:
        raise ValueError("CHAINPLAN_DISPATCH_REDIS_WAIT_MS must be >= 0")
    return v


# the refusals of a Redis Cluster that a retry elsewhere or later cures (a slot moved, a fail-over under way)
_CLUSTER_ERRORS: tuple[type[BaseException], ...] = (AskError, BusyLoadingError, ClusterDownError, MovedError,
                                                    ReadOnlyError, TryAgainError)


def _cluster_errors() -> tuple[type[BaseException], ...]:
    return _CLUSTER_ERRORS



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
        """The prefix of every key of planning cluster ``cluster``: its hash tag {c<N>} puts them in one slot."""
        return f"{self.prefix}:{{c{int(cluster)}}}:"

    def mailbox(self, cluster: int, lid: str) -> str:
        """Where the script puts the lease it grants to waiter ``lid``."""
        return self.cluster(cluster) + lua_key("mailbox", id=lid)

    # the index keys (which token dispatches for which cluster, which clusters have a plan) are read by
    # single-key commands, never by the script: their own tag {idx} keeps them on one shard together
    def token(self, digest: str) -> str:
        return f"{self.prefix}:{{idx}}:tok:{digest}"

    @property
    def clusters_key(self) -> str:
        return f"{self.prefix}:{{idx}}:clusters"

    def claim_key(self, name: str) -> str:
        return f"{self.prefix}:{{idx}}:claim:{name}"


class AsyncRedisStore(_Keys):
    """asyncio store on one Redis (a ``protocol.DispatchStore``); shared by the HTTP dispatcher and the async
    Redis-direct client."""

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", prefix: str = "chainplan:dispatch",
                 max_connections: int = 1024, rng: random.Random | None = None,
                 liveness: lv.LivenessConfig | None = None):
        super().__init__(prefix, liveness)
        self._rng = rng or random.Random()
        self.seeds = cluster_seeds(url)
        self._blockers: dict[tuple[str, int], aioredis.Redis] = {}
        self._max_connections = max_connections
        if self.seeds is not None:
            # Redis Cluster: redis-py's cluster client for the plain commands; the scripts and token look-ups
            # go down one auto-pipelined connection per primary; BLPOP to the slot's primary (_blpop)
            from redis.asyncio.cluster import ClusterNode, RedisCluster
            self.wait_ms = wait_ms_from_env()
            self.redis = RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in self.seeds],
                                      decode_responses=True, max_connections=max_connections,
                                      socket_connect_timeout=2)
            self._script = None
            self._fast: PipelinedRedis | ClusterPipelined | None = ClusterPipelined(self.seeds, wait_ms=self.wait_ms)
            self._channel = ScriptChannel(self._fast, LUA)
            return
        self.wait_ms = 0
        self.redis = aioredis.Redis.from_url(
            url, retry=_retry(), retry_on_error=_RETRY_ON, max_connections=max_connections,
            socket_connect_timeout=2, health_check_interval=10, decode_responses=True)
        self._script = self.redis.register_script(LUA)
        # the scripts and token look-ups go down one auto-pipelined connection (see pipelined.py);
        # blocking commands (BLPOP) and the rest use redis-py's pool
        try:
            self._fast = PipelinedRedis(url)
        except ValueError:
            self._fast = None
        self._channel = ScriptChannel(self._fast, LUA) if self._fast is not None else None

    @property
    def unacked(self) -> int:
        """Script answers handed out although no replica acknowledged them in time (Redis Cluster only)."""
        return self._fast.unacked if self._fast is not None else 0

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
            got = await self._wait(cluster, lid, wait_s, policy, u)
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

    async def _wait(self, cluster: int, lid: str, wait_s: float, policy: str = "", u: float = 0.0):
        # in slices, sweeping between them: a lease that expires with nobody calling frees its slot anyway
        end = time.monotonic() + wait_s
        key = self.mailbox(cluster, lid)
        interrupted = False
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return None
            try:
                if interrupted:
                    # Redis went away (a restart, a fail-over) while we waited: ask again with the same ticket.
                    # Still queued: wait on; granted meanwhile: that lease; unknown to the Redis we reach now
                    # (a restart without persistence, a fail-over that lost the ticket): queued afresh
                    d = json.loads(await self._run(cluster, "acquire", lid, policy, repr(u), int(left * 1000)))
                    interrupted = False
                    if not acquire_queued(cluster, d):
                        return key, json.dumps(d)
                got = await self._blpop(key, min(left, SWEEP_SLICE_S))
                if got:
                    return got
                await self._run(cluster, "sweep")
            except (*_RETRY_ON, *_cluster_errors()):
                interrupted = True
                await asyncio.sleep(0.1)     # Redis away (restarting, failing over): keep the place, wait on
                if self.seeds is not None:
                    await self._fast.refresh()

    async def _blpop(self, key: str, timeout: float):
        if self.seeds is None:
            return await self.redis.blpop([key], timeout=timeout)
        # the primary that owns the mailbox's slot, on a connection of our own: the pop and a WAIT behind it
        # (when a grant came) leave on it, so the grant is on the replica before the waiter uses it
        node = self._fast.node_for(key)
        r = self._blockers.get((node.host, node.port))
        if r is None:
            r = aioredis.Redis(host=node.host, port=node.port, decode_responses=True, socket_connect_timeout=2,
                               max_connections=self._max_connections)
            self._blockers[(node.host, node.port)] = r
        async with r.client() as c:
            got = await c.blpop([key], timeout=timeout)
            if got and self.wait_ms > 0 and self._fast.replicas_of(node):
                if int(await c.execute_command("WAIT", 1, self.wait_ms)) < 1:
                    node.counts["unacked"] += 1
        return got

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
            key = self.token(digest)
            try:
                v = await self._fast.node_for(key).execute("GET", key)
            except (RedisConnectionError, OSError, ResponseError):
                v = await self.redis.get(key)     # redis-py's retries and back-off (and MOVED, on a cluster)
        else:
            v = await self.redis.get(self.token(digest))
        return int(v) if v is not None else None

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    async def claim(self, name: str, ttl_s: float) -> bool:
        """True for one caller per ``ttl_s`` across all processes (periodic work done once)."""
        return bool(await self.redis.set(self.claim_key(name), "1", nx=True, px=int(ttl_s * 1000)))

    async def clear(self) -> None:
        """Drop every key under this prefix (tests)."""
        async for key in self.redis.scan_iter(match=self.prefix + ":*", count=1000):
            await self.redis.delete(key)

    async def close(self) -> None:
        if self._fast is not None:
            self._fast.close()
        for r in self._blockers.values():
            await r.aclose()
        await self.redis.aclose()


class RedisStore(_Keys):
    """The same store, blocking (a ``protocol.SyncDispatchStore``: threads, Django, the sync Redis-direct client)."""

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", prefix: str = "chainplan:dispatch",
                 rng: random.Random | None = None, liveness: lv.LivenessConfig | None = None):
        super().__init__(prefix, liveness)
        self._rng = rng or random.Random()
        self.seeds = cluster_seeds(url)
        self.unacked = 0
        if self.seeds is not None:
            from redis.cluster import ClusterNode, RedisCluster
            self.wait_ms = wait_ms_from_env()
            self.redis = RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in self.seeds],
                                      decode_responses=True, socket_connect_timeout=2)
            self._script = None
            self._sha = hashlib.sha1(LUA.encode()).hexdigest()
            self._roles: dict[str, tuple[float, bool]] = {}
            return
        self.wait_ms = 0
        self.redis = redis.Redis.from_url(url, retry=_retry(), retry_on_error=_RETRY_ON,
                                          socket_connect_timeout=2, health_check_interval=10,
                                          decode_responses=True)
        self._script = self.redis.register_script(LUA)

    def _run(self, cluster: int, *args: Any) -> Any:
        if self._script is None:
            return self._cluster_call(self.cluster(cluster), args)
        return self._script(keys=[self.cluster(cluster)], args=list(args))

    # -- Redis Cluster: each call on the primary of the key's slot, a WAIT for its replica behind it ----------
    def _node(self, key: str):
        node = self.redis.get_node_from_key(key)
        return node, self.redis.get_redis_connection(node)

    def _has_replica(self, node, r) -> bool:
        t, has = self._roles.get(node.name, (0.0, False))
        if time.monotonic() - t > 1.0:
            has = _has_replicas(r.execute_command("ROLE"))
            self._roles[node.name] = (time.monotonic(), has)
        return has

    def _recover(self, attempt: int) -> None:
        time.sleep(min(0.25, 0.05 * 2 ** min(attempt, 3)))     # a fail-over takes 2-3 s: retry soon after
        try:
            self.redis.nodes_manager.initialize()
        except Exception:  # noqa: BLE001 - nobody answered yet (a fail-over): the next try asks again
            pass

    def _cluster_call(self, key: str, args: Any) -> Any:
        last: BaseException | None = None
        for attempt in range(160):          # about 40 s, as on one Redis
            try:
                node, r = self._node(key)
                wait = self.wait_ms > 0 and self._has_replica(node, r)
                with r.pipeline(transaction=False) as p:
                    p.evalsha(self._sha, 1, key, *args)
                    if wait:
                        p.execute_command("WAIT", 1, self.wait_ms)
                    out = p.execute(raise_on_error=False)
            except (*_RETRY_ON, *_cluster_errors()) as exc:
                last = exc
                self._recover(attempt)
                continue
            reply = out[0]
            if isinstance(reply, ResponseError):
                if str(reply).startswith("NOSCRIPT") or "NoScript" in type(reply).__name__:
                    r.script_load(LUA)
                    continue
                if isinstance(reply, _cluster_errors()) or isinstance(reply, tuple(_RETRY_ON)):
                    last = reply
                    self._recover(attempt)
                    continue
                raise reply
            if wait and not (isinstance(out[1], int) and out[1] >= 1):
                self.unacked += 1
            return reply
        raise last if last is not None else RedisConnectionError("Redis Cluster unreachable")

    def _blpop(self, key: str, timeout: float):
        if self.seeds is None:
            return self.redis.blpop([key], timeout=timeout)
        node, r = self._node(key)
        with r.client() as c:
            got = c.blpop([key], timeout=timeout)
            if got and self.wait_ms > 0 and self._has_replica(node, r):
                if int(c.execute_command("WAIT", 1, self.wait_ms)) < 1:
                    self.unacked += 1
        return got

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
        interrupted = False
        while got is None and (left := end - time.monotonic()) > 0:
            try:
                if interrupted:     # as AsyncRedisStore._wait: ask again with the same ticket
                    d2 = json.loads(self._run(cluster, "acquire", lid, policy, repr(u), int(left * 1000)))
                    interrupted = False
                    if not acquire_queued(cluster, d2):
                        return lease_from_raw(d2)
                got = self._blpop(self.mailbox(cluster, lid), min(left, SWEEP_SLICE_S))
                if got is None:
                    self._run(cluster, "sweep")
            except (*_RETRY_ON, *_cluster_errors()):
                interrupted = True
                time.sleep(0.1)
                if self.seeds is not None:
                    self._recover(0)
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
