"""Servers that batch in the scenario and the plan document (issue 21): the field, the saturation rate,
load and overload against it, bounds that hold."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest

from solvers.batch_ctmc import jffc_batch_exact, reference_cases
from solvers.batching import NO_SLOWDOWN, BatchSlowdown, saturation_rate
from solvers.bounds import batch_response_time_bounds, response_time_bounds
from solvers.errors import ScenarioError
from solvers.algorithms import REGISTRY, PlanOptions
from solvers.plan import plan_document
from solvers.runner import plan
from solvers.scenario import parse_scenario

from .helpers import make_scenario


def _doc(curves, arrival_rate=0.5):
    return {"name": "b", "model": {"num_blocks": 4, "block_size_gb": 1.0, "cache_size_gb": 0.5},
            "servers": [{"id": f"s{i}", "memory_gb": 8.0, "comm_time_s": 0.05, "block_time_s": 0.2,
                         **({"batch_slowdown": c} if c is not None else {})} for i, c in enumerate(curves)],
            "workload": {"arrival_rate": arrival_rate}}


def test_the_field_is_read_and_printed_back():
    sc = parse_scenario(_doc([[[1, 1], [8, 2.5]], None]))
    assert sc.servers[0].batch_slowdown == BatchSlowdown((1, 8), (1.0, 2.5))
    assert sc.servers[1].batch_slowdown is NO_SLOWDOWN
    back = sc.to_dict()
    assert back["servers"][0]["batch_slowdown"] == [[1, 1.0], [8, 2.5]]
    assert "batch_slowdown" not in back["servers"][1]
    assert parse_scenario(back) == sc


def test_validate_prints_the_curve(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(_doc([[[1, 1], [4, 3]], None])))
    out = subprocess.run([sys.executable, "-m", "solvers", "validate", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["servers"][0]["batch_slowdown"] == [[1, 1.0], [4, 3.0]]


@pytest.mark.parametrize("curve, message", [
    ([[1, 1], [4, 2], [8, 1.5]], "servers[0].batch_slowdown[2]: factor 1.5 is below the previous point's 2"),
    ([[2, 1]], "servers[0].batch_slowdown[0]: the first point must be at concurrency 1"),
    ([[1, 1], [1, 2]], "servers[0].batch_slowdown[1]: concurrency 1 must be above"),
    ([[1, 1], "x"], "servers[0].batch_slowdown[1]: must be a [concurrency, factor] pair"),
    ([], "servers[0].batch_slowdown: must be a non-empty list"),
    ("fast", "servers[0].batch_slowdown"),
])
def test_a_bad_curve_names_its_entry(curve, message):
    with pytest.raises(ScenarioError) as err:
        parse_scenario(_doc([curve, None]))
    assert any(str(e).startswith(message) for e in err.value.errors), err.value.errors


def test_without_a_curve_the_saturation_rate_is_the_total_service_rate():
    sc = make_scenario([(8.0, 0.05, 0.2), (8.0, 0.05, 0.3)], num_blocks=4, cache_size_gb=0.5, arrival_rate=0.5)
    doc = plan(sc, algorithm="proposed")
    assert doc["saturation_rate_rps"] == doc["total_service_rate"] > 0
    assert doc["load"] == 0.5 / doc["total_service_rate"]


def test_with_a_curve_load_overload_and_bounds_use_the_saturation_rate():
    sc = parse_scenario(_doc([[[1, 1], [2, 2]], [[1, 1], [2, 2]]]))
    doc = plan(sc, algorithm="proposed")
    chains = doc["chains"]
    # by hand: b_full_j = capacities through j; T_k(b) = sum comm + block x m x b_j
    full: dict[str, int] = {}
    for ch in chains:
        for sid in set(ch["servers"]):
            full[sid] = full.get(sid, 0) + ch["capacity"]
    expected = sum(ch["capacity"] / sum(0.05 + 0.2 * m * full[sid] for sid, m in zip(ch["servers"], ch["blocks"]))
                   for ch in chains)
    assert doc["saturation_rate_rps"] == pytest.approx(expected)
    assert doc["saturation_rate_rps"] < doc["total_service_rate"]
    assert doc["load"] == pytest.approx(0.5 / expected)
    assert doc["bounds"]["applies"]
    # between the two rates: the batch-1 model would call it stable, the batch model overloaded
    lam = (expected + doc["total_service_rate"]) / 2
    result = REGISTRY["proposed"].run(sc, PlanOptions())
    over = plan_document(sc.with_arrival_rate(lam), result, 0.0)     # the same plan at the higher rate
    assert over["chains"] == chains
    assert over["overloaded"] and "saturation rate" in over["overload_reason"]
    assert not over["bounds"]["applies"] and "saturation rate" in over["bounds"]["why_not"]


@pytest.mark.parametrize("load", [0.3, 0.6, 0.9])
def test_the_batch_bounds_hold_around_the_exact_solution(load):
    chains, servers = reference_cases()["shared-3"]
    lam = load * saturation_rate(chains, servers)
    exact = jffc_batch_exact(chains, servers, lam).mean_response_s
    b = batch_response_time_bounds(chains, servers, lam)
    assert b.stable and b.lower_s <= exact <= b.upper_s
    # the constant-rate bounds at batch-1 rates are not bounds here: the exact mean is above their upper one
    assert response_time_bounds(chains, lam).upper_s < exact


def test_the_batch_bounds_are_the_constant_rate_bounds_without_a_curve():
    chains, servers = reference_cases()["shared-3"]
    flat = [replace(s, batch_slowdown=NO_SLOWDOWN) for s in servers]
    assert batch_response_time_bounds(chains, flat, 2.0) == response_time_bounds(chains, 2.0)
