"""Report assembly, derived planner figures and validate_report."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict

import pytest

from gpu_probe.report import Network, Workload, build_report, validate_report
from solvers.calibration import PER_HOP_OVERHEAD_S

from .conftest import TINY

DEVICE = {"kind": "cpu", "name": "test cpu", "index": None, "total_memory_gb": 16.0, "free_memory_gb": 12.0,
          "compute_capability": None, "cpu_threads": 2, "torch_version": "x", "cuda_version": None,
          "note": "CPU figures", "reserve_gb": 2.0}


@pytest.fixture()
def doc(tiny_measurement):
    model = {"name": "tiny-llama", "source": "config", "architecture": asdict(TINY)}
    report = build_report(measurement=tiny_measurement, device=DEVICE, model=model,
                          network=Network(rtt_ms=40.0), workload=Workload(100, 20, 2048, 2.0),
                          cluster=3, server="gpu-a")
    return json.loads(json.dumps(report.to_dict()))      # exactly what travels


def test_measured_report_is_plausible(doc):
    assert validate_report(doc) == []
    assert validate_report(doc, expected_cluster=3, expected_server="gpu-a",
                           expected_architecture=asdict(TINY)) == []


def test_derived_figures(doc, tiny_measurement):
    d, m = doc["derived"], tiny_measurement
    assert d["block_size_gb"] == m.param_bytes_per_block_total / 1e9
    assert d["cache_size_gb"] == pytest.approx(TINY.kv_bytes_per_token() * 2048 / 1e9)
    assert d["memory_gb"] == 14.0
    assert d["comm_time_s"] == pytest.approx((0.040 + PER_HOP_OVERHEAD_S) * 21)
    expected = d["t_o_s"] + d["a_s_per_input_token"] * 100 + d["b_s_per_output_token"] * 19
    assert d["block_time_s"] == pytest.approx(expected) and d["block_time_s"] > 0
    t = d["timing"]      # LinearTiming form: base + per_in * l_in + per_out * l_out
    assert t["block_base_s"] + t["block_per_input_token_s"] * 100 + t["block_per_output_token_s"] * 20 \
        == pytest.approx(d["block_time_s"])


def _broken(doc, path, value):
    bad = copy.deepcopy(doc)
    target = bad
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return validate_report(bad)


@pytest.mark.parametrize("path,value,needle", [
    (("measurement", "prefill", 0, "median_s"), -0.001, "median_s"),
    (("measurement", "decode", 1, "max_s"), float("nan"), "max_s"),
    (("derived", "block_time_s"), -1.0, "block_time_s"),
    (("derived", "comm_time_s"), 0.0, "comm_time_s"),
    (("derived", "memory_gb"), 40.0, "above the device's total"),
    (("measurement", "peak_activation_bytes"), 17 * 10**9, "above the device's total"),
    (("measurement", "param_bytes_per_block_total"), 17 * 10**9, "above the device's total"),
    (("device", "free_memory_gb"), 20.0, "above total"),
    (("measurement", "param_bytes_per_block"), 1000, "does not match the architecture"),
    (("measurement", "kv_bytes_per_token"), 512.0, "does not match the architecture"),
    (("measurement", "decode"), [], "at least two"),
    (("derived",), KeyError, "derived: missing"),
    (("device", "total_memory_gb"), KeyError, "total_memory_gb: missing"),
    (("network", "rtt_ms"), -3, "rtt_ms"),
    (("dtype",), "fp8", "dtype"),
    (("schema_version",), 2, "schema_version"),
    (("model", "architecture", "num_kv_heads"), 3, "multiple"),
])
def test_implausible_reports_are_rejected_with_reason(doc, path, value, needle):
    problems = _broken(doc, path, value)
    assert problems and any(needle in p for p in problems), problems


def test_other_server_cluster_or_model_is_rejected(doc):
    assert any("token is for 'gpu-b'" in p for p in validate_report(doc, expected_server="gpu-b"))
    assert any("cluster" in p for p in validate_report(doc, expected_cluster=4))
    other = dict(asdict(TINY), hidden_size=4096)
    problems = validate_report(doc, expected_architecture=other)
    assert any("different model" in p and "hidden_size" in p for p in problems)
    problems = validate_report(doc, expected_architecture=dict(asdict(TINY), dtype="bf16"))
    assert problems == ["dtype: the report measured fp32, the cluster's model is bf16"]


def test_not_an_object():
    assert validate_report([]) == ["report must be a JSON object"]
    assert len(validate_report({})) > 5


def test_service_can_import_validation_without_torch_or_django():
    import subprocess
    import sys
    code = ("import sys, gpu_probe.report, gpu_probe.client; "
            "bad = [m for m in ('torch', 'django') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    from pathlib import Path
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
