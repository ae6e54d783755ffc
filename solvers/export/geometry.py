"""Plan geometry the exports share: which blocks each stage runs, the model's sizes, and the closest
server-disjoint plan for runtimes that run one engine per pipeline."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..bounds import response_time_bounds
from ..chains import Chain


@dataclass(frozen=True)
class Stage:
    server: str
    start: int          # first block (layer) this stage runs
    count: int          # how many blocks it runs for the chain


@dataclass(frozen=True)
class Sizes:
    """What the export needs to know about the model, from the scenario or the plan document."""
    block_size_gb: float | None
    cache_size_gb: float | None
    num_blocks: int
    max_tokens: int | None
    dtype: str | None               # fp16 | bf16 | fp32 | int8 | nf4
    kv_dtype: str | None
    model_name: str | None


def idle_servers(plan_doc: dict[str, Any]) -> list[str]:
    """Servers that hold blocks no chain passes through: the document's ``idle_servers``, or for a document
    written before that field, those its chains never name (none for a plan without chains)."""
    if "idle_servers" in plan_doc:
        return list(plan_doc["idle_servers"] or [])
    chains = plan_doc.get("chains") or []
    if not chains:
        return []
    in_chains = {s for ch in chains for s in ch["servers"]}
    return [p["server"] for p in plan_doc.get("placement") or []
            if int(p.get("num_blocks", 0)) > 0 and p["server"] not in in_chains]


def placement_rows(plan_doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The plan's placement rows of the servers that hold blocks and serve (idle servers are left out: loading
    their weights would serve nothing)."""
    idle = set(idle_servers(plan_doc))
    return [p for p in plan_doc.get("placement") or [] if int(p.get("num_blocks", 0)) > 0 and p["server"] not in idle]


def chain_stages(chain: dict[str, Any]) -> list[Stage]:
    """The block range each hop of a chain runs, in order (hop i starts where hop i-1 stopped)."""
    stages, pos = [], 0
    for server, m in zip(chain["servers"], chain["blocks"]):
        stages.append(Stage(str(server), pos, int(m)))
        pos += int(m)
    return stages


def plan_sizes(plan_doc: dict[str, Any], scenario: Any | None) -> Sizes:
    rows = placement_rows(plan_doc)
    if scenario is not None:
        model = scenario.model
        arch = model.architecture
        # the tokens the plan sized each KV slot for (model.cache_tokens), or the architecture's length when the
        # cache size was given outright
        max_tokens = scenario.workload.max_tokens or model.cache_tokens or (arch.max_seq_len if arch else None)
        return Sizes(model.block_size_gb, model.cache_size_gb, model.num_blocks, max_tokens,
                     arch.dtype if arch else None, arch.kv_dtype if arch else None, model.name)
    # the plan document's memory table still gives s_m and s_c
    s_m = next((p["block_memory_gb"] / p["num_blocks"] for p in rows if p.get("block_memory_gb")), None)
    s_c = next((p["cache_memory_gb"] / p["cache_slots_used"] for p in rows
                if p.get("cache_slots_used") and p.get("cache_memory_gb")), None)
    num_blocks = max((int(p["start_block"]) + int(p["num_blocks"]) for p in rows), default=0)
    for ch in plan_doc.get("chains") or []:
        num_blocks = max(num_blocks, sum(int(m) for m in ch["blocks"]))
    return Sizes(s_m, s_c, num_blocks, None, None, None, None)


def server_memory(plan_doc: dict[str, Any], scenario: Any | None) -> dict[str, float]:
    if scenario is not None:
        return {s.id: s.memory_gb for s in scenario.servers}
    return {p["server"]: float(p["memory_gb"]) for p in plan_doc.get("placement") or [] if "memory_gb" in p}


def shared_servers(chains: list[dict[str, Any]]) -> dict[str, list[int]]:
    uses: dict[str, list[int]] = {}
    for k, ch in enumerate(chains):
        for s in ch["servers"]:
            uses.setdefault(s, []).append(k)
    return {s: ks for s, ks in uses.items() if len(ks) > 1}


def stage_capacity(stages: list[Stage], sizes: Sizes, memory: dict[str, float], fraction: float = 1.0) -> int | None:
    """Jobs of full length a pipeline engine holds when every stage keeps as many KV blocks as the weakest.

    vLLM (and SGLang) size one KV pool per stage from that stage's free memory,
    then cap every stage at the smallest; a job needs its KV on every stage, so
    the pipeline holds min over stages of free_i / (layers_i * s_c) jobs.
    """
    if sizes.block_size_gb is None or sizes.cache_size_gb is None:
        return None
    caps = []
    for st in stages:
        if st.server not in memory:
            return None
        free = memory[st.server] * fraction - sizes.block_size_gb * st.count
        caps.append(max(0, math.floor(free / (sizes.cache_size_gb * st.count) + 1e-9)))
    return min(caps) if caps else None


def closest_disjoint(plan_doc: dict[str, Any], scenario: Any | None = None) -> dict[str, Any]:
    """A server-disjoint subset of the plan's chains for one-engine-per-pipeline runtimes.

    Picks chains greedily by the service rate they give (capacity / service
    time, with the capacity they get once they have their servers to
    themselves), skipping any chain that uses a server already taken: a
    greedy maximum-weight set packing.  Returns the kept chains (with their
    stand-alone capacities), the dropped ones, and the service rate and
    closed-form bounds of both plans so the cost is visible.
    """
    chains = list(plan_doc.get("chains") or [])
    sizes = plan_sizes(plan_doc, scenario)
    memory = server_memory(plan_doc, scenario)

    def alone(ch: dict[str, Any]) -> int:
        cap = stage_capacity(chain_stages(ch), sizes, memory)
        return int(ch["capacity"]) if cap is None else max(int(ch["capacity"]), cap)

    order = sorted(range(len(chains)), key=lambda k: (-alone(chains[k]) / chains[k]["service_time_s"], k))
    taken: set[str] = set()
    kept, dropped = [], []
    for k in order:
        ch = chains[k]
        if taken.intersection(ch["servers"]):
            dropped.append(k)
            continue
        taken.update(ch["servers"])
        kept.append(k)
    kept.sort()
    kept_chains = [dict(chains[k], capacity=alone(chains[k]), plan_capacity=chains[k]["capacity"], plan_index=k)
                   for k in kept]
    rate = plan_doc.get("arrival_rate")

    def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
        objs = [Chain(tuple(r["servers"]), tuple(r["blocks"]), float(r["service_time_s"]), int(r["capacity"]))
                for r in rows if int(r["capacity"]) > 0]
        out: dict[str, Any] = {"chains": len(rows), "total_capacity": sum(int(r["capacity"]) for r in rows),
                               "total_service_rate": sum(c.capacity / c.service_time_s for c in objs)}
        if rate and objs:
            b = response_time_bounds(objs, float(rate))
            out.update(b.to_dict())
            out["stable"] = b.stable
        return out

    return {"chains": kept_chains, "dropped": sorted(dropped), "plan": summary(chains),
            "disjoint": summary(kept_chains)}
