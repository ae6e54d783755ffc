"""A plan's llama.cpp export fed to the real llama.cpp, answering through the gateway.

scenario -> ``python -m solvers plan`` -> ``python -m solvers export --runtime llama.cpp`` (commands and the
engines file) -> ``python -m serving.llama_cpp.launch`` starts every chain exactly as exported (its
``ggml-rpc-server`` stages and ``llama-server --rpc ... -ts ... -np ...``) on the tiny LLaMA made locally
and converted to GGUF by llama.cpp's own converter -> ``python -m serving.gateway`` over the dispatcher's
Redis store -> the official ``openai`` SDK.  The plan's servers are loopback addresses, so one machine
holds the whole plan, each process on its server's own address and the export's ports.

Needs ``bash scripts/llama_cpp.sh`` (cached build) and the PETALS environment (the tiny model and the
GGUF converter run there): skipped locally without them, a failure under CI=true.
"""

from __future__ import annotations

import json
import math
import random
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from serving.dispatch.redis_store import RedisStore
from serving.dispatch.snapshot import snapshot_from_document
from serving.gateway.keys import key_digest
from serving.llama_cpp import llama_cpp_home
from tests.dispatch.conftest import REDIS_URL, require_redis
from tests.gateway.conftest import wait_idle

from .real_engines import ROOT, env, free_port, require, run, start_gateway, stop, tiny_model, wait_line

KEY = "sk-llama-cpp-" + uuid.uuid4().hex
CLUSTER = 1
MAX_TOKENS = 256               # the tokens one KV slot holds: the scenario's workload.max_tokens
pytestmark = pytest.mark.timeout(300)


def _scenario(hf_config: dict, hosts: list[str]) -> dict:
    # memory for two blocks plus 2 (first pair) or 1 (second pair) full-length jobs of the tiny model
    # (block 262,656 B of fp32 weights, a job's KV 131,072 B per block at 256 tokens): two disjoint
    # two-stage chains of capacity 2 and 1
    mem = [0.00115, 0.00115, 0.0009, 0.0009]
    times = [(0.05, 0.01), (0.05, 0.01), (0.08, 0.02), (0.08, 0.02)]
    return {"name": "llama-cpp-chains", "model": {"name": "tiny", "hf_config": hf_config},
            "servers": [{"id": h, "memory_gb": m, "comm_time_s": c, "block_time_s": b}
                        for h, m, (c, b) in zip(hosts, mem, times)],
            "workload": {"arrival_rate": 1.0, "max_tokens": MAX_TOKENS, "input_tokens": 16, "output_tokens": 16}}


@dataclass
class Deployment:
    root: Path
    scenario: dict
    plan: dict
    export: dict
    engines: dict
    ready: dict
    base_url: str
    store: RedisStore

    def engine(self, chain: int) -> dict:
        return next(e for e in self.export["engines"] if e["chain"] == chain)

    def url(self, chain: int) -> str:
        return next(e["url"] for e in self.engines["engines"] if e["chain"] == chain).removesuffix("/v1")

    def log(self, chain: int) -> str:
        return (self.root / "run" / f"chain{chain}-llama-server.log").read_text(errors="replace")

    def predicted_total(self, chain: int) -> float:
        """Tokens the chain's llama-server generated so far (its own Prometheus counter)."""
        text = httpx.get(self.url(chain) + "/metrics", timeout=10).text
        return float(re.search(r"^llamacpp:tokens_predicted_total (\S+)$", text, re.M).group(1))

    def idle(self, within_s: float = 2.0) -> None:
        wait_idle(self.store, CLUSTER, within_s)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    home = llama_cpp_home()
    require((home / "bin" / "llama-server").is_file() and (home / "src" / "convert_hf_to_gguf.py").is_file(),
            f"llama.cpp is not built in {home}: run bash scripts/llama_cpp.sh")
    require_redis()
    root = tmp_path_factory.mktemp("llama-cpp")
    model = tiny_model(root)            # fp32, as the plan counts it; GGUF by llama.cpp's own converter
    gguf = root / "tiny.gguf"
    run(sys.executable, "-m", "serving.llama_cpp.gguf", str(model), str(gguf), "--outtype", "f32", env=env())

    net = f"127.{random.randint(100, 250)}.{random.randint(1, 250)}"     # this run's own loopback addresses
    hosts = [f"{net}.{i}" for i in (11, 12, 13, 14)]
    scenario = _scenario(json.loads((model / "config.json").read_text()), hosts)
    (root / "scenario.json").write_text(json.dumps(scenario))
    plan = json.loads(run(sys.executable, "-m", "solvers", "plan", str(root / "scenario.json"), env=env()))
    (root / "plan.json").write_text(json.dumps(plan))
    rpc_port, api_port = free_port(), free_port()
    export = json.loads(run(sys.executable, "-m", "solvers", "export", str(root / "plan.json"), "--scenario",
                            str(root / "scenario.json"), "--runtime", "llama.cpp", "--model-path", str(gguf),
                            "--local-device", "CPU", "--rpc-port", str(rpc_port), "--engine-port", str(api_port),
                            "--engines-file", str(root / "engines.json"), "--json", env=env()))
    (root / "export.json").write_text(json.dumps(export))
    engines = json.loads((root / "engines.json").read_text())

    prefix = f"test-llama-cpp-{uuid.uuid4().hex[:10]}"
    store = RedisStore(REDIS_URL, prefix=prefix)
    procs: list[subprocess.Popen] = []
    try:
        # the engines' own log verbosity (each layer's device) and metrics, by environment: the command
        # lines stay the export's
        launch_log = root / "launch.log"
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "serving.llama_cpp.launch", "--export", str(root / "export.json"), "--bind",
             "server", "--workdir", str(root / "run"), "--ready-file", str(root / "ready.json")],
            env=env(LLAMA_ARG_LOG_VERBOSITY="5", LLAMA_ARG_ENDPOINT_METRICS="1"), cwd=ROOT,
            stdout=open(launch_log, "w"), stderr=subprocess.STDOUT))
        wait_line(procs[-1], "chains ready:", 120, launch_log)
        store.set_plan(CLUSTER, snapshot_from_document(1, plan))
        store.put_token(key_digest(KEY), CLUSTER)
        gateway, base = start_gateway(["--model", "tiny", "--cluster", str(CLUSTER), "--engines-file",
                                       str(root / "engines.json"), "--dispatch", REDIS_URL, "--max-tokens", "200",
                                       "--queue-wait-s", "5"], root / "gateway.log", KEY, prefix=prefix)
        procs.append(gateway)
        yield Deployment(root, scenario, plan, export, engines, json.loads((root / "ready.json").read_text()),
                         base, store)
    finally:
        stop(procs)
        store.clear()


@pytest.fixture
def client(deployment):
    with openai.OpenAI(base_url=deployment.base_url, api_key=KEY, max_retries=0) as c:
        yield c
    deployment.idle()


def _flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").decode().split("\0")


def _last_per_device(log: str, what: str) -> dict[str, float]:
    """``{endpoint: MiB}`` of llama.cpp's last ``<what> buffer size`` line per RPC device (it logs a dry run first)."""
    return {m[1]: float(m[2]) for m in re.finditer(rf"RPC\d+\[([\d.]+:\d+)\] {what} buffer size = +([\d.]+) MiB", log)}


def test_the_plan_has_two_disjoint_multi_stage_chains(deployment):
    chains = deployment.plan["chains"]
    assert [len(c["servers"]) for c in chains] == [2, 2] and [c["capacity"] for c in chains] == [2, 1], chains
    assert not deployment.export["disjoint"]["dropped_chains"]
    assert [e["servers"] for e in deployment.engines["engines"]] == [c["servers"] for c in chains]


def test_every_process_runs_the_exported_command(deployment):
    """What runs (read from /proc) is the export's command: the same arguments, only the program's path and the
    listening address (the server's own, with --bind server) differ."""
    for chain in deployment.ready["chains"]:
        eng = deployment.engine(chain["chain"])
        by_role = {}
        for p in chain["processes"]:
            by_role.setdefault(p["role"], []).append(p)
        [head] = by_role["llama-server"]
        got = _cmdline(head["pid"])
        want = list(eng["args"])
        want[want.index("--host") + 1] = eng["servers"][-1]
        assert Path(got[0]).name == "llama-server" and got[1:] == want[1:]
        for flag in ("--rpc", "--device", "-ngl", "-sm", "-ts", "-np", "-c", "-ctk", "-ctv", "--port"):
            assert flag in got, flag
        rpcs = by_role["rpc-server"]
        assert [p["server"] for p in rpcs] == [r["server"] for r in eng["rpc_servers"]] == eng["servers"]
        for p, r in zip(rpcs, eng["rpc_servers"]):
            got = _cmdline(p["pid"])
            want = list(r["args"])
            want[want.index("--host") + 1] = r["server"]
            assert Path(got[0]).name in ("rpc-server", "ggml-rpc-server") and got[1:] == want[1:]
        assert _flag(eng["args"], "--rpc").split(",") == [f"{s}:{r['port']}" for s, r in
                                                            zip(eng["servers"], eng["rpc_servers"])]


def test_each_layer_runs_on_its_planned_server(deployment):
    """llama.cpp's own log: layer il assigned to device RPCk, with RPCk the k-th --rpc endpoint, the chain's k-th
    server; the output layer (il = L) on the last one."""
    for eng in deployment.export["engines"]:
        log = deployment.log(eng["chain"])
        assigned = {int(m[1]): m[2] for m in re.finditer(r"layer +(\d+) assigned to device (RPC\d+)", log)}
        planned = {il: f"RPC{k}" for k, (lo, hi) in enumerate(eng["layers"]) for il in range(lo, hi)}
        num_layers = eng["layers"][-1][1]
        planned[num_layers] = f"RPC{len(eng['layers']) - 1}"
        assert assigned == planned, (assigned, planned)
        devices = dict(re.findall(r"using device (RPC\d+) \(([\d.]+:\d+)\)", log))
        assert [devices[f"RPC{k}"] for k in range(len(eng["servers"]))] == _flag(eng["args"], "--rpc").split(",")


def test_engine_kv_concurrency_is_the_exports_effective_capacity(deployment):
    """llama-server's own slots (/props, /slots) and each stage's KV and weights (its log) against the export:
    -np slots of max_tokens each, every stage holding its layers' KV for all of them, so the chain holds
    effective_capacity full-length jobs: the weakest stage's, recomputed here from the engine's own sizes."""
    model = _resolved_model(deployment)
    memory = {s["id"]: s["memory_gb"] for s in deployment.scenario["servers"]}
    for eng in deployment.export["engines"]:
        url = deployment.url(eng["chain"])
        props = httpx.get(url + "/props", timeout=10).json()
        slots = httpx.get(url + "/slots", timeout=10).json()
        capacity = next(e["capacity"] for e in deployment.engines["engines"] if e["chain"] == eng["chain"])
        assert eng["effective_capacity"] is not None
        assert props["total_slots"] == eng["parallel"] == capacity == min(eng["capacity_alone"],
                                                                          eng["effective_capacity"])
        assert eng["parallel"] == eng["plan_capacity"]            # every chain kept: the plan's own capacity
        assert len(slots) == eng["parallel"] and all(s["n_ctx"] == MAX_TOKENS for s in slots)
        log = deployment.log(eng["chain"])
        kv = _last_per_device(log, "KV")
        weights = _last_per_device(log, "model")
        rpc = _flag(eng["args"], "--rpc").split(",")
        per_stage_jobs = []
        for k, ((lo, hi), endpoint) in enumerate(zip(eng["layers"], rpc)):
            layers = hi - lo
            # the plan's KV per stage: layers x jobs x cache_size_gb; llama.cpp logs MiB to two decimals
            assert kv[endpoint] * 2**20 == pytest.approx(layers * eng["parallel"] * model["cache_size_gb"] * 1e9,
                                                         abs=0.006 * 2**20), (endpoint, kv)
            planned_weights = layers * model["block_size_gb"] * 1e9
            if k == len(rpc) - 1:
                # the last stage also holds the output layer (norm + vocab x hidden), which the plan does not count
                cfg = deployment.scenario["model"]["hf_config"]
                planned_weights += (cfg["vocab_size"] + 1) * cfg["hidden_size"] * 4
            assert weights[endpoint] * 2**20 == pytest.approx(planned_weights, abs=0.006 * 2**20), (endpoint, weights)
            job_bytes = kv[endpoint] * 2**20 / eng["parallel"]
            free = memory[eng["servers"][k]] * 1e9 - layers * model["block_size_gb"] * 1e9
            per_stage_jobs.append(math.floor(free / job_bytes + 1e-6))
        assert min(per_stage_jobs) == eng["effective_capacity"], per_stage_jobs


def _resolved_model(deployment) -> dict:
    out = run(sys.executable, "-m", "solvers", "validate", str(deployment.root / "scenario.json"), env=env())
    return json.loads(out)["model"]


def test_sdk_sync_and_streaming_text_and_usage(client, deployment):
    """The official SDK through the gateway: the engine's greedy text and its token counts, as a direct request to
    the same engine gives them."""
    chat = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hello there"}],
                                          max_tokens=12, temperature=0)
    assert chat.object == "chat.completion" and isinstance(chat.choices[0].message.content, str)
    assert chat.choices[0].message.content and chat.choices[0].finish_reason in ("stop", "length")
    u = chat.usage
    assert u.prompt_tokens > 0 and 1 <= u.completion_tokens <= 12 and u.total_tokens == u.prompt_tokens + u.completion_tokens
    direct = httpx.post(deployment.url(0) + "/v1/chat/completions", timeout=30, json={
        "messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 12, "temperature": 0}).json()
    assert chat.choices[0].message.content == direct["choices"][0]["message"]["content"]
    assert (u.prompt_tokens, u.completion_tokens) == (direct["usage"]["prompt_tokens"],
                                                      direct["usage"]["completion_tokens"])

    done = client.completions.create(model="tiny", prompt="The quick brown fox", max_tokens=7, temperature=0)
    tokens = httpx.post(deployment.url(0) + "/tokenize", json={"content": "The quick brown fox",
                                                               "add_special": True}, timeout=10).json()["tokens"]
    assert done.usage.prompt_tokens == len(tokens)
    if done.choices[0].finish_reason == "length":
        assert done.usage.completion_tokens == 7
    else:                                       # the end-of-sequence token came first
        assert done.choices[0].finish_reason == "stop" and 1 <= done.usage.completion_tokens < 7

    chunks = list(client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hello there"}],
                                                 max_tokens=12, temperature=0, stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == chat.choices[0].message.content
    assert not chunks[-1].choices and chunks[-1].usage.completion_tokens == u.completion_tokens
    pieces = list(client.completions.create(model="tiny", prompt="The quick brown fox", max_tokens=7, temperature=0,
                                            stream=True))
    assert "".join(p.choices[0].text for p in pieces) == done.choices[0].text
    assert pieces[-1].choices[0].finish_reason == done.choices[0].finish_reason


def test_requests_run_on_the_chain_the_lease_grants(client, deployment):
    """Chain 0 is the faster: JFFC grants it while it has a free slot.  With both its slots held (leases taken
    from the same dispatcher), the gateway's next request is granted chain 1 and only chain 1's llama-server
    generates its tokens; once they are released, chain 0's does."""
    store = deployment.store
    held = [store.acquire(CLUSTER, wait_s=0) for _ in range(2)]
    try:
        assert [h["chain"] for h in held] == [0, 0], held
        before = [deployment.predicted_total(0), deployment.predicted_total(1)]
        done = client.completions.create(model="tiny", prompt="Servers differ", max_tokens=9, temperature=0)
        after = [deployment.predicted_total(0), deployment.predicted_total(1)]
        assert after[0] == before[0]
        assert after[1] - before[1] == done.usage.completion_tokens > 0
    finally:
        for h in held:
            store.release(CLUSTER, h["lease"])
    before = [deployment.predicted_total(0), deployment.predicted_total(1)]
    done = client.completions.create(model="tiny", prompt="Servers differ", max_tokens=9, temperature=0)
    after = [deployment.predicted_total(0), deployment.predicted_total(1)]
    assert after[0] - before[0] == done.usage.completion_tokens > 0 and after[1] == before[1]
    completed = {c["chain"]: c["completed"] for c in store.state(CLUSTER)["observations"]["chains"]}
    assert completed[1] >= 1 and completed[0] >= 1
