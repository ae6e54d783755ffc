"""The CLI as a user runs it (real subprocesses): --hf-config, --format table, export to runtimes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HF = ROOT / "examples" / "hf_configs"


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "solvers", *args], cwd=ROOT, input=stdin, capture_output=True,
                          text=True, timeout=300)


def scenario(tmp_path: Path, **model) -> Path:
    """Six servers, twelve blocks: two chains that each need three servers, quick to plan."""
    doc = {
        "name": "cli-six",
        "model": model or {"name": "toy", "num_blocks": 12, "block_size_gb": 1.0, "cache_size_gb": 0.1},
        "servers": [{"id": f"g{i}", "memory_gb": 6.0 if i < 3 else 8.0, "comm_time_s": 0.05 + 0.01 * i,
                     "block_time_s": 0.02} for i in range(6)],
        "workload": {"arrival_rate": 0.5, "max_tokens": 1024, "input_tokens": 200, "output_tokens": 100},
    }
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(doc))
    return path


def test_plan_json_stays_default_and_table_is_readable(tmp_path):
    path = scenario(tmp_path)
    js = run("plan", str(path), "--algorithm", "proposed", "--simulate", "3000")
    assert js.returncode == 0, js.stderr
    doc = json.loads(js.stdout)
    assert doc["feasible"] and doc["chains"]
    table = run("plan", str(path), "--algorithm", "proposed", "--simulate", "3000", "--format", "table")
    assert table.returncode == 0, table.stderr
    out = table.stdout
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)
    # every chain of the JSON document, with its servers in order, is a row of the table
    for ch in doc["chains"]:
        assert " -> ".join(f"{s}[{m}]" for s, m in zip(ch["servers"], ch["blocks"])) in out
    # per-server blocks and the binding constraint the explanation gives
    for row in doc["explanation"]["servers"]:
        assert row["server"] in out and row["binding"] in out
    assert f"Cache reservation c = {doc['c']}" in out
    lo, hi = doc["bounds"]["response_time_lower_s"], doc["bounds"]["response_time_upper_s"]
    assert f"{lo:.4g} s .. {hi:.4g} s" in out
    ci = doc["simulation"]["response_ci95_s"]
    assert f"+/- {ci:.3g} s (95% CI)" in out
    assert doc["explanation"]["summary"][0] in out


def test_table_says_why_no_bounds_and_flags_overload(tmp_path):
    doc = json.loads(scenario(tmp_path).read_text())
    doc["workload"]["arrival_rate"] = 20.0           # at c = 1 the chains serve about 7.8 req/s
    path = tmp_path / "overloaded.json"
    path.write_text(json.dumps(doc))
    res = run("plan", str(path), "--algorithm", "proposed", "--c", "1", "--format", "table")
    assert res.returncode == 1, res.stderr
    assert "no closed-form bounds: the arrival rate 20 req/s is not below" in res.stdout
    assert res.stdout.count("! OVERLOADED: arrival rate 20 req/s") == 1
    # an algorithm that routes each request itself has no JFFC bounds, and the table says why
    res = run("plan", str(scenario(tmp_path)), "--algorithm", "petals", "--simulate", "500", "--format", "table")
    assert res.returncode == 0, res.stderr
    assert "no closed-form bounds: petals routes every request itself" in res.stdout
    assert "(95% CI)" in res.stdout


def test_table_of_an_infeasible_scenario_exits_1():
    res = run("plan", "examples/two-tier-europe.json", "--format", "table")
    assert res.returncode == 1
    assert "NO FEASIBLE PLAN" in res.stdout and "servers can hold 40 of 70 blocks" in res.stdout


def test_hf_config_replaces_the_scenario_model(tmp_path):
    path = scenario(tmp_path)
    res = run("validate", str(path), "--hf-config", str(HF / "llama-2-70b.json"))
    assert res.returncode == 0, res.stderr
    model = json.loads(res.stdout)["model"]
    assert model["num_blocks"] == 80
    # LLaMA-2-70B in fp16: 8192 hidden, GQA with 8 KV heads, gated FFN of 28672 -> about 1.71 GB a block
    assert model["block_size_gb"] == pytest.approx(1.711, abs=0.005)
    # KV: 2 (K and V) x 8 heads x 128 dims x 2 bytes x 1024 tokens (workload.max_tokens) per block
    assert model["cache_size_gb"] == pytest.approx(2 * 8 * 128 * 2 * 1024 / 1e9, rel=1e-6)
    # the scenario's own explicit sizes (12 blocks of 1 GB) are gone
    plain = json.loads(run("validate", str(path)).stdout)["model"]
    assert plain["num_blocks"] == 12


def test_hf_config_plans(tmp_path):
    doc = json.loads(scenario(tmp_path).read_text())
    for s in doc["servers"]:
        s["memory_gb"] = 8.0
    path = tmp_path / "s.json"
    path.write_text(json.dumps(doc))
    res = run("plan", str(path), "--hf-config", str(HF / "qwen2-0.5b.json"), "--algorithm", "proposed")
    assert res.returncode == 0, res.stderr
    plan = json.loads(res.stdout)
    assert all(sum(ch["blocks"]) == 24 for ch in plan["chains"])      # Qwen2-0.5B has 24 layers


def test_hf_config_errors_are_clear(tmp_path):
    path = scenario(tmp_path)
    moe = run("plan", str(path), "--hf-config", str(HF / "mixtral-8x7b.json"))
    assert moe.returncode == 2
    assert "mixture-of-experts" in moe.stderr and "mixtral-8x7b.json" in moe.stderr
    assert "Traceback" not in moe.stderr
    bad = tmp_path / "partial.json"
    bad.write_text(json.dumps({"model_type": "llama", "hidden_size": 4096}))
    res = run("plan", str(path), "--hf-config", str(bad))
    assert res.returncode == 2
    assert "num_hidden_layers: is required" in res.stderr and "partial.json" in res.stderr
    missing = run("plan", str(path), "--hf-config", str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    broken = tmp_path / "broken.json"
    broken.write_text("{\"model_type\": ")
    res = run("plan", str(path), "--hf-config", str(broken))
    assert res.returncode == 2 and "malformed JSON" in res.stderr


def _partitions(text: str, var: str) -> list[list[int]]:
    out = []
    for line in text.splitlines():
        if line.startswith(var + "="):
            out.append([int(x) for x in line.split()[0].split("=", 1)[1].split(",")])
    return out


def test_export_a_scenario_plans_first(tmp_path):
    path = scenario(tmp_path)
    for runtime, var in (("vllm", "VLLM_PP_LAYER_PARTITION"), ("sglang", "SGLANG_PP_LAYER_PARTITION")):
        res = run("export", str(path), "--runtime", runtime, "--model-id", "org/toy", "--algorithm", "proposed")
        assert res.returncode == 0, res.stderr
        parts = _partitions(res.stdout, var)
        assert parts and all(sum(p) == 12 for p in parts)
        assert "org/toy" in res.stdout
    res = run("export", str(path), "--runtime", "petals", "--initial-peers", "/ip4/10.0.0.1/tcp/31337/p2p/QmX",
              "--algorithm", "proposed")
    assert res.returncode == 0, res.stderr
    servers = [ln for ln in res.stdout.splitlines() if ln.startswith("python -m petals.cli.run_server")]
    assert servers and all("--initial_peers /ip4/10.0.0.1/tcp/31337/p2p/QmX" in s for s in servers)
    assert all("--attn_cache_tokens" in s and "--block_indices" in s for s in servers)
    assert "--new_swarm" not in res.stdout
    # without peers the first server starts a private swarm; --no-new-swarm leaves the swarm flags out
    private = run("export", str(path), "--runtime", "petals", "--algorithm", "proposed")
    lines = [ln for ln in private.stdout.splitlines() if ln.startswith("python -m petals.cli.run_server")]
    assert lines[0].endswith("--new_swarm") and all('--initial_peers "$INITIAL_PEERS"' in ln for ln in lines[1:])
    bare = run("export", str(path), "--runtime", "petals", "--algorithm", "proposed", "--no-new-swarm")
    assert "--new_swarm" not in bare.stdout and "--initial_peers" not in bare.stdout
    sglang = run("export", str(path), "--runtime", "sglang", "--algorithm", "proposed", "--dist-init-port", "6123")
    assert sglang.returncode == 0 and ":6123" in sglang.stdout


def test_export_a_plan_document_matches_the_plan(tmp_path):
    path = scenario(tmp_path)
    plan = run("plan", str(path), "--algorithm", "proposed")
    assert plan.returncode == 0, plan.stderr
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(plan.stdout)
    doc = json.loads(plan.stdout)
    res = run("export", str(plan_path), "--runtime", "llama.cpp", "--scenario", str(path), "--json",
              "--model-path", "toy.gguf", "--rpc-port", "50100")
    assert res.returncode == 0, res.stderr
    exp = json.loads(res.stdout)
    assert exp["runtime"] == "llama.cpp" and exp["model_path"] == "toy.gguf"
    plan_chains = [(ch["servers"], ch["blocks"]) for ch in doc["chains"]]
    for eng in exp["engines"]:
        assert (eng["servers"], eng["layer_partition"]) in plan_chains
        assert all(a.endswith(":50100") for a in eng["args"][eng["args"].index("--rpc") + 1].split(",")) \
            if "--rpc" in eng["args"] else True
    # exported engines share no server (one engine per GPU)
    used = [s for eng in exp["engines"] for s in eng["servers"]]
    assert len(used) == len(set(used))
    # from stdin, without the scenario: still a valid export, with the warning about what is missing
    res = run("export", "-", "--runtime", "petals", stdin=plan.stdout)
    assert res.returncode == 0, res.stderr
    assert "--attn_cache_tokens and --inference_max_length are left out" in res.stdout


def test_export_errors_and_exit_codes(tmp_path):
    infeasible = run("export", "examples/two-tier-europe.json", "--runtime", "petals")
    assert infeasible.returncode == 1 and "servers can hold 40 of 70 blocks" in infeasible.stderr
    bad_runtime = run("export", "examples/two-tier-europe.json", "--runtime", "vlm")
    assert bad_runtime.returncode == 2 and "invalid choice" in bad_runtime.stderr
    typo = json.loads(scenario(tmp_path).read_text())
    typo["workload"]["target_lod"] = 0.5
    path = tmp_path / "typo.json"
    path.write_text(json.dumps(typo))
    res = run("export", str(path), "--runtime", "exo")
    assert res.returncode == 2 and "workload.target_lod" in res.stderr and "target_load" in res.stderr
    res = run("export", str(scenario(tmp_path)), "--runtime", "vllm", "--gpu-memory-utilization", "1.5")
    assert res.returncode == 2 and "--gpu-memory-utilization" in res.stderr


def test_help_points_into_the_repository():
    for args in ((), ("plan",), ("export",), ("validate",)):
        res = run(*args, "--help")
        assert res.returncode == 0
        assert "shared/spec" not in res.stdout and "../shared" not in res.stdout
    assert "docs/scenario-format.md" in run("--help").stdout
    assert "docs/runtimes.md" in run("export", "--help").stdout
    plan_help = run("plan", "--help").stdout
    assert "--hf-config" in plan_help and "--format" in plan_help


def test_the_probe_reads_hf_configs_as_the_planner_does():
    """gpu_probe and the planner share one config.json reader: same shapes, same refusals."""
    from dataclasses import replace

    from gpu_probe.models import architecture_from_hf_config
    from solvers.errors import ScenarioError
    from solvers.hf_config import derive_hf_config

    for path in sorted(HF.glob("*.json")):
        cfg = json.loads(path.read_text())
        try:
            planner = derive_hf_config(cfg).architecture
        except ScenarioError as exc:
            with pytest.raises(ValueError, match="mixture-of-experts"):
                architecture_from_hf_config(cfg)
            assert "mixture-of-experts" in str(exc)
            continue
        probe, _, _ = architecture_from_hf_config(cfg)
        assert probe == replace(planner, extra_params_per_block=0), path.name


def test_table_of_a_large_plan_is_summarised(tmp_path):
    """Sixty one-server chains: the table lists the first rows and counts the rest instead of printing all."""
    from solvers.cli import TABLE_ROWS

    doc = {"name": "many", "model": {"num_blocks": 4, "block_size_gb": 1.0, "cache_size_gb": 0.1},
           "servers": [{"id": f"w{i:03d}", "memory_gb": 8.0, "comm_time_s": 0.1 + 0.001 * i, "block_time_s": 0.05}
                       for i in range(60)],
           "workload": {"arrival_rate": 1.0}}
    path = tmp_path / "many.json"
    path.write_text(json.dumps(doc))
    res = run("plan", str(path), "--algorithm", "whole-model", "--format", "table")
    assert res.returncode == 0, res.stderr
    plan = json.loads(run("plan", str(path), "--algorithm", "whole-model").stdout)
    assert len(plan["chains"]) == 60
    assert f"... and {60 - TABLE_ROWS} more" in res.stdout
    assert len(res.stdout.splitlines()) < 4 * TABLE_ROWS + 60
