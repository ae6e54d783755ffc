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

    def __init__(self, url: str):
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
        if self.unix_path:
            coro = loop.create_unix_connection(lambda: _Protocol(loop), self.unix_path)
        else:
            coro = loop.create_connection(lambda: _Protocol(loop), self.host, self.port)
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
                proto = self.conn._proto
                if proto is not None and proto.lost is None and self.conn._loop is loop:
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
        if exc is not None or (isinstance(reply, ResponseError) and str(reply).startswith("NOSCRIPT")):
            asyncio.get_running_loop().create_task(self._slow(chunk, cmd))      # reconnect / reload, retry
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
        """One EVALSHA, retried over reconnections and re-loaded on NOSCRIPT; an error reply is returned."""
        pause = BACKOFF_BASE_S
        for attempt in range(RETRIES + 1):
            try:
                reply = await self.conn.execute_raw(*cmd)
            except (RedisConnectionError, ConnectionError, OSError):
                if attempt == RETRIES:
                    raise
                await asyncio.sleep(pause)
                pause = min(pause * 2, BACKOFF_CAP_S)
                continue
            if isinstance(reply, ResponseError) and str(reply).startswith("NOSCRIPT"):
                await self.conn.execute("SCRIPT", "LOAD", self.script)
                continue
            return reply
        return await self.conn.execute_raw(*cmd)

    async def __call__(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        cmd = ("EVALSHA", self.sha, len(keys), *keys, *args)
        proto = self.conn._proto
        if proto is not None and proto.lost is None and self.conn._loop is asyncio.get_running_loop():
            # the common case, with no extra coroutine: connected, script loaded
            try:
                reply = await proto.send(hiredis.pack_command(cmd))
            except (RedisConnectionError, ConnectionError, OSError):
                reply = None
            else:
                if not isinstance(reply, ResponseError):
                    return reply
                if not str(reply).startswith("NOSCRIPT"):
                    raise reply
        pause = BACKOFF_BASE_S
        for attempt in range(RETRIES + 1):
            try:
                return await self.conn.execute(*cmd)
            except ResponseError as exc:
                if not str(exc).startswith("NOSCRIPT"):
                    raise
                await self.conn.execute("SCRIPT", "LOAD", self.script)
            except (RedisConnectionError, ConnectionError, OSError):
                if attempt == RETRIES:
                    raise
                await asyncio.sleep(pause)
                pause = min(pause * 2, BACKOFF_CAP_S)
        return await self.conn.execute(*cmd)
