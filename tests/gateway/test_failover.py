"""Fail-over of requests in flight through the gateway, against real engines: two chains, each served by its
own `transformers serve` process, the official `openai` SDK as the client.  An engine is SIGKILLed (its
process group) or SIGSTOPped mid-answer; the answer must come out exactly as the uninterrupted greedy one
(no piece repeated or lost, usage counted once, the same finish_reason), the failed chain's server must be
masked in the dispatcher, and no slot may stay held.

The model is the tiny LLaMA with a character-level tokenizer, in float64, that never generates <s> or
<unk> (its generation_config suppresses them): any answer re-reads as exactly the tokens that produced it
(the condition under which an openai engine's text continuation is exact), and float64 keeps the re-prefill
of a resumed answer from flipping greedy near-ties that float32 sums in a different order (this random
model has top-2 margins of a few 1e-6).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import openai
import pytest

from serving.dispatch.redis_store import RedisStore
from serving.gateway.keys import key_digest
from tests.dispatch.conftest import REDIS_URL, free_port, require_redis, snapshot

from .conftest import ROOT, _wait_http

CLUSTER = 1
KEY = "sk-failover-" + uuid.uuid4().hex
# chain 0 is the fastest (JFFC's first choice), chain 1 the survivor; one request per engine at a time
CHAINS = [(["s1", "s2"], [2, 2], 1.0, 1), (["s3"], [4], 1.5, 1)]
CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant:{% endif %}")
N = 400            # tokens per answer: about a second of generation, so a kill lands mid-answer
# the probation of a reported server: long enough that it cannot end within a test, even on a loaded machine
# (a short one ran out mid-test, and the dead engine's chain was granted again); each test starts from `up`
SUSPECT_S = 300

pytestmark = pytest.mark.timeout(180)


def _char_model(out: Path) -> Path:
    """The tiny LLaMA, float64, with one token per character (printable ASCII and newline)."""
    import torch
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    if (out / "config.json").exists():
        return out
    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    vocab = {"<s>": 0, "</s>": 1, "<unk>": 2, **{c: i + 3 for i, c in enumerate(chars)}}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Split(Regex("[\\s\\S]"), behavior="isolated")
    raw.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    tok.chat_template = CHAT_TEMPLATE
    out.mkdir(parents=True)
    tok.save_pretrained(out)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=64, intermediate_size=256, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1024,
                         bos_token_id=0, eos_token_id=1)
    model = LlamaForCausalLM(config).to(torch.float64)
    # never generate <s> or <unk>: either decodes to no text (or "<unk>", which re-reads as 5 tokens), so an
    # answer holding one would not re-read as the tokens that produced it, and a resume from it would differ
    model.generation_config.suppress_tokens = [vocab["<s>"], vocab["<unk>"]]
    model.save_pretrained(out, safe_serialization=True)
    return out


class Engine:
    """One `transformers serve` process group (the API server and its model process), restartable on its port."""

    def __init__(self, model: Path, root: Path, env: dict):
        self.model, self.root, self.env = model, root, env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.proc: subprocess.Popen | None = None

    def spawn(self) -> None:
        serve = str(Path(sys.executable).parent / "transformers")
        log = open(self.root / f"engine-{self.port}.log", "a")
        self.proc = subprocess.Popen([serve, "serve", str(self.model), "--device", "cpu", "--dtype", "float64",
                                      "--host", "127.0.0.1", "--port", str(self.port)], env=self.env, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def ready(self) -> None:
        _wait_http(self.url.removesuffix("/v1") + "/health", self.proc, "an engine")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        if self.alive():
            self.signal(signal.SIGKILL)
            self.proc.wait(10)


def up(*engines: Engine) -> None:
    """Start the engines that are not running (at once: each takes seconds to load), then wait for them."""
    started = [e for e in engines if not e.alive()]
    for e in started:
        e.spawn()
    for e in started:
        e.ready()


class Setup:
    def __init__(self, base_url: str, store: RedisStore, engines: list[Engine], log: Path):
        self.base_url, self.store, self.engines, self.log = base_url, store, engines, log

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key=KEY, max_retries=0, timeout=60)

    def state(self) -> dict:
        return self.store.state(CLUSTER)

    def held(self) -> int:
        return sum(c["in_progress"] for c in self.state()["chains"])

    def server_states(self) -> dict[str, str]:
        return {s["server"]: s["state"] for s in self.state()["servers"]}

    def wait_held(self, n: int, within_s: float = 10) -> None:
        deadline = time.monotonic() + within_s
        while self.held() != n:
            assert time.monotonic() < deadline, f"{n} slot(s) not held within {within_s} s: {self.state()}"
            time.sleep(0.02)

    def leases_all_released(self) -> None:
        self.wait_held(0, within_s=2)
        obs = self.state()["observations"]
        assert obs["expiries"] == 0 and obs["grants"] == obs["releases"] + obs["revoked"], obs


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    require_redis()
    root = tmp_path_factory.mktemp("gateway-failover")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    model = _char_model(root / "char-model")
    prefix = f"test-gateway-failover-{uuid.uuid4().hex[:10]}"
    store = RedisStore(REDIS_URL, prefix=prefix)
    engines: list[Engine] = []
    gateway = None
    try:
        engines = [Engine(model, root, env) for _ in CHAINS]
        up(*engines)
        (root / "engines.json").write_text(json.dumps({
            "format": "chainplan-engines/1", "runtime": "transformers", "model": str(model),
            "engines": [{"servers": servers, "url": e.url, "capacity": cap}
                        for (servers, _, _, cap), e in zip(CHAINS, engines)]}))
        store.set_plan(CLUSTER, snapshot(CHAINS))
        store.put_token(key_digest(KEY), CLUSTER)
        port = free_port()
        log = root / "gateway.log"
        gateway = subprocess.Popen(
            [sys.executable, "-m", "serving.gateway", "--prefix", prefix, "serve", "--model", "tiny-chars",
             "--cluster", str(CLUSTER), "--engines-file", str(root / "engines.json"), "--tokenizer", str(model),
             "--dispatch", REDIS_URL, "--port", str(port), "--queue-wait-s", "2", "--failover-window-s", "3",
             "--max-tokens", "480"],
            env={**env, "CHAINPLAN_DISPATCH_SUSPECT_S": str(SUSPECT_S),
                 "CHAINPLAN_DISPATCH_SUSPECT_MAX_S": str(2 * SUSPECT_S)},
            cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}/v1"
        _wait_http(base + "/health", gateway, "the gateway", 60)
        yield Setup(base, store, engines, log)
    finally:
        if gateway is not None:
            gateway.terminate()
            try:
                gateway.wait(timeout=10)
            except subprocess.TimeoutExpired:
                gateway.kill()
        for e in engines:
            e.kill()
        store.clear()


@pytest.fixture
def healthy(setup):
    """Both engines up (started again where an earlier test killed one) and every server up in the
    dispatcher; after the test, a stopped engine continued and no slot held."""
    up(*setup.engines)
    for s in ("s1", "s2", "s3"):
        setup.store.set_server_state(CLUSTER, s, "up")
    yield setup
    for e in setup.engines:
        if e.alive():
            e.signal(signal.SIGCONT)           # a stopped engine, if the test left one
    setup.wait_held(0, within_s=5)


def _reference(setup: Setup, kind: str, **kw):
    """The uninterrupted greedy answer (chain 0's engine, healthy) and its usage."""
    c = setup.client()
    if kind == "chat":
        got = c.chat.completions.create(model="tiny-chars", temperature=0, max_tokens=N, **kw)
        text = got.choices[0].message.content
    else:
        got = c.completions.create(model="tiny-chars", temperature=0, max_tokens=N, **kw)
        text = got.choices[0].text
    assert len(set(text)) >= 3, f"a degenerate reference answer proves little: {text[:80]!r}"
    # one character per generated token: no special token (<s>, <unk>) went out as no text
    assert len(text) == got.usage.completion_tokens, (len(text), got.usage.completion_tokens, text[:80])
    return text, got.choices[0].finish_reason, got.usage


def _masked(setup: Setup) -> list[bool]:
    return [c["masked"] for c in setup.state()["chains"]]


def test_a_hung_engine_is_taken_for_dead_within_5_s_and_the_chat_resumes(healthy):
    setup = healthy
    messages = [{"role": "user", "content": "Hello there"}]
    want, finish, usage = _reference(setup, "chat", messages=messages)
    stream = setup.client().chat.completions.create(model="tiny-chars", messages=messages, temperature=0,
                                                    max_tokens=N, stream=True)
    got, stopped_at, resumed_after = "", None, None
    for chunk in stream:
        piece = chunk.choices[0].delta.content if chunk.choices else None
        if piece and stopped_at is not None and resumed_after is None:
            resumed_after = time.monotonic() - stopped_at
        got += piece or ""
        if stopped_at is None and got:      # the first piece: the engine is still generating
            setup.engines[0].signal(signal.SIGSTOP)        # accepts connections, never answers
            stopped_at = time.monotonic()
    assert resumed_after is not None and resumed_after < 5.0, resumed_after
    print(f"\nhang: the next piece reached the client {resumed_after:.2f} s after the SIGSTOP")
    assert got == want
    assert setup.server_states()["s1"] == "suspect" and _masked(setup) == [True, False]
    setup.leases_all_released()
    assert "taken for hung" in setup.log.read_text()


def test_an_engine_killed_mid_stream_fails_over_without_a_seam(healthy):
    setup = healthy
    prompt = "The quick brown fox"
    want, finish, usage = _reference(setup, "completion", prompt=prompt)
    failures = setup.state()["observations"]["failures"]
    stream = setup.client().completions.create(model="tiny-chars", prompt=prompt, temperature=0, max_tokens=N,
                                               stream=True, stream_options={"include_usage": True})
    got, chunks, killed_at, t_kill, gap = "", [], None, 0.0, None
    for chunk in stream:
        chunks.append(chunk)
        piece = chunk.choices[0].text if chunk.choices else ""
        if piece and killed_at is not None and gap is None:
            gap = time.monotonic() - t_kill
        got += piece
        if killed_at is None and len(got) >= 20:
            assert _masked(setup) == [False, False] and setup.held() == 1
            setup.engines[0].kill()                        # SIGKILL, mid-answer
            killed_at, t_kill = len(got), time.monotonic()
    assert killed_at is not None and killed_at < len(want) - 50, "the engine was not killed mid-answer"
    print(f"\nkill: the next piece reached the client {gap:.2f} s after the SIGKILL")
    assert got == want                                     # no piece repeated or lost
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == finish
    last = chunks[-1]
    assert not last.choices and last.usage.prompt_tokens == usage.prompt_tokens
    assert last.usage.completion_tokens == usage.completion_tokens == N
    st = setup.state()
    assert st["observations"]["failures"] == failures + 1
    assert setup.server_states()["s1"] == "suspect" and _masked(setup) == [True, False]
    setup.leases_all_released()


def test_a_non_streamed_answer_fails_over_too(healthy):
    setup = healthy
    prompt = "Pipeline parallel serving"
    want, finish, usage = _reference(setup, "completion", prompt=prompt)
    out = {}

    def ask():
        out["got"] = setup.client().completions.create(model="tiny-chars", prompt=prompt, temperature=0,
                                                       max_tokens=N)
    t = threading.Thread(target=ask)
    t.start()
    setup.wait_held(1)
    time.sleep(0.2)                                        # some of the answer is out of the engine
    setup.engines[0].kill()
    t.join(60)
    got = out["got"]
    assert got.choices[0].text == want and got.choices[0].finish_reason == finish
    assert (got.usage.prompt_tokens, got.usage.completion_tokens) == (usage.prompt_tokens, usage.completion_tokens)
    assert setup.server_states()["s1"] == "suspect"
    setup.leases_all_released()


def _lost(setup) -> float:
    """The gateway's lost-request count (every chain)."""
    from tests.gateway.test_metrics import scrape
    return scrape(None, setup.base_url + "/metrics").total("chainplan_gateway_lost_requests_total")


def test_when_every_engine_is_dead_one_clear_error_and_no_slot_is_held(setup):
    lost_before = _lost(setup)
    for e in setup.engines:
        e.kill()
    for s in ("s1", "s2", "s3"):
        setup.store.set_server_state(CLUSTER, s, "up")
    t0 = time.monotonic()
    r = httpx.post(setup.base_url + "/completions", json={"model": "tiny-chars", "prompt": "x", "max_tokens": 8},
                   headers={"authorization": f"Bearer {KEY}"}, timeout=30)
    assert r.status_code == 503, r.text
    err = r.json()["error"]
    assert err["code"] == "no_chain_available" and int(r.headers["retry-after"]) >= 1
    assert "server s1" in err["message"] and "server s3" in err["message"]
    assert time.monotonic() - t0 < 10
    assert setup.server_states()["s1"] == setup.server_states()["s3"] == "suspect"
    setup.leases_all_released()

    # the same mid-stream: the stream started on chain 0, then both engines died: one error event
    up(*setup.engines)
    for s in ("s1", "s3"):
        setup.store.set_server_state(CLUSTER, s, "up")
    stream = setup.client().completions.create(model="tiny-chars", prompt="The", temperature=0, max_tokens=N,
                                               stream=True)
    got = ""
    with pytest.raises(openai.APIError, match="no chain could answer"):
        for chunk in stream:
            got += chunk.choices[0].text if chunk.choices else ""
            if len(got) >= 20 and setup.engines[1].alive():
                for e in setup.engines:
                    e.kill()
    setup.leases_all_released()
    assert _lost(setup) - lost_before == 2        # the 503 and the stream that ended with an error event


def test_the_resume_request_is_the_prompt_the_chain_saw_and_the_answer_so_far(tmp_path):
    """What an openai engine sends after a fail-over, with the model's real tokenizer (no engine needed)."""
    import asyncio
    from dataclasses import replace

    from serving.gateway.engine import ChatMessage, GenerationRequest, Resume
    from serving.gateway.engines.openai import EngineEntry, EnginesFile, OpenAIEngine, Tokenizer
    from solvers.plan_format import HopDoc

    model = _char_model(tmp_path / "char-model")
    entry = EngineEntry(("s3",), f"http://127.0.0.1:{free_port()}/v1", 1, "m")      # nothing listens there
    engine = OpenAIEngine(EnginesFile("transformers", "m", (entry,)), tokenizer=Tokenizer(model))
    chat = GenerationRequest(kind="chat", model="tiny-chars", messages=(ChatMessage("user", "Hi"),), max_tokens=10,
                             stop=("zz",))
    so_far = Resume("abc", (), 2)
    assert engine.resume_refusal(chat, so_far) is None
    call = engine._resume_call(replace(chat, resume=so_far), entry)
    assert call.path == "/completions" and "messages" not in call.body
    assert call.body["prompt"] == "user: Hi\nassistant:abc" and call.body["stop"] == ["zz"]
    assert (call.body["max_tokens"], call.resumed, call.prompt_tokens) == (7, 3, len("user: Hi\nassistant:"))

    async def rest(req):
        return [d async for d in engine.stream(req, (HopDoc("s3", 0, 4),))]
    whole = Resume("x" * 10, (), 10)                      # every token was out: only the end was lost
    [end] = asyncio.run(rest(replace(chat, resume=whole)))
    assert (end.finish_reason, end.prompt_tokens, end.completion_tokens) == ("length", call.prompt_tokens, 10)

    assert "partial character" in engine.resume_refusal(chat, Resume("ab\ufffd", (), 1))
    bare = OpenAIEngine(EnginesFile("transformers", "m", (entry,)))
    assert "no tokenizer" in bare.resume_refusal(chat, so_far)
