"""The ``openai`` engine's upstream calls: one POST, its answer read as a stream, on aiohttp.

A thin adapter over ``aiohttp.ClientSession`` (C HTTP parser, keep-alive connection pool): one session per
pool, a ``TCPConnector`` with no limit on connections (the dispatcher's slots bound them), idle connections
kept ``KEEPALIVE_S`` and handed back once an answer was read to its end, no proxies from the environment
(engines are addressed directly, by the engines file's URLs), no compression asked for and none undone, no
redirects.  The answer's body is read as lines (what a server-sent-events stream is made of).

Errors, as the caller tells a hop failure from a retry:

- ``UpstreamConnectError`` (an ``UpstreamNetworkError``): no connection could be made (refused, unreachable,
  no answer to the connect within ``connect_timeout_s``);
- ``UpstreamNetworkError``: the connection failed afterwards (reset, broken pipe);
- ``UpstreamProtocolError``: the server closed the connection before its answer was complete ("Server
  disconnected": what a server that drops an idle keep-alive connection causes) or sent what is not HTTP.
"""

from __future__ import annotations

from typing import AsyncIterator

import aiohttp

__all__ = ["UpstreamError", "UpstreamNetworkError", "UpstreamConnectError", "UpstreamProtocolError",
           "UpstreamPool", "UpstreamResponse"]

MAX_LINE = 16 * 1024 * 1024     # one line of an answer's body (a server-sent event's data line)
KEEPALIVE_S = 5.0               # an idle connection older than this is closed, not reused
USER_AGENT = "chainplan-gateway"


class UpstreamError(Exception):
    """The upstream call failed (see the subclasses)."""


class UpstreamNetworkError(UpstreamError):
    """The connection failed (reset, broken pipe) after it was made."""


class UpstreamConnectError(UpstreamNetworkError):
    """No connection could be made to the engine."""


class UpstreamProtocolError(UpstreamError):
    """The server closed the connection before its answer was complete, or sent what is not HTTP/1.x."""


def _mapped(exc: BaseException) -> UpstreamError:
    name = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError, aiohttp.InvalidURL)):
        return UpstreamConnectError(name)
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError,
                        aiohttp.http_exceptions.HttpProcessingError)):
        return UpstreamProtocolError(name)
    return UpstreamNetworkError(name)


_ERRORS = (aiohttp.ClientError, aiohttp.http_exceptions.HttpProcessingError, OSError)


class UpstreamResponse:
    """An answer being read: ``status``, ``headers`` (lower-cased names), then ``lines()`` or ``read()``."""

    def __init__(self, resp: aiohttp.ClientResponse):
        self._resp = resp
        self.status = resp.status
        self.headers = {k.lower(): v for k, v in resp.headers.items()}
        self._done = False            # the body was read to its end

    async def lines(self) -> AsyncIterator[str]:
        """The body's lines (ended by LF, CRLF or CR, as server-sent events' are), decoded as UTF-8; the last
        one even when no line end follows it."""
        content = self._resp.content
        try:
            while True:
                raw = await content.readline(max_line_length=MAX_LINE)
                if not raw:
                    break
                if raw.endswith(b"\n"):
                    raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
                elif raw.endswith(b"\r"):       # the body's last line, ended by a CR
                    raw = raw[:-1]
                if b"\r" in raw:                # CR-only line ends (rare; split once a LF or the end comes)
                    for part in raw.split(b"\r"):
                        yield part.decode("utf-8", errors="replace")
                else:
                    yield raw.decode("utf-8", errors="replace")
        except _ERRORS as exc:
            raise _mapped(exc) from None
        self._done = True

    async def read(self, limit: int = 1 << 20) -> bytes:
        """The whole body (at most ``limit`` bytes are kept)."""
        out = bytearray()
        try:
            async for piece in self._resp.content.iter_any():
                if len(out) < limit:
                    out += piece[:limit - len(out)]
        except _ERRORS as exc:
            raise _mapped(exc) from None
        self._done = True
        return bytes(out)

    def close(self) -> None:
        """Back to the pool when the answer was read to its end and the server keeps the connection; else closed."""
        if self._done:
            self._resp.release()
        else:
            self._resp.close()


class UpstreamPool:
    """Keep-alive connections per (scheme, host, port) of one ``aiohttp.ClientSession``."""

    def __init__(self, *, connect_timeout_s: float = 10.0):
        self.connect_timeout_s = connect_timeout_s
        self._session: aiohttp.ClientSession | None = None
        self._fresh: aiohttp.ClientSession | None = None       # a new connection per request (the retry's)

    def _new_session(self, connector: aiohttp.TCPConnector) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout_s),
            trust_env=False, auto_decompress=False, skip_auto_headers=("Accept-Encoding",),
            headers={"User-Agent": USER_AGENT}, read_bufsize=1 << 16)

    def _get_session(self, fresh: bool = False) -> aiohttp.ClientSession:
        # made on first use, in the loop that serves
        if fresh:
            if self._fresh is None:
                self._fresh = self._new_session(aiohttp.TCPConnector(limit=0, force_close=True))
            return self._fresh
        if self._session is None:
            self._session = self._new_session(aiohttp.TCPConnector(limit=0, limit_per_host=0,
                                                                   keepalive_timeout=KEEPALIVE_S))
        return self._session

    async def post(self, url: str, body: bytes, *, fresh: bool = False,
                   content_type: str = "application/json") -> UpstreamResponse:
        """POST ``body`` to ``url`` and read the answer's head; the caller reads the body and closes it.
        ``fresh``: on a new connection of its own, closed after the answer (the retry after an idle connection
        was dropped: another idle one may be as stale)."""
        if not url.startswith(("http://", "https://")):
            raise UpstreamConnectError(f"not an http(s) URL: {url!r}")
        try:
            resp = await self._get_session(fresh).post(url, data=body, headers={"Content-Type": content_type},
                                                  allow_redirects=False)
        except _ERRORS as exc:
            raise _mapped(exc) from None
        return UpstreamResponse(resp)

    async def aclose(self) -> None:
        for session in (self._session, self._fresh):
            if session is not None:
                await session.close()
        self._session = self._fresh = None
