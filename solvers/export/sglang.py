"""SGLang: one engine per chain, one launch_server per rank, the layer split in SGLANG_PP_LAYER_PARTITION."""

from __future__ import annotations

from typing import Any

from .geometry import chain_stages, stage_capacity
from .pipeline import disjoint_section, dtype_flags, engine_row, pipeline_engines, shell_line

SGLANG_DEFAULT_MEM_FRACTION_STATIC = 0.9


def export_sglang(plan_doc, scenario, model_path, opts) -> dict[str, Any]:
    picked, chains, sizes, memory, warnings = pipeline_engines(plan_doc, scenario, "SGLang")
    frac = float(opts.get("mem_fraction_static") or SGLANG_DEFAULT_MEM_FRACTION_STATIC)
    dtype = dtype_flags(sizes, "SGLang", warnings)
    port = int(opts.get("dist_init_port") or 5000)
    api_port = int(opts.get("api_port") or 30000)
    engines, commands = [], []
    for ch in chains:
        stages = chain_stages(ch)
        eff = stage_capacity(stages, sizes, memory, frac)
        running = ch["capacity"] if eff is None else min(ch["capacity"], eff)
        if eff is not None and eff < ch["capacity"]:
            warnings.append(f"chain {ch['plan_index']}: at --mem-fraction-static {frac:g} SGLang holds {eff} jobs "
                            f"(the smallest stage's KV pool), not the plan's {ch['capacity']}")
        partition = ",".join(str(s.count) for s in stages)
        lines = [f"# chain {ch['plan_index']}: {' -> '.join(s.server for s in stages)}"]
        per_rank = []
        for rank, st in enumerate(stages):
            args = ["python", "-m", "sglang.launch_server", "--model-path", model_path, "--pp-size", str(len(stages)),
                    "--tp-size", "1", "--max-running-requests", str(max(1, running)),
                    "--mem-fraction-static", f"{frac:g}", *dtype]
            if len(stages) > 1:
                args += ["--nnodes", str(len(stages)), "--node-rank", str(rank),
                         "--dist-init-addr", f"{stages[0].server}:{port}"]
            if sizes.max_tokens:
                args += ["--context-length", str(sizes.max_tokens)]
            if rank == 0:
                args += ["--host", "0.0.0.0", "--port", str(api_port)]
            per_rank.append({"server": st.server, "node_rank": rank, "args": args})
            lines.append(f"# on {st.server} (rank {rank}, layers {st.start}..{st.start + st.count - 1}):")
            lines.append(f"SGLANG_PP_LAYER_PARTITION={partition} {shell_line(args)}")
        commands.append("\n".join(lines))
        engines.append(dict(engine_row(0, ch, stages, eff), env={"SGLANG_PP_LAYER_PARTITION": partition},
                            ranks=per_rank, max_running_requests=max(1, running), port=api_port))
    notes = ["--node-rank i runs on the i-th server of the chain, so the rank order is the plan's order.",
             "--max-running-requests keeps each engine at the plan's capacity."]
    return {"engines": engines, "commands": commands, "warnings": warnings, "notes": notes,
            "disjoint": disjoint_section(picked)}
