"""A real gateway process over a real dispatcher store (Redis) and real engines.

The engines are `transformers serve` (Hugging Face's OpenAI-compatible server, CPU), one process
per chain of the plan, each serving the tiny LLaMA made locally: the `openai` engine kind,
forwarded to exactly the granted chain.  Nothing is a stand-in.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from serving.dispatch.redis_store import RedisStore
from serving.petals.procs import stop_process
from serving.gateway.keys import key_digest
from tests.dispatch.conftest import REDIS_URL, free_port, require_redis, snapshot

ROOT = Path(__file__).resolve().parents[2]
KEY, OTHER_KEY = "sk-gw-test-" + uuid.uuid4().hex, "sk-gw-other-" + uuid.uuid4().hex
CLUSTER, NO_PLAN_CLUSTER = 1, 2
# two server-disjoint chains, as an openai-kind runtime needs: capacity 2 and 1
CHAINS = [(["s1", "s2"], [2, 2], 1.0, 2), (["s3"], [4], 1.5, 1)]
CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant:{% endif %}")


@dataclass
class Gateway:
    base_url: str
    store: RedisStore
    engines: list[str]

    def in_progress(self, cluster: int = CLUSTER) -> int:
        return sum(c["in_progress"] for c in self.store.state(cluster)["chains"])

    def wait_idle(self, within_s: float = 1.0) -> float:
        return wait_idle(self.store, CLUSTER, within_s)


def wait_idle(store: RedisStore, cluster: int, within_s: float = 1.0) -> float:
    """Seconds until no slot of ``cluster`` is held (fails after ``within_s``).  The gateway sends an answer's
    end first and gives the lease back after, so a client that has its whole answer can still see its slot
    held for the length of one release."""
    t0 = time.monotonic()
    while sum(c["in_progress"] for c in store.state(cluster)["chains"]):
        assert time.monotonic() - t0 < within_s, f"a slot is still held after {within_s} s: {store.state(cluster)}"
        time.sleep(0.02)
    return time.monotonic() - t0


def _wait_http(url: str, proc: subprocess.Popen, what: str, timeout_s: float = 120) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{what} did not answer within {timeout_s} s")


@contextlib.contextmanager
def gateway_process(argv: list[str], log_path: Path, env: dict[str, str] | None = None, timeout_s: float = 30):
    """``python -m serving.gateway ARGV --port P`` as a process of its own, logging to ``log_path``: yields its
    ``/v1`` base URL once ``/v1/health`` answers, and stops it on exit."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "serving.gateway", *argv, "--port", str(port)], cwd=ROOT,
                            env=env or {**os.environ, "PYTHONPATH": str(ROOT)}, stdout=open(log_path, "w"),
                            stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}/v1"
        try:
            _wait_http(base + "/health", proc, "the gateway", timeout_s)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}: {log_path.read_text()[-2000:]}") from None
        yield base
    finally:
        stop_process(proc, timeout_s=15)


def _tiny_model(root: Path) -> Path:
    from serving.petals.tiny_model import make_tiny_llama
    out = make_tiny_llama(root / "tiny", layers=4)
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    if not cfg.get("chat_template"):
        cfg["chat_template"] = CHAT_TEMPLATE
        cfg_path.write_text(json.dumps(cfg))
    return out


@pytest.fixture(scope="session")
def gateway(tmp_path_factory):
    require_redis()
    serve = shutil.which("transformers", path=str(Path(sys.executable).parent))
    if serve is None:
        pytest.fail("`transformers serve` is missing: install the dev extras (transformers, fastapi, accelerate)")
    root = tmp_path_factory.mktemp("gateway")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    model = _tiny_model(root)
    procs: list[subprocess.Popen] = []
    prefix = f"test-gateway-{uuid.uuid4().hex[:10]}"
    store = RedisStore(REDIS_URL, prefix=prefix)
    try:
        engines = []
        for servers, _, _, capacity in CHAINS:
            port = free_port()
            log = open(root / f"engine-{port}.log", "w")
            procs.append(subprocess.Popen([serve, "serve", str(model), "--device", "cpu", "--host", "127.0.0.1",
                                           "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT))
            engines.append({"servers": servers, "url": f"http://127.0.0.1:{port}/v1", "capacity": capacity})
        (root / "engines.json").write_text(json.dumps({"format": "chainplan-engines/1", "runtime": "transformers",
                                                       "model": str(model), "engines": engines}))
        (root / "gateway.json").write_text(json.dumps({"models": [
            {"name": "tiny", "cluster": CLUSTER, "engine": "openai", "engines_file": "engines.json"},
            {"name": "tiny", "cluster": NO_PLAN_CLUSTER, "engine": "openai", "engines_file": "engines.json"}]}))
        store.set_plan(CLUSTER, snapshot(CHAINS))
        store.put_token(key_digest(KEY), CLUSTER)
        store.put_token(key_digest(OTHER_KEY), NO_PLAN_CLUSTER)
        port = free_port()
        procs.append(subprocess.Popen([sys.executable, "-m", "serving.gateway", "--prefix", prefix, "serve",
                                       "--config", str(root / "gateway.json"), "--dispatch", REDIS_URL,
                                       "--port", str(port), "--queue-wait-s", "0.5", "--max-tokens", "480",
                                       "--max-body-bytes", "200000", "--max-prompt-chars", "20000"],
                                      env=env, cwd=ROOT, stdout=open(root / "gateway.log", "w"),
                                      stderr=subprocess.STDOUT))
        base = f"http://127.0.0.1:{port}/v1"
        _wait_http(base + "/models", procs[-1], "the gateway", 30)
        for e, p in zip(engines, procs):
            _wait_http(e["url"].removesuffix("/v1") + "/health", p, "an engine")
        yield Gateway(base_url=base, store=store, engines=[e["url"] for e in engines])
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        store.clear()


def pytest_collection_modifyitems(config, items):
    """The vLLM test (marker ``vllm``: a 40 s start, 3-4 GB of memory, a 3.5 GB install) runs only when asked
    for, with ``-m slow`` or ``-m vllm``; the default suite deselects it."""
    expr = config.getoption("markexpr") or ""
    if "slow" in expr or "vllm" in expr:
        return
    # the marker, not item.keywords: a parametrised id such as [vllm-8000] is a keyword too
    left_out = [item for item in items if item.get_closest_marker("vllm")]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if not item.get_closest_marker("vllm")]
