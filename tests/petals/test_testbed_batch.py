"""The testbed's batch slowdown curves, from the deployed calibration's sweep to the prediction (pure: no
swarm): the sweep's hop times become each server's ``servers[].batch_slowdown`` in the scenario, the plan
is made with them, and the prediction simulates with them (the batch-aware simulator)."""

from __future__ import annotations

import pytest

from testbed.calibrate import Calibration, HopFit, batch_curves, batch_grid
from testbed.predict import predict
from testbed.scenario import arrivals_poisson, build_scenario, server_profile

L_OUT = 12


def _sample(setup: float, first: float, step: float) -> dict:
    return {"setup": setup, "first": first, "step": step}


def _calibration(curves: bool) -> Calibration:
    profile = server_profile(3)
    hops = {p["id"]: HopFit(0.010 + 0.01 * i, 0.012, 0.0007, 0.011 + 0.01 * i, 0.0004, 4)
            for i, p in enumerate(profile)}
    by_batch = {}
    if curves:
        # a request on each hop takes 20 ms longer with 2 sessions on it and 70 ms longer with 4
        for b, extra in ((1, 0.0), (2, 0.020), (4, 0.070)):
            by_batch[b] = {srv: [_sample(0.01, 0.02, 0.015 + extra / (L_OUT - 1))] * 3 for srv in hops}
    blocks = {p["id"]: 8 if p["id"].startswith("large") else 3 for p in profile}
    got, medians = batch_curves(by_batch, hops, blocks, L_OUT) if curves else ({}, {})
    return Calibration(0.01, 0.0004, 4, method="deployed", hops=hops, batch_slowdown=got, batch_hop_ms=medians)


def test_grid_is_the_probes():
    assert batch_grid(1) == [1] and batch_grid(4) == [1, 2, 4] and batch_grid(6) == [1, 2, 4, 6]


def test_sweep_becomes_curves_on_the_compute_term():
    cal = _calibration(curves=True)
    fit = cal.hops["large-1"]
    compute = fit.block_time_s(L_OUT) * 8          # the slowable term of a request on large-1's 8 blocks
    curve = dict((b, f) for b, f in cal.batch_slowdown["large-1"])
    assert curve[1] == 1.0
    # the time 2 and 4 sessions add is put on the compute term: factor = 1 + extra / compute
    assert curve[2] == pytest.approx(1 + 0.020 / compute, rel=1e-3)
    assert curve[4] == pytest.approx(1 + 0.070 / compute, rel=1e-3)
    # a small server's compute term is 3 blocks: the same extra time is a steeper curve
    assert dict(cal.batch_slowdown["small-1"])[2] > curve[2]
    assert set(cal.batch_hop_ms["small-1"]) == {1, 2, 4}


def test_noisy_sweep_is_made_non_decreasing():
    hops = {"s": HopFit(0.01, 0.01, 0.001, 0.01, 0.0005, 3)}
    # 2 sessions measured faster than 1 (noise): pooled, so the curve never decreases and starts at 1
    by_batch = {1: {"s": [_sample(0.01, 0.02, 0.016)] * 3}, 2: {"s": [_sample(0.01, 0.02, 0.015)] * 3},
                4: {"s": [_sample(0.01, 0.02, 0.020)] * 3}}
    curves, _ = batch_curves(by_batch, hops, {"s": 3}, L_OUT)
    factors = [f for _, f in curves["s"]]
    assert factors[0] == 1.0 and factors == sorted(factors) and factors[-1] > 1.0


def _plan_and_predict(cal: Calibration):
    from solvers.runner import plan
    from solvers.scenario import parse_scenario
    arrivals = arrivals_poisson(40, 4.0, seed=1)
    doc = build_scenario(server_profile(3), cal, (8, L_OUT), arrivals)
    scenario = parse_scenario(doc)
    plan_doc = plan(scenario, "proposed")
    assert plan_doc["feasible"], plan_doc.get("reason")
    return doc, scenario, plan_doc, predict("proposed", scenario, plan_doc, len(arrivals))


def test_scenario_carries_the_curves_and_the_prediction_uses_them():
    from solvers.scenario import parse_scenario
    doc, scenario, plan_doc, pred = _plan_and_predict(_calibration(curves=True))
    assert all(s["batch_slowdown"][0] == [1, 1.0] and len(s["batch_slowdown"]) == 3 for s in doc["servers"])
    assert all(not s.batch_slowdown.is_identity for s in scenario.servers)
    assert pred["model"] == "batch"
    # with every planned slot busy each chain is slower than alone, by the curves
    alone = [c["service_time_s"] for c in plan_doc["chains"]]
    assert all(f > a for f, a in zip(pred["chain_full_occupancy_s"], alone))
    # the same plan and arrivals on servers without curves: jobs that share a server no longer slow each other
    flat_doc = {**doc, "servers": [{k: v for k, v in s.items() if k != "batch_slowdown"} for s in doc["servers"]]}
    flat = predict("proposed", parse_scenario(flat_doc), plan_doc, 40)
    assert flat["model"] == "batch-1" and flat["chain_full_occupancy_s"] is None
    assert pred["mean_service_s"] > flat["mean_service_s"]
    # the bounds are the batch model's: the upper one takes every chain at its time with all slots busy
    assert pred["upper_s"] > flat["upper_s"]


def test_no_sweep_is_the_batch_1_model():
    doc, _, _, pred = _plan_and_predict(_calibration(curves=False))
    assert all("batch_slowdown" not in s for s in doc["servers"])
    assert pred["model"] == "batch-1" and pred["chain_full_occupancy_s"] is None


def test_launched_swarm_curves_replace_the_calibrations_for_the_prediction():
    from solvers.scenario import parse_scenario
    from testbed.calibrate import launched_curves
    from testbed.cli import with_curves
    doc, scenario, plan_doc, pred = _plan_and_predict(_calibration(curves=True))
    # the launched swarm's probe of each planned hop: 1 session, then 2 at once 40 ms slower per request
    alone, full = {}, {}
    for ch in plan_doc["chains"]:
        start = 0
        for srv, m in zip(ch["servers"], ch["blocks"]):
            alone[(srv, start, start + m)] = [_sample(0.01, 0.02, 0.015)] * 3
            full[(srv, start, start + m)] = [_sample(0.01, 0.02, 0.015 + 0.040 / (L_OUT - 1))] * 3
            start += m
    block = {s["id"]: s["block_time_s"] for s in doc["servers"]}
    curves = launched_curves(alone, full, 2, block, L_OUT)
    assert set(curves) == {srv for srv, _, _ in alone}
    for (srv, a, b) in alone:
        assert curves[srv][0] == [1, 1.0] and curves[srv][1][0] == 2
        assert curves[srv][1][1] == pytest.approx(1 + 0.040 / (block[srv] * (b - a)), rel=1e-3)
    relaunched = parse_scenario(with_curves(doc, curves))
    again = predict("proposed", relaunched, plan_doc, 40)
    by_id = {s.id: s.batch_slowdown.to_pairs() for s in relaunched.servers}
    assert all(by_id[srv] == c for srv, c in curves.items())
    # those curves, not the calibration's, set the chains' time with every slot busy
    assert again["chain_full_occupancy_s"] != pred["chain_full_occupancy_s"]
    # nothing probed beyond one session: no curve from the launched swarm (the calibration's stay)
    assert launched_curves(alone, alone, 1, block, L_OUT) == {}
