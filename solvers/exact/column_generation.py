"""Column generation: the allocation LP over *every* chain of a placement, without enumerating them."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

from ..scenario import Scenario
from ..topology import Placement
from .allocation import restricted_lp
from .enumeration import ChainCandidate

MAX_PRICING_LABELS = 20_000     # Pareto labels kept per pricing run; past it the pricing is not exact


def _price(scenario: Scenario, placement: Placement, slots: Sequence[int], y: Sequence[float], keep: int
           ) -> tuple[float, list[ChainCandidate], bool]:
    """Chains of largest reduced cost ``1/T_k - sum_hops m y_j`` (the pricing problem), and whether it is exact.

    A longest path in 1/T is not additive, so this is a label-setting search over the routing DAG of block
    boundaries (each hop: one server from a boundary inside its range to its end): at each boundary it keeps
    the Pareto-minimal (time, price) labels, and drops a label when even the fastest and cheapest completion
    could not give it a positive reduced cost.
    """
    L = scenario.model.num_blocks
    used = placement.used()
    out_moves: dict[int, list[tuple[int, int, float, float]]] = {}
    for j in used:
        sv = scenario.servers[j]
        f = placement.end(j)
        for e in range(placement.start[j], f):
            if f - e <= slots[j]:
                out_moves.setdefault(e, []).append((j, f, sv.comm_time_s + sv.block_time_s * (f - e), (f - e) * y[j]))
    fast = [math.inf] * (L + 1)
    cheap = [math.inf] * (L + 1)
    fast[L] = cheap[L] = 0.0
    for e in range(L - 1, -1, -1):
        for _, f, t, p in out_moves.get(e, ()):
            fast[e] = min(fast[e], t + fast[f])
            cheap[e] = min(cheap[e], p + cheap[f])
    if not math.isfinite(fast[0]):
        return 0.0, [], True
    labels: dict[int, list[tuple[float, float, tuple]]] = {0: [(0.0, 0.0, ())]}
    exact, total = True, 0
    done: list[tuple[float, ChainCandidate]] = []
    for e in range(L):
        here = labels.pop(e, [])
        if not here:
            continue
        # Pareto filter: sort by time, keep strictly falling price
        here.sort(key=lambda lab: (lab[0], lab[1]))
        front, best_p = [], math.inf
        for lab in here:
            if lab[1] < best_p - 1e-15:
                front.append(lab)
                best_p = lab[1]
        for t0, p0, hops in front:
            for j, f, t, p in out_moves.get(e, ()):
                t1, p1 = t0 + t, p0 + p
                if 1.0 / (t1 + fast[f]) - (p1 + cheap[f]) <= 1e-12:
                    continue                     # no completion can price out
                lab = (t1, p1, hops + ((j, f - e),))
                if f == L:
                    done.append((1.0 / t1 - p1, ChainCandidate(lab[2], t1)))
                else:
                    labels.setdefault(f, []).append(lab)
                    total += 1
                    if total > MAX_PRICING_LABELS:
                        exact = False
                        break
            if not exact:
                break
        if not exact:
            break
    done.sort(key=lambda d: -d[0])
    best = done[0][0] if done else 0.0
    return best, [ch for _, ch in done[:keep]], exact


@dataclass(frozen=True)
class ColumnGeneration:
    bound: float                       # upper bound on every integer allocation over all chains (inf: none)
    added: list[ChainCandidate]        # chains priced in, beyond the starting ones
    report: dict[str, Any]             # what the plan's ``exact`` section shows
    prices: list[float] | None         # slot duals of the last restricted LP (over starting + added chains)


def column_generation(scenario: Scenario, placement: Placement, chains: list[ChainCandidate],
                      slots: Sequence[int], deadline: float, per_round: int = 50
                      ) -> tuple[float, list[ChainCandidate], dict[str, Any]]:
    """The max-rate allocation LP over every chain of the placement by column generation.

    Starts from ``chains``; each round solves the restricted LP (GLOP), prices with its slot duals and adds
    the chains of positive reduced cost.  When the pricing finds none the restricted LP's value is the LP
    optimum over all chains: an upper bound on every integer allocation.  Stopped by the deadline (or an
    inexact pricing) it returns the Lagrangian bound ``sum_j slots_j y_j + max(0, best reduced cost) *
    sum(slots) / L`` instead (each job uses L block slots, so ``sum_k c_k <= sum(slots) / L``).  Returns
    (bound, the chains added, a report); ``run_column_generation`` also gives the last round's prices.
    """
    out = run_column_generation(scenario, placement, chains, slots, deadline, per_round)
    return out.bound, out.added, out.report


def run_column_generation(scenario: Scenario, placement: Placement, chains: list[ChainCandidate],
                          slots: Sequence[int], deadline: float, per_round: int = 50) -> ColumnGeneration:
    """``column_generation`` with the slot prices of the last restricted LP it solved.

    The loop stops before adding a round's chains, so that LP is the one over ``chains + added``: a caller
    that needs its prices (the Lagrangian bound) reads them here instead of solving it again.
    """
    L = scenario.model.num_blocks
    pool = list(chains)
    seen = {ch.hops for ch in pool}
    added: list[ChainCandidate] = []
    prices: list[float] | None = None
    rounds, bound, lp_value, converged = 0, math.inf, math.nan, False
    while True:
        lp = restricted_lp(pool, slots)
        if lp is None:
            prices = None             # the LP over the pool has no optimum: no prices to bound with
            break
        lp_value, y = lp.value, lp.prices
        prices = y
        best, new, exact = _price(scenario, placement, slots, y, per_round)
        rounds += 1
        if exact:
            bound = min(bound, sum(s * v for s, v in zip(slots, y)) + max(0.0, best) * sum(slots) / L)
        fresh = [ch for ch in new if ch.hops not in seen]
        if exact and (best <= 1e-9 * max(lp_value, 1e-12) or not fresh):
            bound, converged = min(bound, lp_value), True
            break
        if not fresh or time.monotonic() > deadline:
            break
        for ch in fresh:
            seen.add(ch.hops)
        pool += fresh
        added += fresh
    report = {"column_generation_rounds": rounds, "columns_added": len(added), "lp_converged": converged,
              "lp_value": lp_value}
    return ColumnGeneration(bound, added, report, prices)
