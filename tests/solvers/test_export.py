"""Exports of a plan to runtimes: each command checked against the runtime's documented flags and rules."""

from __future__ import annotations

import bisect
import math
import shlex

import pytest

from solvers.runner import plan
from solvers.errors import ScenarioError
from solvers.export import closest_disjoint, export_plan, export_text, petals_server_args, petals_server_specs
from solvers.scenario import parse_scenario


def _scenario(servers, arrival_rate=0.5, max_tokens=2048, arch=True):
    model = {"name": "llama-2-7b", "architecture": {"preset": "llama-2-7b"}} if arch else \
        {"name": "m", "num_blocks": 32, "block_size_gb": 0.4, "cache_size_gb": 0.0336}
    return parse_scenario({
        "model": model,
        "servers": [{"id": sid, "memory_gb": mem, "comm_time_s": tc, "block_time_s": tp}
                    for sid, mem, tc, tp in servers],
        "workload": {"arrival_rate": arrival_rate, "input_tokens": 1000, "output_tokens": 24,
                     "max_tokens": max_tokens},
    })


# four 8 GB servers (two disjoint chains of two) plus one 16 GB server that can hold everything
DISJOINT = [("a", 8, 0.1, 0.02), ("b", 8, 0.1, 0.02), ("c", 8, 0.2, 0.03), ("d", 8, 0.2, 0.03)]


def _args(cmd: str) -> list[str]:
    return shlex.split(cmd.splitlines()[-1])


def _flag(args: list[str], name: str, n: int = 1):
    i = args.index(name)
    return args[i + 1] if n == 1 else args[i + 1:i + 1 + n]


@pytest.fixture(scope="module")
def disjoint():
    sc = _scenario(DISJOINT, arrival_rate=2.0)
    doc = plan(sc, "proposed")
    assert doc["feasible"] and len(doc["chains"]) >= 2
    return sc, doc


def test_petals_sizes_cache_dtype_throughput_and_swarm(disjoint):
    sc, doc = disjoint
    specs, warnings = petals_server_specs(doc, sc, "meta-llama/Llama-2-7b-hf")
    arch = sc.model.architecture
    kv_per_token_gb = arch.kv_bytes_per_token() / 1e9
    rows = {p["server"]: p for p in doc["placement"]}
    servers = {s.id: s for s in sc.servers}
    assert [s["server"] for s in specs] == [p["server"] for p in doc["placement"] if p["num_blocks"] > 0]
    for i, s in enumerate(specs):
        args, p = s["args"], rows[s["server"]]
        assert args[0] == "meta-llama/Llama-2-7b-hf"
        assert _flag(args, "--block_indices") == f"{p['start_block']}:{p['start_block'] + p['num_blocks']}"
        tokens = int(_flag(args, "--attn_cache_tokens"))
        # PETALS keeps attn_cache_tokens tokens of KV on each of its blocks: enough for the plan's slots ...
        assert tokens * p["num_blocks"] >= p["cache_slots_used"] * 2048
        # ... and within the server's memory next to its blocks (ceil adds less than one token per block)
        assert p["block_memory_gb"] + tokens * p["num_blocks"] * kv_per_token_gb <= p["memory_gb"] + \
            p["num_blocks"] * kv_per_token_gb
        assert _flag(args, "--inference_max_length") == "2048"
        assert _flag(args, "--torch_dtype") == "float16" and _flag(args, "--quant_type") == "none"
        expected = 1024 / servers[s["server"]].block_time_s / ((p["num_blocks"] + 1) / 2)
        assert float(_flag(args, "--throughput")) == pytest.approx(expected, rel=1e-3)
        if i == 0:
            assert "--new_swarm" in args and "--initial_peers" not in args
        else:
            assert _flag(args, "--initial_peers") == "$INITIAL_PEERS" and "--new_swarm" not in args
    assert warnings == []
    peers = "/ip4/127.0.0.1/tcp/31337/p2p/QmPeer"
    for args in petals_server_args(doc, sc, "m", initial_peers=peers):
        assert _flag(args, "--initial_peers") == peers and "--new_swarm" not in args


def test_petals_nf4_and_missing_facts_are_stated():
    sc = parse_scenario({"model": {"architecture": {"preset": "bloom-176b"}},
                         "servers": [{"id": "x", "memory_gb": 100, "comm_time_s": 1, "block_time_s": 0.1}],
                         "workload": {"arrival_rate": 0.01}})
    doc = plan(sc)
    args = petals_server_args(doc, sc, "bigscience/bloom")[0]
    assert _flag(args, "--quant_type") == "nf4" and _flag(args, "--torch_dtype") == "float16"
    # the plan document alone: layer split yes, cache sizing and dtype no, and the export says so
    out = export_plan(doc, "petals")
    assert any("--attn_cache_tokens" in w for w in out["warnings"])
    assert any("model path not given" in w for w in out["warnings"])
    assert "--attn_cache_tokens" not in out["commands"][0] and "--block_indices 0:70" in out["commands"][0]


def test_petals_baseline_plan_without_chains_exports_the_pool_it_was_simulated_with():
    sc = _scenario(DISJOINT + [("e", 16, 0.3, 0.02)], arrival_rate=0.2)
    doc = plan(sc, "petals")
    assert doc["chains"] == [] and doc["attn_cache_tokens"] > 0
    for s in petals_server_specs(doc, sc, "m")[0]:
        row = next(p for p in doc["placement"] if p["server"] == s["server"])
        assert s["cache_slots"] == row["cache_slots"] > 0
        # the fixed per-block pool PETALS' routing was simulated with, not every free slot of the server
        assert s["attn_cache_tokens"] == doc["attn_cache_tokens"]
        assert _flag(s["args"], "--attn_cache_tokens") == str(doc["attn_cache_tokens"])
        assert _flag(s["args"], "--inference_max_length") == "2048"
    with pytest.raises(ScenarioError, match="has none"):
        export_plan(doc, "vllm", sc, model_path="m")


def test_vllm_one_engine_per_chain_with_weakest_stage_capacity(disjoint):
    sc, doc = disjoint
    out = export_plan(doc, "vllm", sc, model_path="meta-llama/Llama-2-7b-hf", gpu_memory_utilization=0.95)
    assert len(out["engines"]) == len(doc["chains"])        # disjoint plan: every chain kept
    s_m, s_c = sc.model.block_size_gb, sc.model.cache_size_gb
    for eng, cmd in zip(out["engines"], out["commands"]):
        ch = doc["chains"][eng["chain"]]
        last = cmd.splitlines()[-1]
        env, args = last.split(" ", 1)
        assert env == "VLLM_PP_LAYER_PARTITION=" + ",".join(str(m) for m in ch["blocks"])
        args = shlex.split(args)
        assert args[:3] == ["vllm", "serve", "meta-llama/Llama-2-7b-hf"]
        assert int(_flag(args, "--pipeline-parallel-size")) == len(ch["servers"])
        assert sum(eng["layer_partition"]) == 32
        # every stage keeps as many KV blocks as the weakest: min over stages of free memory / (layers * s_c)
        weakest = min(math.floor((0.95 * 8 - s_m * m) / (s_c * m)) for m in ch["blocks"])
        assert eng["effective_capacity"] == weakest
        assert int(_flag(args, "--max-num-seqs")) == min(ch["capacity"], weakest)
        assert _flag(args, "--max-model-len") == "2048" and _flag(args, "--dtype") == "float16"
    assert not any("share servers" in w for w in out["warnings"])


def _shared_plan():
    # a wide server "w" in the middle is shared by two chains that start on different servers
    return {"algorithm": "hand", "feasible": True, "arrival_rate": 0.5,
            "placement": [
                {"server": "p", "start_block": 0, "num_blocks": 10, "memory_gb": 20, "block_memory_gb": 10,
                 "cache_slots": 100, "cache_slots_used": 40, "cache_memory_gb": 4},
                {"server": "q", "start_block": 0, "num_blocks": 10, "memory_gb": 20, "block_memory_gb": 10,
                 "cache_slots": 100, "cache_slots_used": 20, "cache_memory_gb": 2},
                {"server": "w", "start_block": 10, "num_blocks": 22, "memory_gb": 40, "block_memory_gb": 22,
                 "cache_slots": 180, "cache_slots_used": 132, "cache_memory_gb": 13.2},
                {"server": "r", "start_block": 0, "num_blocks": 16, "memory_gb": 30, "block_memory_gb": 16,
                 "cache_slots": 140, "cache_slots_used": 32, "cache_memory_gb": 3.2},
                {"server": "t", "start_block": 16, "num_blocks": 16, "memory_gb": 30, "block_memory_gb": 16,
                 "cache_slots": 140, "cache_slots_used": 32, "cache_memory_gb": 3.2}],
            "chains": [
                {"servers": ["p", "w"], "blocks": [10, 22], "service_time_s": 5.0, "capacity": 4},
                {"servers": ["q", "w"], "blocks": [10, 22], "service_time_s": 6.0, "capacity": 2},
                {"servers": ["r", "t"], "blocks": [16, 16], "service_time_s": 8.0, "capacity": 2}]}


def test_chains_sharing_a_server_get_the_closest_disjoint_plan():
    doc = _shared_plan()
    picked = closest_disjoint(doc)
    kept = [c["plan_index"] for c in picked["chains"]]
    assert kept == [0, 2] and picked["dropped"] == [1]
    used = [s for c in picked["chains"] for s in c["servers"]]
    assert len(used) == len(set(used))
    # alone on w, chain 0 gets w's whole free memory: min(floor(10/(0.1*10)), floor(18/(0.1*22))) = 8
    assert picked["chains"][0]["capacity"] == 8
    assert picked["disjoint"]["total_service_rate"] == pytest.approx(8 / 5 + 8 / 8)    # r, t: floor(14 / 1.6) = 8
    for runtime in ("vllm", "sglang", "llama.cpp", "exo"):
        out = export_plan(doc, runtime, model_path="m")
        assert any("w (chains 0, 1)" in w and "closest server-disjoint plan" in w for w in out["warnings"])
        assert out["disjoint"]["dropped_chains"] == [1]


def test_sglang_ranks_follow_the_chain():
    doc = _shared_plan()
    out = export_plan(doc, "sglang", model_path="m")
    eng = out["engines"][0]
    assert eng["env"] == {"SGLANG_PP_LAYER_PARTITION": "10,22"}
    for rank, r in enumerate(eng["ranks"]):
        assert r["server"] == doc["chains"][0]["servers"][rank]
        assert _flag(r["args"], "--node-rank") == str(rank) and _flag(r["args"], "--pp-size") == "2"
        assert _flag(r["args"], "--dist-init-addr") == "p:5000"


def _llama_cpp_device_of_layer(shares: list[int], layer: int) -> int:
    """llama.cpp's rule: layer il goes to the first device whose cumulative share exceeds il / (L + 1)."""
    total = float(sum(shares))
    cum, splits = 0.0, []
    for s in shares:
        cum += s
        splits.append(cum / total)
    return bisect.bisect_right(splits, layer / total)


def test_llama_cpp_tensor_split_puts_every_layer_on_its_planned_server():
    doc = _shared_plan()
    out = export_plan(doc, "llama.cpp", model_path="llama-7b.Q8_0.gguf")
    for eng, cmd in zip(out["engines"], out["commands"]):
        args = _args(cmd)
        assert args[0] == "llama-server" and _flag(args, "-sm") == "layer"
        rpc = _flag(args, "--rpc").split(",")
        assert rpc == [f"{s}:50052" for s in eng["servers"][:-1]]
        # llama.cpp names the rpc-servers' devices RPC0, RPC1, ... in --rpc order
        assert _flag(args, "--device").split(",") == [f"RPC{i}" for i in range(len(rpc))] + ["CUDA0"]
        assert [r["server"] for r in eng["rpc_servers"]] == eng["servers"][:-1]
        assert _flag(args, "--port") == "8080" and _flag(args, "--host") == "0.0.0.0"
        shares = [int(x) for x in _flag(args, "-ts").split(",")]
        owner = [i for i, (lo, hi) in enumerate(eng["layers"]) for _ in range(lo, hi)]
        assert [_llama_cpp_device_of_layer(shares, il) for il in range(32)] == owner
        assert _llama_cpp_device_of_layer(shares, 32) == len(shares) - 1     # output layer stays local


def test_llama_cpp_slots_are_the_weakest_stages_jobs_with_the_plans_kv_type(disjoint):
    sc, doc = disjoint
    out = export_plan(doc, "llama.cpp", sc, model_path="llama-2-7b.f16.gguf")
    s_m, s_c = sc.model.block_size_gb, sc.model.cache_size_gb
    assert len(out["engines"]) == len(doc["chains"])
    for eng, cmd in zip(out["engines"], out["commands"]):
        ch, args = doc["chains"][eng["chain"]], _args(cmd)
        # llama.cpp holds -np slots' KV on every stage: the weakest stage's full-length jobs (all its memory)
        weakest = min(math.floor((8 - s_m * m) / (s_c * m)) for m in ch["blocks"])
        assert eng["effective_capacity"] == weakest
        assert eng["parallel"] == min(eng["capacity_alone"], weakest) == int(_flag(args, "-np"))
        assert int(_flag(args, "-c")) == eng["parallel"] * 2048
        assert (_flag(args, "-ctk"), _flag(args, "-ctv")) == ("f16", "f16")      # the plan's fp16 KV cache
    assert not any("weakest stage" in w for w in out["warnings"])
    # the same plan on servers with less memory than it was made for: the weakest stage caps -np, with a warning
    small = _scenario([(sid, 7.5, tc, tp) for sid, _, tc, tp in DISJOINT], arrival_rate=2.0)
    out = export_plan(doc, "llama.cpp", small, model_path="m.gguf")
    capped = [e for e in out["engines"] if e["effective_capacity"] < e["capacity_alone"]]
    assert capped
    for eng in capped:
        assert eng["parallel"] == eng["effective_capacity"] == int(_flag(eng["args"], "-np")) >= 1
        assert any(w.startswith(f"chain {eng['chain']}: llama.cpp keeps the KV of all -np slots") for w in out["warnings"])
    # too little memory for even one job: said plainly (llama-server would fail to allocate)
    tiny = _scenario([(sid, 7, tc, tp) for sid, _, tc, tp in DISJOINT], arrival_rate=2.0)
    out = export_plan(doc, "llama.cpp", tiny, model_path="m.gguf")
    assert all(e["effective_capacity"] == 0 for e in out["engines"])
    assert sum("cannot hold one full-length job" in w for w in out["warnings"]) == len(out["engines"])


def test_llama_cpp_cpu_head_runs_every_stage_as_an_rpc_server(disjoint):
    sc, doc = disjoint
    out = export_plan(doc, "llama.cpp", sc, model_path="m.gguf", local_device="CPU", rpc_port=50100, api_port=9100)
    for eng in out["engines"]:
        args = eng["args"]
        # llama.cpp cannot name the CPU in --device: the last server is an rpc-server too, the head only samples
        assert [r["server"] for r in eng["rpc_servers"]] == eng["servers"]
        assert _flag(args, "--rpc").split(",") == [f"{s}:50100" for s in eng["servers"]]
        assert _flag(args, "--device").split(",") == [f"RPC{i}" for i in range(len(eng["servers"]))]
        owner = [i for i, (lo, hi) in enumerate(eng["layers"]) for _ in range(lo, hi)]
        shares = [int(x) for x in _flag(args, "-ts").split(",")]
        assert [_llama_cpp_device_of_layer(shares, il) for il in range(32)] == owner
        assert _flag(args, "--port") == "9100" and eng["port"] == 9100
        assert all(r["args"] == ["rpc-server", "--host", "0.0.0.0", "--port", "50100"] for r in eng["rpc_servers"])
    assert any("--local-device CPU" in n for n in out["notes"])


@pytest.mark.parametrize("runtime", ["vllm", "sglang", "llama.cpp"])
def test_the_api_port_is_where_the_command_listens_and_the_engines_file_points(disjoint, runtime):
    from solvers.export.engines import engines_file
    sc, doc = disjoint
    out = export_plan(doc, runtime, sc, model_path="m", api_port=9100)
    for eng, entry in zip(out["engines"], engines_file(out)["engines"]):
        args = eng["ranks"][0]["args"] if runtime == "sglang" else eng["args"]
        assert _flag(args, "--port") == "9100" and entry["url"].endswith(":9100/v1")


def test_parallax_and_exo_layer_ranges():
    doc = _shared_plan()
    out = export_plan(doc, "parallax", model_path="m")
    for s, p in zip(out["servers"], doc["placement"]):
        assert (s["start_layer"], s["end_layer"]) == (p["start_block"], p["start_block"] + p["num_blocks"])
        assert s["param_mem_ratio"] + s["kvcache_mem_ratio"] <= 1.0
        assert s["kvcache_mem_ratio"] <= p["cache_memory_gb"] / p["memory_gb"]
    exo = export_plan(doc, "exo", model_path="m")
    for inst in exo["instances"]:
        layers = inst["node_layers"]
        assert layers[0]["start_layer"] == 0 and layers[-1]["end_layer"] == 32
        assert all(a["end_layer"] == b["start_layer"] for a, b in zip(layers, layers[1:]))


def test_unknown_runtime_suggests_the_closest():
    with pytest.raises(ScenarioError, match="did you mean 'vllm'"):
        export_plan(_shared_plan(), "vlm")
    assert "# WARNING" in export_text(export_plan(_shared_plan(), "vllm"))


@pytest.mark.parametrize("runtime,port,on_last", [("vllm", 8000, False), ("llama.cpp", 8080, True)])
def test_engines_file_keys_each_chain_by_its_servers_for_the_gateway(disjoint, runtime, port, on_last, tmp_path):
    from serving.gateway.engines.openai import EnginesFile
    from solvers.cli import main
    from solvers.export.engines import engines_file

    sc, doc = disjoint
    out = export_plan(doc, runtime, sc, model_path="m")
    got = EnginesFile.from_dict(engines_file(out))           # the gateway reads what the export writes
    assert len(got.engines) == len(out["engines"])
    for entry, eng in zip(got.engines, out["engines"]):
        assert list(entry.servers) == doc["chains"][eng["chain"]]["servers"]
        host = entry.servers[-1] if on_last else entry.servers[0]
        assert entry.url == f"http://{host}:{port}/v1"
        assert entry.capacity == (eng.get("max_num_seqs") or eng.get("parallel"))   # the engine's own limit
    path = tmp_path / "engines.json"
    doc_path = tmp_path / "plan.json"
    import json
    doc_path.write_text(json.dumps(doc))
    assert main(["export", str(doc_path), "--runtime", runtime, "--engines-file", str(path),
                 "--engine-port", "9001"]) == 0
    assert all(e.url.endswith(":9001/v1") for e in EnginesFile.from_dict(json.loads(path.read_text())).engines)
    with pytest.raises(ScenarioError, match="engines-file"):
        engines_file(export_plan(doc, "petals", sc, model_path="m"))
