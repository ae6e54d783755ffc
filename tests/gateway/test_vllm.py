"""A plan's vLLM export fed to the real vLLM (its CPU build), answering through the gateway.  Opt-in:
``pytest -m vllm tests/gateway/test_vllm.py`` (or ``-m slow``), after ``bash scripts/vllm_cpu.sh``.

A two-stage chain of the tiny LLaMA, split 3 + 1 layers, exported with ``--runtime vllm`` and started as the
export says: ``VLLM_PP_LAYER_PARTITION``, ``--pipeline-parallel-size 2``, ``--max-num-seqs``, ``--dtype``,
``--max-model-len``, ``--port``.  What a CPU on one host needs instead: the module entry point (the ``vllm``
command fails under the ``vllm-cpu`` package name), the multiprocessing executor for the two ranks (Ray spans
hosts), eager compilation (``--enforce-eager``'s second stage crashes on the first request), one core per
rank, and the KV pool in bytes (``--kv-cache-memory-bytes``: on CPU ``--gpu-memory-utilization`` is a share of
the machine's RAM).  The scenario gives each server the memory that leaves exactly that pool at the export's
utilisation once its layers are loaded, so vLLM's own KV sizing meets the export's ``effective_capacity``:
every stage gets the same pool, the 3-layer stage fits a third of the 1-layer stage's jobs, and vLLM keeps
the smaller.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import openai
import pytest

from .real_engines import env, free_port, require, run, start_gateway, stop, tiny_model, wait_line

pytestmark = [pytest.mark.slow, pytest.mark.vllm, pytest.mark.timeout(900)]
VENV = Path.home() / ".cache" / "chainplan" / "vllm-cpu"
KEY = "sk-vllm-" + uuid.uuid4().hex
MAX_TOKENS = 256
KV_BYTES = 64 * 2**20           # the KV pool of each pipeline rank
UTIL = 0.9                      # the export's default --gpu-memory-utilization
COMPILATION = '{"mode": 2, "backend": "eager"}'


def _plan(hosts: list[str], split: tuple[int, int], capacity: int) -> dict:
    return {"algorithm": "hand", "feasible": True, "arrival_rate": 0.5,
            "placement": [{"server": hosts[0], "start_block": 0, "num_blocks": split[0]},
                          {"server": hosts[1], "start_block": split[0], "num_blocks": split[1]}],
            "chains": [{"servers": hosts, "blocks": list(split), "service_time_s": 1.0, "capacity": capacity}]}


def _scenario(hf_config: dict, hosts: list[str], split: tuple[int, int], block_bytes: int) -> dict:
    # memory_i x UTIL - layers_i x block = KV_BYTES on both ranks (what vLLM is given on CPU)
    mem = [(KV_BYTES + m * block_bytes) / UTIL / 1e9 for m in split]
    return {"name": "vllm-chain", "model": {"name": "tiny", "hf_config": hf_config},
            "servers": [{"id": h, "memory_gb": m, "comm_time_s": 0.05, "block_time_s": 0.01} for h, m in zip(hosts, mem)],
            "workload": {"arrival_rate": 0.5, "max_tokens": MAX_TOKENS, "input_tokens": 16, "output_tokens": 16}}


def _command(eng: dict) -> tuple[list[str], dict[str, str]]:
    """The export's engine as this host runs it (the module docstring lists each change)."""
    args = list(eng["args"])
    assert args[:2] == ["vllm", "serve"]
    argv = [str(VENV / "bin" / "python"), "-m", "vllm.entrypoints.openai.api_server", "--model", args[2], *args[3:]]
    argv[argv.index("--distributed-executor-backend") + 1] = "mp"
    argv += ["--kv-cache-memory-bytes", str(KV_BYTES), "--compilation-config", COMPILATION]
    return argv, dict(eng["env"], VLLM_CPU_OMP_THREADS_BIND="0|1")


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    require((VENV / "bin" / "python").exists(), f"vLLM's CPU build missing in {VENV}: run bash scripts/vllm_cpu.sh")
    root = tmp_path_factory.mktemp("vllm")
    model = tiny_model(root, heads=2)           # head size 32: the smallest vLLM's CPU attention runs
    hf = json.loads((model / "config.json").read_text())
    hosts, split = ["127.0.0.1", "127.0.0.2"], (3, 1)
    block_bytes = 4 * (4 * hf["hidden_size"] ** 2 + 3 * hf["hidden_size"] * hf["intermediate_size"]
                       + 2 * hf["hidden_size"])                # fp32: q, k, v, o, the gated FFN and two norms
    (root / "scenario.json").write_text(json.dumps(_scenario(hf, hosts, split, block_bytes)))
    # a capacity above what the 3-layer rank's pool holds: the export caps --max-num-seqs at effective_capacity
    (root / "plan.json").write_text(json.dumps(_plan(hosts, split, capacity=200)))
    port = free_port()
    export = json.loads(run(sys.executable, "-m", "solvers", "export", str(root / "plan.json"), "--scenario",
                            str(root / "scenario.json"), "--runtime", "vllm", "--model-path", str(model),
                            "--engine-port", str(port), "--engines-file", str(root / "engines.json"), "--json",
                            env=env()))
    [eng] = export["engines"]
    argv, extra = _command(eng)
    log = root / "vllm.log"
    procs = [subprocess.Popen(argv, env=env(**extra), cwd=root, stdout=open(log, "w"), stderr=subprocess.STDOUT)]
    try:
        wait_line(procs[0], "Application startup complete", 400, log)
        gateway, base = start_gateway(["--model", "tiny", "--cluster", "1", "--engines-file",
                                       str(root / "engines.json"), "--dispatch", "memory", "--plan",
                                       f"1={root / 'plan.json'}", "--key", f"1={KEY}", "--max-tokens", "200"],
                                      root / "gateway.log", KEY)
        procs.append(gateway)
        yield {"root": root, "export": export, "engine": eng, "argv": argv, "log": log, "base": base,
               "url": json.loads((root / "engines.json").read_text())["engines"][0]["url"], "model": str(model)}
    finally:
        stop(procs)


def test_the_pipeline_runs_as_exported(chain):
    eng, argv = chain["engine"], chain["argv"]
    assert eng["env"] == {"VLLM_PP_LAYER_PARTITION": "3,1"} and eng["layer_partition"] == [3, 1]
    exported = eng["args"][3:]
    assert exported[exported.index("--pipeline-parallel-size") + 1] == "2"
    for flag in ("--pipeline-parallel-size", "--tensor-parallel-size", "--max-num-seqs", "--gpu-memory-utilization",
                 "--dtype", "--max-model-len", "--port"):
        assert argv[argv.index(flag) + 1] == exported[exported.index(flag) + 1], flag
    log = chain["log"].read_text(errors="replace")
    assert "pipeline_parallel_size=2" in log and "PP rank 0" in log
    assert "(Worker_PP0" in log and "(Worker_PP1" in log            # one process per pipeline rank


def test_vllm_kv_concurrency_is_the_exports_effective_capacity(chain):
    """vLLM's own figure ("CPU KV cache size: N tokens, Maximum concurrency for 256 tokens per request: X") is the
    weakest stage's full-length jobs, the export's effective_capacity; --max-num-seqs is the smaller of it and
    the chain's capacity."""
    eng = chain["engine"]
    log = chain["log"].read_text(errors="replace")
    found = re.findall(r"KV cache size: ([\d,]+) tokens, Maximum concurrency for ([\d,]+) tokens per request: "
                       r"([\d.]+)x", log)
    assert found, log[-3000:]
    tokens, per_request, concurrency = int(found[-1][0].replace(",", "")), found[-1][1], float(found[-1][2])
    assert int(per_request.replace(",", "")) == MAX_TOKENS
    assert math.floor(concurrency) == eng["effective_capacity"], (concurrency, eng)
    # every rank gets the same pool; the one with 3 layers holds the fewest tokens and vLLM keeps that: fewer
    # than a 2-layer rank would, more than one rank with all 4 (a token's KV in one layer: keys and values of
    # 2 heads x 32 in fp32, 512 bytes; vLLM rounds down to whole blocks)
    assert KV_BYTES // (4 * 512) < tokens <= KV_BYTES // (3 * 512)
    assert eng["effective_capacity"] == math.floor(KV_BYTES / (3 * 512 * MAX_TOKENS))
    assert eng["max_num_seqs"] == eng["effective_capacity"] < eng["plan_capacity"] == 200
    assert any(w.startswith(f"chain 0: at --gpu-memory-utilization {UTIL:g} vLLM holds {eng['effective_capacity']} jobs")
               for w in chain["export"]["warnings"])


def test_sdk_through_the_gateway_matches_vllm_itself(chain):
    with openai.OpenAI(base_url=chain["base"], api_key=KEY, max_retries=0) as client:
        chat = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hello there"}],
                                              max_tokens=10, temperature=0)
        direct = httpx.post(chain["url"] + "/chat/completions", timeout=60, json={
            "model": chain["model"], "messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 10,
            "temperature": 0}).json()
        assert chat.choices[0].message.content == direct["choices"][0]["message"]["content"]
        assert chat.usage.prompt_tokens == direct["usage"]["prompt_tokens"] > 0
        assert chat.usage.completion_tokens == direct["usage"]["completion_tokens"] >= 1
        chunks = list(client.completions.create(model="tiny", prompt="The quick brown fox", max_tokens=6,
                                                temperature=0, stream=True, stream_options={"include_usage": True}))
        text = "".join(c.choices[0].text for c in chunks if c.choices)
        done = client.completions.create(model="tiny", prompt="The quick brown fox", max_tokens=6, temperature=0)
        assert text == done.choices[0].text and chunks[-1].usage.completion_tokens == done.usage.completion_tokens
