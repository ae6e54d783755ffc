"""Property tests on random small instances (hypothesis)."""

from __future__ import annotations

import math
from itertools import combinations

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from solvers.gbpcr import ServerArrays, gbpcr
from solvers.gca import gca
from solvers.topology import Placement, cache_slots

from .helpers import check_chain_covers, make_scenario

# a share of random clusters cannot hold the model; those are filtered out on purpose
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@st.composite
def instances(draw, equal_memory: bool = False):
    num_blocks = draw(st.integers(1, 12))
    block = draw(st.floats(0.5, 2.0))
    cache = draw(st.floats(0.05, 0.6))
    count = draw(st.integers(2, 8) if equal_memory else st.integers(1, 8))
    mem = st.floats(block + cache, (block + cache) * (num_blocks + 2))
    shared = draw(mem)
    servers = [(shared if equal_memory else draw(mem), draw(st.floats(0.0, 2.0)), draw(st.floats(0.01, 1.0)))
               for _ in range(count)]
    rate = draw(st.floats(0.01, 3.0))
    return make_scenario(servers, num_blocks, block, cache, arrival_rate=rate)


def check_plan(scenario, placement, chains):
    L = scenario.model.num_blocks
    slots = cache_slots(scenario, placement)
    used = [0] * len(scenario.servers)
    for ch in chains:
        assert isinstance(ch.capacity, int) and ch.capacity >= 1
        check_chain_covers(ch.hops, placement, L)
        assert sum(m for _, m in ch.hops) == L
        expected = sum(scenario.servers[j].comm_time_s + scenario.servers[j].block_time_s * m for j, m in ch.hops)
        assert math.isclose(ch.service_time_s, expected, rel_tol=1e-12)
        for j, m in ch.hops:
            used[j] += m * ch.capacity
    model = scenario.model
    for j, s in enumerate(scenario.servers):
        assert used[j] <= slots[j]
        mem = model.block_size_gb * placement.count[j] + model.cache_size_gb * used[j]
        assert mem <= s.memory_gb + 1e-9
    times = [ch.service_time_s for ch in chains]
    assert times == sorted(times)          # fastest first


@SETTINGS
@given(instances(), st.data())
def test_gbpcr_then_gca_gives_valid_plans_at_least_as_fast_as_disjoint_chains(scenario, data):
    arrays = ServerArrays.from_scenario(scenario)
    assume(arrays.max_reservation() >= 1)
    c = data.draw(st.integers(1, arrays.max_reservation()))
    result = gbpcr(scenario, c, arrays)
    assume(result.feasible)
    chains = gca(scenario, result.placement)
    check_plan(scenario, result.placement, chains)
    assert chains, "a feasible GBP-CR placement always has a chain"
    gca_rate = sum(ch.capacity / ch.service_time_s for ch in chains)
    # GBP-CR's own chains, c jobs each (its T counts every server's full range, an upper bound on the hop time)
    disjoint_rate = sum(c / t for t in result.chain_times)
    assert gca_rate >= disjoint_rate * (1 - 1e-12)


@st.composite
def placements(draw):
    scenario = draw(instances())
    L = scenario.model.num_blocks
    starts, counts = [], []
    for server in scenario.servers:
        # a server's blocks alone must fit in its memory
        m = draw(st.integers(0, min(L, math.floor(server.memory_gb / scenario.model.block_size_gb))))
        starts.append(draw(st.integers(0, L - m)) if m else 0)
        counts.append(m)
    return scenario, Placement(tuple(starts), tuple(counts))


@SETTINGS
@given(placements())
def test_gca_on_any_placement_respects_memory_and_covers_blocks(case):
    scenario, placement = case
    chains = gca(scenario, placement)
    check_plan(scenario, placement, chains)
    if chains:
        assert placement.covers_all(scenario.model.num_blocks)


def _max_rate_with(groups: int, times: list[float], size: int) -> float:
    """Largest total rate of ``groups`` disjoint chains of ``size`` servers (brute force)."""
    best = 0.0

    def rec(remaining: tuple[int, ...], left: int, acc: float) -> None:
        nonlocal best
        if left == 0:
            best = max(best, acc)
            return
        if len(remaining) < size * left:
            return
        first, rest = remaining[0], remaining[1:]
        rec(rest, left, acc)                              # first server unused
        for others in combinations(rest, size - 1):
            group = (first,) + others
            rec(tuple(x for x in rest if x not in others), left - 1, acc + 1.0 / sum(times[j] for j in group))

    rec(tuple(range(len(times))), groups, 0.0)
    return best


@SETTINGS
@given(instances(equal_memory=True), st.data())
def test_gbpcr_chain_count_is_minimal_with_equal_memory(scenario, data):
    arrays = ServerArrays.from_scenario(scenario)
    assume(arrays.max_reservation() >= 1)
    c = data.draw(st.integers(1, min(6, arrays.max_reservation())))
    result = gbpcr(scenario, c, arrays)
    assume(result.feasible)
    needed = scenario.workload.arrival_rate / (scenario.workload.target_load * c)
    assume(result.total_rate >= needed)              # GBP-CR reached the target
    m = int(arrays.blocks_for(c)[0])
    size = math.ceil(scenario.model.num_blocks / m)
    times = [s.comm_time_s + s.block_time_s * m for s in scenario.servers]
    k = len(result.chains)
    assert _max_rate_with(k, times, size) >= needed * (1 - 1e-9)
    if k > 1:
        assert _max_rate_with(k - 1, times, size) < needed


@SETTINGS
@given(placements())
def test_fast_gca_equals_the_literal_server_dag_version(case):
    from solvers.gca_reference import gca_reference

    scenario, placement = case
    fast = gca(scenario, placement)
    slow = gca_reference(scenario, placement)
    # random float times make ties (where the two may pick different equal-cost paths) measure-zero
    assert [(c.hops, c.capacity) for c in fast] == [(c.hops, c.capacity) for c in slow]
