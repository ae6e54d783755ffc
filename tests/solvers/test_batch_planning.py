"""Planning under a batch slowdown (issue 21, item 4): a KV slot is no longer free speed."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest

import solvers.exact  # noqa: F401  (registers optimal-allocation)
import solvers.search  # noqa: F401
from solvers.algorithms import REGISTRY, PlanOptions
from solvers.batch_allocation import best_capacities, held_back, packed_response
from solvers.batching import TIME_SHARING, BatchModel, BatchSlowdown, saturation_rate
from solvers.exact import placement_chains
from solvers.exact.batched import batched_allocate, saturation
from solvers.gca import gca
from solvers.plan import plan_document
from solvers.scenario import Scenario, load_scenario
from solvers.topology import Placement, cache_slots

from .helpers import make_scenario

# past 8 jobs a decode step slows faster than the batch grows (memory thrash): filling the GPU loses rate
THRASHING = BatchSlowdown.from_pairs([[1, 1], [8, 1.5], [16, 6]])
# an A100-like continuous batching curve: 3x the one-job time at 240 jobs, far below time-sharing
BATCHING = BatchSlowdown.from_pairs([[1, 1], [240, 3]])
IDENTITY = BatchSlowdown.from_pairs([[1, 1], [64, 1]])


def with_curves(scenario: Scenario, curves: dict[str, BatchSlowdown]) -> Scenario:
    return scenario.with_servers(tuple(dataclasses.replace(s, batch_slowdown=curves.get(s.id, s.batch_slowdown))
                                       for s in scenario.servers))


def plan(name: str, scenario: Scenario, **extra):
    result = REGISTRY[name].run(scenario, PlanOptions(time_limit_s=5.0 if name != "proposed" else None,
                                                      extra=extra))
    assert result.feasible, result.reason
    return result


def jobs_on(result, server_id: str) -> int:
    return sum(ch.capacity for ch in result.chains if server_id in ch.servers)


def fast_gpu(arrival_rate: float = 5.0) -> Scenario:
    """s0: a fast GPU holding the whole model with room for 90 jobs; s1-s4: small slow servers."""
    return make_scenario([(40, 0.01, 0.01)] + [(3, 0.02, 0.05)] * 4, 4, cache_size_gb=0.1,
                         arrival_rate=arrival_rate)


def test_saturation_rate_is_total_service_rate_without_curves():
    sc = fast_gpu()
    result = plan("proposed", sc)
    assert saturation_rate(result.chains, sc.servers) == sum(ch.capacity / ch.service_time_s for ch in result.chains)
    # the curve slows every chain through s0 at its full planned occupancy
    batched = with_curves(sc, {"s0": THRASHING})
    b = jobs_on(result, "s0")
    expected = sum(ch.capacity / (ch.service_time_s + (0.01 * 4 * (THRASHING.factor(b) - 1) if "s0" in ch.servers
                                                       else 0.0)) for ch in result.chains)
    assert saturation_rate(result.chains, batched.servers) == pytest.approx(expected)


@pytest.mark.parametrize("name", ["proposed", "search", "optimal-allocation"])
def test_fast_gpu_holds_fewer_jobs_when_filling_it_loses_rate(name):
    sc = fast_gpu()
    batched = with_curves(sc, {"s0": THRASHING})
    batch_one, aware = plan(name, sc), plan(name, batched)
    assert jobs_on(aware, "s0") < jobs_on(batch_one, "s0")
    assert jobs_on(batch_one, "s0") == 90        # the batch-1 plan fills the GPU's memory
    assert saturation_rate(aware.chains, batched.servers) > 2 * saturation_rate(batch_one.chains, batched.servers)
    # the plan says why the GPU is not filled
    notes = aware.extra["batch_capacity"]
    assert [n["server"] for n in notes] == ["s0"]
    assert "s0 holds" in notes[0]["text"] and "would slow chain 1 by" in notes[0]["text"]
    assert "lower the saturation rate" in notes[0]["text"]
    assert notes[0]["saturation_rate_with_more_rps"] < notes[0]["saturation_rate_rps"]


def test_marginal_rate_keeps_an_over_filled_gpu_from_taking_every_job():
    """A sublinear curve (more jobs always add throughput) at heavy load: JFFC would pack jobs on the GPU past
    the point where a slow chain's free slot adds more; the aware plan predicts a lower mean response."""
    lam = 1500.0
    sc = make_scenario([(80, 0.01, 0.01)] + [(6, 0.02, 0.03)] * 6, 4, cache_size_gb=0.05, arrival_rate=lam)
    batched = with_curves(sc, {"s0": BATCHING})
    model = BatchModel.of(batched)
    batch_one, aware = plan("proposed", sc), plan("proposed", batched)
    assert jobs_on(aware, "s0") < jobs_on(batch_one, "s0")

    def predicted(result):
        return packed_response(model, result.chains, [ch.capacity for ch in result.chains], lam)
    assert predicted(aware) < predicted(batch_one)
    assert "s0 holds" in aware.extra["batch_capacity"][0]["text"]


def test_time_sharing_server_gets_one_job_per_chain():
    """factor(b) = b and no network time: a second job on a chain only halves both jobs' speed."""
    sc = make_scenario([(10, 0.0, 0.01), (10, 0.0, 0.02)], 2)
    assert [ch.capacity for ch in gca(sc, Placement((0, 0), (2, 2)))] == [4, 4]
    batched = with_curves(sc, {"s0": TIME_SHARING, "s1": TIME_SHARING})
    chains = gca(batched, Placement((0, 0), (2, 2)))
    assert sorted(ch.capacity for ch in chains) == [1, 1]
    result = plan("proposed", batched)
    assert all(ch.capacity == 1 for ch in result.chains)


def test_packed_response_is_the_lower_bound_without_curves():
    sc = fast_gpu(arrival_rate=50)
    result = plan("proposed", sc)
    from solvers.bounds import response_time_bounds
    model = BatchModel.of(sc)
    assert packed_response(model, result.chains, [ch.capacity for ch in result.chains], 50) == pytest.approx(
        response_time_bounds(result.chains, 50).lower_s, rel=1e-12)


def small_instances():
    yield with_curves(fast_gpu(), {"s0": THRASHING})
    yield with_curves(make_scenario([(12, 0.01, 0.01), (6, 0.02, 0.02), (6, 0.02, 0.03), (5, 0.01, 0.04)], 4,
                                    cache_size_gb=0.25, arrival_rate=3),
                      {"s0": BatchSlowdown.from_pairs([[1, 1], [4, 1.2], [12, 4]]), "s1": TIME_SHARING})
    yield with_curves(make_scenario([(9, 0.005, 0.01), (9, 0.005, 0.01), (4, 0.01, 0.02)], 3, cache_size_gb=0.5,
                                    arrival_rate=2),
                      {"s0": BATCHING, "s1": BatchSlowdown.from_pairs([[1, 1], [2, 1.8], [6, 7]])})


@pytest.mark.parametrize("index", range(3))
def test_optimal_allocation_is_at_least_every_algorithms_saturation_rate(index):
    scenario = list(small_instances())[index]
    for name in ("proposed", "search", "optimal-allocation"):
        other = plan(name, scenario)
        exact = plan("optimal-allocation", scenario, placement=other.placement)
        info = exact.extra["exact"]
        assert info["status"] == "OPTIMAL" and info["gap"] == 0.0
        assert info["objective"] == pytest.approx(saturation_rate(exact.chains, scenario.servers))
        assert info["objective"] >= saturation_rate(other.chains, scenario.servers) * (1 - 1e-9), name


@pytest.mark.parametrize("index", range(3))
def test_branch_and_bound_matches_brute_force(index):
    scenario = list(small_instances())[index]
    model = BatchModel.of(scenario)
    placement = plan("proposed", scenario).placement
    slots = cache_slots(scenario, placement)
    chains, capped = placement_chains(scenario, placement, slots)
    assert not capped and len(chains) <= 4
    caps = [min(slots[j] // m for j, m in ch.hops) for ch in chains]
    best = 0.0
    for values in itertools.product(*(range(c + 1) for c in caps)):
        used = [0] * len(slots)
        for ch, v in zip(chains, values):
            for j, m in ch.hops:
                used[j] += m * v
        if all(u <= s for u, s in zip(used, slots)):
            best = max(best, saturation(model, chains, values))
    out, info = batched_allocate(model, chains, slots, 10.0)
    assert out.objective == pytest.approx(best, rel=1e-9)
    assert out.best_bound >= best * (1 - 1e-9) and out.gap == 0.0
    # the heuristic never beats the proof
    assert model.saturation_rate(gca(scenario, placement)) <= best * (1 + 1e-9)


def test_best_capacities_never_lower_the_saturation_rate_by_itself():
    scenario = list(small_instances())[1]
    model = BatchModel.of(scenario)
    placement = plan("proposed", scenario).placement
    full = [ch for ch in gca(dataclasses.replace(scenario, servers=tuple(
        dataclasses.replace(s, batch_slowdown=IDENTITY) for s in scenario.servers)), placement)]
    caps = best_capacities(model, full)
    assert model.saturation_rate(full, caps) >= model.saturation_rate(full) * (1 - 1e-12)
    assert all(0 <= c <= ch.capacity for c, ch in zip(caps, full))


class _CountingCurve(BatchSlowdown):
    """THRASHING, counting how often a planner looks a factor up (the work ``best_capacities`` does)."""
    calls = [0]

    def factor(self, b: float) -> float:
        _CountingCurve.calls[0] += 1
        return super().factor(b)


def test_best_capacities_does_no_work_for_chains_that_hold_no_job():
    """optimal-allocation offers allocations over thousands of enumerated chains, nearly all at 0 (a 24-GPU
    LLaMA-2-70B cluster: 5,020 chains, 143 s in this polish against a 5 s limit): those chains change nothing
    and must cost nothing."""
    sc = fast_gpu()
    chains = plan("proposed", sc).chains
    curve = _CountingCurve(THRASHING.concurrency, THRASHING.factors)

    def model():     # a fresh one each time: a model keeps its factor tables and predictions (BatchModel.memo)
        return BatchModel(tuple(curve if s.id == "s0" else IDENTITY for s in sc.servers),
                          tuple(s.block_time_s for s in sc.servers), {s.id: j for j, s in enumerate(sc.servers)})
    idle = [dataclasses.replace(ch, capacity=0) for ch in chains for _ in range(200)]
    _CountingCurve.calls[0] = 0
    alone = best_capacities(model(), chains, arrival_rate=5.0)
    work = _CountingCurve.calls[0]
    assert work > 0
    _CountingCurve.calls[0] = 0
    assert best_capacities(model(), chains + idle, arrival_rate=5.0) == alone + [0] * len(idle)
    assert _CountingCurve.calls[0] == work


def test_held_back_is_empty_without_curves_or_room():
    sc = fast_gpu()
    result = plan("proposed", sc)
    assert held_back(sc, result.chains) == []
    assert "batch_capacity" not in result.extra


EXAMPLES = ["examples/paper-j20.json", "examples/two-tier-europe.json"]


def _document(scenario: Scenario, name: str) -> dict:
    result = REGISTRY[name].run(scenario, PlanOptions())
    doc = plan_document(scenario, result, 0.0)
    doc.pop("search", None)          # how long it searched
    if "exact" in doc:
        doc["exact"].pop("solve_time_s")
    return doc


@pytest.mark.parametrize("path", EXAMPLES)
@pytest.mark.parametrize("name", ["proposed", "optimal-allocation"])
def test_identity_curves_change_no_plan_on_the_examples(path, name):
    """A curve that is 1 everywhere is today's model: the same document, figure for figure."""
    scenario = load_scenario(path)
    flat = scenario.with_servers(tuple(dataclasses.replace(s, batch_slowdown=IDENTITY) for s in scenario.servers))
    assert _document(flat, name) == _document(scenario, name)


def test_identity_curves_change_no_search_plan():
    sc = make_scenario([(8, 0.01, 0.01), (6, 0.02, 0.02), (6, 0.02, 0.03), (5, 0.01, 0.04)], 6,
                       cache_size_gb=0.25, arrival_rate=3)
    flat = sc.with_servers(tuple(dataclasses.replace(s, batch_slowdown=IDENTITY) for s in sc.servers))
    a, b = plan("search", sc), plan("search", flat)
    assert (a.placement, a.chains) == (b.placement, b.chains)
    assert not math.isinf(saturation_rate(a.chains, sc.servers))


def test_a_box_closes_only_when_its_bound_is_its_solutions_rate():
    """The branch and bound's soundness: a box is split while its solution runs slower than its bound assumes."""
    from solvers.exact.batched import _chains_at, _split
    scenario = list(small_instances())[0]
    model = BatchModel.of(scenario)
    placement = plan("proposed", scenario).placement
    slots = cache_slots(scenario, placement)
    chains, _ = placement_chains(scenario, placement, slots)
    full = [min(slots[j] // m for j, m in ch.hops) for ch in chains]
    root = {0: (0, slots[0])}
    assert _split(model, chains, root, full) is not None
    occupied = model.occupancy(_chains_at(chains[:1], full[:1]))
    assert _split(model, chains[:1], {0: (occupied[0], slots[0])}, full[:1]) is None


def _allocations(chains, slots):
    """Every integer allocation of the chains within the slots."""
    caps = [min(slots[j] // m for j, m in ch.hops) for ch in chains]
    for values in itertools.product(*(range(c + 1) for c in caps)):
        used = [0] * len(slots)
        for ch, v in zip(chains, values):
            for j, m in ch.hops:
                used[j] += m * v
        if all(u <= s for u, s in zip(used, slots)):
            yield values


@pytest.mark.parametrize("index", range(3))
@pytest.mark.parametrize("share", [0.3, 0.6, 0.9])
def test_min_capacity_under_a_slowdown_matches_brute_force(index, share):
    """min-capacity asks for the fewest jobs whose saturation rate (not the one-job rate) reaches a target."""
    from solvers.exact.batched import batched_min_capacity
    scenario = list(small_instances())[index]
    model = BatchModel.of(scenario)
    placement = plan("proposed", scenario).placement
    slots = cache_slots(scenario, placement)
    chains, _ = placement_chains(scenario, placement, slots)
    rates = {values: saturation(model, chains, values) for values in _allocations(chains, slots)}
    target = share * max(rates.values())
    fewest = min(sum(v) for v, r in rates.items() if r >= target)
    out, info = batched_min_capacity(model, chains, slots, target, 10.0)
    assert out.status == "OPTIMAL" and out.gap == 0.0, (out, info)
    assert sum(out.values) == out.objective == fewest
    assert saturation(model, chains, out.values) >= target
    # past the best saturation rate nothing reaches it, and the solver proves so
    none, _ = batched_min_capacity(model, chains, slots, max(rates.values()) * 1.01, 10.0)
    assert none.values == [] and none.status == "INFEASIBLE"


def test_min_capacity_plan_counts_the_slowdown():
    """Through the algorithm: the plan's saturation rate (with the curves) reaches lambda / rho_bar, where the
    one-job MIP's allocation, which counts every slot at its one-job speed, would fall short of it."""
    scenario = dataclasses.replace(list(small_instances())[0], workload=dataclasses.replace(
        fast_gpu().workload, arrival_rate=40.0))
    plain = scenario.with_servers(tuple(dataclasses.replace(s, batch_slowdown=IDENTITY) for s in scenario.servers))
    placement = plan("proposed", scenario).placement
    target = 40.0 / scenario.workload.target_load
    aware = plan("optimal-allocation", scenario, objective="min-capacity", placement=placement)
    one_job = plan("optimal-allocation", plain, objective="min-capacity", placement=placement)
    assert saturation_rate(aware.chains, scenario.servers) >= target * (1 - 1e-9)
    assert saturation_rate(one_job.chains, scenario.servers) < target
    info = aware.extra["exact"]
    assert info["status"] == "OPTIMAL" and "batch slowdown" in info["optimises"]
    assert info["objective"] == sum(ch.capacity for ch in aware.chains)


def test_optimal_under_a_slowdown_allocates_for_the_saturation_rate_and_says_so():
    """The joint model sees one-job rates only: its placement is kept, its allocation is redone for the saturation
    rate, and the plan reports that rate against the one-job bound (proven, never below it)."""
    scenario = list(small_instances())[1]
    plain = scenario.with_servers(tuple(dataclasses.replace(s, batch_slowdown=IDENTITY) for s in scenario.servers))
    result = plan("optimal", scenario)
    info = result.extra["exact"]
    rate = saturation_rate(result.chains, scenario.servers)
    assert info["objective"] == pytest.approx(rate, rel=1e-12)
    assert info["best_bound"] >= rate and info["gap"] == pytest.approx((info["best_bound"] - rate) / rate)
    assert info["objective"] >= info["joint_allocation_saturation_rate_rps"] * (1 - 1e-12)
    assert "one-job" in info["optimises"] and "batch slowdown" in info["optimises"]
    # the same servers without curves: the joint model's figures are the plan's, as before
    flat = plan("optimal", plain).extra["exact"]
    assert "batch slowdown" not in flat["optimises"] and "joint_allocation_saturation_rate_rps" not in flat
    # on the same placement, no allocation has a higher saturation rate (the re-allocation is exact there)
    exact = plan("optimal-allocation", scenario, placement=result.placement).extra["exact"]
    assert rate >= exact["objective"] * (1 - 1e-9)
