"""Fail-over on a real PETALS swarm through the gateway: one server of the granted chain is SIGKILLed (its
whole process tree, the p2p daemon too) while the official ``openai`` SDK streams the answer, and the answer
completes on the surviving chain exactly as the no-failure greedy answer (same text, usage, finish_reason).

Three PETALS servers on loopback (the tiny model, SentencePiece): a holds blocks 0-1, b and c blocks 2-3;
the plan's chains are [a, b] (the faster: JFFC's first choice) and [a, c], in a Redis dispatcher store.

Needs .venv-petals (bash scripts/install_petals.sh) and Redis: under CI=true their absence fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid

import pytest

from serving.dispatch.redis_store import RedisStore
from serving.gateway.keys import key_digest
from tests.dispatch.conftest import REDIS_URL, require_redis, snapshot
from tests.gateway.conftest import gateway_process, wait_idle
from tests.petals.conftest import PETALS_PY, REPO, petals_env

openai = pytest.importorskip("openai")

MODEL, CLUSTER = "tiny-sp", 1
KEY = "sk-petals-failover-" + uuid.uuid4().hex
PROMPT = "The quick brown fox"
N = 40
CHAINS = [(["a", "b"], [2, 2], 1.0, 1), (["a", "c"], [2, 2], 1.5, 1)]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, petals_python):
    from serving.petals.swarm import ServerSpec, Swarm
    require_redis()
    work = tmp_path_factory.mktemp("gateway-petals-failover")
    model_dir = work / MODEL
    subprocess.run([str(PETALS_PY), "-m", "serving.petals.tiny_model", str(model_dir), "--layers", "4",
                    "--tokenizer", "sentencepiece"], check=True, env=petals_env(), capture_output=True, timeout=120)
    prefix = f"test-gateway-petals-failover-{uuid.uuid4().hex[:10]}"
    store = RedisStore(REDIS_URL, prefix=prefix)
    specs = [ServerSpec("a", 0, 2, cache_tokens=512), ServerSpec("b", 2, 4, cache_tokens=512),
             ServerSpec("c", 2, 4, cache_tokens=512)]
    try:
        with Swarm(specs, str(model_dir), python=str(PETALS_PY), workdir=work / "swarm",
                   dht_prefix=f"chainplan-failover-{uuid.uuid4().hex[:6]}") as swarm:
            swarm.info(MODEL).save(work / "swarm.json")
            store.set_plan(CLUSTER, snapshot(CHAINS))
            store.put_token(key_digest(KEY), CLUSTER)
            log_path = work / "gateway.log"
            argv = ["--prefix", prefix, "serve", "--model", MODEL, "--cluster", str(CLUSTER), "--swarm-file",
                    str(work / "swarm.json"), "--dispatch", REDIS_URL, "--queue-wait-s", "5", "--max-tokens", "400"]
            env = {**os.environ, "PYTHONPATH": str(REPO), "CHAINPLAN_DISPATCH_SUSPECT_S": "30",
                   "CHAINPLAN_DISPATCH_SUSPECT_MAX_S": "60"}
            with gateway_process(argv, log_path, env=env) as base:
                yield base, store, swarm, log_path
    finally:
        store.clear()


def test_a_server_killed_mid_stream_costs_the_answer_nothing(setup):
    from serving.petals.procs import running_tree
    base, store, swarm, log_path = setup
    client = openai.OpenAI(base_url=base, api_key=KEY, max_retries=0, timeout=120)
    # the no-failure answer (chain [a, b]; the first request also starts the engine's PETALS client)
    whole = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=N, temperature=0)
    want = whole.choices[0].text
    assert len(set(want)) >= 5, f"a degenerate reference answer proves little: {want!r}"
    b = next(s for s in swarm.servers if s.spec.id == "b")
    stream = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=N, temperature=0, stream=True,
                                       stream_options={"include_usage": True})
    got, chunks, killed_at, t_kill, gap = "", [], None, 0.0, None
    for chunk in stream:
        chunks.append(chunk)
        piece = chunk.choices[0].text if chunk.choices else ""
        if piece and killed_at is not None and gap is None:
            gap = time.monotonic() - t_kill
        got += piece
        if killed_at is None and len([c for c in chunks if c.choices and c.choices[0].text]) >= 3:
            assert [c["in_progress"] for c in store.state(CLUSTER)["chains"]] == [1, 0]
            for pid in running_tree(b.proc):
                os.kill(pid, signal.SIGKILL)
            killed_at, t_kill = len(got), time.monotonic()
    assert killed_at is not None and killed_at < len(want), "server b was not killed mid-answer"
    print(f"\nkill: the next piece reached the client {gap:.2f} s after the SIGKILL")
    assert got == want, (killed_at, got, want)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (whole.usage.prompt_tokens, whole.usage.completion_tokens)
    wait_idle(store, CLUSTER, 1.0)                  # the lease goes back just after the answer's end
    st = store.state(CLUSTER)
    assert {s["server"]: s["state"] for s in st["servers"]}["b"] == "suspect"
    assert [c["masked"] for c in st["chains"]] == [True, False]
    assert sum(c["in_progress"] for c in st["chains"]) == 0
    obs = st["observations"]
    assert obs["failures"] == 1 and obs["grants"] == obs["releases"] == 3 and obs["expiries"] == 0
    assert "hop failed: attempt 1, chain 0: server b" in log_path.read_text()
