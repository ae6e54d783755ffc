"""The gateway with the official `openai` SDK (sync, async, streaming and not) and raw HTTP for bad input.

Every test ends with no dispatcher slot held: a leaked lease is a failure.
"""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest

from serving.dispatch import RedisDispatchClient
from tests.dispatch.conftest import REDIS_URL

from .conftest import CLUSTER, KEY, OTHER_KEY

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def client(gateway):
    with openai.OpenAI(base_url=gateway.base_url, api_key=KEY, max_retries=0) as c:
        yield c
    gateway.wait_idle()


def _post(gateway, path: str, body=None, *, key: str | None = KEY, content: bytes | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    if content is not None:
        headers["content-type"] = "application/json"
        return httpx.post(gateway.base_url + path, content=content, headers=headers, timeout=30)
    return httpx.post(gateway.base_url + path, json=body, headers=headers, timeout=30)


def _error(resp: httpx.Response, status: int, param: str | None = None, code: str | None = None) -> dict:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if param is not None:
        assert err["param"] == param, err
    if code is not None:
        assert err["code"] == code, err
    return err


def test_models_lists_the_keys_cluster(client):
    assert [m.id for m in client.models.list()] == ["tiny"]
    assert client.models.retrieve("tiny").id == "tiny"


def test_sync_chat_and_completion(client, gateway):
    chat = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hello there"}],
                                          max_completion_tokens=6, temperature=0)
    assert chat.object == "chat.completion" and chat.choices[0].message.role == "assistant"
    assert isinstance(chat.choices[0].message.content, str)
    assert chat.choices[0].finish_reason in ("stop", "length")
    u = chat.usage
    assert u.prompt_tokens > 0 and 1 <= u.completion_tokens <= 6 and u.total_tokens == u.prompt_tokens + u.completion_tokens
    done = client.completions.create(model="tiny", prompt="The quick brown fox", max_tokens=5, temperature=0, seed=3)
    assert done.object == "text_completion" and done.choices[0].finish_reason == "length"
    assert done.usage.completion_tokens == 5
    granted = gateway.store.state(CLUSTER)["observations"]
    assert granted["releases"] + granted["expiries"] == granted["grants"] and granted["expiries"] == 0


def test_sync_streams_with_usage(client):
    chunks = list(client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}],
                                                 max_tokens=5, temperature=0, stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert not chunks[-1].choices and chunks[-1].usage.completion_tokens == 5
    assert isinstance(text, str)
    pieces = list(client.completions.create(model="tiny", prompt="Pipeline", max_tokens=4, stream=True))
    assert pieces[-1].choices[0].finish_reason == "length" and all(p.usage is None for p in pieces)


def test_answers_name_their_chain_and_queue_wait(client):
    """x-chainplan-chain / -route / -queue-wait-s on whole and streamed answers (read by the PETALS testbed)."""
    from .conftest import CHAINS
    raw = client.completions.with_raw_response.create(model="tiny", prompt="Hello", max_tokens=2)
    assert raw.parse().usage.completion_tokens == 2
    # one request with every slot free: the fastest chain, at once
    assert raw.headers["x-chainplan-chain"] == "0" and float(raw.headers["x-chainplan-queue-wait-s"]) == 0.0
    assert raw.headers["x-chainplan-route"] == "s1:0-2|s2:2-4"         # CHAINS[0]: s1 and s2, two blocks each
    raw = client.completions.with_raw_response.create(model="tiny", prompt="Hello", max_tokens=2, stream=True)
    chain = int(raw.headers["x-chainplan-chain"])
    assert 0 <= chain < len(CHAINS)
    assert raw.headers["x-chainplan-route"] == ("s1:0-2|s2:2-4", "s3:0-4")[chain]
    assert float(raw.headers["x-chainplan-queue-wait-s"]) >= 0.0
    assert [c.choices[0].finish_reason for c in raw.parse()][-1] == "length"


def test_async_sdk_streaming_and_not(gateway):
    async def body():
        async with openai.AsyncOpenAI(base_url=gateway.base_url, api_key=KEY, max_retries=0) as c:
            # more requests than the plan's 3 slots: the dispatcher queues them (wait 0.5 s each at most
            # would 429, so only 3 at a time here)
            got = await asyncio.gather(*(c.completions.create(model="tiny", prompt=f"chain {i}", max_tokens=3)
                                         for i in range(3)))
            assert all(g.usage.completion_tokens == 3 for g in got)
            stream = await c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}],
                                                     max_tokens=4, stream=True)
            finishes = [ch.choices[0].finish_reason async for ch in stream if ch.choices]
            assert finishes[-1] == "length"
    asyncio.run(body())
    gateway.wait_idle()


def test_a_disconnect_mid_stream_releases_the_lease_within_a_second(gateway):
    body = {"model": "tiny", "prompt": "The", "max_tokens": 480, "stream": True}
    with httpx.stream("POST", gateway.base_url + "/completions", json=body, timeout=30,
                      headers={"authorization": f"Bearer {KEY}"}) as resp:
        lines = resp.iter_lines()
        assert next(line for line in lines if line.startswith("data:"))
        assert gateway.in_progress() == 1          # mid-stream: the lease is held
    assert gateway.wait_idle(within_s=1.0) <= 1.0


# -- bad input: each a clear OpenAI-style error, no slot taken ------------------------------------

@pytest.mark.parametrize("body,param,code", [
    ({"model": "tiny", "messages": [{"role": "user", "content": "x"}], "logprobs": True}, "logprobs", "unsupported_parameter"),
    ({"model": "tiny", "messages": [{"role": "user", "content": "x"}], "n": 2}, "n", "unsupported_value"),
    ({"model": "tiny", "messages": [{"role": "user", "content": "x"}], "max_tokens": 10**9}, "max_tokens", None),
    ({"model": "tiny", "messages": [{"role": "user", "content": "x"}], "temperature": 7}, "temperature", None),
    ({"model": "tiny", "messages": [{"role": "tool", "content": "x"}]}, "messages[0].role", "unsupported_value"),
    ({"model": "tiny", "messages": []}, "messages", None),
    ({"model": "tiny", "messages": [{"role": "user", "content": "x"}], "stream_options": {"include_usage": True}},
     "stream_options", None),
    ({"messages": [{"role": "user", "content": "x"}]}, "model", "missing_required_parameter"),
])
def test_bad_chat_parameters_are_refused_by_name(gateway, body, param, code):
    _error(_post(gateway, "/chat/completions", body), 400, param, code)
    assert gateway.in_progress() == 0


def test_malformed_json_huge_prompts_and_unknown_routes(gateway):
    _error(_post(gateway, "/chat/completions", content=b'{"model": "tiny", '), 400, code="invalid_json")
    _error(_post(gateway, "/completions", content=b"[1, 2]"), 400, code="invalid_json")
    _error(_post(gateway, "/completions", {"model": "tiny", "prompt": "x" * 30000}), 413, "prompt")
    _error(_post(gateway, "/completions", content=b'{"prompt": "' + b"y" * 300000 + b'"}'), 413,
           code="request_too_large")
    _error(_post(gateway, "/completions", {"model": "tiny", "prompt": [1, 2, 3]}), 400, "prompt")
    _error(_post(gateway, "/embeddings", {"model": "tiny", "input": "x"}), 404)
    assert gateway.in_progress() == 0


def test_health_answers_without_a_key(gateway):
    """What an orchestrator polls (the compose healthcheck): no key needed, nothing about any cluster."""
    r = httpx.get(gateway.base_url + "/health", timeout=5)
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_sdk_errors_for_key_model_and_no_plan(gateway):
    msgs = [{"role": "user", "content": "x"}]
    with openai.OpenAI(base_url=gateway.base_url, api_key="sk-wrong", max_retries=0) as c:
        with pytest.raises(openai.AuthenticationError) as e:
            c.chat.completions.create(model="tiny", messages=msgs)
        assert e.value.code == "invalid_api_key"
    _error(_post(gateway, "/completions", {"model": "tiny", "prompt": "x"}, key=None), 401, code="missing_api_key")
    with openai.OpenAI(base_url=gateway.base_url, api_key=KEY, max_retries=0) as c:
        with pytest.raises(openai.NotFoundError) as e:
            c.chat.completions.create(model="gpt-4o", messages=msgs)
        assert e.value.code == "model_not_found" and e.value.body["param"] == "model"
    with openai.OpenAI(base_url=gateway.base_url, api_key=OTHER_KEY, max_retries=0) as c:
        with pytest.raises(openai.InternalServerError) as e:     # 503: the cluster has no adopted plan
            c.chat.completions.create(model="tiny", messages=msgs)
        assert e.value.status_code == 503 and e.value.code == "no_adopted_plan"
    assert gateway.in_progress() == 0


def test_every_slot_busy_past_the_deadline_is_429_with_retry_after(gateway):
    held = RedisDispatchClient(REDIS_URL, CLUSTER, prefix=gateway.store.prefix)
    leases = [held.acquire_lease(wait_s=0) for _ in range(3)]        # the plan's 3 slots
    try:
        resp = _post(gateway, "/completions", {"model": "tiny", "prompt": "x", "max_tokens": 2})
        _error(resp, 429, code="no_free_chain")
        assert int(resp.headers["retry-after"]) >= 1
    finally:
        for lease in leases:
            held.release(lease)
        held.close()
    gateway.wait_idle()
