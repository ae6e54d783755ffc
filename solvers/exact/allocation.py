"""The allocation MIP: integer capacities for given chains within the servers' KV slots (SCIP via pywraplp).

The rates ``mu_k = 1/T_k`` are arbitrary floats; a MIP takes them as they are, whereas CP-SAT needs integer
objective coefficients and scaling would perturb which plan is optimal and blur the proven bound.  The rows are
small integer knapsacks, which SCIP's LP-based branch and bound closes quickly.  ``restricted_lp`` is the same
model's LP relaxation (GLOP), whose slot prices the Lagrangian bound and column generation read.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

from ortools.linear_solver import pywraplp

from .enumeration import ChainCandidate

DEFAULT_ALLOCATION_TIME_S = 20.0


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


@dataclass(frozen=True)
class RestrictedLP:
    """The max-rate allocation LP over some chains, solved: its value and each server's slot price (dual)."""
    value: float
    prices: list[float]


def restricted_lp(chains: Sequence[ChainCandidate], slots: Sequence[int]) -> RestrictedLP | None:
    """Max ``sum c_k mu_k`` over real ``c_k >= 0`` within ``slots`` (GLOP); None when GLOP finds no optimum."""
    lp = pywraplp.Solver.CreateSolver("GLOP")
    c = [lp.NumVar(0, lp.infinity(), "") for _ in chains]
    rows = _slot_rows(lp, chains, c, slots)
    obj = lp.Objective()
    for k, ch in enumerate(chains):
        obj.SetCoefficient(c[k], ch.rate)
    obj.SetMaximization()
    if lp.Solve() != pywraplp.Solver.OPTIMAL:
        return None
    prices = [0.0] * len(slots)
    for j, row in rows.items():
        prices[j] = max(0.0, row.dual_value())
    return RestrictedLP(obj.Value(), prices)
