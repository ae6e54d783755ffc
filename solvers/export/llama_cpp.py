"""llama.cpp RPC: one llama-server per chain on its last server, the earlier stages as rpc-server devices."""

from __future__ import annotations

from typing import Any

from .geometry import chain_stages
from .pipeline import disjoint_section, engine_row, pipeline_engines, shell_line


def export_llama_cpp(plan_doc, scenario, model_path, opts) -> dict[str, Any]:
    picked, chains, sizes, memory, warnings = pipeline_engines(plan_doc, scenario, "llama.cpp")
    rpc_port = int(opts.get("rpc_port") or 50052)
    local = str(opts.get("local_device") or "CUDA0")
    engines, commands = [], []
    for ch in chains:
        stages = chain_stages(ch)
        head = stages[-1]            # the last stage runs llama-server: logits stay local
        remotes = [f"{s.server}:{rpc_port}" for s in stages[:-1]]
        # llama.cpp puts layer il on the first device whose cumulative share exceeds il / (L + 1) (the output
        # layer is the (L+1)-th); giving the last device one extra share makes every boundary exact
        shares = [s.count for s in stages]
        shares[-1] += 1
        devices = [f"RPC[{r}]" for r in remotes] + [local]
        slots = max(1, int(ch["capacity"]))
        args = ["llama-server", "-m", model_path, "-ngl", "999", "-sm", "layer",
                "-ts", ",".join(str(x) for x in shares), "-np", str(slots)]
        if remotes:
            args[3:3] = ["--rpc", ",".join(remotes), "--device", ",".join(devices)]
        if sizes.max_tokens:
            args += ["-c", str(slots * sizes.max_tokens)]
        lines = [f"# chain {ch['plan_index']}: {' -> '.join(s.server for s in stages)}"]
        for s in stages[:-1]:
            lines.append(f"# on {s.server}: rpc-server --host 0.0.0.0 --port {rpc_port}")
        lines.append(f"# on {head.server}:")
        lines.append(shell_line(args))
        commands.append("\n".join(lines))
        engines.append(dict(engine_row(0, ch, stages, None), args=args, tensor_split=shares, devices=devices,
                            parallel=slots))
    notes = ["-ts gives each device's share of the L + 1 offloaded layers (the last one also takes the output "
             "layer), in --device order: the RPC servers in chain order, then the local GPU of the last server.",
             "-np is the plan's capacity and -c the context of all slots together (capacity x max tokens)."]
    if sizes.dtype in ("nf4", "int8"):
        notes.append(f"The plan assumes {sizes.dtype} weights: use a GGUF quantised to a similar size "
                     "(Q4_K_M ~ 4.8 bits, Q8_0 ~ 8.5 bits per weight) and re-plan with its block size.")
    return {"engines": engines, "commands": commands, "warnings": warnings, "notes": notes,
            "disjoint": disjoint_section(picked)}
