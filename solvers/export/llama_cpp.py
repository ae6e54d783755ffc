"""llama.cpp RPC: one llama-server per chain on its last server, the other stages as rpc-server devices.

What the commands rely on (checked against a real build in tests/engines/test_llama_cpp_chain.py):
- ``--rpc`` registers one device per rpc-server, named ``RPC0``, ``RPC1``, ... in ``--rpc`` order, and
  ``--device`` pins the devices in chain order (the head's own GPU last).  The CPU cannot be named in
  ``--device``: with ``--local-device CPU`` the last stage also runs an rpc-server, on the head's host,
  and llama-server only holds the token embeddings and samples.
- ``-ts`` shares with ``-sm layer``: layer ``il`` goes to the first device whose cumulative share exceeds
  ``il / (L + 1)`` (the output layer is the ``L + 1``-th), so the last device gets one extra share.
- ``-np`` slots of ``-c / -np`` tokens each (the KV cache is split per slot when ``-np`` is given), every
  device holding the KV of its own layers for all of them: the weakest stage caps the jobs, as in vLLM.
"""

from __future__ import annotations

from typing import Any

from .geometry import chain_stages, stage_capacity
from .pipeline import disjoint_section, engine_row, pipeline_engines, shell_line

LLAMA_CPP_DEFAULT_API_PORT = 8080
LLAMA_CPP_DEFAULT_RPC_PORT = 50052
# the plan's KV dtype as llama.cpp's --cache-type-k/-v (it has no int8 cache: q8_0 is 8.5 bits a value)
CACHE_TYPE = {"fp32": "f32", "fp16": "f16", "bf16": "bf16", "int8": "q8_0"}


def export_llama_cpp(plan_doc, scenario, model_path, opts) -> dict[str, Any]:
    picked, chains, sizes, memory, warnings = pipeline_engines(plan_doc, scenario, "llama.cpp")
    rpc_port = int(opts.get("rpc_port") or LLAMA_CPP_DEFAULT_RPC_PORT)
    api_port = int(opts.get("api_port") or LLAMA_CPP_DEFAULT_API_PORT)
    local = str(opts.get("local_device") or "CUDA0")
    on_cpu = local.upper() == "CPU"
    engines, commands = [], []
    for ch in chains:
        stages = chain_stages(ch)
        head = stages[-1]            # the last stage runs llama-server: logits stay local
        remote = stages if on_cpu else stages[:-1]
        endpoints = [f"{s.server}:{rpc_port}" for s in remote]
        # llama.cpp puts layer il on the first device whose cumulative share exceeds il / (L + 1) (the output
        # layer is the (L+1)-th); giving the last device one extra share makes every boundary exact
        shares = [s.count for s in stages]
        shares[-1] += 1
        devices = [f"RPC{i}" for i in range(len(endpoints))] + ([] if on_cpu else [local])
        eff = stage_capacity(stages, sizes, memory)
        slots = max(1, int(ch["capacity"]) if eff is None else min(int(ch["capacity"]), eff))
        if eff == 0:
            warnings.append(f"chain {ch['plan_index']}: a stage cannot hold one full-length job's KV beside its "
                            "weights, so llama-server will fail to allocate its context: re-plan for this memory")
        elif eff is not None and eff < int(ch["capacity"]):
            warnings.append(f"chain {ch['plan_index']}: llama.cpp keeps the KV of all -np slots on every stage, "
                            f"so the weakest stage holds {eff} full-length jobs, not the {ch['capacity']} the plan "
                            f"gives the chain: -np {slots}")
        args = ["llama-server", "-m", model_path]
        if endpoints:
            args += ["--rpc", ",".join(endpoints), "--device", ",".join(devices)]
        args += ["-ngl", "999", "-sm", "layer", "-ts", ",".join(str(x) for x in shares), "-np", str(slots)]
        if sizes.max_tokens:
            args += ["-c", str(slots * sizes.max_tokens)]
        if sizes.kv_dtype in CACHE_TYPE:
            args += ["-ctk", CACHE_TYPE[sizes.kv_dtype], "-ctv", CACHE_TYPE[sizes.kv_dtype]]
        args += ["--host", "0.0.0.0", "--port", str(api_port)]
        rpc_servers = [{"server": s.server, "port": rpc_port,
                        "args": ["rpc-server", "--host", "0.0.0.0", "--port", str(rpc_port)]} for s in remote]
        lines = [f"# chain {ch['plan_index']}: {' -> '.join(s.server for s in stages)}"]
        for r in rpc_servers:
            lines.append(f"# on {r['server']}: {shell_line(r['args'])}")
        lines.append(f"# on {head.server}:")
        lines.append(shell_line(args))
        commands.append("\n".join(lines))
        engines.append(dict(engine_row(0, ch, stages, eff), args=args, tensor_split=shares, devices=devices,
                            rpc_servers=rpc_servers, parallel=slots, port=api_port))
    notes = ["-ts gives each device's share of the L + 1 offloaded layers (the last one also takes the output "
             "layer), in --device order: the rpc-servers in chain order (llama.cpp names them RPC0, RPC1, ... in "
             "--rpc order), then the local device of the last server.",
             "-np is the chain's capacity (at most what its weakest stage's memory holds: effective_capacity) and "
             "-c the context of all slots together (-np x max tokens); llama-server answers the OpenAI API on "
             f"--port {api_port}.",
             "Each rpc-server serves one device (a plan server is one GPU); one that sees several GPUs exposes "
             "them all and shifts the RPC device numbers: give it -d with its GPU."]
    if on_cpu:
        notes.append("--local-device CPU: llama.cpp cannot name the CPU in --device, so the last server runs an "
                     "rpc-server too and llama-server (on the same host) keeps only the token embeddings.")
    if sizes.dtype in ("nf4", "int8"):
        notes.append(f"The plan assumes {sizes.dtype} weights: use a GGUF quantised to a similar size "
                     "(Q4_K_M ~ 4.8 bits, Q8_0 ~ 8.5 bits per weight) and re-plan with its block size.")
    if sizes.kv_dtype == "int8":
        warnings.append("the plan assumes an int8 KV cache; llama.cpp's closest, q8_0 (-ctk/-ctv), takes 8.5 bits "
                        "a value (6 % more than planned) and needs flash attention for the V cache (-fa on)")
    return {"engines": engines, "commands": commands, "warnings": warnings, "notes": notes,
            "disjoint": disjoint_section(picked)}
