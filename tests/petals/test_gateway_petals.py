"""The whole path on a real PETALS swarm: the official ``openai`` SDK (sync and async, streamed and not)
against a gateway process whose ``petals`` engine runs every request on the chain the dispatcher granted.

Two PETALS servers on loopback (the tiny model with its SentencePiece tokenizer, blocks 0-1 and 2-3), one
plan chain over both (capacity 2) in a Redis dispatcher store, a gateway key in the same store, and
``python -m serving.gateway serve --swarm-file``.  Text comes back through the model directory's tokenizer
(greedy text equals PETALS' own ``generate`` over the same spans), ``usage`` counts what the tokenizer counts
for the templated prompt, a request too long for the servers is a 400 naming the parameter, and a client
that goes away mid-stream gives its slot back and has its PETALS session closed within a second.

Needs .venv-petals (bash scripts/install_petals.sh) and Redis: under CI=true their absence fails.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
import uuid

import pytest

from serving.dispatch.redis_store import RedisStore
from serving.gateway.keys import key_digest
from tests.dispatch.conftest import REDIS_URL, require_redis, snapshot
from tests.gateway.conftest import gateway_process, wait_idle
from tests.petals.conftest import PETALS_PY, petals_env, petals_generate

openai = pytest.importorskip("openai")

MODEL, CLUSTER = "tiny-sp", 1
KEY = "sk-petals-gw-" + uuid.uuid4().hex
MAX_LENGTH = 256                 # the servers' longest sequence (their KV budget per session)
PROMPT = "The quick brown fox"
MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hello there, chain!"}]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _count_tokens(model_dir, prompt: str, messages: list[dict]) -> dict:
    """What the model directory's tokenizer (PETALS' environment: SentencePiece) counts, independently of the
    engine: the completion prompt, and the chat messages under the chat template with the generation prompt."""
    code = ("import json, sys\nfrom transformers import AutoTokenizer\n"
            "tok = AutoTokenizer.from_pretrained(sys.argv[1], use_fast=False)\n"
            "print(json.dumps({'prompt': len(tok(sys.argv[2])['input_ids']), 'chat': len(tok.apply_chat_template("
            "json.loads(sys.argv[3]), add_generation_prompt=True, tokenize=True))}))")
    out = subprocess.run([str(PETALS_PY), "-c", code, str(model_dir), prompt, json.dumps(messages)], env=petals_env(),
                         capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


class Setup:
    def __init__(self, base_url: str, store: RedisStore, swarm, counts: dict, log_path):
        self.base_url, self.store, self.swarm, self.counts, self.log_path = base_url, store, swarm, counts, log_path

    def in_progress(self) -> int:
        return sum(c["in_progress"] for c in self.store.state(CLUSTER)["chains"])

    def wait_idle(self) -> None:
        """The slot given back and every PETALS session closed, within a second of the answer's end."""
        wait_idle(self.store, CLUSTER, 1.0)
        t0 = time.monotonic()
        while any(c < o for o, c in self.sessions().values()):
            assert time.monotonic() - t0 < 1.0, f"a server still holds a session 1 s after the answer: {self.sessions()}"
            time.sleep(0.02)

    def sessions(self) -> dict[str, tuple[int, int]]:
        """(opened, closed) inference sessions per server, from the servers' own logs."""
        out = {}
        for s in self.swarm.servers:
            log = s.log_text()
            out[s.spec.id] = (len(re.findall(r"rpc_inference\.open\(", log)), len(re.findall(r"rpc_inference\.close\(", log)))
        return out

    def client(self, **kw):
        return openai.OpenAI(base_url=self.base_url, api_key=KEY, max_retries=0, timeout=120, **kw)

    def async_client(self):
        return openai.AsyncOpenAI(base_url=self.base_url, api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, petals_python):
    from serving.petals.swarm import ServerSpec, Swarm
    require_redis()
    work = tmp_path_factory.mktemp("gateway-petals")
    model_dir = work / MODEL
    subprocess.run([str(PETALS_PY), "-m", "serving.petals.tiny_model", str(model_dir), "--layers", "4",
                    "--tokenizer", "sentencepiece"], check=True, env=petals_env(), capture_output=True, timeout=120)
    counts = _count_tokens(model_dir, PROMPT, MESSAGES)
    prefix = f"test-gateway-petals-{uuid.uuid4().hex[:10]}"
    store = RedisStore(REDIS_URL, prefix=prefix)
    specs = [ServerSpec("a", 0, 2, cache_tokens=MAX_LENGTH), ServerSpec("b", 2, 4, cache_tokens=MAX_LENGTH)]
    try:
        with Swarm(specs, str(model_dir), python=str(PETALS_PY), workdir=work / "swarm",
                   dht_prefix=f"chainplan-gw-test-{uuid.uuid4().hex[:6]}") as swarm:
            swarm.info(MODEL).save(work / "swarm.json")
            store.set_plan(CLUSTER, snapshot([(["a", "b"], [2, 2], 1.0, 2)]))
            store.put_token(key_digest(KEY), CLUSTER)
            log_path = work / "gateway.log"
            argv = ["--prefix", prefix, "serve", "--model", MODEL, "--cluster", str(CLUSTER), "--swarm-file",
                    str(work / "swarm.json"), "--dispatch", REDIS_URL, "--queue-wait-s", "5", "--max-tokens", "400"]
            with gateway_process(argv, log_path) as base:
                yield Setup(base, store, swarm, counts, log_path)
    finally:
        store.clear()


@pytest.fixture(scope="module")
def greedy(setup):
    """A greedy completion through the gateway (the first request also starts the engine's PETALS client)."""
    return setup.client().completions.create(model=MODEL, prompt=PROMPT, max_tokens=10, temperature=0)


def test_sync_completion_is_petals_own_greedy_text_with_the_tokenizers_counts(setup, greedy):
    chain = [[s.peer_id, s.spec.start_block, s.spec.end_block] for s in setup.swarm.servers]
    want = petals_generate(setup.swarm, chain, PROMPT, 10)
    choice = greedy.choices[0]
    assert choice.text == want["text"] and want["text"].strip()
    assert greedy.model == MODEL and greedy.object == "text_completion"
    assert greedy.usage.prompt_tokens == setup.counts["prompt"] == len(want["prompt_ids"])
    n = len(want["ids"])
    assert choice.finish_reason == ("length" if n == 10 else "stop")
    assert greedy.usage.completion_tokens == (10 if n == 10 else n + 1)      # the end-of-sequence token counts
    assert greedy.usage.total_tokens == greedy.usage.prompt_tokens + greedy.usage.completion_tokens
    setup.wait_idle()


def test_sync_chat_streamed_and_not_agree_and_count_the_templated_prompt(setup):
    client = setup.client()
    whole = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=8, temperature=0)
    assert whole.usage.prompt_tokens == setup.counts["chat"]
    assert whole.choices[0].message.role == "assistant"
    chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=8, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 2      # pieces as they came
    assert chunks[-1].usage.prompt_tokens == setup.counts["chat"]
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason
    setup.wait_idle()


def test_async_clients_streamed_and_not_at_once(setup, greedy):
    async def both():
        async with setup.async_client() as client:
            whole = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=10, temperature=0)

            async def streamed() -> str:
                stream = await client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=10, temperature=0,
                                                         stream=True)
                return "".join([c.choices[0].text async for c in stream if c.choices])
            return await asyncio.gather(whole, streamed())
    whole, text = asyncio.run(both())
    assert whole.choices[0].text == text == greedy.choices[0].text
    setup.wait_idle()


def test_a_request_too_long_for_the_servers_is_a_400_naming_the_parameter(setup):
    client = setup.client()
    opened = setup.sessions()
    with pytest.raises(openai.BadRequestError) as err:        # the prompt fits, the answer does not
        client.chat.completions.create(model=MODEL, messages=MESSAGES, max_completion_tokens=MAX_LENGTH)
    assert err.value.code == "context_length_exceeded" and err.value.param == "max_completion_tokens"
    long_prompt = "fox " * MAX_LENGTH
    with pytest.raises(openai.BadRequestError) as err:        # the prompt alone is too long
        client.completions.create(model=MODEL, prompt=long_prompt, max_tokens=1, stream=True)
    assert err.value.code == "context_length_exceeded" and err.value.param == "prompt"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": long_prompt}], max_tokens=1)
    assert err.value.param == "messages"
    assert setup.in_progress() == 0
    assert setup.sessions() == opened          # refused before any PETALS session was opened


def test_a_client_gone_mid_stream_releases_the_slot_and_the_session_within_a_second(setup, greedy):
    setup.wait_idle()                                      # nothing left of the earlier tests
    before = setup.sessions()
    client = setup.client()
    stream = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=240, temperature=0.8, seed=1,
                                       stream=True)
    got = ""
    for chunk in stream:
        got += chunk.choices[0].text if chunk.choices else ""
        if got:
            break
    assert setup.in_progress() == 1
    opened = setup.sessions()
    assert all(opened[s][0] == before[s][0] + 1 for s in opened), (before, opened)
    t0 = time.monotonic()
    stream.close()                 # the connection goes away mid-answer
    while setup.in_progress() and time.monotonic() - t0 < 1.0:
        time.sleep(0.02)
    released = time.monotonic() - t0
    assert setup.in_progress() == 0, f"the slot is still held after {released:.2f} s"
    while any(c < o for o, c in setup.sessions().values()) and time.monotonic() - t0 < 1.0:
        time.sleep(0.02)
    after = setup.sessions()
    assert all(o == c for o, c in after.values()), f"a server still holds the session after 1 s: {after}"
    # and the gateway still serves
    again = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=10, temperature=0)
    assert again.choices[0].text == greedy.choices[0].text
