"""Timing sweeps and the linear fits."""

from __future__ import annotations

import numpy as np
import pytest

from gpu_probe.measure import fit_linear, fit_tau_p, summarize
from gpu_probe.report import LinearFit, planner_terms
from solvers.calibration import BYTES_PER_PARAM

from .conftest import DECODE, PREFILL, TINY


def test_measured_memory_equals_analytic(tiny_measurement):
    m = tiny_measurement
    assert m.param_bytes_source == "measured"
    assert m.param_bytes_per_block == TINY.params_per_block * BYTES_PER_PARAM["fp32"]
    assert m.kv_bytes_per_token == TINY.kv_bytes_per_token() == m.kv_bytes_analytic
    assert m.peak_activation_bytes is None            # CPU: not measured, and says so
    assert any("CPU" in n for n in m.notes)
    assert m.timer == "perf_counter"


def test_times_positive_and_grow_with_length(tiny_measurement):
    m = tiny_measurement
    assert [p.length for p in m.prefill] == PREFILL and [p.length for p in m.decode] == DECODE
    for p in m.prefill + m.decode:
        assert p.repeats == 5
        assert 0 < p.min_s <= p.p25_s <= p.median_s <= p.p75_s <= p.max_s
    # 64x the tokens (prefill) and 1024x the context (decode): the medians must be ordered.
    assert m.prefill[1].median_s > m.prefill[0].median_s
    assert m.decode[1].median_s > m.decode[0].median_s
    assert m.prefill_fit.slope_s > 0 and m.decode_fit.slope_s > 0


def test_summarize_median_and_spread():
    p = summarize(10, [0.5, 0.1, 0.3, 0.2, 0.4])
    assert (p.median_s, p.min_s, p.max_s, p.p25_s, p.p75_s, p.repeats) == (0.3, 0.1, 0.5, 0.2, 0.4, 5)


def test_fit_linear_recovers_synthetic_coefficients():
    rng = np.random.default_rng(1)
    xs = [64, 128, 256, 512, 1024, 2048] * 3
    ys = [0.004 + 2.5e-5 * x + rng.normal(0, 1e-6) for x in xs]
    fit = fit_linear(xs, ys)
    assert fit.intercept_s == pytest.approx(0.004, abs=2e-6)
    assert fit.slope_s == pytest.approx(2.5e-5, rel=1e-3)
    assert fit.r2 > 0.999 and fit.points == 18
    with pytest.raises(ValueError):
        fit_linear([5, 5], [1.0, 2.0])


def test_fit_tau_p_recovers_planner_coefficients():
    rng = np.random.default_rng(2)
    grid = [(li, lo) for li in (128, 512, 2000) for lo in (1, 20, 128)]
    l_in, l_out = [g[0] for g in grid], [g[1] for g in grid]
    exact = [0.001 + 3e-5 * i + 0.012 * (o - 1) for i, o in grid]
    assert fit_tau_p(l_in, l_out, exact) == pytest.approx((0.001, 3e-5, 0.012), rel=1e-9)
    noisy = [t * (1 + rng.normal(0, 1e-4)) for t in exact]
    t_o, a, b = fit_tau_p(l_in, l_out, noisy)
    assert a == pytest.approx(3e-5, rel=0.02) and b == pytest.approx(0.012, rel=0.01)


def test_planner_terms_equal_sum_of_decode_steps():
    prefill = LinearFit(intercept_s=0.002, slope_s=4e-5, r2=1.0, points=3)
    decode = LinearFit(intercept_s=0.010, slope_s=2e-6, r2=1.0, points=3)
    l_in, l_out = 2000, 20
    t = planner_terms(prefill, decode, l_in, l_out)
    stepwise = (0.002 + 4e-5 * l_in) + sum(0.010 + 2e-6 * (l_in + k) for k in range(1, l_out))
    assert t["block_time_s"] == pytest.approx(stepwise, rel=1e-12)
    assert t["t_o_s"] == 0.002 and t["a_s_per_input_token"] == 4e-5
