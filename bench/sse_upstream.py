"""A benchmark harness upstream (not a test double: the suite never uses it): a bare OpenAI-style SSE server.

    python bench/sse_upstream.py --port 9100 [--ttft-ms 0] [--itl-ms 0]

It answers ``POST /v1/completions`` and ``POST /v1/chat/completions`` with a stream of ``max_tokens`` chunks
(" tok" each), the finish chunk, the usage chunk and ``[DONE]``, over HTTP/1.1 keep-alive with chunked
transfer encoding, after ``--ttft-ms`` and with ``--itl-ms`` between tokens (0: at once).  ``GET /health``
answers 200.  It parses nothing but the request line, the headers it needs and the JSON body, so the time it
takes is a small, constant part of each request: the same for a request sent straight to it and one the
gateway forwards, which is what lets ``bench/bench_gateway.py`` measure the time the gateway adds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

TOKEN = " tok"


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _event(obj: dict) -> bytes:
    return _chunk(b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n")


async def _answer(writer: asyncio.StreamWriter, path: str, body: dict, ttft_s: float, itl_s: float) -> None:
    chat = path.endswith("/chat/completions")
    n = int(body.get("max_tokens") or body.get("max_completion_tokens") or 16)
    head = {"id": "cmpl-upstream", "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()), "model": body.get("model", "m")}
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
                 b"transfer-encoding: chunked\r\n\r\n")
    if ttft_s:
        await writer.drain()
        await asyncio.sleep(ttft_s)
    for i in range(n):
        if i and itl_s:
            await writer.drain()
            await asyncio.sleep(itl_s)
        choice = {"index": 0, "finish_reason": None, "logprobs": None}
        if chat:
            choice["delta"] = {"role": "assistant", "content": TOKEN} if i == 0 else {"content": TOKEN}
        else:
            choice["text"] = TOKEN
        writer.write(_event({**head, "choices": [choice]}))
    end = {"index": 0, "finish_reason": "length", "logprobs": None}
    end.update({"delta": {}} if chat else {"text": ""})
    writer.write(_event({**head, "choices": [end]}))
    if (body.get("stream_options") or {}).get("include_usage"):
        writer.write(_event({**head, "choices": [], "usage": {"prompt_tokens": 8, "completion_tokens": n,
                                                               "total_tokens": 8 + n}}))
    writer.write(_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
    await writer.drain()


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ttft_s: float, itl_s: float) -> None:
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            length = 0
            for ln in lines[1:]:
                name, _, value = ln.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            raw = await reader.readexactly(length) if length else b""
            if method == "GET":
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 15\r\n\r\n"
                             b'{"status":"ok"}')
                await writer.drain()
                continue
            await _answer(writer, path, json.loads(raw or b"{}"), ttft_s, itl_s)
    finally:
        writer.close()


async def main(port: int, ttft_s: float, itl_s: float) -> None:
    server = await asyncio.start_server(lambda r, w: _serve(r, w, ttft_s, itl_s), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ttft-ms", type=float, default=0.0)
    ap.add_argument("--itl-ms", type=float, default=0.0)
    a = ap.parse_args()
    try:
        from uvloop import run     # the loop uvicorn runs the gateway on
    except ImportError:
        run = asyncio.run
    run(main(a.port, a.ttft_ms / 1000, a.itl_ms / 1000))
