"""Exact references with OR-Tools: how far is the greedy from optimal?

``optimal-allocation``
    For a fixed placement (default: the proposed method's, for its tuned ``c``)
    enumerate the feasible chains and choose integer capacities ``c_k >= 0``
    maximising ``sum c_k mu_k`` subject to ``sum_k m_jk c_k <= slots_j`` per
    server (a multidimensional knapsack).  ``extra["objective"] =
    "min-capacity"`` instead minimises ``sum c_k`` subject to
    ``sum c_k mu_k >= lambda / rho_bar``.

``optimal``
    Placement and allocation together for small instances (J <= 8, L <= 12),
    maximising the total service rate ``nu``.  Why ``nu`` rather than the
    response-time bound: the bound is not linear (nor convex) in the
    capacities, while ``nu`` is the quantity the paper's exact reference and the
    authors' optimality claims are stated in, and it is what decides stability
    and the heavy-load response time.  At light load a max-``nu`` plan may use
    long, slow chains, so its response-time bound can be *worse* than the
    greedy's; the plan reports its bound next to ``nu`` so nobody mistakes it
    for a response-time optimum.

Solver: SCIP through ``pywraplp`` (shipped with OR-Tools).  The rates
``mu_k = 1/T_k`` are arbitrary floats; a MIP takes them as they are, whereas
CP-SAT needs integer objective coefficients and scaling would perturb which
plan is optimal and blur the proven bound.  The rows are small integer
knapsacks, which SCIP's LP-based branch and bound closes quickly.

Chains are enumerated fastest first (best-first search with an exact
remaining-time heuristic), so when the count is capped the model keeps the
fastest chains, and GCA's own chains are always added, so the result is never
below GCA even when capped.  The plan says when the cap was hit: then the
optimum and bound are those of the restricted chain set.
"""

from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from ortools.linear_solver import pywraplp

from .algorithms import PlanOptions, register
from .bounds import bounds_from_rates
from .ctuning import evaluate, memory_shortfall, tune_c
from .gbpcr import gbpcr
from .gca import gca
from .plan import PlanResult
from .scenario import Scenario
from .topology import Placement, cache_slots, make_chain

MAX_JOINT_SERVERS = 8
MAX_JOINT_BLOCKS = 12
DEFAULT_CHAIN_LIMIT = 5_000
DEFAULT_ALLOCATION_TIME_S = 20.0
DEFAULT_JOINT_TIME_S = 60.0


@dataclass(frozen=True)
class ChainCandidate:
    hops: tuple[tuple[int, int], ...]      # (server index, blocks run)
    time_s: float

    @property
    def rate(self) -> float:
        return 1.0 / self.time_s


@dataclass
class MipOutcome:
    values: list[int]
    objective: float
    best_bound: float
    status: str
    solve_time_s: float
    maximise: bool

    @property
    def gap(self) -> float | None:
        if not (math.isfinite(self.objective) and math.isfinite(self.best_bound)):
            return None
        diff = self.best_bound - self.objective if self.maximise else self.objective - self.best_bound
        return max(0.0, diff) / max(abs(self.objective), 1e-12)

    def report(self, **more: Any) -> dict[str, Any]:
        return {"objective": self.objective, "best_bound": self.best_bound, "gap": self.gap,
                "status": self.status, "solve_time_s": self.solve_time_s, **more}


# ---------------------------------------------------------------------------
# Chain enumeration (fastest first)
# ---------------------------------------------------------------------------

MAX_OPEN_PATHS = 400_000      # partial paths kept in the best-first heap (memory: ~ a few hundred MB at most)


def _best_first(num_blocks: int, moves: dict[int, list[tuple[int, int, float]]], limit: int,
                distinct: bool, deadline: float | None = None) -> tuple[list[ChainCandidate], bool]:
    """Source-to-sink walks over block positions in increasing total time.

    ``moves[e]``: ``(server, next position, hop time)``.  The heuristic is the
    exact shortest remaining time ignoring ``distinct``, so it is consistent and
    walks come out in nondecreasing time; returns (walks, capped).
    """
    remaining = {num_blocks: 0.0}
    for e in range(num_blocks - 1, -1, -1):
        best = math.inf
        for _, f, t in moves.get(e, ()):
            best = min(best, t + remaining.get(f, math.inf))
        remaining[e] = best
    if not math.isfinite(remaining[0]):
        return [], False
    heap: list[tuple[float, int, float, int, tuple]] = [(remaining[0], 0, 0.0, 0, ())]
    counter = 1
    out: list[ChainCandidate] = []
    while heap:
        if len(heap) > MAX_OPEN_PATHS or (deadline is not None and counter % 256 == 0
                                          and time.monotonic() > deadline):
            return out, True          # bounded: never runs away in time or memory
        _, _, g, e, hops = heapq.heappop(heap)
        if e == num_blocks:
            out.append(ChainCandidate(hops, g))
            if len(out) >= limit:
                return out, bool(heap)
            continue
        for j, f, t in moves.get(e, ()):
            h = remaining.get(f, math.inf)
            if not math.isfinite(h) or (distinct and any(j == i for i, _ in hops)):
                continue
            heapq.heappush(heap, (g + t + h, counter, g + t, f, hops + ((j, f - e),)))
            counter += 1
    return out, False


def placement_chains(scenario: Scenario, placement: Placement, slots: Sequence[int] | None = None,
                     limit: int = DEFAULT_CHAIN_LIMIT, deadline: float | None = None
                     ) -> tuple[list[ChainCandidate], bool]:
    """Routing paths of a placement that can carry at least one job, fastest first (at most ``limit``)."""
    slots = list(slots) if slots is not None else cache_slots(scenario, placement)
    moves: dict[int, list[tuple[int, int, float]]] = {}
    for j in placement.used():
        s = scenario.servers[j]
        f = placement.end(j)
        for e in range(placement.start[j], f):
            if f - e <= slots[j]:          # otherwise the hop can never hold a job
                moves.setdefault(e, []).append((j, f, s.comm_time_s + s.block_time_s * (f - e)))
    # each server has one end, so a path never revisits a server: no distinctness check needed
    return _best_first(scenario.model.num_blocks, moves, limit, distinct=False, deadline=deadline)


# ---------------------------------------------------------------------------
# The allocation MIP
# ---------------------------------------------------------------------------

def _status_name(code: int) -> str:
    return {pywraplp.Solver.OPTIMAL: "OPTIMAL", pywraplp.Solver.FEASIBLE: "FEASIBLE",
            pywraplp.Solver.INFEASIBLE: "INFEASIBLE", pywraplp.Solver.UNBOUNDED: "UNBOUNDED",
            pywraplp.Solver.ABNORMAL: "ABNORMAL", pywraplp.Solver.NOT_SOLVED: "NOT_SOLVED"}.get(code, str(code))


def _new_solver(time_limit_s: float) -> pywraplp.Solver:
    solver = pywraplp.Solver.CreateSolver("SCIP")
    if solver is None:      # an OR-Tools build without SCIP: CBC is slower but also exact
        solver = pywraplp.Solver.CreateSolver("CBC")
    solver.SetTimeLimit(max(1, int(time_limit_s * 1000)))
    solver.SetNumThreads(1)
    return solver


def _solve(solver: pywraplp.Solver, variables: list, hint: Sequence[int] | None,
           maximise: bool) -> tuple[int, list[int], float, float, float]:
    params = pywraplp.MPSolverParameters()
    # pywraplp's default relative gap (1e-4) would stop short of a proof; we want the optimum
    params.SetDoubleParam(pywraplp.MPSolverParameters.RELATIVE_MIP_GAP, 1e-9)
    if hint is not None:
        solver.SetHint(variables, [float(v) for v in hint])
    started = time.perf_counter()
    code = solver.Solve(params)
    elapsed = time.perf_counter() - started
    if code in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE):
        values = [int(round(v.solution_value())) for v in variables]
        bound = solver.Objective().BestBound()
        if code == pywraplp.Solver.OPTIMAL:
            bound = solver.Objective().Value() if not math.isfinite(bound) else bound
    else:
        values, bound = [], (math.inf if maximise else -math.inf)
    return code, values, bound, elapsed, solver.Objective().Value() if values else math.nan


def _slot_rows(solver: pywraplp.Solver, chains: Sequence[ChainCandidate], variables: list,
               slots: Sequence[int]) -> dict[int, Any]:
    """sum_k m_jk c_k <= slots_j per server, built coefficient by coefficient (the natural API is 30x slower)."""
    rows: dict[int, Any] = {}
    for k, ch in enumerate(chains):
        for j, m in ch.hops:
            row = rows.get(j)
            if row is None:
                row = rows[j] = solver.Constraint(-solver.infinity(), float(slots[j]))
            row.SetCoefficient(variables[k], row.GetCoefficient(variables[k]) + m)
    return rows


def allocate(chains: Sequence[ChainCandidate], slots: Sequence[int], objective: str = "max-rate",
             rate_target: float | None = None, time_limit_s: float = DEFAULT_ALLOCATION_TIME_S,
             hint: Sequence[int] | None = None) -> MipOutcome:
    """Integer capacities for ``chains`` within ``slots``.

    ``max-rate``: maximise ``sum c_k mu_k``.  ``min-capacity``: minimise
    ``sum c_k`` with ``sum c_k mu_k >= rate_target``.  A feasible ``hint`` is
    passed to the solver and kept if the solver returns nothing better.
    """
    maximise = objective == "max-rate"
    if objective not in ("max-rate", "min-capacity"):
        raise ValueError(f"unknown allocation objective {objective!r}")
    solver = _new_solver(time_limit_s)
    caps = [min(slots[j] // m for j, m in ch.hops) for ch in chains]
    c = [solver.IntVar(0, cap, f"c{k}") for k, cap in enumerate(caps)]
    _slot_rows(solver, chains, c, slots)
    obj = solver.Objective()
    if maximise:
        for k, ch in enumerate(chains):
            obj.SetCoefficient(c[k], ch.rate)
        obj.SetMaximization()
    else:
        row = solver.Constraint(rate_target, solver.infinity())
        for k, ch in enumerate(chains):
            row.SetCoefficient(c[k], ch.rate)
            obj.SetCoefficient(c[k], 1.0)
        obj.SetMinimization()
    code, values, bound, elapsed, _ = _solve(solver, c, hint, maximise)

    def rate(vals: Sequence[int]) -> float:
        return sum(ch.rate * v for ch, v in zip(chains, vals))

    def score(vals: Sequence[int]) -> float:
        return rate(vals) if maximise else float(sum(vals))

    status = _status_name(code)
    hint_ok = hint is not None and _fits(chains, hint, slots) and (maximise or rate(hint) >= rate_target)
    if hint_ok and (not values or (score(hint) > score(values) if maximise else score(hint) < score(values))):
        values = list(hint)
        status += "+hint"
    objective_value = score(values) if values else math.nan
    if code == pywraplp.Solver.OPTIMAL:
        bound = objective_value      # proven: report it free of the solver's float noise
    return MipOutcome(values, objective_value, bound, status, elapsed, maximise)


def _fits(chains: Sequence[ChainCandidate], caps: Sequence[int], slots: Sequence[int]) -> bool:
    used = [0] * len(slots)
    for ch, v in zip(chains, caps):
        for j, m in ch.hops:
            used[j] += m * v
    return all(u <= s for u, s in zip(used, slots)) and all(v >= 0 for v in caps)


# ---------------------------------------------------------------------------
# optimal-allocation
# ---------------------------------------------------------------------------

def _placement_from_extra(value: Any, num_servers: int) -> Placement:
    if isinstance(value, Placement):
        return value
    pairs = [(int(p["start_block"]), int(p["num_blocks"])) if isinstance(p, dict) else (int(p[0]), int(p[1]))
             for p in value]
    if len(pairs) != num_servers:
        raise ValueError(f"placement lists {len(pairs)} servers, the scenario has {num_servers}")
    return Placement(tuple(a for a, _ in pairs), tuple(m for _, m in pairs))


def proposed_candidate(scenario: Scenario, c: int | None = None):
    """The proposed method's GBP-CR placement + GCA chains (tuned c unless given), or (None, reason)."""
    if c is not None:
        g = gbpcr(scenario, c)
        if not g.feasible:
            return None, g.reason
        return evaluate(scenario, g, "lower-bound"), None
    tuning = tune_c(scenario)
    return tuning.best, tuning.reason


def _chains_and_hint(scenario: Scenario, placement: Placement, slots: list[int], limit: int,
                     deadline: float | None = None):
    chains, capped = placement_chains(scenario, placement, slots, limit, deadline)
    greedy = gca(scenario, placement)
    index = {ch.hops: k for k, ch in enumerate(chains)}
    for g in greedy:                   # keep GCA's chains even past the cap, so we never do worse than GCA
        if g.hops not in index:
            index[g.hops] = len(chains)
            chains.append(ChainCandidate(g.hops, g.service_time_s))
    hint = [0] * len(chains)
    for g in greedy:
        hint[index[g.hops]] = g.capacity
    return chains, capped, greedy, hint


@register("optimal-allocation", "Exact integer cache allocation (SCIP MIP over enumerated chains) on the proposed "
          "method's placement, maximising the total service rate nu (not the response time); reports objective, "
          "proven bound and gap on nu")
def optimal_allocation(scenario: Scenario, options: PlanOptions) -> PlanResult:
    name = "optimal-allocation"
    shortfall = memory_shortfall(scenario)
    if shortfall:
        return PlanResult(name, False, shortfall)
    objective = options.extra.get("objective", "max-rate")
    if objective not in ("max-rate", "min-capacity"):
        return PlanResult(name, False, f"options.objective must be 'max-rate' or 'min-capacity', not {objective!r}")
    limit = int(options.extra.get("chain_limit", DEFAULT_CHAIN_LIMIT))
    time_limit = options.time_limit_s or DEFAULT_ALLOCATION_TIME_S
    c_used = options.c
    if "placement" in options.extra:
        placement = _placement_from_extra(options.extra["placement"], len(scenario.servers))
        source = "given"
    else:
        cand, reason = proposed_candidate(scenario, options.c)
        if cand is None:
            return PlanResult(name, False, reason or "no feasible placement")
        placement, c_used, source = cand.placement.placement, cand.c, "proposed (GBP-CR)"
    options.report(0.3, f"{name}: enumerating chains")
    started = time.monotonic()
    slots = cache_slots(scenario, placement)
    # enumeration may take at most 40 % of the limit; the solver gets what is left (minus a margin)
    chains, capped, greedy, hint = _chains_and_hint(scenario, placement, slots, limit,
                                                    started + 0.4 * time_limit)
    deadline = started + time_limit
    cg_bound, cg_report = None, None
    if capped and objective == "max-rate":
        # the LP over every chain by column generation (up to 70 % of the limit): its columns join the MIP and
        # its value (or Lagrangian bound when stopped) bounds the optimum over all chains
        options.report(0.4, f"{name}: column generation over all chains")
        cg_bound, cols, cg_report = column_generation(scenario, placement, chains, slots, started + 0.7 * time_limit)
        chains = chains + cols
        hint = hint + [0] * len(cols)
    # building the model costs ~0.1 ms per chain and the bound over all chains an LP as large: keep room for both
    reserve = 2.5e-4 * len(chains) if capped else 1.2e-4 * len(chains)
    time_limit = max(0.05, 0.9 * (deadline - time.monotonic()) - reserve)
    if not chains:
        return PlanResult(name, False, "the placement has no chain that can hold a job", c=c_used,
                          placement=placement)
    lam, rho_bar = scenario.workload.arrival_rate, scenario.workload.target_load
    target = lam / rho_bar
    if objective == "min-capacity":
        greedy_rate = sum(ch.rate * v for ch, v in zip(chains, hint))
        hint_ok = greedy_rate >= target
        options.report(0.5, f"{name}: solving ({len(chains)} chains)")
        out = allocate(chains, slots, objective, target, time_limit, hint if hint_ok else None)
    else:
        options.report(0.5, f"{name}: solving ({len(chains)} chains)")
        out = allocate(chains, slots, objective, None, time_limit, hint)
    info = out.report(objective_name=objective, chains_enumerated=len(chains), enumeration_capped=capped,
                      chain_limit=limit, placement_source=source,
                      gca_total_service_rate=sum(g.capacity / g.service_time_s for g in greedy))
    if capped:
        info["note"] = (f"chain enumeration stopped after {len(chains)} of the fastest chains (limit {limit}, "
                        "time or memory); the allocation is optimal for that set only")
        if objective == "max-rate" and out.values:
            info.update(cg_report or {})
            if cg_report and cg_report["lp_converged"]:
                bound, scope = cg_bound, "all chains (LP relaxation over every chain, by column generation)"
            else:
                # a bound over *all* chains: Lagrangian dual of the LP with the restricted LP's prices
                bound = lagrangian_bound(scenario, placement, chains, slots)
                scope = "all chains (Lagrangian bound from the restricted LP's slot prices)"
                if cg_bound is not None and math.isfinite(cg_bound) and cg_bound < bound:
                    bound, scope = cg_bound, "all chains (Lagrangian bound with exact pricing, column generation stopped)"
            info["best_bound"] = max(out.objective, bound)
            info["gap"] = (info["best_bound"] - out.objective) / max(out.objective, 1e-12)
            info["bound_scope"] = scope
    else:
        info["bound_scope"] = "all chains (every chain enumerated)"
    info["optimises"] = ("the total service rate nu = sum c_k mu_k on this placement" if objective == "max-rate"
                         else "the total capacity sum c_k subject to nu >= lambda / rho_bar")
    extra_search = {"searched_s": time.monotonic() - started, "budget_s": options.time_limit_s or
                    DEFAULT_ALLOCATION_TIME_S, "cut_short": capped or not out.status.startswith("OPTIMAL"),
                    "detail": f"{len(chains)} chains{' (enumeration stopped early)' if capped else ''}, solver "
                              f"status {out.status}, proven gap on {info['optimises']}: {info['gap']}"}
    if not out.values:
        why = (f"no allocation reaches the service rate {target:.4g} req/s (lambda / rho_bar)"
               if objective == "min-capacity" else f"solver status {out.status}")
        return PlanResult(name, False, why, c=c_used, placement=placement, extra={"exact": info,
                                                                                    "search": extra_search})
    result_chains = [make_chain(scenario, ch.hops, v) for ch, v in zip(chains, out.values) if v > 0]
    result_chains.sort(key=lambda ch: (ch.service_time_s, ch.servers))
    nu = sum(ch.capacity / ch.service_time_s for ch in result_chains)
    if not lam < nu:
        return PlanResult(name, False, f"arrival rate {lam:g} req/s is not below the optimal total service rate "
                          f"{nu:.4g} req/s of this placement", c=c_used, placement=placement,
                          chains=result_chains, extra={"exact": info, "search": extra_search})
    return PlanResult(name, True, c=c_used, placement=placement, chains=result_chains, dispatch="jffc",
                      extra={"exact": info, "search": extra_search})


def lagrangian_bound(scenario: Scenario, placement: Placement, chains: Sequence[ChainCandidate],
                     slots: Sequence[int]) -> float:
    """An upper bound on the max-rate allocation over every chain of the placement, enumerated or not.

    With slot prices ``y_j >= 0`` (the duals of the LP over the enumerated
    chains), any allocation has rate <= sum_j slots_j y_j + sum_k c_k (mu_k -
    sum_hops m y_j); each job uses exactly L slots, so sum_k c_k <= sum slots / L,
    and the reduced cost of every chain is at most 1/T_min - min_path(sum m y).
    Both path terms are shortest paths over block positions, so this is cheap.
    """
    lp = pywraplp.Solver.CreateSolver("GLOP")
    c = [lp.NumVar(0, lp.infinity(), "") for _ in chains]
    cons = _slot_rows(lp, chains, c, slots)
    obj = lp.Objective()
    for k, ch in enumerate(chains):
        obj.SetCoefficient(c[k], ch.rate)
    obj.SetMaximization()
    if lp.Solve() != pywraplp.Solver.OPTIMAL:
        return math.inf
    y = [0.0] * len(slots)
    for j, con in cons.items():
        y[j] = max(0.0, con.dual_value())
    L = scenario.model.num_blocks
    ends = sorted({0} | {placement.end(j) for j in placement.used()})
    fastest = {e: math.inf for e in ends}
    cheapest = {e: math.inf for e in ends}
    fastest[0] = cheapest[0] = 0.0
    for e in ends:
        if e == L or not math.isfinite(fastest[e]):
            continue
        for j in placement.used():
            f = placement.end(j)
            if placement.start[j] <= e < f and f - e <= slots[j]:
                sv = scenario.servers[j]
                fastest[f] = min(fastest[f], fastest[e] + sv.comm_time_s + sv.block_time_s * (f - e))
                cheapest[f] = min(cheapest[f], cheapest[e] + (f - e) * y[j])
    if not math.isfinite(fastest.get(L, math.inf)):
        return 0.0
    reduced = max(0.0, 1.0 / fastest[L] - cheapest[L])
    return sum(sl * yj for sl, yj in zip(slots, y)) + reduced * sum(slots) / L


# ---------------------------------------------------------------------------
# optimal (joint placement + allocation)
# ---------------------------------------------------------------------------

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


def _rate_seed(scenario: Scenario, time_limit_s: float, deadline: float | None = None):
    """A high-rate starting plan: over all c, GBP-CR keeping every chain it forms, then the allocation optimum.

    The proposed plan itself stops adding chains once nu >= lambda / (rho_bar c), a poor start for max nu.
    """
    import dataclasses
    big = dataclasses.replace(scenario, workload=dataclasses.replace(scenario.workload, arrival_rate=1e12))
    best, best_rate = None, -1.0
    seen = set()
    for d in tune_c(big).evaluated:
        if deadline is not None and time.monotonic() > deadline:
            break
        g = gbpcr(big, int(d["c"]))
        if not g.feasible or g.placement.key() in seen:
            continue
        seen.add(g.placement.key())
        slots = cache_slots(scenario, g.placement)
        chains, _, _, hint = _chains_and_hint(scenario, g.placement, slots, 2000, deadline)
        share = min(2.0, time_limit_s / 10)
        if deadline is not None:
            share = min(share, deadline - time.monotonic())
        if share <= 0.01:
            break
        out = allocate(chains, slots, "max-rate", None, share, hint)
        if out.values and out.objective > best_rate:
            best_rate = out.objective
            best = (g.placement, [(ch.hops, v) for ch, v in zip(chains, out.values) if v > 0])
    return best


@register("optimal", "Exact joint placement + cache allocation maximising the total service rate nu, not the "
          "mean-response bound (CP-SAT; small instances only: J <= "
          f"{MAX_JOINT_SERVERS}, L <= {MAX_JOINT_BLOCKS}); reports its proven gap on nu and the gap of 'proposed'")
def optimal(scenario: Scenario, options: PlanOptions) -> PlanResult:
    name = "optimal"
    reason = too_large(scenario) or memory_shortfall(scenario)
    if reason:
        return PlanResult(name, False, reason)
    limit = int(options.extra.get("chain_limit", DEFAULT_CHAIN_LIMIT))
    time_limit = options.time_limit_s or DEFAULT_JOINT_TIME_S
    lam = scenario.workload.arrival_rate
    options.report(0.1, f"{name}: proposed method as the starting solution")
    started = time.monotonic()
    deadline = started + time_limit
    cand, _ = proposed_candidate(scenario, options.c)
    # the starting plan may use 20 % of the limit, the template enumeration up to 30 %, CP-SAT what is left
    seed = _rate_seed(scenario, time_limit, started + 0.2 * time_limit)
    if seed is None and cand is not None:
        seed = (cand.placement.placement, [(g.hops, g.capacity) for g in cand.chains])
    options.report(0.3, f"{name}: solving the joint model")
    sol = solve_joint(scenario, time_limit, limit, seed, deadline=deadline)
    if sol is None:
        return PlanResult(name, False, "no placement admits a chain that can hold a job")
    chains = sorted((make_chain(scenario, t.hops, v) for t, v in sol.chains),
                    key=lambda ch: (ch.service_time_s, ch.servers))
    nu = sol.outcome.objective
    info = sol.outcome.report(objective_name="max-rate", chains_enumerated=sol.templates,
                              enumeration_capped=sol.capped, chain_limit=limit,
                              optimises=("the total service rate nu over placements and allocations, not the "
                                         "response-time bound (which is not linear in the capacities); the plan's "
                                         "bounds show its response time"))
    if sol.capped:
        info["note"] = (f"chain templates capped at the {limit} fastest (plus the proposed plan's); objective "
                        "and bound are optimal for that restricted set only")
    if cand is not None:
        prop_b = cand.bounds
        opt_b = bounds_from_rates([1 / ch.service_time_s for ch in chains], [ch.capacity for ch in chains], lam)
        info["proposed"] = {
            "c": cand.c, "total_service_rate": prop_b.total_rate,
            "rate_gap": (nu - prop_b.total_rate) / nu if nu > 0 else None,
            "rate_gap_to_bound": ((sol.outcome.best_bound - prop_b.total_rate) / sol.outcome.best_bound
                                  if sol.outcome.best_bound > 0 else None),
            "response_time_lower_s": prop_b.lower_s if prop_b.stable else None,
            "optimal_response_time_lower_s": opt_b.lower_s if opt_b.stable else None,
        }
    search = {"searched_s": time.monotonic() - started, "budget_s": time_limit,
              "cut_short": not sol.outcome.status.startswith("OPTIMAL"),
              "detail": f"{sol.templates} chain templates{' (enumeration stopped early)' if sol.capped else ''}, "
                        f"status {sol.outcome.status}, proven gap on the total service rate nu (the objective; "
                        f"not the response time) {sol.outcome.gap}"}
    if not lam < nu:
        return PlanResult(name, False, f"arrival rate {lam:g} req/s is not below the largest total service rate "
                          f"{nu:.4g} req/s any plan reaches", placement=sol.placement, chains=chains,
                          extra={"exact": info, "search": search})
    return PlanResult(name, True, placement=sol.placement, chains=chains, dispatch="jffc",
                      extra={"exact": info, "search": search})


# ---------------------------------------------------------------------------
# Column generation: the allocation LP over *every* chain, without enumerating them
# ---------------------------------------------------------------------------

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


def column_generation(scenario: Scenario, placement: Placement, chains: list[ChainCandidate],
                      slots: Sequence[int], deadline: float, per_round: int = 50
                      ) -> tuple[float, list[ChainCandidate], dict[str, Any]]:
    """The max-rate allocation LP over every chain of the placement by column generation.

    Starts from ``chains``; each round solves the restricted LP (GLOP), prices with its slot duals and adds
    the chains of positive reduced cost.  When the pricing finds none the restricted LP's value is the LP
    optimum over all chains: an upper bound on every integer allocation.  Stopped by the deadline (or an
    inexact pricing) it returns the Lagrangian bound ``sum_j slots_j y_j + max(0, best reduced cost) *
    sum(slots) / L`` instead (each job uses L block slots, so ``sum_k c_k <= sum(slots) / L``).  Returns
    (bound, the chains added, a report).
    """
    L = scenario.model.num_blocks
    pool = list(chains)
    seen = {ch.hops for ch in pool}
    added: list[ChainCandidate] = []
    rounds, bound, lp_value, converged = 0, math.inf, math.nan, False
    while True:
        lp = pywraplp.Solver.CreateSolver("GLOP")
        c = [lp.NumVar(0, lp.infinity(), "") for _ in pool]
        cons = _slot_rows(lp, pool, c, slots)
        obj = lp.Objective()
        for k, ch in enumerate(pool):
            obj.SetCoefficient(c[k], ch.rate)
        obj.SetMaximization()
        if lp.Solve() != pywraplp.Solver.OPTIMAL:
            break
        lp_value = obj.Value()
        y = [0.0] * len(slots)
        for j, con in cons.items():
            y[j] = max(0.0, con.dual_value())
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
    return bound, added, report
