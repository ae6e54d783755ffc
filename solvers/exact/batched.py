"""``optimal-allocation`` under a batch slowdown: branch and bound over occupancy boxes (SCIP at every node).

The objective is the saturation rate ``S(c) = sum_k c_k / T_k(b(c))`` with ``b_j(c)`` the jobs server j holds
when every planned slot is busy and ``T_k(b) = T_k + sum over hops block_time_j m (factor_j(b_j) - 1)``.  It is
neither linear nor concave in ``c``, but on a *box* of occupancies ``lo_j <= b_j <= hi_j`` (one interval per
server with a curve) every chain is at least as fast as at ``lo``, because a factor never decreases:

    S(c) <= sum_k c_k / T_k(lo)    for every integer c within the slots with b(c) in the box,

and the right side is a linear objective.  So the allocation MIP with rates ``1 / T_k(lo)`` and the rows
``lo_j <= sum_{k through j} c_k <= hi_j`` bounds S over the box (SCIP's proven bound when it stops early),
and its solution, judged by the true S, is a feasible plan.  The root box (``lo = 0``: one-job rates) is
today's batch-1 MIP.  A node is split on the server whose factor moves most between ``lo_j`` and the
occupancy the node's solution gives it (weighted by how much rate that costs), at the occupancy where the
factor is halfway, so the solution falls in the child whose ``lo`` rises; nodes are taken best bound first.

Proven: the returned plan's S is at least ``best_bound / (1 + gap)``, with ``best_bound`` the largest bound of
any box not yet closed (or the incumbent when all are).  Every box is a subset of the slot-feasible
allocations of the enumerated chains, and together the open boxes cover every allocation that could beat the
incumbent, so the bound holds over all of them.
"""

from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass
from typing import Sequence

from ortools.linear_solver import pywraplp

from ..batch_allocation import best_capacities
from ..batching import BatchModel
from .allocation import MipOutcome, _fits, _new_solver, _slot_rows, _solve
from .enumeration import ChainCandidate

CLOSE = 1e-9              # relative: a box whose bound is within this of the incumbent is closed
MIN_NODE_TIME_S = 0.05
CLOSE_JOBS = 1 - 1e-6     # capacities are integers: a box whose bound is above incumbent - 1 holds none better


@dataclass(frozen=True)
class _Candidate:
    """A ChainCandidate as BatchModel reads chains (hops, one-job time, a capacity)."""
    hops: tuple[tuple[int, int], ...]
    service_time_s: float
    capacity: int


def _chains_at(chains: Sequence[ChainCandidate], values: Sequence[int]) -> list[_Candidate]:
    return [_Candidate(ch.hops, ch.time_s, v) for ch, v in zip(chains, values)]


def saturation(model: BatchModel, chains: Sequence[ChainCandidate], values: Sequence[int]) -> float:
    return model.saturation_rate(_chains_at(chains, values))


def _node(model: BatchModel, chains: Sequence[ChainCandidate], slots: Sequence[int], box: dict[int, tuple[int, int]],
          time_limit_s: float, hint: Sequence[int] | None, target: float | None = None) -> tuple[list[int], float, int]:
    """The box's MIP: (values, proven bound over the box, solver status); no values if none found.

    Without ``target``: max ``sum c_k / T_k(lo)``, a bound on S over the box from above.  With it (min-capacity):
    min ``sum c_k`` subject to ``sum c_k / T_k(lo) >= target``, a bound from below on the capacity of every
    allocation in the box whose S reaches the target (its S is at most that sum)."""
    lo = [0] * len(model.curves)
    for j, (a, _) in box.items():
        lo[j] = a
    solver = _new_solver(time_limit_s)
    caps = [min(slots[j] // m for j, m in ch.hops) for ch in chains]
    c = [solver.IntVar(0, cap, f"c{k}") for k, cap in enumerate(caps)]
    _slot_rows(solver, chains, c, slots)
    rows = {j: solver.Constraint(float(a), float(b)) for j, (a, b) in box.items()}
    for k, ch in enumerate(chains):
        for j in {j for j, _ in ch.hops}:
            if j in rows:
                rows[j].SetCoefficient(c[k], 1.0)
    obj = solver.Objective()
    rates = [1.0 / (ch.time_s + model.excess(ch.hops, lo)) for ch in chains]
    if target is None:
        for k in range(len(chains)):
            obj.SetCoefficient(c[k], rates[k])
        obj.SetMaximization()
    else:
        row = solver.Constraint(target, solver.infinity())
        for k in range(len(chains)):
            row.SetCoefficient(c[k], rates[k])
            obj.SetCoefficient(c[k], 1.0)
        obj.SetMinimization()
    code, values, bound, _, value = _solve(solver, c, hint, target is None)
    if code == pywraplp.Solver.OPTIMAL and values:
        bound = value
    return values, bound, code


def _split(model: BatchModel, chains: Sequence[ChainCandidate], box: dict[int, tuple[int, int]],
           values: Sequence[int]) -> tuple[int, int] | None:
    """(server, last occupancy of the lower child), or None when the node's bound is exact for its solution."""
    b = model.occupancy(_chains_at(chains, values))
    lo = [0] * len(model.curves)
    for j, (a, _) in box.items():
        lo[j] = a
    times = [ch.time_s + model.excess(ch.hops, lo) for ch in chains]
    best, pick = 0.0, None
    for j, (a, hi) in box.items():
        f = model.curves[j]
        if b[j] <= a or f.factor(b[j]) <= f.factor(a):
            continue
        weight = sum(m * v / times[k] ** 2 for k, (ch, v) in enumerate(zip(chains, values)) if v
                     for jj, m in ch.hops if jj == j)
        loss = (f.factor(b[j]) - f.factor(a)) * model.block_time_s[j] * weight
        if loss > best:
            best, pick = loss, j
    if pick is None:
        return None
    a, f = box[pick][0], model.curves[pick]
    half = (f.factor(a) + f.factor(b[pick])) / 2
    lo_b, hi_b = a, b[pick] - 1                # the largest occupancy in [a, b-1] with factor <= half
    while lo_b < hi_b:
        mid = (lo_b + hi_b + 1) // 2
        if f.factor(mid) <= half:
            lo_b = mid
        else:
            hi_b = mid - 1
    return pick, lo_b


def _root_box(model: BatchModel, chains: Sequence[ChainCandidate], slots: Sequence[int]
              ) -> tuple[list[int], dict[int, tuple[int, int]]]:
    """The servers with a slowdown, and the box of occupancies they can have: 0 up to the most jobs a server
    can hold (its slots, and its chains' caps)."""
    curved = sorted({j for ch in chains for j, _ in ch.hops if not model.curves[j].is_identity})
    reach = [0] * len(model.curves)
    for ch in chains:
        cap = min(slots[j] // m for j, m in ch.hops)
        for j in {j for j, _ in ch.hops}:
            reach[j] += cap
    return curved, {j: (0, min(reach[j], slots[j])) for j in curved}


def batched_allocate(model: BatchModel, chains: Sequence[ChainCandidate], slots: Sequence[int], time_limit_s: float,
                     hint: Sequence[int] | None = None) -> tuple[MipOutcome, dict[str, object]]:
    """Integer capacities maximising the saturation rate; (outcome with proven bound and gap, search figures)."""
    started = time.perf_counter()
    deadline = time.monotonic() + time_limit_s
    curved, root = _root_box(model, chains, slots)

    best_vals: list[int] = []
    best_rate = -math.inf

    def offer(values: Sequence[int]) -> None:
        nonlocal best_vals, best_rate
        if not values:
            return
        polished = best_capacities(model, _chains_at(chains, values))
        for v in (list(values), polished):
            r = saturation(model, chains, v)
            if r > best_rate:
                best_vals, best_rate = list(v), r

    if hint is not None and len(hint) == len(chains) and _fits(chains, hint, slots):
        offer(hint)
    heap: list[tuple[float, int, dict[int, tuple[int, int]]]] = [(-math.inf, 0, root)]
    counter, nodes, solved_all = 1, 0, True
    while heap:
        neg_parent, _, box = heap[0]
        if -neg_parent <= best_rate * (1 + CLOSE):
            break                                # best first: every open box is closed by the incumbent
        left = deadline - time.monotonic()
        if left <= 0:
            solved_all = False
            break
        heapq.heappop(heap)
        nodes += 1
        values, bound, code = _node(model, chains, slots, box, max(MIN_NODE_TIME_S, left / 2),
                                    best_vals or None)
        optimal = code == pywraplp.Solver.OPTIMAL
        if code == pywraplp.Solver.INFEASIBLE:
            continue                             # no allocation has its occupancies in this box
        bound = min(bound, -neg_parent)          # a child's box lies in its parent's
        if not values:                           # unresolved in its time: it stays open at its bound
            heapq.heappush(heap, (-bound, counter, box))
            counter += 1
            solved_all = False
            break
        offer(values)
        if bound <= best_rate * (1 + CLOSE):
            continue
        cut = _split(model, chains, box, values)
        if cut is None:
            if not optimal:                      # the solver stopped short: the box stays open at its bound
                heapq.heappush(heap, (-bound, counter, box))
                counter += 1
                solved_all = False
                break
            continue                             # its bound is its own solution's S: nothing above it here
        j, s = cut
        a, hi = box[j]
        for child in ((a, s), (s + 1, hi)):
            heapq.heappush(heap, (-bound, counter, {**box, j: child}))
            counter += 1
    open_bound = max((-nb for nb, _, _ in heap), default=-math.inf)
    proven = max(best_rate, open_bound) if best_vals else math.inf
    status = "OPTIMAL" if best_vals and proven <= best_rate * (1 + CLOSE) else ("FEASIBLE" if best_vals else
                                                                              "NOT_SOLVED")
    if status == "OPTIMAL":
        proven = best_rate
    outcome = MipOutcome(best_vals, best_rate if best_vals else math.nan, proven, status,
                         time.perf_counter() - started, True)
    return outcome, {"method": "branch and bound over occupancy boxes (SCIP per box)", "boxes_solved": nodes,
                     "boxes_open": len(heap), "servers_with_slowdown": len(curved),
                     "stopped_by_time_limit": not solved_all and status != "OPTIMAL"}


def batched_min_capacity(model: BatchModel, chains: Sequence[ChainCandidate], slots: Sequence[int], target: float,
                         time_limit_s: float, hint: Sequence[int] | None = None
                         ) -> tuple[MipOutcome, dict[str, object]]:
    """The fewest jobs ``sum c_k`` whose saturation rate ``S(c)`` reaches ``target``: the same branch and bound.

    On a box every allocation's S is at most ``sum c_k / T_k(lo)``, so the box's MIP (min ``sum c_k`` with that
    sum at least ``target``) bounds from below the capacity of every allocation in the box that reaches the
    target; its solution, judged by the true S, is a plan when it reaches the target, and otherwise the box is
    split where the solution's occupancy leaves ``lo`` behind (as for max-rate).  Best bound first; proven: no
    allocation of these chains reaching the target has fewer jobs than ``best_bound``."""
    started = time.perf_counter()
    deadline = time.monotonic() + time_limit_s
    curved, root = _root_box(model, chains, slots)

    best_vals: list[int] = []
    best_jobs = math.inf

    def offer(values: Sequence[int]) -> None:
        nonlocal best_vals, best_jobs
        if values and sum(values) < best_jobs and saturation(model, chains, values) >= target:
            best_vals, best_jobs = list(values), sum(values)

    if hint is not None and len(hint) == len(chains) and _fits(chains, hint, slots):
        offer(hint)
    heap: list[tuple[float, int, dict[int, tuple[int, int]]]] = [(-math.inf, 0, root)]
    counter, nodes, solved_all = 1, 0, True
    while heap:
        parent, _, box = heap[0]
        if parent >= best_jobs - CLOSE_JOBS:
            break                                # best first: no open box can hold an allocation with fewer jobs
        left = deadline - time.monotonic()
        if left <= 0:
            solved_all = False
            break
        heapq.heappop(heap)
        nodes += 1
        values, bound, code = _node(model, chains, slots, box, max(MIN_NODE_TIME_S, left / 2),
                                    best_vals or None, target)
        if code == pywraplp.Solver.INFEASIBLE:
            continue                             # nothing in this box reaches the target even at lo's rates
        bound = max(bound, parent)
        if not values:
            heapq.heappush(heap, (bound, counter, box))
            counter += 1
            solved_all = False
            break
        offer(values)
        if bound >= best_jobs - CLOSE_JOBS:
            continue
        cut = _split(model, chains, box, values)
        if cut is None:                          # lo's rates are the solution's own: it reaches the target
            if code != pywraplp.Solver.OPTIMAL:  # (offered above) unless the solver stopped short
                heapq.heappush(heap, (bound, counter, box))
                counter += 1
                solved_all = False
                break
            continue
        j, s = cut
        a, hi = box[j]
        for child in ((a, s), (s + 1, hi)):
            heapq.heappush(heap, (bound, counter, {**box, j: child}))
            counter += 1
    open_bound = min((b for b, _, _ in heap), default=math.inf)
    proven = min(best_jobs, max(0.0, open_bound)) if best_vals else math.nan
    status = "OPTIMAL" if best_vals and proven >= best_jobs - CLOSE_JOBS else ("FEASIBLE" if best_vals else
                                                                             ("INFEASIBLE" if not heap and solved_all
                                                                              else "NOT_SOLVED"))
    if status == "OPTIMAL":
        proven = float(best_jobs)
    outcome = MipOutcome(best_vals, float(best_jobs) if best_vals else math.nan, proven, status,
                         time.perf_counter() - started, False)
    return outcome, {"method": "branch and bound over occupancy boxes (SCIP per box)", "boxes_solved": nodes,
                     "boxes_open": len(heap), "servers_with_slowdown": len(curved),
                     "stopped_by_time_limit": not solved_all and status != "OPTIMAL"}
