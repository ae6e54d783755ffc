"""The simulator under batch slowdowns, against exact results (issue 21).

Figures with more requests and seeds: bench/batching_exact.py, bench/results/batching.md."""

from __future__ import annotations

from dataclasses import replace

import pytest

from solvers.batch_clock import RouteGroups
from solvers.batch_ctmc import jffc_batch_exact, reference_cases
from solvers.batching import NO_SLOWDOWN, TIME_SHARING, BatchSlowdown, saturation_rate
from solvers.algorithms import PlanOptions
from solvers.baselines.bprr import bprr
from solvers.baselines.petals import petals
from solvers.simulator import simulate

from .helpers import make_scenario


def test_one_time_sharing_server_is_an_mm1_processor_sharing_queue():
    chains, servers = reference_cases()["mm1-ps"]
    lam = 0.3                                    # mu = 1: mean response 1 / (mu - lambda)
    r = simulate(chains, arrival_rate=lam, requests=200_000, seed=1, servers=servers)
    assert r.mean_wait_s == 0.0                  # room for every job: all the delay is the sharing
    assert r.mean_response_s == pytest.approx(1.0 / (1.0 - lam), rel=0.01)
    # without the curve it is M/M/infinity: response = size, mean 1
    plain = simulate(chains, arrival_rate=lam, requests=200_000, seed=1)
    assert plain.mean_response_s == pytest.approx(1.0, rel=0.01)


@pytest.mark.parametrize("load", [0.5, 0.75])
def test_chains_sharing_batching_servers_match_the_exact_markov_chain(load):
    chains, servers = reference_cases()["shared-3"]
    lam = load * saturation_rate(chains, servers)
    exact = jffc_batch_exact(chains, servers, lam)
    r = simulate(chains, arrival_rate=lam, requests=200_000, seed=3, servers=servers)
    assert r.mean_response_s == pytest.approx(exact.mean_response_s, rel=0.01)
    # the batch-1 model is far off on the same instance: the check can tell the two apart
    plain = simulate(chains, arrival_rate=lam, requests=50_000, seed=3)
    assert abs(plain.mean_response_s / exact.mean_response_s - 1) > 0.05


def test_the_exact_solution_without_curves_is_the_batch_one_markov_chain():
    chains, servers = reference_cases()["shared-3"]
    flat = [replace(s, batch_slowdown=NO_SLOWDOWN) for s in servers]
    lam = 0.6 * saturation_rate(chains, flat)
    exact = jffc_batch_exact(chains, flat, lam)
    r = simulate(chains, arrival_rate=lam, requests=100_000, seed=2)
    assert r.mean_response_s == pytest.approx(exact.mean_response_s, rel=0.01)


@pytest.mark.parametrize("curve", [NO_SLOWDOWN, BatchSlowdown.from_pairs([[1, 1], [50, 1]])])
def test_without_a_slowing_curve_the_output_is_bit_identical(curve):
    chains, servers = reference_cases()["shared-3"]
    flat = [replace(s, batch_slowdown=curve) for s in servers]
    for policy in ("jffc", "jsq"):
        a = simulate(chains, dispatcher=policy, arrival_rate=2.0, requests=5_000, seed=4, servers=flat).to_dict()
        b = simulate(chains, dispatcher=policy, arrival_rate=2.0, requests=5_000, seed=4).to_dict()
        assert a == b


def test_route_groups_share_a_clock_and_return_to_idle():
    groups = RouteGroups([TIME_SHARING, NO_SLOWDOWN])
    heap: list[tuple[float, int, int, int, int]] = []
    groups.attach(heap, 7)
    g0 = groups.group([(0, 0.0, 1.0), (1, 0.5, 1.0)])
    g1 = groups.group([(0, 0.0, 2.0)])
    assert groups.group([(0, 0.0, 1.0), (1, 0.5, 1.0)]) == g0       # equal routes, one group

    def next_finish(g: int) -> float:
        return min(t for t, _, kind, grp, v in heap if grp == g and v == groups.version[g])

    groups.start(0, 0.0, 5.0, g0)
    groups.start(1, 0.0, 2.0, g1)
    groups.flush(0.0)
    # two jobs on server 0 (factor 2): g0's route takes 0.5 + 2 x 1 + 1 = 3.5 s where alone it takes 2.5
    assert groups.rate[g0] == pytest.approx(2.5 / 3.5)
    assert groups.rate[g1] == pytest.approx(0.5)
    assert next_finish(g1) == pytest.approx(4.0) and groups.occupancy == [2, 1]
    assert groups.finish(g1, 4.0) == 1
    groups.flush(4.0)
    assert groups.rate[g0] == pytest.approx(1.0) and groups.occupancy == [1, 1]
    # g0 did 4 x 2.5/3.5 of its 5 s by then: the rest at full speed
    assert next_finish(g0) == pytest.approx(4.0 + 5.0 - 4.0 * 2.5 / 3.5)
    assert groups.finish(g0, next_finish(g0)) == 0
    assert groups.occupancy == [0, 0]


def _batching_scenario(curve):
    sc = make_scenario([(12.0, 0.05, 0.2), (12.0, 0.05, 0.25), (8.0, 0.1, 0.3)], num_blocks=4,
                       block_size_gb=1.0, cache_size_gb=0.5, arrival_rate=2.0)
    return sc.with_servers(tuple(replace(s, batch_slowdown=curve) for s in sc.servers))


@pytest.mark.parametrize("algorithm", [petals, bprr])
def test_per_request_baselines_run_under_the_same_model(algorithm):
    options = PlanOptions(simulate_requests=3_000, seed=1)
    flat = algorithm(_batching_scenario(NO_SLOWDOWN), options).simulation
    slow = algorithm(_batching_scenario(BatchSlowdown.from_pairs([[1, 1], [2, 1.8]])),
                         options).simulation
    same = algorithm(_batching_scenario(BatchSlowdown.from_pairs([[1, 1], [9, 1]])),
                         options).simulation
    assert same == flat                                   # an identity curve changes nothing
    assert slow["mean_service_s"] > 1.2 * flat["mean_service_s"]
