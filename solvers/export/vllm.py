"""vLLM: one engine per chain (pipeline parallel over Ray), the layer split in VLLM_PP_LAYER_PARTITION."""

from __future__ import annotations

from typing import Any

from .geometry import chain_stages, stage_capacity
from .pipeline import disjoint_section, dtype_flags, engine_row, pipeline_engines, shell_line

VLLM_DEFAULT_GPU_MEMORY_UTILIZATION = 0.9


def export_vllm(plan_doc, scenario, model_path, opts) -> dict[str, Any]:
    picked, chains, sizes, memory, warnings = pipeline_engines(plan_doc, scenario, "vLLM")
    util = float(opts.get("gpu_memory_utilization") or VLLM_DEFAULT_GPU_MEMORY_UTILIZATION)
    dtype = dtype_flags(sizes, "vLLM", warnings)
    engines, commands = [], []
    for k, ch in enumerate(chains):
        stages = chain_stages(ch)
        eff = stage_capacity(stages, sizes, memory, util)
        seqs = ch["capacity"] if eff is None else min(ch["capacity"], eff)
        if eff is not None and eff < ch["capacity"]:
            weakest = min(stages, key=lambda s: (memory[s.server] * util - sizes.block_size_gb * s.count)
                          / (sizes.cache_size_gb * s.count))
            warnings.append(f"chain {ch['plan_index']}: at --gpu-memory-utilization {util:g} vLLM holds {eff} jobs "
                            f"(every stage keeps as many KV blocks as the weakest, {weakest.server}), not the "
                            f"{ch['capacity']} the plan gives it")
        head = stages[0].server
        env = f"VLLM_PP_LAYER_PARTITION={','.join(str(s.count) for s in stages)}"
        args = ["vllm", "serve", model_path, "--pipeline-parallel-size", str(len(stages)),
                "--tensor-parallel-size", "1", "--max-num-seqs", str(max(1, seqs)),
                "--gpu-memory-utilization", f"{util:g}", *dtype]
        if len(stages) > 1:
            args += ["--distributed-executor-backend", "ray"]
        if sizes.max_tokens:
            args += ["--max-model-len", str(sizes.max_tokens)]
        if opts.get("api_port"):
            args += ["--port", str(int(opts["api_port"]))]
        lines = [f"# chain {ch['plan_index']}: {' -> '.join(s.server for s in stages)}"]
        if len(stages) > 1:
            lines.append(f"# Ray cluster: on {head}: ray start --head --port=6379; on "
                         f"{', '.join(s.server for s in stages[1:])}: ray start --address={head}:6379")
        lines.append(f"# on {head}:")
        lines.append(f"{env} {shell_line(args)}")
        commands.append("\n".join(lines))
        engines.append(dict(engine_row(k, ch, stages, eff), env={"VLLM_PP_LAYER_PARTITION":
                                                                  ",".join(str(s.count) for s in stages)},
                            args=args, max_num_seqs=max(1, seqs), port=int(opts.get("api_port") or 8000)))
    notes = ["VLLM_PP_LAYER_PARTITION lists the layers of each pipeline rank in rank order; vLLM gives rank 0 "
             "to the node where `vllm serve` starts and orders the other Ray nodes itself (by address), so check "
             "the rank-to-host lines it logs at start-up against the chain order above.",
             "--max-num-seqs keeps each engine at the plan's capacity (the concurrency the dispatcher and the "
             "bounds assume)."]
    return {"engines": engines, "commands": commands, "warnings": warnings, "notes": notes,
            "disjoint": disjoint_section(picked)}
