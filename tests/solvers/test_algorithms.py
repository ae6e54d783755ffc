"""Hand-checkable cases for GBP-CR, GCA, bounds and c-tuning."""

import math

import pytest

from solvers.bounds import bounds_from_rates
from solvers.ctuning import evaluate, tune_c
from solvers.gbpcr import ServerArrays, gbpcr
from solvers.gca import gca
from solvers.instances import paper_scenario
from solvers.topology import Placement, enumerate_paths, routing_edges

from .helpers import check_chain_covers, make_scenario


def test_gca_forms_a_cross_chain_gbpcr_did_not():
    # L = 4, s_m = s_c = 1 GB.  A[0,2) B[2,4) C[0,3) D[3,4); slots A 2, B 3, C 6, D 1.
    s = make_scenario([(4, 1, 1), (5, 1, 1), (9, 1, 1.2), (2, 5, 1)], num_blocks=4)
    placement = Placement(start=(0, 2, 0, 3), count=(2, 2, 3, 1))
    chains = gca(s, placement)
    got = [(ch.hops, round(ch.service_time_s, 9), ch.capacity) for ch in chains]
    assert got == [
        (((0, 2), (1, 2)), 6.0, 1),        # A->B: 3 + 3; capacity min(2//2, 3//2)
        (((2, 3), (1, 1)), 6.6, 1),        # C->B: B has 1 slot left, enough for 1 block
        (((2, 3), (3, 1)), 10.6, 1),       # C->D
    ]
    # GBP-CR's disjoint chains would be A->B and C->D; C->B is GCA's own
    for ch in chains:
        check_chain_covers(ch.hops, placement, 4)


def test_gca_drops_edges_whose_target_lacks_slots():
    # one server with 2 slots holding 2 blocks: exactly one job, then nothing
    s = make_scenario([(4, 0.5, 1)], num_blocks=2)
    chains = gca(s, Placement((0,), (2,)))
    assert [(c.hops, c.capacity) for c in chains] == [(((0, 2),), 1)]


def test_gca_empty_when_blocks_uncovered():
    s = make_scenario([(10, 1, 1), (10, 1, 1)], num_blocks=4)
    assert gca(s, Placement((0, 0), (2, 1))) == []


def test_gbpcr_fills_disjoint_chains_in_amortised_order_and_stops_at_rate():
    # equal memory 4 GB, s_m = s_c = 1 -> m = 2 blocks each for c = 1; L = 4 -> 2 servers per chain
    servers = [(4, 1.0, 1.0), (4, 0.2, 1.0), (4, 3.0, 1.0), (4, 0.5, 1.0), (4, 0.1, 1.0)]
    # amortised (tc + 2 tp)/2: s0 1.5, s1 1.1, s2 2.5, s3 1.25, s4 1.05 -> order s4, s1, s3, s0, s2
    s = make_scenario(servers, num_blocks=4, arrival_rate=0.1)
    r = gbpcr(s, 1)
    assert r.chains == ((4, 1),)                    # 1/4.3 >= 0.1/0.7 after one chain
    assert r.placement.count == (0, 2, 0, 0, 2) and r.placement.start == (0, 2, 0, 0, 0)
    s = make_scenario(servers, num_blocks=4, arrival_rate=0.3)
    r = gbpcr(s, 1)
    assert r.chains == ((4, 1), (3, 0))
    assert r.total_rate == pytest.approx(1 / 4.3 + 1 / 5.5)
    # not enough: every server used, the unfinished chain keeps its prefix
    s = make_scenario(servers, num_blocks=4, arrival_rate=10)
    r = gbpcr(s, 1)
    assert r.chains == ((4, 1), (3, 0)) and r.placement.count[2] == 2 and r.placement.start[2] == 0


def test_gbpcr_last_server_of_a_chain_is_aligned_to_the_end():
    # m = 3 blocks each, L = 4: the second server starts at L - m = 1, overlapping the first
    s = make_scenario([(6, 1, 1), (6, 1, 1)], num_blocks=4, block_size_gb=1, cache_size_gb=1)
    r = gbpcr(s, 1)
    assert r.placement.start == (0, 1) and r.placement.count == (3, 3)
    assert gca(s, r.placement)[0].hops == ((0, 3), (1, 1))


def test_gbpcr_reports_memory_shortfall():
    s = make_scenario([(3, 1, 1), (3, 1, 1)], num_blocks=4)
    r = gbpcr(s, 1)
    assert not r.feasible and "can hold 2 of 4 blocks" in r.reason


def test_bounds_match_mm1_and_erlang_c():
    b = bounds_from_rates([1.0], [1], 0.5)
    assert b.lower_s == pytest.approx(2.0) and b.upper_s == pytest.approx(2.0)
    # M/M/2 with mu = 1, lambda = 1: Erlang C = 1/3, W = 1 + (1/3)/(2 - 1)
    b = bounds_from_rates([1.0], [2], 1.0)
    assert b.lower_s == pytest.approx(4 / 3) and b.upper_s == pytest.approx(4 / 3)


def test_bounds_order_and_extremes():
    b = bounds_from_rates([1.0, 0.1], [1, 1], 0.5)
    assert b.lower_s < b.upper_s
    # low load: lower bound -> fastest chain's time, upper -> slowest chain's time
    b = bounds_from_rates([1.0, 0.1], [1, 1], 1e-9)
    assert b.lower_s == pytest.approx(1.0, rel=1e-6)
    # thousands of chains, capacities in the thousands: no overflow
    b = bounds_from_rates([0.1 + 0.001 * i for i in range(500)], [3000] * 500, 0.9 * sum(
        (0.1 + 0.001 * i) * 3000 for i in range(500)))
    assert math.isfinite(b.lower_s) and math.isfinite(b.upper_s) and 0 < b.lower_s <= b.upper_s


def test_unstable_load_is_reported_not_raised():
    b = bounds_from_rates([1.0], [2], 2.0)
    assert not b.stable and b.to_dict() == {"response_time_lower_s": None, "response_time_upper_s": None}


def test_routing_edges_and_paths_agree_with_gca_on_small_placement():
    s = make_scenario([(4, 1, 1), (5, 1, 1), (9, 1, 1.2), (2, 5, 1)], num_blocks=4)
    placement = Placement(start=(0, 2, 0, 3), count=(2, 2, 3, 1))
    edges = set(routing_edges(placement, 4))
    assert (-1, 0, 2) in edges and (0, 1, 2) in edges and (2, 1, 1) in edges and (2, 3, 1) in edges
    assert (1, 4, 0) in edges and (0, 3, 2) not in edges      # D starts at 3, A ends at 2
    paths = sorted(tuple(p) for p in enumerate_paths(placement, 4))
    # A ends at 2 and C covers block 2, so A->C (C running 1 block) is a hop too
    assert paths == [((0, 2), (1, 2)), ((0, 2), (2, 1), (1, 1)), ((0, 2), (2, 1), (3, 1)),
                     ((2, 3), (1, 1)), ((2, 3), (3, 1))]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("rate_per_server", [0.005, 0.02, 0.05])
def test_pruned_c_tuning_equals_exhaustive(seed, rate_per_server):
    s = paper_scenario(num_servers=20 + 10 * (seed % 3), eta=0.1 * (1 + seed % 4),
                       arrival_rate=rate_per_server * (20 + 10 * (seed % 3)), seed=seed)
    tuned = tune_c(s)
    arrays = ServerArrays.from_scenario(s)
    best = None
    for c in range(1, arrays.max_reservation() + 1):
        r = gbpcr(s, c, arrays)
        if not r.feasible:
            continue
        cand = evaluate(s, r, "lower-bound")
        if cand.bounds.stable and (best is None or (cand.objective, c) < (best.objective, best.c)):
            best = cand
    assert (tuned.best is None) == (best is None)
    if best is not None:
        assert tuned.best.c == best.c
        assert tuned.best.objective == pytest.approx(best.objective)


def test_low_load_small_c_high_load_large_c():
    low = tune_c(paper_scenario(num_servers=40, arrival_rate=0.05, seed=3)).best
    high = tune_c(paper_scenario(num_servers=40, arrival_rate=1.5, seed=3)).best
    assert low.c < high.c


def test_keep_returns_the_exhaustive_top_candidates_despite_pruning():
    s = paper_scenario(num_servers=30, eta=0.2, arrival_rate=0.6, seed=4)
    top = tune_c(s, keep=4).top
    arrays = ServerArrays.from_scenario(s)
    exhaustive = sorted(
        ((cand.objective, cand.c) for c in range(1, arrays.max_reservation() + 1)
         if (r := gbpcr(s, c, arrays)).feasible and (cand := evaluate(s, r, "lower-bound")).bounds.stable))
    assert [cd.c for cd in top] == [c for _, c in exhaustive[:4]]
    assert [cd.objective for cd in top] == pytest.approx([v for v, _ in exhaustive[:4]])


def test_c_by_simulation_picks_among_the_best_by_bound():
    from solvers.runner import plan

    s = paper_scenario(num_servers=20, eta=0.2, arrival_rate=0.4, seed=1)
    doc = plan(s, c_objective="simulation", simulate_requests=3000, seed=2)
    rows = doc["c_simulation"]
    assert len(rows) == 5 and doc["c"] in [r["c"] for r in rows]
    best = min(rows, key=lambda r: r["simulated_mean_response_s"])
    assert doc["c"] == best["c"]
