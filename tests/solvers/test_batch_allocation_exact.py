"""The batch-aware allocation's array code against the scalar code it replaced, figure for figure (issue 21).

``_Plan.local_rates``, ``_Plan.times_with_one_more``, ``packed_rates``, ``BatchModel.loaded_times`` and the
skipping of steps in ``_max_saturation`` were rewritten for speed with the promise that every number stays the
same bit for bit (the same operations in the same order).  The scalar versions are kept here, as they were, and
compared on random chains over servers with and without curves (one curve extended past its last point)."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

from solvers import batch_allocation as ba
from solvers.batch_allocation import _factors, _marginal_fill, _max_saturation, _Plan, _values, packed_rates
from solvers.batching import NO_SLOWDOWN, TIME_SHARING, BatchModel, BatchSlowdown
from solvers.gca import AllocatedChain

CURVES = [NO_SLOWDOWN, TIME_SHARING, BatchSlowdown.from_pairs([[1, 1], [8, 1.5], [16, 6]]),
          BatchSlowdown.from_pairs([[1, 1], [16, 1.03], [64, 1.13], [256, 1.64], [512, 2.96]]),
          BatchSlowdown.from_pairs([[1, 1], [240, 3]])]


def _case(seed: int, servers: int = 9, chains: int = 7, most: int = 40):
    rng = random.Random(seed)
    curves = tuple(rng.choice(CURVES) for _ in range(servers))
    model = BatchModel(curves, tuple(rng.uniform(0.05, 0.9) for _ in range(servers)),
                       {f"s{j}": j for j in range(servers)})
    out = []
    for _ in range(chains):
        route = rng.sample(range(servers), rng.randint(1, 4))
        hops = tuple((j, rng.randint(1, 6)) for j in route)
        time = sum(0.01 + model.block_time_s[j] * m for j, m in hops)
        out.append(AllocatedChain(hops, time, rng.randint(1, most)))
    return model, out


# --- the scalar code, as it was before the array rewrite ---------------------------------------------------------

def _time_with(plan: _Plan, l: int, servers, delta: int) -> float:
    m = plan.model
    return plan.base[l] + sum(m.block_time_s[j] * n * (m.curves[j].factor(plan.b[j] + (delta if j in servers else 0))
                                                       - 1.0) for j, n in plan.hops[l])


def _local_rates(plan: _Plan, k: int, values: np.ndarray) -> np.ndarray:
    model = plan.model
    delta = values - plan.c[k]
    servers = plan.server_sets[k]
    moved = {j: model.factor_table(j, plan.b[j] + int(delta.max()))[plan.b[j] + delta]
             for j in servers if not model.curves[j].is_identity}
    out = 0
    for l in plan.sharing[k]:
        t = 0
        for j, n in plan.hops[l]:
            w = model.block_time_s[j] * n
            if model.curves[j].is_identity:
                t = t + w * 0.0
            elif j in servers:
                t = t + w * (moved[j] - 1.0)
            else:
                t = t + w * (model.factor_table(j, plan.b[j])[plan.b[j]] - 1.0)
        out = out + (values if l == k else plan.c[l]) / (plan.base[l] + t)
    return out


def _max_saturation_every_step(model, chains, caps):
    plan = _Plan(model, chains, caps)
    for _ in range(ba.MAX_SWEEPS):
        changed = False
        for k in range(len(chains)):
            vals = _values(plan, k, caps[k])
            rates = _local_rates(plan, k, np.array(vals + [plan.c[k]]))
            best_v, best_r = plan.c[k], rates[-1]
            for v, r in zip(vals, rates[:-1].tolist()):
                if r > best_r * (1 + ba.TIE) or (r >= best_r * (1 - ba.TIE) and v < best_v):
                    best_v, best_r = v, r
            if best_v != plan.c[k]:
                plan.set(k, best_v)
                changed = True
        if not changed:
            break
    return plan.c


def _packed_rates(model, chains, capacities):
    order = [k for k in sorted(range(len(chains)), key=lambda k: chains[k].service_time_s) if capacities[k] > 0]
    hops = {k: tuple(model.hops(chains[k])) for k in order}
    on = {k: frozenset(j for j, _ in hops[k]) for k in order}
    b = np.zeros(len(model.curves))
    full, pieces = [], []
    for k in order:
        z = np.arange(1, capacities[k] + 1, dtype=float)

        def excess(l):
            out = np.zeros_like(z)
            for j, m in hops[l]:
                occ = b[j] + z if j in on[k] else np.array([b[j]])
                d = _factors(model.curves[j], occ) - 1.0
                out += model.block_time_s[j] * m * (d if j in on[k] else d[0])
            return out

        fixed = 0.0
        moving = z / (chains[k].service_time_s + excess(k))
        for l in full:
            if on[k].isdisjoint(on[l]):
                fixed += capacities[l] / (chains[l].service_time_s + model.excess(hops[l], b))
            else:
                moving = moving + capacities[l] / (chains[l].service_time_s + excess(l))
        pieces.append(fixed + moving)
        for j in on[k]:
            b[j] += capacities[k]
        full.append(k)
    return np.concatenate(pieces) if pieces else np.zeros(0)


def _same(a, b) -> bool:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return a.shape == b.shape and a.tobytes() == b.tobytes()


# --- the comparisons ---------------------------------------------------------------------------------------------

SEEDS = range(12)


@pytest.mark.parametrize("seed", SEEDS)
def test_local_rates_equal_the_scalar_computation(seed):
    model, chains = _case(seed)
    rng = random.Random(seed)
    plan = _Plan(model, chains, [ch.capacity for ch in chains])
    for k in range(len(chains)):
        for values in (np.arange(chains[k].capacity + 1), np.array(sorted(rng.sample(range(200), 9)) + [plan.c[k]])):
            assert _same(plan.local_rates(k, values), _local_rates(plan, k, values)), (seed, k)
        plan.set(k, rng.randint(0, chains[k].capacity))


@pytest.mark.parametrize("seed", SEEDS)
def test_times_with_one_more_equal_the_scalar_computation(seed):
    model, chains = _case(seed)
    plan = _Plan(model, chains, [ch.capacity // 2 for ch in chains])
    everyone = list(range(len(chains)))
    assert _same(plan.times_with_one_more(everyone),
                 [_time_with(plan, l, plan.server_sets[l], 1) for l in everyone])


@pytest.mark.parametrize("seed", SEEDS)
def test_packed_rates_equal_the_scalar_computation(seed):
    model, chains = _case(seed)
    caps = [ch.capacity if k % 3 else 0 for k, ch in enumerate(chains)]
    assert _same(packed_rates(model, chains, caps), _packed_rates(model, chains, caps))
    assert _same(packed_rates(model, chains, [ch.capacity for ch in chains]),
                 _packed_rates(model, chains, [ch.capacity for ch in chains]))


@pytest.mark.parametrize("seed", SEEDS)
def test_loaded_times_equal_the_per_hop_sum(seed):
    model, chains = _case(seed)
    b = model.occupancy(chains)
    assert _same(model.loaded_times(chains), [ch.service_time_s + model.excess(ch.hops, b) for ch in chains])


@pytest.mark.parametrize("seed", SEEDS)
def test_skipping_unchanged_steps_changes_no_capacity(seed):
    model, chains = _case(seed, servers=6, chains=9, most=120)
    caps = [ch.capacity for ch in chains]
    assert _max_saturation(model, chains, caps) == _max_saturation_every_step(model, chains, caps)


@pytest.mark.parametrize("seed", SEEDS)
def test_marginal_fill_equals_the_scalar_computation(seed):
    model, chains = _case(seed)
    caps = [ch.capacity for ch in chains]
    order = sorted(range(len(chains)), key=lambda k: chains[k].service_time_s)
    plan = _Plan(model, chains, [0] * len(chains))
    for pos, k in enumerate(order):
        later = order[pos + 1:]
        elsewhere = max((1.0 / _time_with(plan, l, plan.server_sets[l], 1) for l in later), default=0.0)
        rates = _local_rates(plan, k, np.arange(caps[k] + 1)).tolist()
        lo, hi = 0, caps[k]
        while lo < hi:
            mid = (lo + hi + 1) // 2
            gain = rates[mid] - rates[mid - 1]
            lo, hi = (mid, hi) if gain >= elsewhere and gain > 0 else (lo, mid - 1)
        plan.set(k, lo)
    assert _marginal_fill(model, chains, caps) == plan.c


def _batched_scenario(arrival_rate: float):
    from .helpers import make_scenario
    sc = make_scenario([(40, 0.01, 0.01), (12, 0.02, 0.03)] + [(3, 0.02, 0.05)] * 4, 4, cache_size_gb=0.1,
                       arrival_rate=arrival_rate)
    curve = BatchSlowdown.from_pairs([[1, 1], [8, 1.5], [16, 6]])
    return sc.with_servers(tuple(dataclasses.replace(s, batch_slowdown=curve if s.id in ("s0", "s1") else None)
                                 for s in sc.servers))


def test_a_kept_allocation_is_the_one_computed_afresh():
    """gca keeps the batch-aware allocation of a placement for the model's life (a search asks for the same ones
    again and again); the arrival rate and the LLM are part of its key, and a caller's list is its own."""
    from solvers import batching
    from solvers.gca import gca
    from solvers.topology import Placement
    slow = _batched_scenario(2.0)
    fast = dataclasses.replace(slow, workload=dataclasses.replace(slow.workload, arrival_rate=20.0))
    bigger = dataclasses.replace(slow, model=dataclasses.replace(slow.model, cache_size_gb=0.2))
    assert fast.servers is slow.servers is bigger.servers          # one BatchModel for the three
    placements = [Placement((0, 0, 0, 2, 0, 2), (4, 4, 2, 2, 2, 2)), Placement((0, 1, 0, 0, 0, 0), (4, 3, 1, 0, 0, 0))]
    afresh = {}
    for sc in (slow, fast, bigger):
        for p in placements:
            batching._MODELS.clear()
            afresh[id(sc), p] = gca(sc, p)
    batching._MODELS.clear()
    for _ in range(2):
        for sc in (slow, fast, bigger):
            for p in placements:
                got = gca(sc, p)
                assert got == afresh[id(sc), p]
                got.clear()                                         # the caller's list, not the kept one
    assert len({tuple(v) for v in afresh.values()}) > 1           # the keys matter: the allocations differ


def test_loaded_times_take_capacities_that_are_not_counts():
    """Capacities given as floats (a solver's values) still give the per-hop sum."""
    model, chains = _case(3)
    caps = [ch.capacity + 0.5 for ch in chains]
    b = model.occupancy(chains, caps)
    assert _same(model.loaded_times(chains, caps), [ch.service_time_s + model.excess(ch.hops, b) for ch in chains])
