"""The two registered exact algorithms, ``optimal-allocation`` (SCIP MIP) and ``optimal`` (CP-SAT joint model)."""

from __future__ import annotations

import math
import time
from typing import Any

from ..algorithms import PlanOptions, register
from ..batch_allocation import batch_extras
from ..batching import BatchModel
from ..bounds import bounds_from_rates
from ..ctuning import evaluate, loaded_bounds, memory_shortfall, tune_c
from ..gbpcr import gbpcr
from ..gca import gca
from ..plan import PlanResult
from ..scenario import Scenario
from ..topology import Placement, cache_slots, make_chain
from .allocation import DEFAULT_ALLOCATION_TIME_S, allocate
from .batched import batched_allocate, batched_min_capacity, saturation
from .column_generation import ColumnGeneration, run_column_generation
from .enumeration import DEFAULT_CHAIN_LIMIT, ChainCandidate, placement_chains
from .joint import DEFAULT_JOINT_TIME_S, MAX_JOINT_BLOCKS, MAX_JOINT_SERVERS, solve_joint, too_large
from .lagrangian import lagrangian_bound


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
          "method's placement, maximising the total service rate nu (not the response time; under a batch slowdown the "
          "saturation rate, by branch and bound over occupancies); reports objective, proven bound and gap on it")
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
    cg: ColumnGeneration | None = None
    if capped and objective == "max-rate":
        # the LP over every chain by column generation (up to 70 % of the limit): its columns join the MIP and
        # its value (or Lagrangian bound when stopped) bounds the optimum over all chains
        options.report(0.4, f"{name}: column generation over all chains")
        cg = run_column_generation(scenario, placement, chains, slots, started + 0.7 * time_limit)
        chains = chains + cg.added
        hint = hint + [0] * len(cg.added)
    # building the model costs ~0.1 ms per chain and the bound over all chains an LP as large: keep room for both
    reserve = 2.5e-4 * len(chains) if capped else 1.2e-4 * len(chains)
    time_limit = max(0.05, 0.9 * (deadline - time.monotonic()) - reserve)
    if not chains:
        return PlanResult(name, False, "the placement has no chain that can hold a job", c=c_used,
                          placement=placement)
    lam, rho_bar = scenario.workload.arrival_rate, scenario.workload.target_load
    target = lam / rho_bar
    batch = BatchModel.of(scenario)
    if objective == "min-capacity":
        greedy_rate = saturation(batch, chains, hint) if batch.active else sum(ch.rate * v for ch, v in
                                                                               zip(chains, hint))
        hint_ok = greedy_rate >= target
        options.report(0.5, f"{name}: solving ({len(chains)} chains)")
        if batch.active:
            out, batch_search = batched_min_capacity(batch, chains, slots, target, time_limit,
                                                     hint if hint_ok else None)
        else:
            out = allocate(chains, slots, objective, target, time_limit, hint if hint_ok else None)
    else:
        options.report(0.5, f"{name}: solving ({len(chains)} chains)")
        if batch.active:
            out, batch_search = batched_allocate(batch, chains, slots, time_limit, hint)
        else:
            out = allocate(chains, slots, objective, None, time_limit, hint)
    info = out.report(objective_name=objective, chains_enumerated=len(chains), enumeration_capped=capped,
                      chain_limit=limit, placement_source=source,
                      gca_total_service_rate=sum(g.capacity / g.service_time_s for g in greedy))
    if batch.active:
        info["gca_saturation_rate_rps"] = batch.saturation_rate(greedy)
        info["batch_search"] = batch_search
    if capped:
        info["note"] = (f"chain enumeration stopped after {len(chains)} of the fastest chains (limit {limit}, "
                        "time or memory); the allocation is optimal for that set only")
        if objective == "max-rate" and out.values:
            info.update(cg.report if cg else {})
            if cg and cg.report["lp_converged"]:
                bound, scope = cg.bound, "all chains (LP relaxation over every chain, by column generation)"
            else:
                # a bound over *all* chains: Lagrangian dual of the LP with the restricted LP's prices; column
                # generation's last round solved that very LP (over these chains), so its prices are reused
                bound = lagrangian_bound(scenario, placement, chains, slots, cg.prices if cg else None)
                scope = "all chains (Lagrangian bound from the restricted LP's slot prices)"
                if cg is not None and math.isfinite(cg.bound) and cg.bound < bound:
                    bound, scope = cg.bound, "all chains (Lagrangian bound with exact pricing, column generation stopped)"
            info["best_bound"] = max(out.objective, bound)
            info["gap"] = (info["best_bound"] - out.objective) / max(out.objective, 1e-12)
            info["bound_scope"] = scope
    else:
        info["bound_scope"] = "all chains (every chain enumerated)"
    info["optimises"] = (("the saturation rate sum c_k / T_k(b_full) on this placement (each chain at its time "
                          "with every planned slot busy, under the servers' batch slowdown)" if batch.active else
                          "the total service rate nu = sum c_k mu_k on this placement") if objective == "max-rate"
                         else ("the total capacity sum c_k subject to the saturation rate sum c_k / T_k(b_full) >= "
                               "lambda / rho_bar (each chain at its time with every planned slot busy, under the "
                               "servers' batch slowdown)" if batch.active else
                               "the total capacity sum c_k subject to nu >= lambda / rho_bar"))
    if batch.active and capped and objective == "max-rate":
        info["bound_scope"] += ("; with one-job rates, which no allocation's saturation rate exceeds (a factor "
                                "is never below 1)")
    extra_search = {"searched_s": time.monotonic() - started, "budget_s": options.time_limit_s or
                    DEFAULT_ALLOCATION_TIME_S, "cut_short": capped or not out.status.startswith("OPTIMAL"),
                    "detail": f"{len(chains)} chains{' (enumeration stopped early)' if capped else ''}, solver "
                              f"status {out.status}, proven gap on {info['optimises']}: {info['gap']}"}
    if not out.values:
        why = (f"no allocation reaches the {'saturation' if batch.active else 'service'} rate {target:.4g} req/s "
               "(lambda / rho_bar)"
               if objective == "min-capacity" else f"solver status {out.status}")
        return PlanResult(name, False, why, c=c_used, placement=placement, extra={"exact": info,
                                                                                    "search": extra_search})
    result_chains = [make_chain(scenario, ch.hops, v) for ch, v in zip(chains, out.values) if v > 0]
    result_chains.sort(key=lambda ch: (ch.service_time_s, ch.servers))
    nu = batch.saturation_rate(result_chains)
    if not lam < nu:
        return PlanResult(name, False, f"arrival rate {lam:g} req/s is not below the optimal "
                          f"{'saturation' if batch.active else 'total service'} rate "
                          f"{nu:.4g} req/s of this placement", c=c_used, placement=placement,
                          chains=result_chains, extra={"exact": info, "search": extra_search})
    return PlanResult(name, True, c=c_used, placement=placement, chains=result_chains, dispatch="jffc",
                      extra={"exact": info, "search": extra_search,
                             **batch_extras(scenario, result_chains, placement)})


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
          "mean-response bound (under a batch slowdown the placement by one-job rates, the allocation on it by the "
          "saturation rate) (CP-SAT; small instances only: J <= "
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
    batch = BatchModel.of(scenario)
    # under a batch slowdown the joint model (linear only at one-job rates) picks the placement, and the
    # occupancy branch and bound re-allocates on it within the last BATCH_ALLOCATION_SHARE of the limit
    sol = solve_joint(scenario, time_limit, limit, seed,
                      deadline=started + (1 - BATCH_ALLOCATION_SHARE) * time_limit if batch.active else deadline)
    if sol is None:
        return PlanResult(name, False, "no placement admits a chain that can hold a job")
    allocation = [(t.hops, v) for t, v in sol.chains]
    if batch.active:
        allocation, batch_info = _batch_allocation_on(scenario, batch, sol.placement, allocation, limit, deadline)
    chains = sorted((make_chain(scenario, hops, v) for hops, v in allocation),
                    key=lambda ch: (ch.service_time_s, ch.servers))
    nu = batch.saturation_rate(chains) if batch.active else sol.outcome.objective
    info = sol.outcome.report(objective_name="max-rate", chains_enumerated=sol.templates,
                              enumeration_capped=sol.capped, chain_limit=limit,
                              optimises=("the total service rate nu over placements and allocations, not the "
                                         "response-time bound (which is not linear in the capacities); the plan's "
                                         "bounds show its response time"))
    if batch.active:
        # a saturation rate is never above the one-job rate of the same allocation (a factor is at least 1), so
        # the joint model's bound on nu bounds it too, loosely: the gap is proven but not closed
        info.update(batch_info)
        info.update(objective=nu, gap=max(0.0, info["best_bound"] - nu) / max(nu, 1e-12),
                    status=("OPTIMAL" if info["best_bound"] <= nu * (1 + 1e-9) else "FEASIBLE")
                    + f" (placement: {sol.outcome.status} at one-job rates)",
                    optimises=("the saturation rate sum c_k / T_k(b_full) (each chain at its time with every "
                               "planned slot busy, under the servers' batch slowdown) by the allocation on the "
                               "placement that maximises the one-job total service rate nu: the joint model is "
                               "linear only at one-job rates, so the placement does not see the slowdown; "
                               "best_bound is the one-job bound, which no saturation rate exceeds"),
                    one_job_total_service_rate=sol.outcome.objective)
    if sol.capped:
        info["note"] = (f"chain templates capped at the {limit} fastest (plus the proposed plan's); objective "
                        "and bound are optimal for that restricted set only")
    if cand is not None:
        prop_b = cand.bounds
        opt_b = (loaded_bounds(batch, chains, lam) if batch.active else
                 bounds_from_rates([1 / ch.service_time_s for ch in chains], [ch.capacity for ch in chains], lam))
        info["proposed"] = {
            "c": cand.c, "total_service_rate": prop_b.total_rate,
            "rate_gap": (nu - prop_b.total_rate) / nu if nu > 0 else None,
            "rate_gap_to_bound": ((sol.outcome.best_bound - prop_b.total_rate) / sol.outcome.best_bound
                                  if sol.outcome.best_bound > 0 else None),
            "response_time_lower_s": prop_b.lower_s if prop_b.stable else None,
            "optimal_response_time_lower_s": opt_b.lower_s if opt_b.stable else None,
        }
    search = {"searched_s": time.monotonic() - started, "budget_s": time_limit,
              "cut_short": not info["status"].startswith("OPTIMAL"),
              "detail": f"{sol.templates} chain templates{' (enumeration stopped early)' if sol.capped else ''}, "
                        + (f"status {info['status']}, proven gap on the saturation rate under the batch slowdown "
                           f"(the placement by one-job rates, the allocation on it by the slowdown; not the response "
                           f"time) {info['gap']}" if batch.active else
                           f"status {sol.outcome.status}, proven gap on the total service rate nu (the objective; "
                           f"not the response time) {sol.outcome.gap}")}
    if not lam < nu:
        return PlanResult(name, False, f"arrival rate {lam:g} req/s is not below the "
                          + (f"saturation rate {nu:.4g} req/s of the plan found (its placement maximises the one-job "
                             "rate)" if batch.active else f"largest total service rate {nu:.4g} req/s any plan "
                                                          "reaches"),
                          placement=sol.placement, chains=chains, extra={"exact": info, "search": search})
    return PlanResult(name, True, placement=sol.placement, chains=chains, dispatch="jffc",
                      extra={"exact": info, "search": search,
                             **batch_extras(scenario, chains, sol.placement)})


BATCH_ALLOCATION_SHARE = 0.2


def _batch_allocation_on(scenario: Scenario, batch: BatchModel, placement: Placement, allocation, limit: int,
                         deadline: float) -> tuple[list, dict[str, Any]]:
    """The joint model's placement re-allocated for the saturation rate (branch and bound over occupancies) on its
    chains, kept when it beats the joint model's own allocation under the slowdown; (allocation, report)."""
    slots = cache_slots(scenario, placement)
    chains, capped = placement_chains(scenario, placement, slots, limit, deadline)
    index = {ch.hops: k for k, ch in enumerate(chains)}
    for hops, _ in allocation:                   # the joint model's chains always take part
        if tuple(hops) not in index:
            index[tuple(hops)] = len(chains)
            chains.append(ChainCandidate(tuple(hops), sum(scenario.servers[j].comm_time_s
                                                          + scenario.servers[j].block_time_s * m for j, m in hops)))
    hint = [0] * len(chains)
    for hops, v in allocation:
        hint[index[tuple(hops)]] = v
    before = saturation(batch, chains, hint)
    out, search = batched_allocate(batch, chains, slots, max(0.05, deadline - time.monotonic()), hint)
    report = {"joint_allocation_saturation_rate_rps": before, "batch_search": search,
              "batch_allocation_status": out.status, "batch_allocation_chains_capped": capped}
    if out.values and out.objective > before:
        return [(ch.hops, v) for ch, v in zip(chains, out.values) if v > 0], report
    return [(hops, v) for hops, v in allocation if v > 0], report
