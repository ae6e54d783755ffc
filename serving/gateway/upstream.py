"""A lean HTTP/1.1 client for the ``openai`` engine's upstream calls: one POST, its answer read as a stream.

The gateway spends most of a forwarded request's own time on its upstream call, so this path is kept short:
asyncio streams, one write per request (head and body together), keep-alive connections kept per engine
(newest first) and handed back once an answer was read to its end, the answer's body read as lines (what a
server-sent-events stream is made of) with no decoding layers between the socket and the lines.  It speaks
only what OpenAI-compatible engines answer: a status line, headers, then a chunked, sized or until-close
body, no compression asked for (no ``Accept-Encoding``), no redirects, no proxies (engines are addressed
directly, by the engines file's URLs); ``https://`` URLs use the default TLS context.

Errors, as the caller tells a hop failure from a retry:

- ``UpstreamConnectError`` (an ``UpstreamNetworkError``): no connection could be made (refused, unreachable,
  no answer to the connect within ``connect_timeout_s``);
- ``UpstreamNetworkError``: the connection failed afterwards (reset, broken pipe);
- ``UpstreamProtocolError``: the server closed the connection before its answer was complete ("Server
  disconnected": what a server that drops an idle keep-alive connection causes) or sent what is not HTTP.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
from typing import AsyncIterator
from urllib.parse import urlsplit

__all__ = ["UpstreamError", "UpstreamNetworkError", "UpstreamConnectError", "UpstreamProtocolError",
           "UpstreamPool", "UpstreamResponse"]

MAX_HEAD = 64 * 1024            # the status line and headers of an answer
MAX_LINE = 16 * 1024 * 1024     # one line of an answer's body (a server-sent event's data line)
KEEPALIVE_S = 5.0               # an idle connection older than this is closed, not reused (as httpx does)
USER_AGENT = b"chainplan-gateway"


class UpstreamError(Exception):
    """The upstream call failed (see the subclasses)."""


class UpstreamNetworkError(UpstreamError):
    """The connection failed (reset, broken pipe) after it was made."""


class UpstreamConnectError(UpstreamNetworkError):
    """No connection could be made to the engine."""


class UpstreamProtocolError(UpstreamError):
    """The server closed the connection before its answer was complete, or sent what is not HTTP/1.x."""


class _Conn:
    __slots__ = ("reader", "writer", "idle_since", "reused")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.idle_since = 0.0
        self.reused = False

    def usable(self, now: float) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing() and now - self.idle_since < KEEPALIVE_S

    def close(self) -> None:
        self.writer.close()


class UpstreamResponse:
    """An answer being read: ``status``, ``headers`` (lower-cased names), then ``lines()`` or ``read()``."""

    def __init__(self, pool: "UpstreamPool", key: tuple, conn: _Conn, status: int, headers: dict[str, str],
                 keep_alive: bool):
        self._pool, self._key, self._conn = pool, key, conn
        self.status, self.headers = status, headers
        self._keep_alive = keep_alive
        self._done = False            # the body was read to its end
        self._closed = False
        te = headers.get("transfer-encoding", "").lower()
        if "chunked" in te:
            self._mode, self._left = "chunked", 0
        elif headers.get("content-length", "").strip().isdigit():
            self._mode, self._left = "sized", int(headers["content-length"].strip())
        else:
            self._mode, self._left, self._keep_alive = "close", 0, False
        if status in (204, 304) or 100 <= status < 200:
            self._mode, self._left = "sized", 0

    async def _pieces(self) -> AsyncIterator[bytes]:
        """The body's bytes as they come (chunked framing removed)."""
        r = self._conn.reader
        try:
            if self._mode == "sized":
                while self._left > 0:
                    got = await r.read(min(self._left, 65536))
                    if not got:
                        raise UpstreamProtocolError("peer closed connection without sending complete message body "
                                                    f"({self._left} bytes missing)")
                    self._left -= len(got)
                    yield got
            elif self._mode == "chunked":
                while True:
                    size_line = await r.readuntil(b"\r\n")
                    try:
                        size = int(size_line.split(b";", 1)[0].strip(), 16)
                    except ValueError:
                        raise UpstreamProtocolError(f"malformed chunk size line {size_line[:40]!r}") from None
                    if size == 0:
                        while (await r.readuntil(b"\r\n")) != b"\r\n":     # trailers, if any
                            pass
                        break
                    data = await r.readexactly(size + 2)
                    if data[-2:] != b"\r\n":
                        raise UpstreamProtocolError("malformed chunk: no CRLF after its data")
                    yield data[:-2]
            else:
                while True:
                    got = await r.read(65536)
                    if not got:
                        break
                    yield got
        except asyncio.IncompleteReadError:
            raise UpstreamProtocolError("peer closed connection without sending complete message body "
                                        "(incomplete chunked read)") from None
        except asyncio.LimitOverrunError:
            raise UpstreamProtocolError("malformed chunked body (a line past the limit)") from None
        except (ConnectionError, OSError) as exc:
            raise UpstreamNetworkError(f"{type(exc).__name__}: {exc}") from None
        self._done = True

    async def lines(self) -> AsyncIterator[str]:
        """The body's lines (ended by LF, CRLF or CR, as server-sent events' are), decoded as UTF-8; the last
        one even when no line end follows it."""
        rest = b""
        async for piece in self._pieces():
            buf = rest + piece if rest else piece
            held = buf.endswith(b"\r")        # maybe the first half of a CRLF split between two pieces
            if held:
                buf = buf[:-1]
            if b"\r" in buf:
                buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            *whole, rest = buf.split(b"\n")
            for line in whole:
                yield line.decode("utf-8", errors="replace")
            if held:
                rest += b"\r"
            if len(rest) > MAX_LINE:
                raise UpstreamProtocolError(f"a line of the answer is over {MAX_LINE} bytes")
        if rest.endswith(b"\r"):
            rest = rest[:-1]
            yield rest.decode("utf-8", errors="replace")
        elif rest:
            yield rest.decode("utf-8", errors="replace")

    async def read(self, limit: int = 1 << 20) -> bytes:
        """The whole body (at most ``limit`` bytes are kept)."""
        out = bytearray()
        async for piece in self._pieces():
            if len(out) < limit:
                out += piece[:limit - len(out)]
        return bytes(out)

    def close(self) -> None:
        """Back to the pool when the answer was read to its end and the server keeps the connection; else closed."""
        if self._closed:
            return
        self._closed = True
        if self._done and self._keep_alive:
            self._pool._release(self._key, self._conn)
        else:
            self._conn.close()


class UpstreamPool:
    """Keep-alive connections per (scheme, host, port), used one request at a time each."""

    def __init__(self, *, connect_timeout_s: float = 10.0):
        self.connect_timeout_s = connect_timeout_s
        self._idle: dict[tuple, list[_Conn]] = {}
        self._ssl: ssl_module.SSLContext | None = None
        self._closed = False

    def _release(self, key: tuple, conn: _Conn) -> None:
        if self._closed:
            conn.close()
            return
        conn.idle_since = asyncio.get_running_loop().time()
        conn.reused = True
        self._idle.setdefault(key, []).append(conn)

    async def _connect(self, scheme: str, host: str, port: int) -> _Conn:
        ssl = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl_module.create_default_context()
            ssl = self._ssl
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                reader, writer = await asyncio.open_connection(host, port, ssl=ssl, limit=MAX_LINE)
        except TimeoutError:
            raise UpstreamConnectError(f"no connection to {host}:{port} within {self.connect_timeout_s:g} s") from None
        except OSError as exc:
            raise UpstreamConnectError(f"{type(exc).__name__}: {exc}") from None
        return _Conn(reader, writer)

    def _take(self, key: tuple) -> _Conn | None:
        idle = self._idle.get(key)
        now = asyncio.get_running_loop().time()
        while idle:
            conn = idle.pop()
            if conn.usable(now):
                return conn
            conn.close()
        return None

    async def post(self, url: str, body: bytes, *, fresh: bool = False,
                   content_type: bytes = b"application/json") -> UpstreamResponse:
        """POST ``body`` to ``url`` and read the answer's head; the caller reads the body and closes it.
        ``fresh``: a new connection even when the pool has an idle one."""
        parts = urlsplit(url)
        scheme = parts.scheme
        if scheme not in ("http", "https") or not parts.hostname:
            raise UpstreamConnectError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if scheme == "https" else 80)
        key = (scheme, parts.hostname, port)
        conn = None if fresh else self._take(key)
        if conn is None:
            conn = await self._connect(scheme, parts.hostname, port)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = parts.netloc.rsplit("@", 1)[-1]
        head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: ".encode("latin-1") + USER_AGENT
                + b"\r\nAccept: */*\r\nConnection: keep-alive\r\nContent-Type: " + content_type
                + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        try:
            try:
                conn.writer.write(head + body)
                await conn.writer.drain()
                status, headers, keep_alive = await self._head(conn.reader)
            except (ConnectionError, OSError) as exc:
                raise UpstreamNetworkError(f"{type(exc).__name__}: {exc}") from None
        except BaseException:
            conn.close()
            raise
        return UpstreamResponse(self, key, conn, status, headers, keep_alive)

    @staticmethod
    async def _head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bool]:
        while True:
            try:
                raw = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                if not exc.partial:
                    raise UpstreamProtocolError("Server disconnected without sending a response.") from None
                raise UpstreamProtocolError("peer closed connection in the middle of the answer's head") from None
            except asyncio.LimitOverrunError:
                raise UpstreamProtocolError(f"the answer's head is over {MAX_LINE} bytes") from None
            if len(raw) > MAX_HEAD:
                raise UpstreamProtocolError(f"the answer's head is over {MAX_HEAD} bytes")
            lines = raw[:-4].decode("latin-1").split("\r\n")
            status_line = lines[0].split(" ", 2)
            if len(status_line) < 2 or not status_line[0].startswith("HTTP/1.") or not status_line[1].isdigit():
                raise UpstreamProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
            status = int(status_line[1])
            headers: dict[str, str] = {}
            for ln in lines[1:]:
                name, sep, value = ln.partition(":")
                if not sep:
                    raise UpstreamProtocolError(f"malformed header line {ln[:80]!r}")
                name = name.strip().lower()
                value = value.strip()
                headers[name] = f"{headers[name]}, {value}" if name in headers else value
            if 100 <= status < 200 and status != 101:
                continue                    # an interim answer (100 Continue): the real one follows
            keep_alive = (status_line[0] == "HTTP/1.1"
                          and "close" not in headers.get("connection", "").lower())
            return status, headers, keep_alive

    async def aclose(self) -> None:
        self._closed = True
        for conns in self._idle.values():
            for c in conns:
                c.close()
        self._idle.clear()
