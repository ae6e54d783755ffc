"""The proposed method: GBP-CR + GCA, ``c`` tuned by the lower bound, JFFC dispatch."""

from __future__ import annotations

import time


from .algorithms import PlanOptions, register
from .batch_allocation import batch_extras
from .ctuning import evaluate, memory_shortfall, tune_c
from .gbpcr import gbpcr
from .plan import PlanResult
from .scenario import Scenario
from .topology import make_chain


SIMULATED_CANDIDATES = 5
DEFAULT_TUNING_REQUESTS = 20_000


def _pick_by_simulation(scenario: Scenario, candidates, options: PlanOptions):
    """Simulate the best few c by the lower bound and keep the lowest simulated mean.

    Every candidate sees the same seed, hence the same arrivals and job sizes
    (common random numbers), so differences come from the plans, not the noise.
    """
    from .simulator import simulate_plan

    requests = options.simulate_requests or DEFAULT_TUNING_REQUESTS
    rows, best, best_mean = [], candidates[0], None
    for i, cand in enumerate(candidates):
        options.report(0.5 + 0.4 * i / len(candidates), f"c-tuning: simulating c = {cand.c}")
        sim = simulate_plan(scenario, chains_of(scenario, cand.chains), "jffc", requests=requests, seed=options.seed)
        mean = sim["mean_response_s"]
        rows.append({"c": cand.c, "lower_bound_s": cand.bounds.lower_s, "simulated_mean_response_s": mean,
                     "response_ci95_s": sim.get("response_ci95_s")})
        if mean is not None and (best_mean is None or mean < best_mean):
            best, best_mean = cand, mean
    return best, rows


def chains_of(scenario: Scenario, allocated) -> list:
    return [make_chain(scenario, ch.hops, ch.capacity) for ch in allocated]


@register("proposed", "the paper's method exactly (a baseline): GBP-CR placement + GCA cache allocation, c tuned "
          "by the JFFC lower bound, JFFC dispatch")
def proposed(scenario: Scenario, options: PlanOptions) -> PlanResult:
    started = time.monotonic()
    result = _proposed(scenario, options)
    note = result.extra.get("note")
    cut = bool(note and note.startswith("time limit"))
    result.extra["search"] = {
        "searched_s": time.monotonic() - started, "budget_s": options.time_limit_s, "cut_short": cut,
        "detail": note if cut else ("fixed c, nothing searched" if options.c is not None else
                                    "every value of c tuned by the " + options.c_objective)}
    return result


def _proposed(scenario: Scenario, options: PlanOptions) -> PlanResult:
    shortfall = memory_shortfall(scenario)
    if shortfall:
        return PlanResult("proposed", False, shortfall)
    if options.c is not None:
        result = gbpcr(scenario, options.c)
        if not result.feasible:
            return PlanResult("proposed", False, result.reason, c=options.c)
        # with c given nothing is tuned: the objective only scores it ("simulation" would simulate one plan)
        objective = "lower-bound" if options.c_objective == "simulation" else options.c_objective
        cand = evaluate(scenario, result, objective)
        tuning = None
    else:
        by_simulation = options.c_objective == "simulation"
        tuning = tune_c(scenario, "lower-bound" if by_simulation else options.c_objective,
                        progress=options.progress, deadline=options.deadline(),
                        keep=SIMULATED_CANDIDATES if by_simulation else 1)
        cand = tuning.best
        if cand is None:
            return PlanResult("proposed", False, tuning.reason, extra={"c_tuning": tuning.evaluated})
    extra: dict = {"c_objective": options.c_objective}
    if options.c is None and options.c_objective == "simulation":
        cand, extra["c_simulation"] = _pick_by_simulation(scenario, tuning.top, options)
    chains = chains_of(scenario, cand.chains)
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
    extra.update(batch_extras(scenario, chains, cand.placement.placement))
    return PlanResult("proposed", True, c=cand.c, placement=cand.placement.placement, chains=chains, extra=extra,
                      tuning=tuning)
