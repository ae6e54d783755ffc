import json

import pytest

from solvers import ScenarioError, parse_scenario
from solvers.presets import PRESETS
from solvers.scenario import load_scenario


def doc(**over):
    base = {
        "name": "x",
        "model": {"name": "m", "num_blocks": 70, "block_size_gb": 1.32, "cache_size_gb": 0.11},
        "servers": [{"id": "a", "memory_gb": 40, "comm_time_s": 0.95, "block_time_s": 0.109},
                    {"id": "b", "memory_gb": 20, "comm_time_s": 1.3, "block_time_s": 0.175}],
        "workload": {"arrival_rate": 0.2},
    }
    base.update(over)
    return base


def messages(d):
    with pytest.raises(ScenarioError) as info:
        parse_scenario(d)
    return [str(e) for e in info.value.errors]


def test_spec_example_parses_with_defaults():
    s = parse_scenario(doc())
    assert s.model.num_blocks == 70 and s.workload.target_load == 0.7
    assert [x.id for x in s.servers] == ["a", "b"]
    assert s.servers[0].timing.is_constant


def test_errors_name_the_field_and_are_all_collected():
    d = doc()
    d["servers"][1]["memory_gb"] = -3
    d["servers"][0]["block_time_s"] = float("inf")
    d["workload"]["arrival_rate"] = -1
    msgs = messages(d)
    assert "servers[1].memory_gb: must be > 0" in msgs
    assert "servers[0].block_time_s: must be a finite number" in msgs
    assert "workload.arrival_rate: must be > 0" in msgs


def test_duplicate_ids_and_missing_times_reported_together():
    d = doc()
    d["servers"].append({"id": "a", "memory_gb": 10})
    msgs = messages(d)
    assert any(m.startswith("servers[2].id: duplicate id 'a'") for m in msgs)
    assert any(m.startswith("servers[2].comm_time_s: is required") for m in msgs)


@pytest.mark.parametrize("bad", [[], "x", None, 5])
def test_not_an_object_or_empty_servers(bad):
    if bad == []:
        assert messages(doc(servers=[])) == ["servers: must have at least 1 item(s) (got 0)"]
    else:
        with pytest.raises(ScenarioError):
            parse_scenario(bad)


def test_zero_blocks_and_wrong_types():
    d = doc(model={"num_blocks": 0, "block_size_gb": "big", "cache_size_gb": 0.1})
    msgs = messages(d)
    assert "model.num_blocks: must be > 0" in msgs
    assert "model.block_size_gb: must be a number" in msgs


def test_target_load_must_be_below_one():
    assert "workload.target_load: must be < 1" in messages(doc(workload={"arrival_rate": 1, "target_load": 1.0}))


def test_architecture_derivation_matches_spec_check_figures():
    bloom = PRESETS["bloom-176b"]
    assert bloom.block_size_gb == pytest.approx(1.32, rel=0.01)
    assert bloom.cache_size_gb(2048) == pytest.approx(0.117, rel=0.01)
    llama = PRESETS["llama-2-7b"]
    assert 0.40 <= llama.block_size_gb <= 0.44
    assert llama.cache_size_gb(2048) == pytest.approx(0.0336, rel=0.01)
    s = parse_scenario(doc(model={"architecture": {"preset": "llama-2-7b", "max_seq_len": 2048}}))
    assert s.model.num_blocks == 32
    assert s.model.cache_size_gb == pytest.approx(0.0336, rel=0.01)


def test_explicit_numbers_win_over_architecture():
    s = parse_scenario(doc(model={"num_blocks": 10, "cache_size_gb": 0.5, "architecture": {"preset": "llama-2-7b"}}))
    assert s.model.num_blocks == 10 and s.model.cache_size_gb == 0.5
    assert s.model.block_size_gb == pytest.approx(PRESETS["llama-2-7b"].block_size_gb)


def test_hf_config_style_architecture():
    arch = {"hidden_size": 512, "num_hidden_layers": 6, "num_attention_heads": 8, "num_key_value_heads": 2,
            "intermediate_size": 1024, "gated_ffn": True, "max_position_embeddings": 1000, "dtype": "bf16"}
    s = parse_scenario(doc(model={"architecture": arch}))
    # attention: 512*512 (q) + 2*512*128 (k, v) + 512*512 (o); ffn: 3*512*1024; 2 bytes each
    params = 512 * 512 * 2 + 2 * 512 * 128 + 3 * 512 * 1024
    assert s.model.block_size_gb == pytest.approx(params * 2 / 1e9)
    assert s.model.cache_size_gb == pytest.approx(2 * 2 * 64 * 1000 * 2 / 1e9)


def test_hardware_figures_give_spec_tau_p():
    servers = [{"id": "fast", "memory_gb": 40, "tflops": 120, "mem_bandwidth_gb_s": 1020, "rtt_ms": 12},
               {"id": "slow", "memory_gb": 20, "tflops": 80, "mem_bandwidth_gb_s": 510, "rtt_ms": 12}]
    model = {"num_blocks": 70, "block_size_gb": 1.32, "cache_size_gb": 0.11, "flops_per_token_gflops": 5}
    s = parse_scenario(doc(model=model, servers=servers,
                           workload={"arrival_rate": 0.2, "input_tokens": 2000, "output_tokens": 20}))
    assert s.servers[0].block_time_s == pytest.approx(0.109, abs=5e-4)
    assert s.servers[1].block_time_s == pytest.approx(0.175, abs=5e-4)
    assert s.servers[0].comm_time_s == pytest.approx((0.012 + 0.018) * 21)
    assert s.servers[0].source == "datasheet"


def test_hardware_without_tokens_is_a_named_error():
    servers = [{"id": f"x{i}", "memory_gb": 40, "tflops": 120, "mem_bandwidth_gb_s": 1020, "rtt_ms": 12}
               for i in range(20)]
    model = {"num_blocks": 70, "block_size_gb": 1.32, "cache_size_gb": 0.11, "flops_per_token_gflops": 5}
    # one message for the shared cause, not one per server
    assert [m for m in messages(doc(model=model, servers=servers)) if m.startswith("workload.input_tokens")] == [
        "workload.input_tokens: input_tokens and output_tokens (or a trace) are required to derive server times "
        "from hardware figures"]


def test_calibration_wins():
    d = doc()
    d["servers"][0]["calibration"] = {"block_time_s": 0.05, "memory_gb": 38}
    s = parse_scenario(d)
    assert s.servers[0].block_time_s == 0.05 and s.servers[0].memory_gb == 38
    assert s.servers[0].source == "measured"


def test_trace_gives_rate_and_token_means():
    trace = [[10.0, 100, 10], [11.0, 300, 30], [12.0, 200, 20]]
    s = parse_scenario(doc(workload={"trace": trace}))
    assert s.workload.arrival_rate == pytest.approx(1.0)
    assert s.workload.input_tokens == pytest.approx(200)
    assert s.workload.trace.arrival_s == (0.0, 1.0, 2.0)
    assert "workload.trace[1].output_tokens: must be >= 1" in messages(
        doc(workload={"trace": [[0, 1, 1], [1, 1, 0]]}))


def test_to_dict_round_trips(tmp_path):
    s = parse_scenario(doc())
    path = tmp_path / "s.json"
    path.write_text(json.dumps(s.to_dict()))
    assert load_scenario(path) == s


def test_malformed_json_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"model": ')
    with pytest.raises(ScenarioError, match="malformed JSON at line 1"):
        load_scenario(path)


def test_too_many_servers_rejected_cheaply():
    d = doc(servers=[{"id": str(i), "memory_gb": 1, "comm_time_s": 1, "block_time_s": 1} for i in range(20_001)])
    assert messages(d) == ["servers: must have at most 20000 items (got 20001)"]
