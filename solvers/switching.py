"""Switching-aware re-planning and plan diffs.

Moving from one placement to another costs something real: weights must be
loaded onto servers (and caches rebuilt).  ``switching_cost`` counts it as
``blocks to load + servers whose range changes``; ``replan`` picks the ``c``
minimising ``lower bound + delta * switching cost`` against the adopted plan,
so a small predicted gain never moves blocks for nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from .algorithms import PlanOptions
from .bounds import response_time_bounds
from .ctuning import memory_shortfall, tune_c
from .plan import PlanResult, plan_document
from .plan_format import read_chains
from .proposed import chains_of
from .scenario import Scenario
from .topology import Placement, make_chain


def ranges_of(plan_doc: dict[str, Any] | None) -> dict[str, tuple[int, int]]:
    """``server id -> (start_block, num_blocks)`` for every server holding blocks in a plan document."""
    if not plan_doc:
        return {}
    return {p["server"]: (int(p["start_block"]), int(p["num_blocks"]))
            for p in plan_doc.get("placement", []) if int(p["num_blocks"]) > 0}


def _blocks(r: tuple[int, int] | None) -> set[int]:
    return set(range(r[0], r[0] + r[1])) if r else set()


@dataclass(frozen=True)
class SwitchingCost:
    blocks_to_load: int
    blocks_to_drop: int
    servers_changed: int

    @property
    def total(self) -> float:
        return float(self.blocks_to_load + self.servers_changed)

    def to_dict(self) -> dict[str, Any]:
        return {"blocks_to_load": self.blocks_to_load, "blocks_to_drop": self.blocks_to_drop,
                "servers_changed": self.servers_changed, "total": self.total}


def switching_cost(old: dict[str, tuple[int, int]], new: dict[str, tuple[int, int]]) -> SwitchingCost:
    load = drop = changed = 0
    for server in set(old) | set(new):
        before, after = _blocks(old.get(server)), _blocks(new.get(server))
        load += len(after - before)
        drop += len(before - after)
        changed += before != after
    return SwitchingCost(load, drop, changed)


def placement_ranges(scenario: Scenario, placement: Placement) -> dict[str, tuple[int, int]]:
    return {scenario.servers[j].id: (placement.start[j], placement.count[j]) for j in placement.used()}


def replan(scenario: Scenario, adopted_plan: dict[str, Any] | None, delta: float,
           options: PlanOptions | None = None) -> dict[str, Any]:
    """The proposed method with ``c`` chosen by lower bound + delta * switching cost against ``adopted_plan``.

    The document gains ``switching``: the cost breakdown of the chosen plan against the adopted one.
    """
    if delta < 0:
        raise ValueError("delta must be >= 0")
    options = options or PlanOptions()
    old = ranges_of(adopted_plan)
    shortfall = memory_shortfall(scenario)
    if shortfall:
        return plan_document(scenario, PlanResult("proposed", False, shortfall), 0.0)
    import time
    started = time.perf_counter()
    tuning = tune_c(scenario, progress=options.progress, deadline=options.deadline(),
                    penalty=lambda p: delta * switching_cost(old, placement_ranges(scenario, p)).total)
    best = tuning.best
    if best is None:
        return plan_document(scenario, PlanResult("proposed", False, tuning.reason), time.perf_counter() - started)
    cost = switching_cost(old, placement_ranges(scenario, best.placement.placement))
    result = PlanResult("proposed", True, c=best.c, placement=best.placement.placement,
                        chains=chains_of(scenario, best.chains),
                        extra={"switching": {**cost.to_dict(), "delta": delta, "objective": best.objective}})
    solve_time = time.perf_counter() - started
    if options.simulate_requests > 0:
        # the service compares plans by simulated mean/p95 too (plan_diff), as plan() does
        from .runner import simulate_result
        options.report(0.95, f"proposed: simulating {options.simulate_requests} requests")
        result.simulation = simulate_result(scenario, result, options.simulate_requests, options.seed)
    return plan_document(scenario, result, solve_time)


def retimed_lower_bound(scenario: Scenario, plan_doc: dict[str, Any]) -> tuple[float | None, list[str]]:
    """Lower bound on the mean response of a plan document's chains, re-timed on ``scenario``'s servers.

    Re-planning chooses ``c`` by this bound (``replan``), so a candidate is judged against the adopted plan by the
    same one: judging by the upper bound would reject plans for a figure the search never looked at.

    Returns (the bound, or None when the chains are unstable at the scenario's load or there are none; the plan's
    servers missing from the scenario, in which case the bound is None too).
    """
    chains = read_chains(plan_doc)
    index = {s.id: j for j, s in enumerate(scenario.servers)}
    missing = sorted({sid for ch in chains for sid in ch.servers if sid not in index})
    if missing or not chains:
        return None, missing
    retimed = [make_chain(scenario, [(index[sid], m) for sid, m in zip(ch.servers, ch.blocks)], ch.capacity)
               for ch in chains]
    bounds = response_time_bounds(retimed, scenario.workload.arrival_rate)
    return (bounds.lower_s if bounds.stable else None), missing


def _chain_key(ch: dict[str, Any]) -> tuple:
    return tuple(ch["servers"]), tuple(ch["blocks"])


def _metric(doc: dict[str, Any], *path: str) -> float | None:
    cur: Any = doc
    for key in path:
        if not isinstance(cur, dict) or cur.get(key) is None:
            return None
        cur = cur[key]
    return float(cur)


def plan_diff(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """What changes from plan ``old`` to plan ``new``: per server blocks to load and drop, chains, predictions."""
    old = old or {}
    before, after = ranges_of(old), ranges_of(new)
    servers = []
    for server in sorted(set(before) | set(after)):
        b, a = before.get(server), after.get(server)
        if b == a:
            continue
        load, drop = sorted(_blocks(a) - _blocks(b)), sorted(_blocks(b) - _blocks(a))
        servers.append({"server": server,
                        "old": {"start_block": b[0], "num_blocks": b[1]} if b else None,
                        "new": {"start_block": a[0], "num_blocks": a[1]} if a else None,
                        "blocks_to_load": _spans(load), "blocks_to_drop": _spans(drop),
                        "num_blocks_to_load": len(load), "num_blocks_to_drop": len(drop)})
    old_chains = {_chain_key(c): c for c in old.get("chains", [])}
    new_chains = {_chain_key(c): c for c in new.get("chains", [])}
    predicted = {}
    for name, path in (("mean_response_lower_s", ("bounds", "response_time_lower_s")),
                       ("mean_response_upper_s", ("bounds", "response_time_upper_s")),
                       ("simulated_mean_response_s", ("simulation", "mean_response_s")),
                       ("simulated_p95_response_s", ("simulation", "p95_response_s"))):
        o, n = _metric(old, *path), _metric(new, *path)
        predicted[name] = {"old": o, "new": n, "change": (n - o) if o is not None and n is not None else None}
    cost = switching_cost(before, after)
    return {
        "servers": servers,
        "chains_added": [new_chains[k] for k in new_chains if k not in old_chains],
        "chains_removed": [old_chains[k] for k in old_chains if k not in new_chains],
        "capacity_changed": [{"servers": list(k[0]), "blocks": list(k[1]), "old": old_chains[k]["capacity"],
                              "new": new_chains[k]["capacity"]}
                             for k in new_chains if k in old_chains
                             and old_chains[k]["capacity"] != new_chains[k]["capacity"]],
        "predicted": predicted,
        "switching_cost": cost.to_dict(),
    }


def _spans(blocks: Iterable[int]) -> list[list[int]]:
    """[3,4,5,9] -> [[3, 6], [9, 10]] (half-open ranges, easier to read than long lists)."""
    spans: list[list[int]] = []
    for b in blocks:
        if spans and spans[-1][1] == b:
            spans[-1][1] = b + 1
        else:
            spans.append([b, b + 1])
    return spans
