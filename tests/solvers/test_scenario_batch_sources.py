"""Where a server's batch slowdown comes from: the probe's calibration, the scenario's list, or "roofline"."""

from __future__ import annotations

import pytest

from solvers import ScenarioError, parse_scenario
from solvers.batching import NO_SLOWDOWN
from solvers.calibration import roofline_slowdown_for


def doc(**server):
    return {
        "model": {"name": "m", "architecture": {"preset": "llama-2-7b"}},
        "servers": [{"id": "g", "memory_gb": 40, "tflops": 312, "mem_bandwidth_gb_s": 2039, "rtt_ms": 1.0, **server}],
        "workload": {"arrival_rate": 1.0, "input_tokens": 512, "output_tokens": 128},
    }


def test_no_curve_is_todays_model():
    assert parse_scenario(doc()).servers[0].batch_slowdown is NO_SLOWDOWN


def test_roofline_is_derived_from_the_servers_figures_and_the_workloads_context():
    sc = parse_scenario(doc(batch_slowdown="roofline"))
    expected = roofline_slowdown_for(sc.model.architecture, context_tokens=512 + 128 / 2, tflops=312,
                                     mem_bandwidth_gb_s=2039)
    curve = sc.servers[0].batch_slowdown
    assert curve == expected and not curve.is_identity
    assert curve.factor(64) > 1.0


def test_the_probes_curve_wins_over_the_list_and_the_list_over_nothing():
    measured = [[1, 1.0], [4, 1.2], [16, 2.0]]
    sc = parse_scenario(doc(batch_slowdown=[[1, 1], [2, 2]], calibration={"batch_slowdown": measured}))
    assert sc.servers[0].batch_slowdown.to_pairs() == measured
    assert parse_scenario(doc(batch_slowdown=[[1, 1], [2, 2]])).servers[0].batch_slowdown.factor(5) == 5


@pytest.mark.parametrize("server, field, words", [
    ({"batch_slowdown": "rooflines"}, "servers[0].batch_slowdown", '"roofline"'),
    ({"batch_slowdown": "roofline", "tflops": None}, "servers[0].batch_slowdown", "tflops"),
    ({"calibration": {"batch_slowdown": [[2, 1]]}}, "servers[0].calibration.batch_slowdown[0]", "concurrency 1"),
])
def test_bad_sources_are_named(server, field, words):
    d = doc(**server)
    d["servers"][0] = {k: v for k, v in d["servers"][0].items() if v is not None}
    with pytest.raises(ScenarioError) as info:
        parse_scenario(d)
    assert any(e.path == field and words in e.message for e in info.value.errors), info.value.errors


def test_roofline_needs_the_architecture_and_the_token_counts():
    d = doc(batch_slowdown="roofline")
    d["workload"] = {"arrival_rate": 1.0}
    with pytest.raises(ScenarioError, match="servers\\[0\\].batch_slowdown"):
        parse_scenario(d)
