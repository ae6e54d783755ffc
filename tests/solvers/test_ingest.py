"""solvers.ingest: PETALS health-monitor state and Parallax node payloads to scenarios and observed plans."""

from __future__ import annotations

import copy
import json
import statistics
from pathlib import Path

import pytest

from solvers import ScenarioError, parse_scenario
from solvers.calibration import PER_HOP_OVERHEAD_S, hardware_timing
from solvers.ingest import GIB_GB, import_parallax_nodes, import_petals_state, observed_plan

ROOT = Path(__file__).resolve().parents[2]
STATE = json.loads((ROOT / "examples/imports/petals-state-swarm.json").read_text())
NODES = json.loads((ROOT / "examples/imports/parallax-nodes.json").read_text())
LLAMA70 = json.loads((ROOT / "examples/hf_configs/llama-2-70b.json").read_text())
LLAMA8 = json.loads((ROOT / "examples/hf_configs/llama-3-8b.json").read_text())
WORKLOAD = {"arrival_rate": 0.05, "input_tokens": 512, "output_tokens": 128}


def _report(name="StableBeluga2"):
    return next(r for r in STATE["model_reports"] if r["short_name"] == name)


def test_petals_state_servers_memory_timings_and_placement():
    imp = import_petals_state(STATE, {"hf_config": LLAMA70}, model_report="StableBeluga2", workload=WORKLOAD)
    sc = parse_scenario(imp.scenario)
    model = sc.model
    rows = {r["span"]["peer_id"]: r for r in _report()["server_rows"]}
    serving = [p for p, r in rows.items() if r["state"] in ("online", "joining")]
    assert [s.id for s in sc.servers] == serving
    assert {s["server"] for s in imp.skipped} == {p for p, r in rows.items() if r["state"] in ("offline", "unreachable")}
    kv_per_token = model.architecture.kv_bytes_per_token() / 1e9
    for server, placed in zip(sc.servers, imp.placement):
        span = rows[server.id]["span"]
        info = span["server_info"]
        length = span["end"] - span["start"]
        assert (placed["start_block"], placed["num_blocks"]) == (span["start"], length)
        tokens = info["cache_tokens_left"] // (2 * length)
        assert server.memory_gb == pytest.approx(length * model.block_size_gb + tokens * length * kv_per_token)
        assert server.block_time_s == pytest.approx(512 / info["forward_rps"] + 128 / info["inference_rps"])
        pings = [r["span"]["server_info"]["next_pings"][server.id] for r in rows.values()
                 if server.id in (r["span"]["server_info"].get("next_pings") or {})]
        rtt = statistics.median(pings) if pings else statistics.median(info["next_pings"].values()) \
            if info["next_pings"] else 0.050
        assert server.rtt_ms == pytest.approx(rtt * 1e3)
        assert server.comm_time_s == pytest.approx((rtt + PER_HOP_OVERHEAD_S) * 129 + 512 / info["network_rps"])
    assert any("relay" in n for n in imp.notes) and any("joining" in n for n in imp.notes)
    # the LLaMA-2-70B block size comes from the config as it is (gated FFN, 8 KV heads)
    assert model.block_size_gb == pytest.approx(1.71, rel=0.01)


def test_petals_without_announced_cache_uses_petals_default_pool():
    state = copy.deepcopy(STATE)
    for row in state["model_reports"][0]["server_rows"]:
        row["span"]["server_info"].pop("cache_tokens_left")
    imp = import_petals_state(state, {"hf_config": LLAMA70}, model_report=0, workload=WORKLOAD)
    assert {p["attn_cache_tokens"] for p in imp.placement} == {16384}      # grouped KV heads


def test_petals_report_choice_is_required_and_checked():
    with pytest.raises(ScenarioError) as exc:
        import_petals_state(STATE, {"hf_config": LLAMA70})
    assert exc.value.errors[0].path == "model_report" and "StableBeluga2" in exc.value.errors[0].message
    with pytest.raises(ScenarioError) as exc:
        import_petals_state(STATE, {"hf_config": LLAMA70}, model_report="bloom-7b")
    assert "did you mean 'bigscience/bloom-7b1'" in exc.value.errors[0].message
    # the whole repository name and the DHT prefix name it too
    assert import_petals_state(STATE, {"hf_config": LLAMA70}, model_report="StableBeluga2-hf").placement


def test_petals_bad_documents_name_the_field():
    state = copy.deepcopy(STATE)
    state["model_reports"][0]["server_rows"][2]["span"]["end"] = 99
    state["model_reports"][0]["server_rows"][3]["span"]["server_info"]["inference_rps"] = -1
    with pytest.raises(ScenarioError) as exc:
        import_petals_state(state, {"hf_config": LLAMA70}, model_report=0)
    paths = {e.path for e in exc.value.errors}
    assert "petals_state.model_reports[0].server_rows[2].span.end" in paths
    assert "petals_state.model_reports[0].server_rows[3].span.server_info.inference_rps" in paths
    with pytest.raises(ScenarioError) as exc:
        import_petals_state({"hello": 1}, {"hf_config": LLAMA70})
    assert exc.value.errors[0].path == "petals_state.model_reports"
    with pytest.raises(ScenarioError) as exc:
        import_petals_state(STATE, None, model_report=0)
    assert exc.value.errors[0].path == "model"
    # a model with another block count than the swarm's is not silently accepted
    with pytest.raises(ScenarioError) as exc:
        import_petals_state(STATE, {"hf_config": LLAMA8}, model_report=0)
    assert exc.value.errors[0].path == "model.num_blocks"
    mixtral = json.loads((ROOT / "examples/hf_configs/mixtral-8x7b.json").read_text())
    with pytest.raises(ScenarioError) as exc:
        import_petals_state(STATE, {"hf_config": mixtral}, model_report=0)
    assert "mixture-of-experts" in exc.value.errors[0].message


def test_observed_plan_is_evaluated_like_other_plans():
    imp = import_petals_state(STATE, {"hf_config": LLAMA70}, model_report="StableBeluga2", workload=WORKLOAD)
    sc = parse_scenario(imp.scenario)
    doc = observed_plan(sc, imp.placement, simulate_requests=500)
    assert doc["feasible"] and doc["algorithm"] == "petals-observed"
    assert [(p["server"], p["start_block"], p["num_blocks"]) for p in doc["placement"]] == \
        [(p["server"], p["start_block"], p["num_blocks"]) for p in imp.placement]
    assert doc["simulation"]["mean_response_s"] > 0
    assert doc["bounds"]["applies"] is False and "routes every request itself" in doc["bounds"]["why_not"]
    assert doc["explanation"]["summary"]
    # with the only server of blocks 0..10 gone the swarm cannot serve: the observed plan says so
    holed = [p for p in imp.placement if p["start_block"] != 0]
    doc = observed_plan(sc, holed, simulate_requests=100)
    assert not doc["feasible"] and "uncovered" in doc["reason"]


def test_parallax_nodes_through_the_calibration_model():
    imp = import_parallax_nodes(NODES, {"hf_config": LLAMA8}, workload=WORKLOAD)
    sc = parse_scenario(imp.scenario)
    m = sc.model
    for node, server in zip(NODES, sc.servers):
        hw = node["hardware"]
        assert server.id == node["node_id"]
        assert server.memory_gb == pytest.approx(hw["num_gpus"] * hw["memory_gb"] * GIB_GB)
        others = [n["rtt_to_nodes"][server.id] for n in NODES if server.id in (n.get("rtt_to_nodes") or {})]
        rtt = statistics.median(others) if others else 50.0
        t = hardware_timing(block_size_gb=m.block_size_gb, flops_per_token_gflops=m.flops_per_token_gflops,
                            tflops=hw["tflops_fp16"], mem_bandwidth_gb_s=hw["memory_bandwidth_gbps"], rtt_ms=rtt,
                            hidden_state_bytes_per_token=m.architecture.hidden_state_bytes_per_token())
        assert server.block_time_s == pytest.approx(t.block_time(512, 128))
        assert server.comm_time_s == pytest.approx(t.comm_time(512, 128))
    assert any("no RTTs" in n for n in imp.notes)


def test_parallax_bad_nodes_name_the_field():
    nodes = copy.deepcopy(NODES)
    del nodes[1]["hardware"]["tflops_fp16"]
    nodes[2]["hardware"]["memory_gb"] = float("inf")
    nodes[3]["node_id"] = nodes[0]["node_id"]
    with pytest.raises(ScenarioError) as exc:
        import_parallax_nodes(nodes)
    paths = {e.path for e in exc.value.errors}
    assert paths == {"parallax_nodes[1].hardware.tflops_fp16", "parallax_nodes[2].hardware.memory_gb",
                     "parallax_nodes[3].node_id"}
    with pytest.raises(ScenarioError):
        import_parallax_nodes([])
