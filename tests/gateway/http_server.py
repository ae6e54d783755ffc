"""A tiny real HTTP/1.1 server for the gateway's upstream tests: asyncio, in a thread of the test's process.

Each test gives it a handler ``(connection number, request number on that connection, method, path, body)
-> list of byte strings to send (in separate writes; a None in it closes the connection there) or None to
close the connection without answering``;
the server records every connection and request it saw.  Nothing of the gateway is replaced: the gateway
(its client, or its whole process) talks to this server over real sockets.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Callable

from tests.dispatch.conftest import free_port

Handler = Callable[[int, int, str, str, bytes], "list[bytes] | None"]


def sse_answer(pieces: list[str], *, chat: bool = False, sep: bytes = b"\n\n", usage: bool = True,
               chunked: bool = True, keep_alive: bool = True) -> list[bytes]:
    """An OpenAI-style streamed answer: one event per piece of text, the finish chunk, usage, [DONE]."""
    head = {"id": "x", "object": "chat.completion.chunk" if chat else "text_completion", "created": 0, "model": "m"}
    events = []
    for p in pieces:
        choice = {"index": 0, "finish_reason": None, ("delta" if chat else "text"): {"content": p} if chat else p}
        events.append({**head, "choices": [choice]})
    events.append({**head, "choices": [{"index": 0, "finish_reason": "length", ("delta" if chat else "text"):
                                        {} if chat else ""}]})
    if usage:
        events.append({**head, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": len(pieces),
                                                         "total_tokens": 3 + len(pieces)}})
    datas = [b"data: " + json.dumps(e).encode() + sep for e in events] + [b"data: [DONE]" + sep]
    conn = b"" if keep_alive else b"connection: close\r\n"
    if not chunked:
        body = b"".join(datas)
        return [b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n" + conn
                + b"content-length: %d\r\n\r\n" % len(body) + body]
    out = [b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n" + conn + b"\r\n"]
    out += [b"%x\r\n%s\r\n" % (len(d), d) for d in datas]
    out.append(b"0\r\n\r\n")
    return out


class Server:
    def __init__(self, handler: Handler):
        self.handler = handler
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.connections = 0
        self.requests: list[tuple[int, int, str, str, bytes]] = []   # (connection, number on it, method, path, body)
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Server":
        self._thread.start()
        assert self._started.wait(10), "the test server did not start"
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self._started.set()
        async with server:
            await self._stop.wait()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn, n = self.connections, 0
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                length = next((int(v) for k, _, v in (ln.partition(":") for ln in lines[1:])
                               if k.strip().lower() == "content-length"), 0)
                body = await reader.readexactly(length) if length else b""
                n += 1
                self.requests.append((conn, n, method, path, body))
                if method == "GET":
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    await writer.drain()
                    continue
                answer = self.handler(conn, n, method, path, body)
                if answer is None:
                    return                      # close without answering
                for part in answer:
                    if part is None:
                        return
                    writer.write(part)
                    await writer.drain()
                    await asyncio.sleep(0)
        finally:
            writer.close()

    def wait_requests(self, n: int, within_s: float = 5.0) -> None:
        t0 = time.monotonic()
        while len(self.requests) < n:
            assert time.monotonic() - t0 < within_s, self.requests
            time.sleep(0.01)
