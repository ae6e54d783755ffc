"""The proposed method: GBP-CR + GCA, ``c`` tuned by the lower bound, JFFC dispatch."""

from __future__ import annotations

import time

from .algorithms import PlanOptions, register
from .ctuning import evaluate, memory_shortfall, tune_c
from .gbpcr import gbpcr
from .plan import PlanResult
from .scenario import Scenario
from .topology import make_chain


def chains_of(scenario: Scenario, allocated) -> list:
    return [make_chain(scenario, ch.hops, ch.capacity) for ch in allocated]


@register("proposed", "GBP-CR placement + GCA cache allocation, c tuned by the JFFC lower bound, JFFC dispatch",
          default=True)
def proposed(scenario: Scenario, options: PlanOptions) -> PlanResult:
    shortfall = memory_shortfall(scenario)
    if shortfall:
        return PlanResult("proposed", False, shortfall)
    if options.c is not None:
        result = gbpcr(scenario, options.c)
        if not result.feasible:
            return PlanResult("proposed", False, result.reason, c=options.c)
        cand = evaluate(scenario, result, options.c_objective)
        tuning = None
    else:
        tuning = tune_c(scenario, options.c_objective, progress=options.progress, deadline=options.deadline())
        cand = tuning.best
        if cand is None:
            return PlanResult("proposed", False, tuning.reason, extra={"c_tuning": tuning.evaluated})
    chains = chains_of(scenario, cand.chains)
    extra: dict = {"c_objective": options.c_objective}
    if tuning is not None:
        extra["c_tuning"] = tuning.evaluated
        extra["c_values_pruned"] = tuning.skipped
        if tuning.reason:
            extra["note"] = tuning.reason
    if not cand.bounds.stable:
        return PlanResult("proposed", False,
                          f"arrival rate {scenario.workload.arrival_rate:g} req/s is not below the total service "
                          f"rate {cand.bounds.total_rate:.4g} req/s of c = {cand.c}",
                          c=cand.c, placement=cand.placement.placement, chains=chains, extra=extra)
    return PlanResult("proposed", True, c=cand.c, placement=cand.placement.placement, chains=chains, extra=extra)
