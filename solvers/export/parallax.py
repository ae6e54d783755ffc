"""Parallax: one node per server holding blocks, its layer range and memory ratios; Parallax routes itself."""

from __future__ import annotations

import math
from typing import Any

from ..errors import FieldError, ScenarioError
from .geometry import placement_rows, plan_sizes, server_memory, shared_servers
from .pipeline import TORCH_DTYPE, shell_line

PARALLAX_DEFAULT_PARAM_RATIO = 0.65


def export_parallax(plan_doc, scenario, model_path, opts) -> dict[str, Any]:
    if not plan_doc.get("feasible", True):
        raise ScenarioError(FieldError("plan", "the plan is infeasible; nothing to export"))
    sizes = plan_sizes(plan_doc, scenario)
    memory = server_memory(plan_doc, scenario)
    warnings: list[str] = []
    chains = plan_doc.get("chains") or []
    shared = shared_servers(chains)
    if shared:
        warnings.append("Parallax serves each node's one layer range and routes requests over complete "
                        "pipelines itself; chains that share servers ("
                        f"{', '.join(sorted(shared)[:5])}) are its pipelines too, but it does not keep the "
                        "plan's per-chain capacities or its fastest-free dispatch")
    servers, commands = [], []
    peers = opts.get("initial_peers")
    for i, p in enumerate(placement_rows(plan_doc)):
        start, m = int(p["start_block"]), int(p["num_blocks"])
        mem = memory.get(p["server"])
        kv_gb = p.get("cache_memory_gb") if chains else None
        if kv_gb is None and mem is not None and sizes.block_size_gb is not None:
            kv_gb = mem - sizes.block_size_gb * m
        param_ratio = kv_ratio = None
        args = ["parallax", "serve", "--model-path", model_path, "--start-layer", str(start),
                "--end-layer", str(start + m)]
        if mem and sizes.block_size_gb is not None and kv_gb is not None:
            # ratios of the node's memory: what the plan gives blocks and KV; rounded up so nothing is short
            param_ratio = min(1.0, math.ceil(sizes.block_size_gb * m / mem * 1000) / 1000)
            kv_ratio = max(0.001, math.floor(kv_gb / mem * 1000) / 1000)
            args += ["--param-mem-ratio", f"{param_ratio:g}", "--kvcache-mem-ratio", f"{kv_ratio:g}"]
        if sizes.max_tokens:
            args += ["--max-sequence-length", str(sizes.max_tokens)]
        if sizes.dtype in TORCH_DTYPE:
            args += ["--dtype", TORCH_DTYPE[sizes.dtype]]
        if peers:
            args += ["--initial-peers", *([peers] if isinstance(peers, str) else peers)]
        commands.append(f"# on {p['server']}: layers {start}..{start + m - 1}\n{shell_line(args)}")
        servers.append({"server": p["server"], "start_layer": start, "end_layer": start + m,
                        "param_mem_ratio": param_ratio, "kvcache_mem_ratio": kv_ratio, "args": args})
    if sizes.dtype in ("nf4", "int8"):
        warnings.append(f"Parallax loads 16/32-bit weights; the plan assumed {sizes.dtype} blocks, so the layers "
                        "will not fit: re-plan with the 16-bit block size")
    notes = ["--end-layer is exclusive.", "--kvcache-mem-ratio is the share of the node's memory the plan "
             "reserves for KV cache (its free memory for plans without chains); the first and last nodes also "
             "hold the embedding and LM head, which the plan does not count."]
    return {"servers": servers, "commands": commands, "warnings": warnings, "notes": notes}
