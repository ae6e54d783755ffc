"""The ``openai`` engine's upstream calls against a real local HTTP server (tests/gateway/http_server.py).

What is checked: the answer read whatever its framing (chunked, sized, until close; LF or CRLF events, a
CRLF split between two writes), keep-alive connections reused, and the retry of a connection the server
dropped before answering ("Server disconnected", as llama.cpp's server sometimes does with an idle
keep-alive connection): once on a fresh connection, with no fail-over; twice is a hop failure.  The last test
provokes the drop through a real gateway process, with the official SDK as the client.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from serving.dispatch.redis_store import RedisStore
from serving.gateway.engine import GenerationRequest, HopError
from serving.gateway.engines.openai import EngineEntry, EnginesFile, OpenAIEngine
from serving.gateway.keys import key_digest
from solvers.plan_format import HopDoc
from tests.dispatch.conftest import REDIS_URL, free_port, require_redis, snapshot

from .conftest import ROOT, _wait_http, wait_idle
from .http_server import Server, sse_answer

pytestmark = pytest.mark.timeout(60)

HOPS = (HopDoc("s1", 0, 4),)
PIECES = ["Hello", ",", " wor", "ld", " é"]


def _engine(url: str) -> OpenAIEngine:
    return OpenAIEngine(EnginesFile("test", "m", (EngineEntry(("s1",), url, 4, "m"),)))


async def _run(engine: OpenAIEngine, n: int = 1, *, chat: bool = False) -> list[tuple[str, object, object, object]]:
    """``n`` requests one after the other: (text, finish_reason, prompt_tokens, completion_tokens) of each."""
    out = []
    try:
        for _ in range(n):
            req = (GenerationRequest(kind="chat", model="m", messages=(), max_tokens=5) if chat else
                   GenerationRequest(kind="completion", model="m", prompt="p", max_tokens=5))
            deltas = [d async for d in engine.stream(req, HOPS)]
            final = deltas[-1]
            out.append(("".join(d.text for d in deltas), final.finish_reason, final.prompt_tokens,
                        final.completion_tokens))
    finally:
        await engine.aclose()
    return out


def _split_everywhere(parts: list[bytes], at: bytes) -> list[bytes]:
    """The same bytes, written in pieces that cut every occurrence of ``at`` in two."""
    out = []
    for p in parts:
        while (i := p.find(at)) >= 0:
            out.append(p[:i + 1])
            p = p[i + 1:]
        out.append(p)
    return [p for p in out if p]


@pytest.mark.parametrize("framing", ["chunked-lf", "chunked-crlf-split", "sized-crlf", "until-close"])
def test_the_answer_is_read_whatever_its_framing(framing):
    def handler(conn, n, method, path, body):
        assert path == "/v1/completions" and json.loads(body)["stream"] is True
        if framing == "chunked-lf":
            return sse_answer(PIECES)
        if framing == "chunked-crlf-split":
            return _split_everywhere(sse_answer(PIECES, sep=b"\r\n\r\n"), b"\r\n")
        if framing == "sized-crlf":
            return sse_answer(PIECES, sep=b"\r\n\r\n", chunked=False)
        raw = b"".join(sse_answer(PIECES, chunked=False, keep_alive=False))
        head, _, body = raw.partition(b"\r\n\r\n")
        head = b"\r\n".join(ln for ln in head.split(b"\r\n") if not ln.lower().startswith(b"content-length"))
        return [head + b"\r\n\r\n", body[:7], body[7:]] + [None]       # then the server closes: the body's end

    with Server(handler) as srv:
        got = asyncio.run(_run(_engine(srv.url), 2))
    assert got == [("".join(PIECES), "length", 3, len(PIECES))] * 2
    # a keep-alive answer read to its end leaves its connection for the next request; until-close cannot
    assert srv.connections == (2 if framing == "until-close" else 1)


def test_chat_deltas_and_an_error_answer():
    seen = []

    def handler(conn, n, method, path, body):
        seen.append(path)
        if len(seen) == 1:
            return sse_answer(PIECES, chat=True)
        err = b'{"error": {"message": "no such model"}}'
        return [b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                % (len(err), err)]

    with Server(handler) as srv:
        engine = _engine(srv.url)
        assert asyncio.run(_run(engine, chat=True)) == [("".join(PIECES), "length", 3, len(PIECES))]
        with pytest.raises(Exception, match="answered 404: .*no such model") as e:
            asyncio.run(_run(engine, chat=True))
        assert not isinstance(e.value, HopError)        # the engine's verdict on the request, not a hop failure
    assert [r[3] for r in srv.requests] == ["/v1/chat/completions"] * 2


def test_a_dropped_idle_connection_is_retried_once_on_a_fresh_one():
    """The server answers the first request of each connection and closes the connection on the second
    without answering: the second request of the engine goes out on the kept connection, is dropped, and
    is sent again on a new connection, which answers."""
    with Server(lambda conn, n, *_: sse_answer(PIECES) if n == 1 else None) as srv:
        got = asyncio.run(_run(_engine(srv.url), 2))
    assert got == [("".join(PIECES), "length", 3, len(PIECES))] * 2
    assert [(c, n) for c, n, *_ in srv.requests] == [(1, 1), (1, 2), (2, 1)]
    assert srv.requests[1][4] == srv.requests[2][4]          # the same request, sent again


def test_a_connection_dropped_twice_is_a_hop_failure():
    with Server(lambda conn, n, *_: sse_answer(PIECES) if (conn, n) == (1, 1) else None) as srv:
        with pytest.raises(HopError, match="dropped the connection twice") as e:
            asyncio.run(_run(_engine(srv.url), 2))
        assert e.value.server == "s1"
    assert [(c, n) for c, n, *_ in srv.requests] == [(1, 1), (1, 2), (2, 1)]


def test_a_refused_connection_is_a_hop_failure_at_once():
    url = f"http://127.0.0.1:{free_port()}/v1"          # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(HopError, match="failed: UpstreamConnectError"):
        asyncio.run(_run(_engine(url)))
    assert time.monotonic() - t0 < 2


def test_an_answer_cut_mid_stream_is_a_hop_failure():
    def handler(conn, n, method, path, body):
        parts = sse_answer(PIECES)
        return parts[:3] + [None]           # the head and two events, then the server closes the connection

    with Server(handler) as srv:
        with pytest.raises(HopError, match="dropped the stream: UpstreamProtocolError"):
            asyncio.run(_run(_engine(srv.url)))


# -- through a real gateway process ------------------------------------------------------------------------------

def test_the_gateway_retries_a_dropped_idle_connection_with_no_failover(tmp_path):
    """The gateway process keeps its upstream connection between requests; the server drops it when the next
    request comes.  The client sees two whole answers, no chain is reported failed and no slot stays held."""
    require_redis()
    key = "sk-upstream-" + uuid.uuid4().hex
    prefix = f"test-upstream-{uuid.uuid4().hex[:10]}"
    store = RedisStore(REDIS_URL, prefix=prefix)
    store.set_plan(1, snapshot([(["s1"], [4], 1.0, 2)]))
    store.put_token(key_digest(key), 1)
    gateway = None
    with Server(lambda conn, n, method, path, body: sse_answer(PIECES, chat=path.endswith("/chat/completions"))
                if n == 1 else None) as srv:
        try:
            (tmp_path / "engines.json").write_text(json.dumps({
                "format": "chainplan-engines/1", "runtime": "test", "model": "m",
                "engines": [{"servers": ["s1"], "url": srv.url, "capacity": 2}]}))
            port = free_port()
            gateway = subprocess.Popen(
                [sys.executable, "-m", "serving.gateway", "--prefix", prefix, "serve", "--model", "m", "--cluster",
                 "1", "--engines-file", str(tmp_path / "engines.json"), "--dispatch", REDIS_URL, "--port", str(port)],
                cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=open(tmp_path / "gateway.log", "w"),
                stderr=subprocess.STDOUT)
            base = f"http://127.0.0.1:{port}/v1"
            _wait_http(base + "/health", gateway, "the gateway", 30)
            with openai.OpenAI(base_url=base, api_key=key, max_retries=0, timeout=30) as client:
                texts = []
                for _ in range(2):
                    stream = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}],
                                                            stream=True, stream_options={"include_usage": True})
                    chunks = list(stream)
                    texts.append("".join(c.choices[0].delta.content or "" for c in chunks if c.choices))
                    assert chunks[-1].usage.completion_tokens == len(PIECES)
                whole = client.completions.create(model="m", prompt="x", max_tokens=5)
            assert texts == ["".join(PIECES)] * 2 and whole.choices[0].text == "".join(PIECES)
            # the second went out on the kept connection, was dropped, and was sent again on a new connection
            # of its own (closed after its answer); the third found no idle connection and opened one
            assert [(c, n) for c, n, *_ in srv.requests] == [(1, 1), (1, 2), (2, 1), (3, 1)]
            samples = [s for fam in text_string_to_metric_families(httpx.get(base + "/metrics", timeout=5).text)
                       for s in fam.samples]
            ok = {s.labels["endpoint"]: s.value for s in samples if s.name == "chainplan_gateway_requests_total"
                  and s.labels["outcome"] == "ok" and s.labels["servers"] == "s1"}
            assert ok == {"chat": 2.0, "completions": 1.0}
            assert not [s for s in samples if s.name == "chainplan_gateway_failovers_total"]
            assert not [s for s in samples if s.name == "chainplan_gateway_errors_total"]
            wait_idle(store, 1, 1.0)
        finally:
            if gateway is not None:
                gateway.terminate()
                gateway.wait(10)
            store.clear()
