"""Planning on a placement someone already runs (``plan --placement FILE``, the API's ``options.placement``).

The placement is fixed: only the cache allocation (how many jobs each chain
holds) and the dispatch are planned.  Three algorithms take one:

- ``proposed``: GCA on the placement, JFFC dispatch (the paper's allocation);
- ``search``: GCA, then the exact max-rate allocation when the placement's
  chains are few enough, kept when it lowers the JFFC lower bound (the local
  search has nothing to move);
- ``optimal-allocation``: its MIP on the given placement instead of GBP-CR's.

The file is a JSON list in the plan document's ``placement`` row shape
(``{"server", "start_block", "num_blocks"}``); the other fields of a full row
(``memory_gb``, ``cache_slots``, ...) are ignored, so a plan's own placement can
be fed back.  Every problem is a ``FieldError`` naming the row.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

from .algorithms import PlanOptions
from .errors import FieldError, ScenarioError
from .plan import PlanResult
from .scenario import Scenario
from .topology import Placement, make_chain

PLACEMENT_ALGORITHMS: tuple[str, ...] = ("proposed", "search", "optimal-allocation")
ROW_KEYS = ("server", "start_block", "num_blocks")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_placement(value: Any, scenario: Scenario, where: str = "placement") -> Placement:
    """The ``Placement`` a list of rows describes, or a ``ScenarioError`` naming every bad row."""
    if not isinstance(value, list) or not value:
        raise ScenarioError(FieldError(where, "must be a non-empty JSON list of {server, start_block, num_blocks} "
                                              "rows (the plan document's placement rows)"))
    model = scenario.model
    L = model.num_blocks
    index = {s.id: j for j, s in enumerate(scenario.servers)}
    start, count = [0] * len(scenario.servers), [0] * len(scenario.servers)
    first_row: dict[int, int] = {}
    errors: list[FieldError] = []
    for i, row in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(row, dict):
            errors.append(FieldError(at, "must be an object {server, start_block, num_blocks}"))
            continue
        missing = [k for k in ROW_KEYS if k not in row]
        if missing:
            errors.append(FieldError(at, f"missing {', '.join(missing)}"))
            continue
        sid, a, m = row["server"], row["start_block"], row["num_blocks"]
        if not isinstance(sid, str) or sid not in index:
            errors.append(FieldError(f"{at}.server", f"unknown server {sid!r}: the scenario's servers are "
                                                     + ", ".join(list(index)[:10]) + (" ..." if len(index) > 10 else "")))
            continue
        if not _is_int(m) or m < 1:
            errors.append(FieldError(f"{at}.num_blocks", f"must be an integer >= 1, got {m!r}"))
            continue
        if not _is_int(a) or a < 0 or a + m > L:
            errors.append(FieldError(f"{at}.start_block", f"blocks {a!r}..{a!r}+{m}-1 are not within the model's "
                                                          f"blocks 0..{L - 1}"))
            continue
        j = index[sid]
        if j in first_row:
            errors.append(FieldError(f"{at}.server", f"server {sid!r} is listed twice (also {where}[{first_row[j]}]): "
                                                     "a server holds one contiguous range of blocks"))
            continue
        s = scenario.servers[j]
        if s.cache_slots(m, model) < m:
            need = m * (model.block_size_gb + model.cache_size_gb)
            errors.append(FieldError(f"{at}.num_blocks", f"server {sid!r} has {s.memory_gb:.4g} GB: {m} blocks with "
                                                         f"KV cache for one job need {need:.4g} GB"))
            continue
        first_row[j] = i
        start[j], count[j] = a, m
    if errors:
        raise ScenarioError(errors)
    placement = Placement(tuple(start), tuple(count))
    # every block held is also enough for a chain: a position p that chains reach lies in some server's range,
    # whose end (> p) they reach next, so by induction they reach L
    uncovered = [b for b in range(L) if not any(start[j] <= b < start[j] + count[j] for j in first_row)]
    if uncovered:
        b = uncovered[0]
        before = [i for j, i in first_row.items() if start[j] + count[j] == b]
        hint = f" (chains stop after {where}[{before[0]}], which ends at block {b - 1})" if before else ""
        raise ScenarioError(FieldError(where, f"block {b} is held by no server, so no chain covers blocks 0..{L - 1}"
                                              f"{hint}; {len(uncovered)} block{'s' if len(uncovered) != 1 else ''} "
                                              f"uncovered in all"))
    return placement


def check_placement_options(algorithms: list[str], c: int | None, c_objective: str,
                            where: str = "options.placement") -> list[FieldError]:
    """What a given placement cannot be combined with."""
    errors = [FieldError(where, f"applies to {', '.join(PLACEMENT_ALGORITHMS)} only, not {name!r} (it places "
                                "blocks its own way)") for name in algorithms if name not in PLACEMENT_ALGORITHMS]
    if c is not None:
        errors.append(FieldError(where, "c fixes GBP-CR's cache reservation, which shapes a placement: with a "
                                        "given placement leave c out"))
    if c_objective != "lower-bound":
        errors.append(FieldError(where, f"c objective {c_objective!r} tunes c for GBP-CR's placement: with a given "
                                        "placement leave it at lower-bound"))
    return errors


def _searched(started: float, options: PlanOptions, detail: str) -> dict[str, Any]:
    return {"searched_s": time.monotonic() - started, "budget_s": options.time_limit_s, "cut_short": False,
            "detail": "placement given: " + detail}


def _stable_result(name: str, scenario: Scenario, placement: Placement, allocated, extra: dict) -> PlanResult:
    chains = [make_chain(scenario, ch.hops, ch.capacity) for ch in allocated]
    if not chains:
        return PlanResult(name, False, "no chain through the given placement can hold a job", placement=placement,
                          extra=extra)
    lam = scenario.workload.arrival_rate
    nu = sum(ch.capacity / ch.service_time_s for ch in chains)
    if not lam < nu:
        return PlanResult(name, False, f"arrival rate {lam:g} req/s is not below the total service rate {nu:.4g} "
                                       "req/s of the given placement", placement=placement, chains=chains,
                          extra=extra)
    return PlanResult(name, True, placement=placement, chains=chains, dispatch="jffc", extra=extra)


def plan_on_placement(scenario: Scenario, algorithm: str, placement: Placement, options: PlanOptions) -> PlanResult:
    """Cache allocation and dispatch on a fixed ``placement`` by ``algorithm`` (one of PLACEMENT_ALGORITHMS)."""
    from .algorithms import REGISTRY
    from .gca import gca
    started = time.monotonic()
    if algorithm == "optimal-allocation":
        return REGISTRY[algorithm].run(scenario, dataclasses.replace(
            options, extra={**options.extra, "placement": placement}))
    greedy = tuple(gca(scenario, placement))
    if algorithm == "proposed":
        return _stable_result(algorithm, scenario, placement, greedy,
                              {"search": _searched(started, options, "GCA allocates the KV slots, nothing searched")})
    from .search import EXACT_TIME_S, Scorer, exact_allocation
    score = Scorer(scenario)
    best, note = score.of_chains(greedy), "GCA's allocation"
    budget = options.time_limit_s if options.time_limit_s is not None else EXACT_TIME_S
    better = exact_allocation(scenario, placement, score, greedy, min(EXACT_TIME_S, budget))
    if better is not None and better.value < best.value * (1 - 1e-12):
        best, note = better, "the exact allocation (lower bound below GCA's)"
    detail = (f"kept {note}; lower bound {best.value:.4g} s" if math.isfinite(best.value)
              else f"kept {note}; no stable allocation")
    return _stable_result(algorithm, scenario, placement, best.chains,
                          {"search": _searched(started, options, detail)})
