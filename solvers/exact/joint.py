"""The joint model: placement and integer capacities together, maximising ``nu`` (CP-SAT, with a GLOP LP bound).

Small instances only (``MAX_JOINT_SERVERS`` x ``MAX_JOINT_BLOCKS``).  CP-SAT rather than SCIP here: on this model
SCIP found far worse plans in the same time.  CP-SAT needs integer objective coefficients, so the rates are scaled;
the reported objective is recomputed in floats and the bound widened by the worst rounding error.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from ortools.linear_solver import pywraplp

from ..scenario import Scenario
from ..topology import Placement
from .allocation import MipOutcome
from .enumeration import DEFAULT_CHAIN_LIMIT, ChainCandidate, _best_first

MAX_JOINT_SERVERS = 8
MAX_JOINT_BLOCKS = 12
DEFAULT_JOINT_TIME_S = 60.0


def too_large(scenario: Scenario) -> str | None:
    J, L = len(scenario.servers), scenario.model.num_blocks
    if J > MAX_JOINT_SERVERS or L > MAX_JOINT_BLOCKS:
        return (f"the joint optimum is only computed for small instances (at most {MAX_JOINT_SERVERS} servers "
                f"and {MAX_JOINT_BLOCKS} blocks); this one has {J} servers and {L} blocks")
    return None


@dataclass
class JointSolution:
    placement: Placement
    chains: list[tuple[ChainCandidate, int]]
    outcome: MipOutcome
    templates: int
    capped: bool
    info: dict[str, Any] = field(default_factory=dict)


def _joint_templates(scenario: Scenario, limit: int, seed_chains, deadline: float | None = None
                     ) -> tuple[list[ChainCandidate], bool, list[list[int]]]:
    model, servers = scenario.model, scenario.servers
    L = model.num_blocks
    slot_table = [[s.cache_slots(m, model) for m in range(L + 1)] for s in servers]
    moves: dict[int, list[tuple[int, int, float]]] = {}
    for j, s in enumerate(servers):
        for e in range(L):
            for f in range(e + 1, L + 1):
                if slot_table[j][f - e] >= f - e:      # holding [e, f) leaves room for one job there
                    moves.setdefault(e, []).append((j, f, s.comm_time_s + s.block_time_s * (f - e)))
    templates, capped = _best_first(L, moves, limit, distinct=True, deadline=deadline)
    known = {t.hops for t in templates}
    # the seed's chains join the model even past the cap, so the joint optimum is never below the seed
    for hops, _ in seed_chains:
        if tuple(hops) not in known:
            known.add(tuple(hops))
            t = sum(servers[j].comm_time_s + servers[j].block_time_s * m for j, m in hops)
            templates.append(ChainCandidate(tuple(hops), t))
    return templates, capped, slot_table


JOINT_AFTER_TEMPLATES = 0.6  # the template enumeration stops with this share of the time left still unspent
JOINT_CP_SHARE = 0.95      # CP-SAT gets this share of what is left of the time limit once the models are built
JOINT_MARGIN_S = 0.03      # ... less this, for its stop latency and extracting the plan


def _joint_lp_bound(templates: Sequence[ChainCandidate], caps: Sequence[int], pkeys: Sequence[tuple],
                    per_server: Sequence[Sequence[int]], rows: Sequence[tuple]) -> float:
    """The LP relaxation of the joint model (GLOP), built coefficient by coefficient; inf when not solved."""
    lp = pywraplp.Solver.CreateSolver("GLOP")
    c_lp = [lp.NumVar(0, cap, "") for cap in caps]
    p_lp = [lp.NumVar(0, 1, "") for _ in pkeys]
    for idx in per_server:
        row = lp.Constraint(-lp.infinity(), 1.0)
        for i in idx:
            row.SetCoefficient(p_lp[i], 1.0)
    for cterms, pterms in rows:                 # sum c-terms - sum p-terms <= 0
        row = lp.Constraint(-lp.infinity(), 0.0)
        for k, coef in cterms:
            row.SetCoefficient(c_lp[k], row.GetCoefficient(c_lp[k]) + coef)
        for i, coef in pterms:
            row.SetCoefficient(p_lp[i], row.GetCoefficient(p_lp[i]) - coef)
    obj = lp.Objective()
    for k, t in enumerate(templates):
        obj.SetCoefficient(c_lp[k], t.rate)
    obj.SetMaximization()
    code = lp.Solve()
    return lp.Objective().Value() * (1 + 1e-9) if code == pywraplp.Solver.OPTIMAL else math.inf


def solve_joint(scenario: Scenario, time_limit_s: float = DEFAULT_JOINT_TIME_S,
                limit: int = DEFAULT_CHAIN_LIMIT, seed_plan=None, deadline: float | None = None
                ) -> JointSolution | None:
    """Max ``nu`` over placements and integer capacities (a MIP over chain templates).

    A template is a chain with its positions: hops ``(j, e, f)`` meaning server
    ``j`` runs blocks ``e..f-1`` and its range ends at ``f``.  Binary
    ``p[j,a,f]`` picks server ``j``'s range ``[a, f)`` (at most one).  Rows:
    slots at ``j`` used by templates ending ``j`` at ``f`` fit the slots of the
    chosen range ending at ``f`` (zero if none); a template entering ``j`` at
    ``e`` needs the chosen start ``a <= e``.

    CP-SAT searches (its objective uses rates scaled to integers; the reported
    objective is recomputed in floats and its bound is widened by the worst
    rounding error).  The bound is the better of CP-SAT's and the LP relaxation
    (GLOP), which holds for the enumerated templates.  In our tests SCIP on the
    same model found far worse plans in the same time, hence CP-SAT here.
    ``seed_plan``: (Placement, [(hops, capacity)]) used as the first hint.
    """
    J = len(scenario.servers)
    seed_chains = seed_plan[1] if seed_plan is not None else []
    if deadline is None:
        deadline = time.monotonic() + time_limit_s
    # imported here, before the time is shared out: the first import takes about 0.3 s, which would otherwise
    # land after CP-SAT's limit was set and overrun a short time limit
    from ortools.sat.python import cp_model
    templates_until = deadline - JOINT_AFTER_TEMPLATES * max(0.0, deadline - time.monotonic())
    templates, capped, slot_table = _joint_templates(scenario, limit, seed_chains, templates_until)
    if not templates:
        return None
    L = scenario.model.num_blocks
    index = {t.hops: k for k, t in enumerate(templates)}
    pkeys = [(j, a, f) for j in range(J) for f in range(1, L + 1) for a in range(f) if slot_table[j][f - a] >= 1]
    pindex = {key: i for i, key in enumerate(pkeys)}
    caps: list[int] = []
    by_end: dict[tuple[int, int], list[tuple[int, int]]] = {}
    by_entry: dict[tuple[int, int, int], list[int]] = {}
    for k, t in enumerate(templates):
        e, cap = 0, math.inf
        for j, m in t.hops:
            f = e + m
            cap = min(cap, slot_table[j][m] // m)
            by_end.setdefault((j, f), []).append((k, m))
            by_entry.setdefault((j, e, f), []).append(k)
            e = f
        caps.append(int(cap))
    # rows as (capacity terms [(k, coef)], placement terms [(p index, coef)]): sum c-terms <= sum p-terms
    rows = []
    for (j, f), terms in by_end.items():
        rows.append((terms, [(pindex[j, a, f], slot_table[j][f - a]) for a in range(f) if (j, a, f) in pindex]))
    for (j, e, f), ks in by_entry.items():
        reach = slot_table[j][f - e] // (f - e)
        rows.append(([(k, 1) for k in ks], [(pindex[j, a, f], reach) for a in range(e + 1) if (j, a, f) in pindex]))
    per_server = [[pindex[key] for key in pkeys if key[0] == j] for j in range(J)]

    def plan_vector(placement: Placement, chains) -> tuple[list[int], list[int]]:
        cv = [0] * len(templates)
        for hops, cap in chains:
            cv[index[tuple(hops)]] = cap
        pv = [0] * len(pkeys)
        active = {j for hops, cap in chains if cap > 0 for j, _ in hops}
        for j in active:
            pv[pindex[j, placement.start[j], placement.end(j)]] = 1
        return cv, pv

    def rate_of(cv: Sequence[int]) -> float:
        return sum(t.rate * v for t, v in zip(templates, cv))

    hint = plan_vector(*seed_plan) if seed_plan is not None else None
    best = hint
    started = time.perf_counter()

    # --- LP relaxation first: a proven bound (usually much tighter than CP-SAT's own), and its cost is then
    # paid before CP-SAT's limit is set from what is left, so the time limit holds
    lp_bound = _joint_lp_bound(templates, caps, pkeys, per_server, rows)

    # --- CP-SAT: a good plan quickly
    cp = cp_model.CpModel()
    c_cp = [cp.NewIntVar(0, cap, f"c{k}") for k, cap in enumerate(caps)]
    p_cp = [cp.NewBoolVar(f"p{i}") for i in range(len(pkeys))]
    for idx in per_server:
        cp.AddAtMostOne([p_cp[i] for i in idx])
    for cterms, pterms in rows:
        cp.Add(sum(coef * c_cp[k] for k, coef in cterms) <= sum(coef * p_cp[i] for i, coef in pterms))
    scale = 1e6 / max(t.rate for t in templates)
    cp.Maximize(sum(int(round(t.rate * scale)) * c_cp[k] for k, t in enumerate(templates)))
    if hint is not None:
        for var, val in zip(c_cp + p_cp, hint[0] + hint[1]):
            cp.AddHint(var, val)
    cps = cp_model.CpSolver()
    # what is left of the limit, less a margin for CP-SAT's stop latency and building the plan after it
    cps.parameters.max_time_in_seconds = max(0.05, JOINT_CP_SHARE * (deadline - time.monotonic()) - JOINT_MARGIN_S)
    cps.parameters.num_workers = 2     # one process; a second worker finds far better plans than one
    cps.parameters.random_seed = 1
    cp_code = cps.Solve(cp)
    cp_status = cps.StatusName(cp_code)
    if cp_code in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        found = ([int(cps.Value(v)) for v in c_cp], [int(cps.Value(v)) for v in p_cp])
        if best is None or rate_of(found[0]) > rate_of(best[0]):
            best = found

    cp_bound = math.inf
    if cp_code in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        cp_bound = cps.BestObjectiveBound() / scale + 0.5 * sum(caps) / scale

    bound = min(cp_bound, lp_bound)
    status = f"{cp_status} (cp-sat)"
    if best is None:
        return None
    cv, pv = best
    rate = rate_of(cv)
    if best is hint:
        status += ", kept the starting plan"
    if cp_code == cp_model.OPTIMAL:
        bound = rate       # proven up to the 1e-6 relative scaling of the rates
    elif not math.isfinite(bound):
        bound = math.inf
    active = {j for t, v in zip(templates, cv) if v > 0 for j, _ in t.hops}
    start, count = [0] * J, [0] * J
    for key, v in zip(pkeys, pv):
        j, a, f = key
        if v == 1 and j in active:          # a server on no chain would only hold dead blocks
            start[j], count[j] = a, f - a
    outcome = MipOutcome(cv, rate, max(bound, rate), status, time.perf_counter() - started, True)
    chains = [(t, v) for t, v in zip(templates, cv) if v > 0]
    return JointSolution(Placement(tuple(start), tuple(count)), chains, outcome, len(templates), capped)
