"""The gateway's ``petals`` engine against a real local PETALS swarm (three servers on loopback, the tiny
model with its SentencePiece tokenizer): greedy text equals PETALS' own ``generate`` over the same route,
the stream is the one-shot decode cut into pieces, stop strings cut, a cancelled request closes its
session on the server within a second, a resumed answer continues exactly, a hung server is taken for
dead within its step deadline, and a killed server is named in the error.

Needs .venv-petals (bash scripts/install_petals.sh): under CI=true its absence fails.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time

import pytest

from serving.gateway.engine import ChatMessage, Delta, Engine, EngineError, GenerationRequest, HopError, Resume
from solvers.plan_format import HopDoc
from tests.petals.conftest import PETALS_PY, petals_env, petals_generate

LAYERS = 4
# a: blocks 0-1, b: 2-3, c: all four; chains [a, b] and [c]
SERVERS = [("a", 0, 2), ("b", 2, 4), ("c", 0, 4)]
AB = (HopDoc("a", 0, 2), HopDoc("b", 2, 2))
C = (HopDoc("c", 0, 4),)
PROMPT = "The quick brown fox"


@pytest.fixture(scope="module")
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def swarm(tmp_path_factory, petals_python):
    from serving.petals.swarm import ServerSpec, Swarm
    work = tmp_path_factory.mktemp("petals-engine")
    model_dir = work / "tiny-sp"
    subprocess.run([str(PETALS_PY), "-m", "serving.petals.tiny_model", str(model_dir), "--layers", str(LAYERS),
                    "--tokenizer", "sentencepiece"], check=True, env=petals_env(), capture_output=True, timeout=120)
    specs = [ServerSpec(sid, lo, hi, cache_tokens=512) for sid, lo, hi in SERVERS]
    with Swarm(specs, str(model_dir), python=str(PETALS_PY), workdir=work / "swarm",
               dht_prefix="chainplan-engine-test") as running:
        yield running


@pytest.fixture(scope="module")
def engine(swarm, loop):
    from serving.gateway.engines.petals import PetalsEngine
    eng = PetalsEngine(swarm.info("tiny-sp"))
    loop.run_until_complete(eng.start())
    yield eng
    loop.run_until_complete(eng.aclose())


def _completion(**kw) -> GenerationRequest:
    return GenerationRequest(**{"kind": "completion", "model": "tiny-sp", "prompt": PROMPT, "max_tokens": 12,
                                "temperature": 0.0, **kw})


def _collect(loop, engine, request, hops) -> list[Delta]:
    async def go():
        return [d async for d in engine.stream(request, hops)]
    return loop.run_until_complete(asyncio.wait_for(go(), 120))


def _server_log(swarm, sid: str) -> str:
    return next(s for s in swarm.servers if s.spec.id == sid).log_text()


def _sessions(log: str, blocks: str) -> tuple[int, int]:
    """(opened, closed) inference sessions over ``blocks`` in a server's log."""
    return (len(re.findall(rf"rpc_inference\.open\(blocks={blocks},", log)),
            len(re.findall(rf"rpc_inference\.close\(blocks={blocks},", log)))


@pytest.fixture(scope="module")
def greedy(engine, loop):
    return _collect(loop, engine, _completion(), AB)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_greedy_completion_equals_petals_generate_over_the_same_route(engine, swarm, greedy):
    assert isinstance(engine, Engine)
    chain = engine.chain(AB)
    want = petals_generate(swarm, chain, PROMPT, 12)
    *pieces, end = greedy
    assert [t for d in pieces for t in d.tokens] == want["ids"]
    assert "".join(d.text for d in pieces) == want["text"] and want["text"].strip()
    assert end.prompt_tokens == len(want["prompt_ids"])
    assert end.finish_reason == ("length" if len(want["ids"]) == 12 else "stop")
    assert end.completion_tokens == 12 if end.finish_reason == "length" else len(want["ids"]) + 1
    # text came as it was produced, not at the end
    assert sum(1 for d in pieces if d.text) >= 2
    # the sessions ran on exactly the granted spans
    assert _sessions(_server_log(swarm, "a"), "0:2")[0] >= 1 and _sessions(_server_log(swarm, "b"), "2:4")[0] >= 1


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_stop_string_cuts_the_text_and_finishes_with_stop(engine, loop, greedy):
    text = "".join(d.text for d in greedy[:-1])
    stop = text[len(text) // 2:len(text) // 2 + 2]
    assert stop.strip(), text
    deltas = _collect(loop, engine, _completion(stop=("zzz-never", stop)), AB)
    got = "".join(d.text for d in deltas)
    assert got == text[:text.find(stop)] and stop not in got
    assert deltas[-1].finish_reason == "stop"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_concurrent_requests_each_get_their_own_answer(engine, loop, greedy):
    async def both():
        async def one(hops):
            return [d async for d in engine.stream(_completion(), hops)]
        return await asyncio.wait_for(asyncio.gather(one(AB), one(C), one(AB)), 120)
    on_ab, on_c, on_ab_again = loop.run_until_complete(both())
    text = "".join(d.text for d in greedy)
    assert "".join(d.text for d in on_ab) == "".join(d.text for d in on_ab_again) == text
    assert on_c[-1].finish_reason is not None


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_chat_uses_the_template_and_seeded_sampling_repeats(engine, loop):
    def chat(seed):
        req = GenerationRequest(kind="chat", model="tiny-sp", messages=(ChatMessage("user", "Hello there, chain!"),),
                                max_tokens=10, temperature=0.9, top_p=0.9, seed=seed)
        return _collect(loop, engine, req, C)
    first, again = chat(7), chat(7)
    assert "".join(d.text for d in first) == "".join(d.text for d in again)
    assert first[-1].prompt_tokens == again[-1].prompt_tokens > len("Hello there, chain!".split())
    assert first[-1].completion_tokens >= 1


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_request_longer_than_the_servers_take_is_refused_as_the_requests_fault(engine, loop, swarm):
    from serving.gateway.engines.petals import RequestTooLong
    assert engine.swarm.max_length == 512
    opened = _sessions(_server_log(swarm, "c"), "0:4")[0]
    with pytest.raises(RequestTooLong, match=r"max_tokens \(510\).*512 tokens") as err:
        _collect(loop, engine, _completion(max_tokens=510), C)
    assert err.value.server is None
    assert _sessions(_server_log(swarm, "c"), "0:4")[0] == opened      # refused before any session


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_cancelling_closes_the_session_within_a_second(engine, loop, swarm):
    opened0, closed0 = _sessions(_server_log(swarm, "c"), "0:4")
    assert opened0 == closed0, "a session of an earlier test is still open"
    got: list[Delta] = []

    async def go():
        async for d in engine.stream(_completion(max_tokens=480), C):
            got.append(d)

    async def cancel_after_first_delta() -> float:
        task = asyncio.create_task(go())
        while not any(d.text for d in got):
            await asyncio.sleep(0.01)
            assert not task.done()
        t0 = time.monotonic()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return time.monotonic() - t0

    took = loop.run_until_complete(cancel_after_first_delta())
    assert took < 1.0, f"cancellation took {took:.2f} s"
    assert not got or got[-1].finish_reason is None       # cut short, no end
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline and _sessions(_server_log(swarm, "c"), "0:4")[1] == closed0:
        time.sleep(0.05)
    opened, closed = _sessions(_server_log(swarm, "c"), "0:4")
    assert opened == opened0 + 1 and closed == opened, "the server still holds the cancelled session"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_resumed_answer_continues_exactly_after_the_given_tokens_on_another_chain(engine, loop, greedy):
    """What a fail-over sends: the answer so far (its text and ids), continued on another chain."""
    *pieces, end = greedy
    with_text = [i for i, d in enumerate(pieces) if d.text]
    for k in (with_text[0] + 1, with_text[len(with_text) // 2] + 1):
        done = pieces[:k]
        resume = Resume("".join(d.text for d in done), tuple(t for d in done for t in d.tokens), k)
        assert engine.resume_refusal(_completion(), resume) is None
        rest = _collect(loop, engine, _completion(resume=resume), C)
        assert resume.text + "".join(d.text for d in rest[:-1]) == "".join(d.text for d in pieces)
        assert [t for d in done + rest[:-1] for t in d.tokens] == [t for d in pieces for t in d.tokens]
        assert (rest[-1].finish_reason, rest[-1].prompt_tokens, rest[-1].completion_tokens) == (
            end.finish_reason, end.prompt_tokens, end.completion_tokens)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_hung_server_is_taken_for_dead_within_its_step_deadline(engine, loop, swarm):
    import signal

    from serving.petals.procs import running_tree
    c = next(s for s in swarm.servers if s.spec.id == "c")
    pids = sorted(running_tree(c.proc))
    got: list[Delta] = []

    async def go():
        async for d in engine.stream(_completion(max_tokens=400), C):
            got.append(d)
            if len(got) == 3:                       # mid-answer: the server (and its p2p daemon) freeze
                for pid in pids:
                    os.kill(pid, signal.SIGSTOP)
                got.append(time.monotonic())

    try:
        with pytest.raises(HopError) as err:
            loop.run_until_complete(asyncio.wait_for(go(), 120))
        took = time.monotonic() - got[3]
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    assert err.value.server == "c" and "no answer in time" in str(err.value), str(err.value)
    assert took < 5.0, f"the hung server was taken for dead after {took:.1f} s"
    assert _collect(loop, engine, _completion(max_tokens=3), AB)[-1].completion_tokens >= 1      # the rest serves


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_killed_server_is_named_in_the_engine_error(engine, loop, swarm):
    from serving.petals.procs import process_tree, terminate_tree
    b = next(s for s in swarm.servers if s.spec.id == "b")
    terminate_tree(process_tree(b.proc.pid), timeout_s=10)
    with pytest.raises(EngineError) as err:
        _collect(loop, engine, _completion(), AB)
    assert err.value.server == "b", str(err.value)
    assert isinstance(err.value, HopError) and "server b" in str(err.value)
    # the rest of the swarm still serves
    assert _collect(loop, engine, _completion(max_tokens=3), C)[-1].completion_tokens >= 1
