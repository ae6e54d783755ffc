"""The plan document (docs/plan-format.md).

A ``PlanResult`` is what an algorithm produces; ``plan_document`` turns it into
the public JSON shape (the typed ``plan_format.PlanDocument``), adding per-server
memory use so a reader can check that no server is over its memory.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .batching import has_slowdown, saturation_rate
from .bounds import batch_response_time_bounds
from .chains import Chain
from .plan_format import (ABSENT, Absent, Bounds, ChainDoc, Explanation, PlacementRow, PlanDocument,
                          Simulation)
from .scenario import Scenario
from .topology import Placement


@dataclass
class PlanResult:
    algorithm: str
    feasible: bool
    reason: str | None = None
    c: int | None = None
    placement: Placement | None = None
    chains: list[Chain] = field(default_factory=list)
    dispatch: str | None = "jffc"          # policy the chains are simulated with (None: the algorithm routes itself)
    simulation: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    tuning: Any = None                     # the c-tuning run (ctuning.TuningResult), for the explanation only
    kv_pool: tuple[int, ...] | None = None  # per server, KV slots the runtime reserves itself (PETALS' fixed pool)


def memory_use(scenario: Scenario, placement: Placement, chains: list[Chain],
               kv_pool: tuple[int, ...] | None = None) -> list[PlacementRow]:
    """Per used server: memory for blocks, KV slots reserved by the chains (or the runtime's own fixed pool,
    ``kv_pool``, all of it reserved), and what is left."""
    model = scenario.model
    index = {s.id: j for j, s in enumerate(scenario.servers)}
    slots_used = [0] * len(scenario.servers)
    for ch in chains:
        for sid, m in zip(ch.servers, ch.blocks):
            slots_used[index[sid]] += m * ch.capacity
    rows = []
    for j in placement.used():
        s = scenario.servers[j]
        m = placement.count[j]
        if kv_pool is not None:
            slots_used[j] = kv_pool[j]
        block_mem = model.block_size_gb * m
        cache_mem = model.cache_size_gb * slots_used[j]
        rows.append(PlacementRow(
            server=s.id, start_block=placement.start[j], num_blocks=m,
            memory_gb=s.memory_gb, block_memory_gb=round(block_mem, 9),
            cache_slots=s.cache_slots(m, model) if kv_pool is None else kv_pool[j], cache_slots_used=slots_used[j],
            cache_memory_gb=round(cache_mem, 9),
            free_memory_gb=round(s.memory_gb - block_mem - cache_mem, 9)))
    return rows


def plan_document(scenario: Scenario, result: PlanResult, solve_time_s: float) -> dict[str, Any]:
    """The plan document (docs/plan-format.md) of ``result``, built as a ``PlanDocument``."""
    lam = scenario.workload.arrival_rate
    placement = result.placement
    total_rate = sum(ch.capacity / ch.service_time_s for ch in result.chains)
    batching = has_slowdown(scenario.servers)
    # with servers that batch, what the plan carries is its rate with every planned slot busy
    saturation = saturation_rate(result.chains, scenario.servers) if batching else total_rate
    load: float | None | Absent = ABSENT
    bounds = None
    why_not = bounds_why_not(scenario, result)
    if result.chains:
        bounds = batch_response_time_bounds(result.chains, scenario.servers, lam)
        load = bounds.load if math.isfinite(bounds.load) else None
    if bounds is not None and why_not is None and bounds.stable:
        doc_bounds = Bounds(**bounds.to_dict(), applies=True, why_not=None)
    else:
        if why_not is None and batching:
            why_not = (f"the arrival rate {lam:g} req/s is not below the plan's saturation rate {saturation:.4g} "
                       "req/s (every planned slot busy, each server slowed by its batch): the upper bound needs "
                       "it, and the queue may grow without limit")
        elif why_not is None:
            why_not = (f"the arrival rate {lam:g} req/s is not below the chains' total service rate "
                       f"{total_rate:.4g} req/s: the queue grows without limit")
        doc_bounds = Bounds(response_time_lower_s=None, response_time_upper_s=None, applies=False,
                            why_not=why_not)
    overloaded, overload_reason = overload(scenario, result, saturation,
                                           "saturation rate" if batching else "total service rate")
    unused = None
    if placement is not None:
        used = set(placement.used())
        unused = tuple(s.id for j, s in enumerate(scenario.servers) if j not in used)
    idle = idle_servers(scenario, placement, result.chains)
    limit = physical_limit_s(scenario)
    predicted = None
    if result.simulation is not None:
        predicted = result.simulation.get("mean_response_s")
    elif doc_bounds.applies:
        predicted = doc_bounds.response_time_upper_s
    doc = PlanDocument(
        algorithm=result.algorithm, feasible=result.feasible,
        reason=None if result.feasible else result.reason or "no feasible plan",
        c=result.c,
        placement=tuple(memory_use(scenario, placement, result.chains, result.kv_pool)) if placement is not None else (),
        chains=tuple(chain_doc(ch) for ch in result.chains),
        total_service_rate=total_rate, total_capacity=sum(ch.capacity for ch in result.chains),
        saturation_rate_rps=saturation, load=load,
        bounds=doc_bounds, overloaded=overloaded, overload_reason=overload_reason, unused_servers=unused,
        idle_servers=idle,
        arrival_rate=lam, dispatch=result.dispatch or None,
        simulation=Simulation.from_dict(result.simulation) if result.simulation is not None else None,
        extras=dict(result.extra), physical_limit_s=limit,
        limit_ratio=predicted / limit if predicted is not None and limit else None,
        explanation=NO_EXPLANATION, solve_time_s=solve_time_s)
    from .explain import explain     # late: explain re-runs GBP-CR/GCA, which import this module's callers
    explanation = Explanation.from_dict(explain(scenario, result, doc.to_dict()))
    return dataclasses.replace(doc, explanation=explanation).to_dict()


# explain() reads the rest of the document, so the document is first built without its explanation
NO_EXPLANATION = Explanation(summary=(), servers=(), unused=(), c_choice=None, warnings=())


def idle_servers(scenario: Scenario, placement: Placement | None, chains: list[Chain]) -> tuple[str, ...] | None:
    """Servers that hold blocks no chain passes through (their weights would load for nothing); None for plans
    without chains, which route each request over every server holding blocks."""
    if placement is None or not chains:
        return None
    in_chains = {sid for ch in chains for sid in ch.servers}
    return tuple(scenario.servers[j].id for j in placement.used() if scenario.servers[j].id not in in_chains)


def chain_doc(chain: Chain) -> ChainDoc:
    """A chain as the document lists it (its mean service time; the per-token terms stay in the solver)."""
    return ChainDoc(servers=tuple(chain.servers), blocks=tuple(chain.blocks),
                    service_time_s=chain.service_time_s, capacity=chain.capacity)


def bounds_why_not(scenario: Scenario, result: PlanResult) -> str | None:
    """Why the JFFC bounds (Poisson arrivals, exponential sizes, JFFC over the chains) do not hold, or None."""
    if not result.chains:
        return (f"{result.algorithm} routes every request itself, without pre-allocated chains and a central "
                "queue: the JFFC bounds describe no part of it (see the simulation)")
    if result.dispatch != "jffc":
        return (f"the chains are dispatched by {result.dispatch or 'the algorithm itself'}, not JFFC: the bounds "
                "hold only for join-the-fastest-free-chain dispatch")
    if scenario.workload.trace is not None:
        return ("the workload is a trace (its own arrival times and token counts), not Poisson arrivals with "
                "exponential job sizes: the bounds do not hold for it")
    return None


# A stable queue's waits look alike in both halves of a run; an overloaded one's keep growing.  Waits above
# WAIT_TO_SERVICE service times mean the run never left its ramp (at such loads waiting dominates whatever one
# measures), so they count as overloaded too.
WAIT_TO_SERVICE = 10.0


def overload(scenario: Scenario, result: PlanResult, total_rate: float,
             rate_name: str = "total service rate") -> tuple[bool, str | None]:
    """(overloaded, why): the chains' rate (``rate_name``: the saturation rate when servers batch) is not
    above the arrival rate, or simulated waits grow with time."""
    lam = scenario.workload.arrival_rate
    if result.chains and not lam < total_rate:
        return True, (f"arrival rate {lam:g} req/s >= {rate_name} {total_rate:.4g} req/s: waiting grows "
                      "with the run length")
    sim = result.simulation
    if sim:
        first, second = sim.get("mean_wait_first_half_s"), sim.get("mean_wait_second_half_s")
        wait, service = sim.get("mean_wait_s") or 0.0, sim.get("mean_service_s") or 0.0
        growing = first is not None and second is not None and second > 1.5 * first and second - first > service
        if growing or (service > 0 and wait > WAIT_TO_SERVICE * service):
            return True, (f"simulated waiting grows with the run: mean wait {first:.4g} s in the first half of the "
                          f"measured requests, {second:.4g} s in the second, against {service:.4g} s of service; "
                          "the load exceeds what this plan serves, so its figures depend on the run length")
    return False, None


def physical_limit_s(scenario: Scenario) -> float | None:
    """The no-queueing limit: the fastest chain memory allows for a single job (no plan's mean is lower).

    Each server may hold at most ``floor(M_j / (s_m + s_c))`` blocks with KV for one
    job; a hop of ``d`` blocks costs at least the cheapest ``tau_c + tau_p d`` over
    servers that can hold ``d``.  A shortest path over block positions with those
    hop costs (a server may appear twice, which only lowers the result) is a lower
    bound on every chain's mean service time, hence on any plan's mean response.
    """
    model = scenario.model
    L = model.num_blocks
    memory = np.array([s.memory_gb for s in scenario.servers])
    comm = np.array([s.comm_time_s for s in scenario.servers])
    per_block = np.array([s.block_time_s for s in scenario.servers])
    held = np.minimum(np.floor(memory / (model.block_size_gb + model.cache_size_gb) + 1e-9), L)
    hop = np.full(L + 1, math.inf)
    for d in range(1, L + 1):
        ok = held >= d
        if ok.any():
            hop[d] = float((comm[ok] + per_block[ok] * d).min())
    dist = np.full(L + 1, math.inf)
    dist[0] = 0.0
    for f in range(1, L + 1):
        dist[f] = float((dist[:f][::-1] + hop[1:f + 1]).min())
    return float(dist[L]) if math.isfinite(dist[L]) else None
