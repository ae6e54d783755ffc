"""The plan document (scenario-format.md, "Plan (output)").

A ``PlanResult`` is what an algorithm produces; ``plan_document`` turns it into
the public JSON shape, adding per-server memory use so a reader can check that
no server is over its memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .bounds import response_time_bounds
from .chains import Chain
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


def memory_use(scenario: Scenario, placement: Placement, chains: list[Chain]) -> list[dict[str, Any]]:
    """Per used server: memory for blocks, KV slots reserved by the chains, and what is left."""
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
        block_mem = model.block_size_gb * m
        cache_mem = model.cache_size_gb * slots_used[j]
        rows.append({
            "server": s.id, "start_block": placement.start[j], "num_blocks": m,
            "memory_gb": s.memory_gb, "block_memory_gb": round(block_mem, 9),
            "cache_slots": s.cache_slots(m, model), "cache_slots_used": slots_used[j],
            "cache_memory_gb": round(cache_mem, 9),
            "free_memory_gb": round(s.memory_gb - block_mem - cache_mem, 9),
        })
    return rows


def plan_document(scenario: Scenario, result: PlanResult, solve_time_s: float) -> dict[str, Any]:
    doc: dict[str, Any] = {"algorithm": result.algorithm, "feasible": result.feasible}
    if not result.feasible:
        doc["reason"] = result.reason or "no feasible plan"
    doc["c"] = result.c
    placement = result.placement
    doc["placement"] = memory_use(scenario, placement, result.chains) if placement is not None else []
    doc["chains"] = [ch.to_dict() for ch in result.chains]
    total_rate = sum(ch.capacity / ch.service_time_s for ch in result.chains)
    doc["total_service_rate"] = total_rate
    doc["total_capacity"] = sum(ch.capacity for ch in result.chains)
    if result.chains:
        b = response_time_bounds(result.chains, scenario.workload.arrival_rate)
        doc["bounds"] = b.to_dict()
        doc["load"] = b.load if math.isfinite(b.load) else None
    else:
        doc["bounds"] = {"response_time_lower_s": None, "response_time_upper_s": None}
    if placement is not None:
        used = set(placement.used())
        doc["unused_servers"] = [s.id for j, s in enumerate(scenario.servers) if j not in used]
    doc["arrival_rate"] = scenario.workload.arrival_rate
    if result.dispatch:
        doc["dispatch"] = result.dispatch
    if result.simulation is not None:
        doc["simulation"] = result.simulation
    doc.update(result.extra)
    from .explain import explain     # late: explain re-runs GBP-CR/GCA, which import this module's callers
    doc["explanation"] = explain(scenario, result, doc)
    doc["solve_time_s"] = solve_time_s
    return doc
