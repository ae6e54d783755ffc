"""The roofline batch slowdown derived from a server's TFLOPS and memory bandwidth."""

from __future__ import annotations

import pytest

from solvers.batching import BatchSlowdown
from solvers.calibration import (Architecture, roofline_slowdown, roofline_slowdown_for, roofline_step_time)

# LLaMA-3-8B in fp16 (GQA: a job's KV is small next to the weights) and an H100's datasheet figures.
LLAMA3_8B = Architecture(hidden_size=4096, num_layers=32, num_heads=32, num_kv_heads=8, ffn_size=14336,
                         gated_ffn=True, head_dim=128)
H100 = {"tflops": 989.0, "mem_bandwidth_gb_s": 3350.0}


def test_memory_bound_at_small_batch_factor_stays_near_one():
    curve = roofline_slowdown_for(LLAMA3_8B, context_tokens=1000, **H100)
    assert curve.factor(1) == 1.0
    # weights (0.44 GB) dominate a job's KV (4 MB at 1000 tokens): 2 jobs cost ~1 % more than one
    assert curve.factor(2) == pytest.approx(1.0, abs=0.02)
    assert curve.factor(16) < 1.2


def test_compute_bound_at_large_batch_factor_grows_linearly():
    # short contexts: a job's KV (0.4 MB) is below the bytes its FLOPs take the time of, so compute
    # overtakes memory near 390 jobs and from there the step time is proportional to the batch
    curve = roofline_slowdown_for(LLAMA3_8B, context_tokens=100, max_batch=4096, **H100)
    f = curve.factor
    assert f(2048) / f(1024) == pytest.approx(2.0, rel=1e-6)
    assert f(8192) / f(4096) == pytest.approx(2.0, rel=1e-6)       # past the last point: the last segment
    assert f(1024) < 1024                                           # far below time-sharing


def test_points_reproduce_the_step_time_exactly_off_the_knee():
    kw = dict(block_size_gb=0.4, kv_gb_per_job=0.0021, gflops_per_job=0.5, tflops=300.0, mem_bandwidth_gb_s=2000.0)
    curve = roofline_slowdown(**kw)
    one = roofline_step_time(1, **kw)
    knee = 0.4 / (2000 * 0.5 / 300e3 - 0.0021)                     # 324.3 jobs
    assert {324, 325} <= set(curve.concurrency)
    for b in (3, 100, 324, 325, 700, 1500, 3000):
        assert curve.factor(b) == pytest.approx(roofline_step_time(b, **kw) / one, rel=1e-9)
    assert BatchSlowdown.from_pairs(curve.to_pairs()) == curve      # a valid scenario curve


def test_never_compute_bound_stays_on_the_memory_line():
    # a job's KV traffic outweighs its FLOPs: memory bound at every batch, factor = (W + bK) / (W + K)
    kw = dict(block_size_gb=0.4, kv_gb_per_job=0.1, gflops_per_job=0.001, tflops=300.0, mem_bandwidth_gb_s=2000.0)
    curve = roofline_slowdown(**kw, max_batch=64)
    assert curve.concurrency == (1, 2, 4, 8, 16, 32, 64)
    assert curve.factor(10) == pytest.approx((0.4 + 1.0) / 0.5)


def test_bad_figures_are_refused():
    with pytest.raises(ValueError, match="mem_bandwidth_gb_s"):
        roofline_slowdown(block_size_gb=0.4, kv_gb_per_job=0.0, gflops_per_job=1.0, tflops=1.0, mem_bandwidth_gb_s=0)
    with pytest.raises(ValueError, match="max_batch"):
        roofline_slowdown_for(LLAMA3_8B, context_tokens=10, max_batch=1, **H100)
