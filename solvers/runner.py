"""One entry point for every caller (CLI, Celery tasks, benchmarks).

``plan(scenario, algorithm)`` runs one registered algorithm, optionally
simulates the result, and returns the plan document of docs/plan-format.md.
It never raises for an infeasible scenario: the document says
``"feasible": false`` with a ``reason``.  Bad options raise ``ScenarioError``
naming the option.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from . import proposed as _proposed  # noqa: F401  (registers "proposed")
from .algorithms import REGISTRY, PlanOptions
from .ctuning import C_OBJECTIVES, memory_shortfall
from .errors import FieldError, ScenarioError
from .given_placement import check_placement_options, parse_placement, plan_on_placement
from .plan import PlanResult, plan_document
from .scenario import Scenario
from .topology import Placement

# Optional algorithm modules register themselves on import; a missing one is simply not offered.
for _module in ("baselines", "exact", "search"):
    try:
        __import__(f"{__package__}.{_module}")
    except ModuleNotFoundError as _exc:
        if _exc.name != f"{__package__}.{_module}":
            raise

MAX_SIMULATE_REQUESTS = 2_000_000

ALGORITHMS: dict[str, str] = {name: a.description for name, a in REGISTRY.items()}
DEFAULT_ALGORITHMS: list[str] = [name for name, a in REGISTRY.items() if a.default]


def feasibility_error(scenario: Scenario) -> str | None:
    """A readable reason when no plan can exist for the servers' memory, else None (fast)."""
    return memory_shortfall(scenario)


def check_options(algorithm: str, c: int | None, simulate_requests: int, seed: int,
                  time_limit_s: float | None, c_objective: str) -> None:
    errors = []
    if algorithm not in REGISTRY:
        errors.append(FieldError("algorithm", f"unknown algorithm {algorithm!r}; known: {', '.join(sorted(REGISTRY))}"))
    if c is not None and (not isinstance(c, int) or isinstance(c, bool) or c < 1):
        errors.append(FieldError("options.c", "must be an integer >= 1"))
    if not isinstance(simulate_requests, int) or simulate_requests < 0 or simulate_requests > MAX_SIMULATE_REQUESTS:
        errors.append(FieldError("options.simulate_requests", f"must be an integer in 0..{MAX_SIMULATE_REQUESTS}"))
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        errors.append(FieldError("options.seed", "must be an integer >= 0"))
    if time_limit_s is not None and not (isinstance(time_limit_s, (int, float)) and 0 < time_limit_s < 1e6):
        errors.append(FieldError("options.time_limit_s", "must be a number > 0"))
    if c_objective not in C_OBJECTIVES:
        errors.append(FieldError("options.c_objective", f"must be one of {', '.join(C_OBJECTIVES)}"))
    if errors:
        raise ScenarioError(errors)


def simulate_result(scenario: Scenario, result: PlanResult, requests: int, seed: int) -> dict[str, Any] | None:
    """Simulate a chain-based plan under its dispatch policy (Poisson, or the scenario's trace)."""
    if not result.feasible or not result.chains or result.dispatch is None or requests <= 0:
        return None
    from .simulator import simulate_plan   # imported lazily: planning alone does not need it
    return simulate_plan(scenario, result.chains, result.dispatch, requests=requests, seed=seed)


def plan(scenario: Scenario, algorithm: str = "search", *, c: int | None = None, simulate_requests: int = 0,
         seed: int = 1, progress: Callable[[float, str], None] | None = None, time_limit_s: float | None = None,
         c_objective: str = "lower-bound", placement: Any = None, placement_field: str = "options.placement",
         **extra: Any) -> dict[str, Any]:
    """``placement``: plan on this layout (rows as in the plan document, or a ``Placement``) instead of placing
    blocks; ``placement_field`` is the name its errors carry (``--placement`` on the command line)."""
    check_options(algorithm, c, simulate_requests, seed, time_limit_s, c_objective)
    given = None
    if placement is not None:
        errors = check_placement_options([algorithm], c, c_objective, placement_field)
        if errors:
            raise ScenarioError(errors)
        given = placement if isinstance(placement, Placement) else parse_placement(placement, scenario,
                                                                                    placement_field)
    options = PlanOptions(c=c, c_objective=c_objective, simulate_requests=simulate_requests, seed=seed,
                          time_limit_s=time_limit_s, progress=progress, extra=extra)
    started = time.perf_counter()
    if given is not None:
        result = plan_on_placement(scenario, algorithm, given, options)
    else:
        result = REGISTRY[algorithm].run(scenario, options)
    solve_time = time.perf_counter() - started
    if result.simulation is None and simulate_requests > 0:
        options.report(0.95, f"{algorithm}: simulating {simulate_requests} requests")
        result.simulation = simulate_result(scenario, result, simulate_requests, seed)
    options.report(1.0, f"{algorithm}: done")
    return plan_document(scenario, result, solve_time)
