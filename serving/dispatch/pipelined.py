"""One auto-pipelined Redis connection for the dispatcher's non-blocking commands (asyncio + hiredis).

redis-py's asyncio client takes a connection from a pool for every command,
writes it, waits for its reply and gives the connection back: about a hundred
microseconds of Python per call, more than the dispatcher's script costs inside
Redis.  Here every command issued by any task of the process goes down one
connection: commands issued in the same event-loop turn leave in one write
(auto-pipelining, as ioredis does), and replies, parsed by hiredis, resolve the
callers' futures in order.  Redis runs each script atomically either way, so the
results are those of separate calls.

Only commands that answer at once may use it (never BLPOP: it would hold up
every caller behind it).  A dropped connection fails the commands in flight
with ``ConnectionError`` and the next command reconnects; ``ScriptChannel``
retries with back-off (the dispatcher's operations are idempotent: a retried
acquire returns the first call's lease, a retried release changes nothing) and
re-loads the script when Redis lost it (NOSCRIPT).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from typing import Any, Sequence
from urllib.parse import unquote, urlparse

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

RETRIES = 40
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 1.0
CONNECT_TIMEOUT_S = 2.0
MAX_BATCH = 128           # operations per script call (bounds the time Redis spends in one call)


class _Protocol(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.reader = hiredis.Reader(replyError=ResponseError, encoding="utf-8")
        self.pending: deque[asyncio.Future] = deque()
        self.out: list[bytes] = []
        self.transport: asyncio.Transport | None = None
        self.lost: BaseException | None = None
        self._flush_at_turn_end = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def send(self, packed: bytes) -> asyncio.Future:
        if self.lost is not None or self.transport is None:
            raise RedisConnectionError(f"connection to Redis lost: {self.lost}")
        fut = self.loop.create_future()
        self.pending.append(fut)
        self.out.append(packed)
        if not self._flush_at_turn_end:
            self._flush_at_turn_end = True
            self.loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        self._flush_at_turn_end = False
        if self.out and self.lost is None and self.transport is not None:
            data = self.out[0] if len(self.out) == 1 else b"".join(self.out)
            self.out.clear()
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            reply = self.reader.gets()
            if reply is False:
                return
            fut = self.pending.popleft()
            if not fut.done():          # a cancelled caller's reply is read and dropped, keeping the order
                fut.set_result(reply)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = exc or RedisConnectionError("connection closed by Redis")
        err = RedisConnectionError(f"connection to Redis lost: {self.lost}")
        while self.pending:
            fut = self.pending.popleft()
            if not fut.done():
                fut.set_exception(err)
        self.out.clear()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class PipelinedRedis:
    """One connection, shared by every task of the event loop that first uses it (reconnects by itself)."""

    def __init__(self, url: str, *, wait_replicas: bool = False):
        self.wait_replicas = wait_replicas      # a cluster node: WAIT for its replica (see _WaitProtocol)
        self.wait_ms = WAIT_TIMEOUT_MS
        self.counts = {"acked": 0, "unacked": 0}
        u = urlparse(url)
        if u.scheme not in ("redis", "unix"):
            raise ValueError(f"auto-pipelining supports redis:// and unix:// URLs, not {u.scheme}://")
        self.unix_path = u.path if u.scheme == "unix" else None
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or 6379
        db = None
        if u.scheme == "redis" and u.path.strip("/"):
            db = int(u.path.strip("/"))
        for part in (u.query or "").split("&"):
            if part.startswith("db="):
                db = int(part[3:])
        self.db = db
        self.username = unquote(u.username) if u.username else None
        self.password = unquote(u.password) if u.password else None
        self._proto: _Protocol | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connecting: asyncio.Future | None = None

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        if self.wait_replicas and self.wait_ms > 0:
            def factory():
                return _WaitProtocol(loop, self.wait_ms, self.counts)
        else:
            def factory():
                return _Protocol(loop)
        if self.unix_path:
            coro = loop.create_unix_connection(factory, self.unix_path)
        else:
            coro = loop.create_connection(factory, self.host, self.port)
        _, proto = await asyncio.wait_for(coro, timeout=CONNECT_TIMEOUT_S)
        try:
            if self.password is not None:
                auth = ("AUTH", self.username, self.password) if self.username else ("AUTH", self.password)
                reply = await proto.send(hiredis.pack_command(auth))
                if isinstance(reply, Exception):
                    raise reply
            if self.db:
                reply = await proto.send(hiredis.pack_command(("SELECT", self.db)))
                if isinstance(reply, Exception):
                    raise reply
            if isinstance(proto, _WaitProtocol):
                proto.replicas = _has_replicas(await proto.send(hiredis.pack_command(("ROLE",)), hold=False))
                proto.role_at = loop.time() + ROLE_EVERY_S
        except BaseException:
            proto.close()
            raise
        return proto

    async def _connection(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        proto = self._proto
        if proto is not None and proto.lost is None and self._loop is loop:
            return proto
        if self._connecting is not None and self._loop is loop and not self._connecting.done():
            return await asyncio.shield(self._connecting)
        self._loop = loop
        self._connecting = loop.create_task(self._open())
        try:
            self._proto = await asyncio.shield(self._connecting)
        except (OSError, asyncio.TimeoutError) as exc:
            raise RedisConnectionError(f"cannot connect to Redis at {self.host}:{self.port}: {exc}") from exc
        return self._proto

    async def execute_raw(self, *args: Any) -> Any:
        """One command, no retry; an error reply is returned (a ``ResponseError``), not raised."""
        proto = await self._connection()
        return await proto.send(hiredis.pack_command(args))

    # the routing hooks ScriptChannel uses (one Redis: every key lives here; ClusterPipelined routes)
    def node_for(self, key: str) -> "PipelinedRedis":
        return self

    def node_at(self, host: str, port: int) -> "PipelinedRedis":
        return self

    async def refresh(self, moved: str | None = None) -> None:
        return None

    @property
    def unacked(self) -> int:
        return 0

    async def execute(self, *args: Any) -> Any:
        """One command, no retry; an error reply is raised as ``ResponseError``."""
        reply = await self.execute_raw(*args)
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    def close(self) -> None:
        if self._proto is not None:
            self._proto.close()
            self._proto = None


def _redirect(reply: Any) -> str | None:
    """The kind of a cluster refusal that a retry elsewhere (or later) cures, else None."""
    if isinstance(reply, ResponseError):
        head = str(reply).split(" ", 1)[0]
        if head in _REDIRECTS:
            return head
    return None


_REDIRECTS = {"MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN", "LOADING", "READONLY", "MASTERDOWN"}


class ScriptChannel:
    """EVALSHA of one script over a ``PipelinedRedis``, with retries and re-loading on NOSCRIPT.

    ``batched`` goes one step further: the operations that the tasks of the process issue for one key
    in the same event-loop turn leave as one call of the script's ``batch`` operation, which runs them
    in order and answers each.  Each operation is still atomic (the whole batch is), and the script's
    fixed costs (the clock, the plan's header, the sweep, the counters) are paid once per batch.
    """

    def __init__(self, conn: PipelinedRedis, script: str, max_batch: int = MAX_BATCH):
        self.conn = conn
        self.script = script
        self.sha = hashlib.sha1(script.encode()).hexdigest()
        self.max_batch = max_batch
        # a cluster retries sooner and for longer: its fail-over takes 2-3 s and the first retry after the new
        # primary is up should not wait for a back-off of a second (ClusterPipelined sets these)
        self.retries = getattr(conn, "retries", RETRIES)
        self.backoff_cap_s = getattr(conn, "backoff_cap_s", BACKOFF_CAP_S)
        self._pending: dict[str, list[tuple[Sequence[Any], asyncio.Future]]] = {}
        self._scheduled = False
        self._sched_loop: asyncio.AbstractEventLoop | None = None

    def batched(self, key: str, args: Sequence[Any]) -> asyncio.Future:
        """Queue one operation (its script arguments) for ``key``; the future gets its answer."""
        loop = asyncio.get_running_loop()
        if self._scheduled and self._sched_loop is not loop:
            # scheduled on an event loop that has gone (closed before its turn ended): start afresh here
            self._pending, self._scheduled = {}, False
        fut = loop.create_future()
        self._pending.setdefault(key, []).append((args, fut))
        if not self._scheduled:
            self._scheduled = True
            self._sched_loop = loop
            loop.call_soon(self._send_batches)
        return fut

    def _send_batches(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, {}
        loop = asyncio.get_running_loop()
        for key, items in pending.items():
            for i in range(0, len(items), self.max_batch):
                chunk = items[i:i + self.max_batch]
                if len(chunk) == 1:
                    args: list[Any] = list(chunk[0][0])
                else:
                    args = ["batch"]
                    for a, _ in chunk:
                        args.extend(a)
                cmd = ("EVALSHA", self.sha, 1, key, *args)
                node = self.conn.node_for(key)
                proto = node._proto
                if proto is not None and proto.lost is None and node._loop is loop:
                    try:
                        sent = proto.send(hiredis.pack_command(cmd))
                    except (RedisConnectionError, ConnectionError, OSError):
                        pass
                    else:
                        sent.add_done_callback(lambda f, chunk=chunk, cmd=cmd: self._answered(f, chunk, cmd))
                        continue
                loop.create_task(self._slow(chunk, cmd))

    def _answered(self, sent: asyncio.Future, chunk, cmd) -> None:
        exc = sent.exception() if not sent.cancelled() else asyncio.CancelledError()
        reply = None if exc is not None else sent.result()
        if exc is not None or (isinstance(reply, ResponseError) and (str(reply).startswith("NOSCRIPT")
                                                                     or _redirect(reply))):
            # reconnect / reload / follow the cluster (MOVED, fail-over), retry
            asyncio.get_running_loop().create_task(self._slow(chunk, cmd))
            return
        self._deliver(chunk, reply)

    async def _slow(self, chunk, cmd) -> None:
        try:
            reply = await self._call(cmd)
        except BaseException as exc:  # noqa: BLE001 - every caller of the batch gets the error
            for _, fut in chunk:
                if not fut.done():
                    fut.set_exception(exc)
            return
        self._deliver(chunk, reply)

    @staticmethod
    def _deliver(chunk, reply) -> None:
        if isinstance(reply, ResponseError):
            for _, fut in chunk:
                if not fut.done():
                    fut.set_exception(reply)
            return
        if len(chunk) == 1:
            reply = [reply]
        for (_, fut), answer in zip(chunk, reply):
            if not fut.done():
                fut.set_result(answer)

    async def _call(self, cmd: tuple) -> Any:
        """One EVALSHA (its key is cmd[3]), retried over reconnections, re-loaded on NOSCRIPT and, on a
        cluster, sent where the key's slot lives now (MOVED, ASK, a fail-over); an error reply is returned."""
        key = cmd[3]
        pause = BACKOFF_BASE_S
        node = self.conn.node_for(key)
        asking = False
        for attempt in range(self.retries + 1):
            try:
                if asking:
                    # ASKING is one-shot for the connection's next command: both leave in one write
                    proto = await node._connection()
                    proto.send(hiredis.pack_command(("ASKING",)))
                    reply = await proto.send(hiredis.pack_command(cmd))
                    asking = False
                else:
                    reply = await node.execute_raw(*cmd)
            except (RedisConnectionError, ConnectionError, OSError, asyncio.TimeoutError):
                if attempt == self.retries:
                    raise
                await asyncio.sleep(pause)
                pause = min(pause * 2, self.backoff_cap_s)
                await self.conn.refresh()            # a fail-over: the slot may have a new owner
                node = self.conn.node_for(key)
                continue
            if isinstance(reply, ResponseError) and str(reply).startswith("NOSCRIPT"):
                await node.execute("SCRIPT", "LOAD", self.script)
                continue
            kind = _redirect(reply)
            if kind == "MOVED":
                await self.conn.refresh(str(reply))
                node = self.conn.node_for(key)
                continue
            if kind == "ASK":
                host, _, port = str(reply).split()[2].rpartition(":")
                node, asking = self.conn.node_at(host, int(port)), True
                continue
            if kind is not None and attempt < self.retries:
                await asyncio.sleep(pause)
                pause = min(pause * 2, self.backoff_cap_s)
                await self.conn.refresh()
                node = self.conn.node_for(key)
                continue
            return reply
        return await node.execute_raw(*cmd)

    async def __call__(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        cmd = ("EVALSHA", self.sha, len(keys), *keys, *args)
        node = self.conn.node_for(keys[0])
        proto = node._proto
        if proto is not None and proto.lost is None and node._loop is asyncio.get_running_loop():
            # the common case, with no extra coroutine: connected, script loaded
            try:
                reply = await proto.send(hiredis.pack_command(cmd))
            except (RedisConnectionError, ConnectionError, OSError):
                reply = None
            else:
                if not isinstance(reply, ResponseError):
                    return reply
                if not str(reply).startswith("NOSCRIPT") and not _redirect(reply):
                    raise reply
        reply = await self._call(cmd)
        if isinstance(reply, ResponseError):
            raise reply
        return reply


# -- Redis Cluster -----------------------------------------------------------------------------------------

WAIT_TIMEOUT_MS = 250     # how long a turn's replies wait for one replica's acknowledgement (WAIT 1 250)
ROLE_EVERY_S = 1.0        # how often a node is asked whether it has a replica (ROLE)
CONNS_PER_NODE = 2        # connections per primary while WAIT is on (ClusterPipelined)
SLOTS = 16384


class _WaitProtocol(_Protocol):
    """A cluster primary's connection: the replies of each event-loop turn's commands are handed out only
    after ``WAIT 1 <WAIT_TIMEOUT_MS>`` (sent behind them, on the same connection) answered, so a grant is
    on the replica before its holder learns of it.  When the node has no replica (``ROLE``, asked every
    second: right after a fail-over, until the old primary comes back as a replica) there is nobody to fail
    over to and a WAIT could only stall: the replies then go out at once, as on one Redis.  Replies that a
    WAIT released unacknowledged (the replica lagged more than WAIT_TIMEOUT_MS) are counted in ``unacked``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, wait_ms: int = WAIT_TIMEOUT_MS,
                 counts: dict[str, int] | None = None):
        super().__init__(loop)
        self.wait_ms = wait_ms
        self.counts = counts if counts is not None else {"acked": 0, "unacked": 0}
        self.held: list[tuple[asyncio.Future, Any]] = []
        self.to_wait = 0                  # held commands sent since the last WAIT
        self.replicas = False
        self.role_at = 0.0

    def send(self, packed: bytes, hold: bool = True) -> asyncio.Future:
        if self.lost is not None or self.transport is None:
            raise RedisConnectionError(f"connection to Redis lost: {self.lost}")
        fut = self.loop.create_future()
        hold = hold and self.replicas and self.wait_ms > 0
        self.pending.append((fut, 1 if hold else 0))
        self.out.append(packed)
        if hold:
            self.to_wait += 1
        if not self._flush_at_turn_end:
            self._flush_at_turn_end = True
            self.loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        if self.out and self.lost is None and self.transport is not None:
            if self.to_wait:
                self.out.append(hiredis.pack_command(("WAIT", 1, self.wait_ms)))
                self.pending.append((True, 2))
                self.to_wait = 0
            now = self.loop.time()
            if now >= self.role_at and self.wait_ms > 0:
                self.role_at = now + ROLE_EVERY_S
                self.out.append(hiredis.pack_command(("ROLE",)))
                self.pending.append((None, 3))
        super()._flush()

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            reply = self.reader.gets()
            if reply is False:
                return
            fut, kind = self.pending.popleft()
            if kind == 0:
                if not fut.done():
                    fut.set_result(reply)
            elif kind == 1:
                self.held.append((fut, reply))
            elif kind == 2:
                if fut:                   # a real WAIT: did the replica acknowledge?
                    if isinstance(reply, int) and reply >= 1:
                        self.counts["acked"] += len(self.held)
                    else:
                        self.counts["unacked"] += len(self.held)
                held, self.held = self.held, []
                for f, r in held:
                    if not f.done():
                        f.set_result(r)
            else:
                self.replicas = _has_replicas(reply)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = exc or RedisConnectionError("connection closed by Redis")
        err = RedisConnectionError(f"connection to Redis lost: {self.lost}")
        # replies not yet acknowledged fail too: the caller retries (every operation is idempotent) on
        # whichever node owns the slot by then
        futs = [f for f, _ in self.held] + [f for f, kind in self.pending if kind in (0, 1)]
        self.held.clear()
        self.pending.clear()
        for fut in futs:
            if not fut.done():
                fut.set_exception(err)
        self.out.clear()


def _has_replicas(role: Any) -> bool:
    return isinstance(role, list) and len(role) >= 3 and role[0] == "master" and bool(role[2])


class ClusterPipelined:
    """Auto-pipelined connections to a Redis Cluster: ``PipelinedRedis`` connections per primary, each key's
    command sent to the primary that owns its slot (the slot map from ``CLUSTER SLOTS``, refreshed on ``MOVED``,
    on a lost connection and on the other cluster refusals).  ``ScriptChannel`` batches per key, so per shard.

    With WAIT, a primary gets ``CONNS_PER_NODE`` connections and each turn's commands take the one with the
    fewest replies outstanding: Redis holds a connection's next commands until its WAIT returns, so a second
    connection lets the next turn run while the last one waits for the replica."""

    def __init__(self, seeds: Sequence[tuple[str, int]], *, wait_ms: int = WAIT_TIMEOUT_MS,
                 username: str | None = None, password: str | None = None):
        if not seeds:
            raise ValueError("a Redis Cluster needs at least one seed host:port")
        self.seeds = [(h, int(p)) for h, p in seeds]
        self.wait_ms = wait_ms
        self.username, self.password = username, password
        self.nodes: dict[tuple[str, int], list[PipelinedRedis]] = {}
        self.slots: list[list[PipelinedRedis] | None] = [None] * SLOTS
        self._slot_of: dict[str, int] = {}
        self._refreshing: asyncio.Task | None = None
        self._refreshed_at = 0.0
        self.refreshes = 0
        self.retries = 160            # with back-off capped at 0.25 s: about 40 s of retrying, as on one Redis
        self.backoff_cap_s = 0.25

    def _group(self, host: str, port: int) -> list[PipelinedRedis]:
        g = self.nodes.get((host, port))
        if g is None:
            auth = ""
            if self.password is not None:
                from urllib.parse import quote
                auth = f"{quote(self.username or '')}:{quote(self.password)}@"
            g = []
            for _ in range(CONNS_PER_NODE if self.wait_ms > 0 else 1):
                n = PipelinedRedis(f"redis://{auth}{host}:{port}", wait_replicas=True)
                n.wait_ms = self.wait_ms
                g.append(n)
            self.nodes[(host, port)] = g
        return g

    @staticmethod
    def _least_busy(g: list[PipelinedRedis]) -> PipelinedRedis:
        if len(g) == 1:
            return g[0]
        best, load = g[0], None
        for n in g:
            p = n._proto
            busy = len(p.pending) if p is not None and p.lost is None else 0    # (re)connected on use
            if load is None or busy < load:
                best, load = n, busy
        return best

    def node_at(self, host: str, port: int) -> PipelinedRedis:
        return self._least_busy(self._group(host, port))

    def slot(self, key: str) -> int:
        s = self._slot_of.get(key)
        if s is None:
            from redis.crc import key_slot
            s = key_slot(key.encode())
            if len(self._slot_of) > 100000:
                self._slot_of.clear()
            self._slot_of[key] = s
        return s

    def node_for(self, key: str) -> PipelinedRedis:
        g = self.slots[self.slot(key)]
        return self._least_busy(g) if g is not None else self.node_at(*self.seeds[0])

    async def refresh(self, moved: str | None = None) -> None:
        """Learn where the slots live: from a MOVED answer at once, and from CLUSTER SLOTS (one refresh at a
        time; at most one per 50 ms unless a MOVED asked for it)."""
        loop = asyncio.get_running_loop()
        if moved:
            parts = moved.split()
            if len(parts) >= 3:
                host, _, port = parts[2].rpartition(":")
                self.slots[int(parts[1])] = self._group(host, int(port))
        if self._refreshing is not None and not self._refreshing.done():
            try:
                await asyncio.shield(self._refreshing)
            except (RedisConnectionError, ConnectionError, OSError):
                pass
            return
        if not moved and loop.time() - self._refreshed_at < 0.05:
            return
        self._refreshing = loop.create_task(self._load_slots())
        try:
            await asyncio.shield(self._refreshing)
        except (RedisConnectionError, ConnectionError, OSError):
            pass        # nobody answered: the caller's next try fails and refreshes again

    async def _load_slots(self) -> None:
        candidates = list(dict.fromkeys([*self.seeds, *self.nodes.keys()]))
        last: BaseException | None = None
        for host, port in candidates:
            try:
                rows = await asyncio.wait_for(self.node_at(host, port).execute("CLUSTER", "SLOTS"), 2.0)
            except (RedisConnectionError, ConnectionError, OSError, asyncio.TimeoutError, ResponseError) as exc:
                last = exc
                continue
            for row in rows:
                start, end, primary = int(row[0]), int(row[1]), row[2]
                host_ = primary[0] or host
                group = self._group(host_, int(primary[1]))
                for s in range(start, end + 1):
                    self.slots[s] = group
            self._refreshed_at = asyncio.get_running_loop().time()
            self.refreshes += 1
            return
        self._refreshed_at = asyncio.get_running_loop().time()
        if last is not None:
            raise RedisConnectionError(f"no node of the Redis Cluster answered CLUSTER SLOTS: {last}")

    def replicas_of(self, node: PipelinedRedis) -> bool:
        """Whether ``node`` had a replica when last asked (ROLE): a WAIT for one is worth sending."""
        proto = node._proto
        return bool(proto is not None and getattr(proto, "replicas", False))

    @property
    def unacked(self) -> int:
        """Replies handed out after a WAIT that timed out (the replica lagged): grants a fail-over may lose."""
        return sum(n.counts["unacked"] for g in self.nodes.values() for n in g)

    @property
    def acked(self) -> int:
        return sum(n.counts["acked"] for g in self.nodes.values() for n in g)

    def close(self) -> None:
        for g in self.nodes.values():
            for n in g:
                n.close()
