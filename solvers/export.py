"""Turning a plan into something a runtime runs (docs/runtimes.md).

``export_plan(plan_doc, runtime, scenario)`` gives, for one plan, the commands
(and files) that start it on PETALS, vLLM, SGLang, llama.cpp RPC, Parallax or
exo, with the plan's cache sizing carried over, plus the warnings a user must
read before trusting them (a chain that cannot be one vLLM instance, capacity
lost to a runtime's rules, figures that had to be guessed).

The plan document alone fixes the layer split; the scenario (optional) adds
what the plan document does not carry: the longest sequence a job may reach
(``workload.max_tokens`` or the architecture's ``max_seq_len``), the weight
dtype and the calibrated speed.  Without it, the flags that need those are
left out and a warning says so.

Runtimes differ in one way that matters for plans: PETALS lets a server serve
every chain that passes through it, so any plan runs as planned.  vLLM,
SGLang, llama.cpp RPC and exo build one engine per pipeline, and a GPU holds
one engine, so chains that share a server cannot all run: the export keeps a
server-disjoint subset of the chains (``closest_disjoint``) and says what it
costs.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from typing import Any, Iterable

from .bounds import response_time_bounds
from .chains import Chain
from .errors import FieldError, ScenarioError

RUNTIMES: tuple[str, ...] = ("petals", "vllm", "sglang", "llama.cpp", "parallax", "exo")

TORCH_DTYPE = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}
# weights stored quantised, computed in a 16-bit dtype
PETALS_QUANT = {"nf4": "nf4", "int8": "int8"}

VLLM_DEFAULT_GPU_MEMORY_UTILIZATION = 0.9
SGLANG_DEFAULT_MEM_FRACTION_STATIC = 0.9
PARALLAX_DEFAULT_PARAM_RATIO = 0.65


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


def _q(args: Iterable[str]) -> str:
    return " ".join(shlex.quote(a) for a in args)


def _placement(plan_doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in plan_doc.get("placement") or [] if int(p.get("num_blocks", 0)) > 0]


def chain_stages(chain: dict[str, Any]) -> list[Stage]:
    """The block range each hop of a chain runs, in order (hop i starts where hop i-1 stopped)."""
    stages, pos = [], 0
    for server, m in zip(chain["servers"], chain["blocks"]):
        stages.append(Stage(str(server), pos, int(m)))
        pos += int(m)
    return stages


def _sizes(plan_doc: dict[str, Any], scenario: Any | None) -> Sizes:
    rows = _placement(plan_doc)
    if scenario is not None:
        model = scenario.model
        arch = model.architecture
        max_tokens = scenario.workload.max_tokens or (arch.max_seq_len if arch else None)
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


def _memory(plan_doc: dict[str, Any], scenario: Any | None) -> dict[str, float]:
    if scenario is not None:
        return {s.id: s.memory_gb for s in scenario.servers}
    return {p["server"]: float(p["memory_gb"]) for p in plan_doc.get("placement") or [] if "memory_gb" in p}


def _shared_servers(chains: list[dict[str, Any]]) -> dict[str, list[int]]:
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
    sizes = _sizes(plan_doc, scenario)
    memory = _memory(plan_doc, scenario)

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


def _disjoint_warning(plan_doc: dict[str, Any], runtime: str, picked: dict[str, Any]) -> list[str]:
    shared = _shared_servers(list(plan_doc.get("chains") or []))
    if not shared:
        return []
    names = ", ".join(f"{s} (chains {', '.join(str(k) for k in ks)})" for s, ks in sorted(shared.items())[:5])
    more = f" and {len(shared) - 5} more" if len(shared) > 5 else ""
    p, d = picked["plan"], picked["disjoint"]

    def fig(x: Any) -> str:
        return "unstable" if x is None else f"{x:.3g} s"
    return [f"{runtime} runs one engine per pipeline and a GPU holds one engine, but chains share servers: "
            f"{names}{more}. The export keeps the closest server-disjoint plan: chains "
            f"{', '.join(str(c['plan_index']) for c in picked['chains'])} of {p['chains']} (dropped "
            f"{', '.join(str(k) for k in picked['dropped'])}); service rate {d['total_service_rate']:.3g}/s "
            f"instead of {p['total_service_rate']:.3g}/s, mean response upper bound "
            f"{fig(d.get('response_time_upper_s'))} instead of {fig(p.get('response_time_upper_s'))}. "
            f"PETALS runs the plan as planned."]


def _need_chains(plan_doc: dict[str, Any], runtime: str) -> None:
    if not plan_doc.get("feasible", True):
        raise ScenarioError(FieldError("plan", f"the plan is infeasible ({plan_doc.get('reason', 'no reason given')}); "
                                               "nothing to export"))
    if not plan_doc.get("chains"):
        raise ScenarioError(FieldError("plan", f"{runtime} needs the plan's chains (pipelines), and this plan "
                                               f"({plan_doc.get('algorithm')}) has none: its algorithm routes each "
                                               "request itself; export it to PETALS instead"))


# ---------------------------------------------------------------------------
# PETALS
# ---------------------------------------------------------------------------

def _petals_throughput(server: Any, num_blocks: int, scenario: Any) -> float | None:
    """PETALS' announced throughput (tokens/s) from the calibrated block time.

    PETALS measures one block's forward speed (tokens/s) and announces it
    divided by the mean number of its blocks a request uses, (m + 1) / 2.  The
    calibrated equivalent: a mean request's tokens over its time on one block.
    """
    w = scenario.workload
    tokens = (w.input_tokens or 0) + (w.output_tokens or 0)
    if tokens <= 0 or server.block_time_s <= 0:
        return None
    return round(tokens / server.block_time_s / ((num_blocks + 1) / 2), 3)


def petals_server_specs(plan_doc: dict[str, Any], scenario: Any | None, model_path: str, *,
                        initial_peers: list[str] | str | None = None, new_swarm: bool | None = None,
                        extra_args: list[str] | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """Per server holding blocks: ``{"server", "start_block", "end_block", "args", "attn_cache_tokens", ...}``.

    ``args`` is the argument list of ``python -m petals.cli.run_server``
    (model first).  Swarm flags: ``initial_peers`` for every server when
    given; otherwise, with ``new_swarm`` (default true), the first server
    starts a private swarm and the others join it through the placeholder
    ``$INITIAL_PEERS`` (the multiaddr the first server prints).
    """
    if not plan_doc.get("feasible", True):
        raise ScenarioError(FieldError("plan", "the plan is infeasible; nothing to export"))
    sizes = _sizes(plan_doc, scenario)
    warnings: list[str] = []
    peers = [initial_peers] if isinstance(initial_peers, str) else list(initial_peers or [])
    if new_swarm is None:
        new_swarm = not peers
    has_chains = bool(plan_doc.get("chains"))
    servers = {s.id: s for s in scenario.servers} if scenario is not None else {}
    if sizes.max_tokens is None:
        warnings.append("--attn_cache_tokens and --inference_max_length are left out: the longest sequence a job "
                        "may reach is unknown (give the scenario with workload.max_tokens or an architecture "
                        "with max_seq_len)")
    if scenario is None or scenario.model.architecture is None:
        warnings.append("--torch_dtype and --quant_type are left out: the scenario has no architecture (dtype "
                        "unknown); PETALS then quantises to nf4 on CUDA by default, which differs from the "
                        "block size the plan assumed unless that was nf4")
    specs = []
    for i, p in enumerate(_placement(plan_doc)):
        start, m = int(p["start_block"]), int(p["num_blocks"])
        args = [model_path, "--block_indices", f"{start}:{start + m}"]
        # the KV pool a PETALS server keeps is attn_cache_tokens tokens on each of its blocks; the plan reserves
        # cache_slots_used (block, job) slots of max_tokens tokens each (all its free slots for chain-less plans)
        slots = int(p.get("cache_slots_used", 0)) if has_chains else int(p.get("cache_slots", 0))
        cache_tokens = None
        pool = plan_doc.get("attn_cache_tokens")
        if not has_chains and isinstance(pool, int) and not isinstance(pool, bool) and pool > 0:
            # a plan that routes per request (the PETALS baseline) was planned and simulated with this fixed
            # pool per block: export exactly it, not every free slot
            cache_tokens = pool
            args += ["--attn_cache_tokens", str(cache_tokens)]
            if sizes.max_tokens is not None:
                args += ["--inference_max_length", str(sizes.max_tokens)]
        elif sizes.max_tokens is not None:
            cache_tokens = max(sizes.max_tokens, math.ceil(slots * sizes.max_tokens / m))
            args += ["--attn_cache_tokens", str(cache_tokens), "--inference_max_length", str(sizes.max_tokens)]
        if scenario is not None and scenario.model.architecture is not None:
            arch = scenario.model.architecture
            if arch.dtype in PETALS_QUANT:
                args += ["--torch_dtype", TORCH_DTYPE.get(arch.kv_dtype, "float16"), "--quant_type",
                         PETALS_QUANT[arch.dtype]]
            else:
                args += ["--torch_dtype", TORCH_DTYPE[arch.dtype], "--quant_type", "none"]
        throughput = None
        if p["server"] in servers:
            throughput = _petals_throughput(servers[p["server"]], m, scenario)
        if throughput is not None:
            args += ["--throughput", f"{throughput:g}"]
        if peers:
            args += ["--initial_peers", *peers]
        elif new_swarm:
            args += ["--new_swarm"] if i == 0 else ["--initial_peers", "$INITIAL_PEERS"]
        args += list(extra_args or [])
        specs.append({"server": p["server"], "start_block": start, "end_block": start + m, "num_blocks": m,
                      "cache_slots": slots, "attn_cache_tokens": cache_tokens, "throughput": throughput,
                      "args": args})
    if scenario is not None and not any(s["throughput"] for s in specs):
        warnings.append("--throughput is left out: the workload has no token lengths, so the calibrated block "
                        "time cannot be turned into tokens/s; PETALS will measure its own")
    return specs, warnings


def petals_server_args(plan_doc: dict[str, Any], scenario: Any | None, model_path: str, **kwargs: Any) -> list[list[str]]:
    """The ``run_server`` argument list (model first) of each server holding blocks, in placement order."""
    return [s["args"] for s in petals_server_specs(plan_doc, scenario, model_path, **kwargs)[0]]


def petals_commands(plan_doc: dict[str, Any], model_name: str, initial_peers: str | None = None,
                    scenario: Any | None = None) -> list[str]:
    """One ``# on <server>`` + ``run_server`` command per server holding blocks (end index exclusive)."""
    specs, _ = petals_server_specs(plan_doc, scenario, model_name, initial_peers=initial_peers, new_swarm=False)
    return [f"# on {s['server']}\n" + _q(["python", "-m", "petals.cli.run_server", *s["args"]]) for s in specs]


def _export_petals(plan_doc, scenario, model_path, opts) -> dict[str, Any]:
    specs, warnings = petals_server_specs(plan_doc, scenario, model_path, initial_peers=opts.get("initial_peers"),
                                          new_swarm=opts.get("new_swarm"))
    commands = [f"# on {s['server']}: blocks {s['start_block']}..{s['end_block'] - 1}\n"
                + _q(["python", "-m", "petals.cli.run_server", *s["args"]]).replace("'$INITIAL_PEERS'",
                                                                                    '"$INITIAL_PEERS"')
                for s in specs]
    notes = ["--block_indices pins each server's range, so PETALS does not move blocks by itself.",
             "Route requests along the plan's chains with the dispatcher (docs/dispatcher.md): a client asks "
             "it for a lease and sends the request through the lease's servers; without it PETALS routes each "
             "request by its own shortest-path rule."]
    if not opts.get("initial_peers"):
        notes.append("Start the first server, copy the multiaddr it prints, export INITIAL_PEERS=<that> on the "
                     "others, then start them.")
    return {"servers": specs, "commands": commands, "warnings": warnings, "notes": notes}


# ---------------------------------------------------------------------------
# vLLM and SGLang (one engine per chain)
# ---------------------------------------------------------------------------

def _dtype_flags(sizes: Sizes, runtime: str, warnings: list[str]) -> list[str]:
    if sizes.dtype is None:
        return []
    if sizes.dtype in TORCH_DTYPE:
        return ["--dtype", TORCH_DTYPE[sizes.dtype]]
    warnings.append(f"the plan assumes {sizes.dtype} weights; {runtime} loads them so only with a pre-quantised "
                    "checkpoint (or bitsandbytes quantisation where your version supports it with pipeline "
                    "parallelism): check the block size it reports against the plan's")
    return ["--quantization", "bitsandbytes"] if sizes.dtype == "nf4" else []


def _pipeline_engines(plan_doc, scenario, runtime: str) -> tuple[dict[str, Any], list[dict[str, Any]], Sizes,
                                                                dict[str, float], list[str]]:
    _need_chains(plan_doc, runtime)
    picked = closest_disjoint(plan_doc, scenario)
    warnings = _disjoint_warning(plan_doc, runtime, picked)
    return picked, picked["chains"], _sizes(plan_doc, scenario), _memory(plan_doc, scenario), warnings


def _engine_row(k: int, ch: dict[str, Any], stages: list[Stage], effective: int | None) -> dict[str, Any]:
    return {"chain": ch["plan_index"], "servers": [s.server for s in stages],
            "layer_partition": [s.count for s in stages],
            "layers": [[s.start, s.start + s.count] for s in stages],
            "plan_capacity": ch["plan_capacity"], "capacity_alone": ch["capacity"],
            "effective_capacity": effective}


def _export_vllm(plan_doc, scenario, model_path, opts) -> dict[str, Any]:
    picked, chains, sizes, memory, warnings = _pipeline_engines(plan_doc, scenario, "vLLM")
    util = float(opts.get("gpu_memory_utilization") or VLLM_DEFAULT_GPU_MEMORY_UTILIZATION)
    dtype = _dtype_flags(sizes, "vLLM", warnings)
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
        lines = [f"# chain {ch['plan_index']}: {' -> '.join(s.server for s in stages)}"]
        if len(stages) > 1:
            lines.append(f"# Ray cluster: on {head}: ray start --head --port=6379; on "
                         f"{', '.join(s.server for s in stages[1:])}: ray start --address={head}:6379")
        lines.append(f"# on {head}:")
        lines.append(f"{env} {_q(args)}")
        commands.append("\n".join(lines))
        engines.append(dict(_engine_row(k, ch, stages, eff), env={"VLLM_PP_LAYER_PARTITION":
                                                                  ",".join(str(s.count) for s in stages)},
                            args=args, max_num_seqs=max(1, seqs)))
    notes = ["VLLM_PP_LAYER_PARTITION lists the layers of each pipeline rank in rank order; vLLM gives rank 0 "
             "to the node where `vllm serve` starts and orders the other Ray nodes itself (by address), so check "
             "the rank-to-host lines it logs at start-up against the chain order above.",
             "--max-num-seqs keeps each engine at the plan's capacity (the concurrency the dispatcher and the "
             "bounds assume)."]
    return {"engines": engines, "commands": commands, "warnings": warnings, "notes": notes,
            "disjoint": {"plan": picked["plan"], "export": picked["disjoint"], "dropped_chains": picked["dropped"]}}


def _export_sglang(plan_doc, scenario, model_path, opts) -> dict[str, Any]:
    picked, chains, sizes, memory, warnings = _pipeline_engines(plan_doc, scenario, "SGLang")
    frac = float(opts.get("mem_fraction_static") or SGLANG_DEFAULT_MEM_FRACTION_STATIC)
    dtype = _dtype_flags(sizes, "SGLang", warnings)
    port = int(opts.get("dist_init_port") or 5000)
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
                args += ["--host", "0.0.0.0", "--port", "30000"]
            per_rank.append({"server": st.server, "node_rank": rank, "args": args})
            lines.append(f"# on {st.server} (rank {rank}, layers {st.start}..{st.start + st.count - 1}):")
            lines.append(f"SGLANG_PP_LAYER_PARTITION={partition} {_q(args)}")
        commands.append("\n".join(lines))
        engines.append(dict(_engine_row(0, ch, stages, eff), env={"SGLANG_PP_LAYER_PARTITION": partition},
                            ranks=per_rank, max_running_requests=max(1, running)))
    notes = ["--node-rank i runs on the i-th server of the chain, so the rank order is the plan's order.",
             "--max-running-requests keeps each engine at the plan's capacity."]
    return {"engines": engines, "commands": commands, "warnings": warnings, "notes": notes,
            "disjoint": {"plan": picked["plan"], "export": picked["disjoint"], "dropped_chains": picked["dropped"]}}


# ---------------------------------------------------------------------------
# llama.cpp RPC, Parallax, exo
# ---------------------------------------------------------------------------

def _export_llama_cpp(plan_doc, scenario, model_path, opts) -> dict[str, Any]:
    picked, chains, sizes, memory, warnings = _pipeline_engines(plan_doc, scenario, "llama.cpp")
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
        lines.append(_q(args))
        commands.append("\n".join(lines))
        engines.append(dict(_engine_row(0, ch, stages, None), args=args, tensor_split=shares, devices=devices,
                            parallel=slots))
    notes = ["-ts gives each device's share of the L + 1 offloaded layers (the last one also takes the output "
             "layer), in --device order: the RPC servers in chain order, then the local GPU of the last server.",
             "-np is the plan's capacity and -c the context of all slots together (capacity x max tokens)."]
    if sizes.dtype in ("nf4", "int8"):
        notes.append(f"The plan assumes {sizes.dtype} weights: use a GGUF quantised to a similar size "
                     "(Q4_K_M ~ 4.8 bits, Q8_0 ~ 8.5 bits per weight) and re-plan with its block size.")
    return {"engines": engines, "commands": commands, "warnings": warnings, "notes": notes,
            "disjoint": {"plan": picked["plan"], "export": picked["disjoint"], "dropped_chains": picked["dropped"]}}


def _export_parallax(plan_doc, scenario, model_path, opts) -> dict[str, Any]:
    if not plan_doc.get("feasible", True):
        raise ScenarioError(FieldError("plan", "the plan is infeasible; nothing to export"))
    sizes = _sizes(plan_doc, scenario)
    memory = _memory(plan_doc, scenario)
    warnings: list[str] = []
    chains = plan_doc.get("chains") or []
    shared = _shared_servers(chains)
    if shared:
        warnings.append("Parallax serves each node's one layer range and routes requests over complete "
                        "pipelines itself; chains that share servers ("
                        f"{', '.join(sorted(shared)[:5])}) are its pipelines too, but it does not keep the "
                        "plan's per-chain capacities or its fastest-free dispatch")
    servers, commands = [], []
    peers = opts.get("initial_peers")
    for i, p in enumerate(_placement(plan_doc)):
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
        commands.append(f"# on {p['server']}: layers {start}..{start + m - 1}\n{_q(args)}")
        servers.append({"server": p["server"], "start_layer": start, "end_layer": start + m,
                        "param_mem_ratio": param_ratio, "kvcache_mem_ratio": kv_ratio, "args": args})
    if sizes.dtype in ("nf4", "int8"):
        warnings.append(f"Parallax loads 16/32-bit weights; the plan assumed {sizes.dtype} blocks, so the layers "
                        "will not fit: re-plan with the 16-bit block size")
    notes = ["--end-layer is exclusive.", "--kvcache-mem-ratio is the share of the node's memory the plan "
             "reserves for KV cache (its free memory for plans without chains); the first and last nodes also "
             "hold the embedding and LM head, which the plan does not count."]
    return {"servers": servers, "commands": commands, "warnings": warnings, "notes": notes}


def _export_exo(plan_doc, scenario, model_path, opts) -> dict[str, Any]:
    picked, chains, sizes, memory, warnings = _pipeline_engines(plan_doc, scenario, "exo")
    instances, commands = [], []
    for ch in chains:
        stages = chain_stages(ch)
        node_layers = [{"node_id": s.server, "device_rank": r, "world_size": len(stages), "start_layer": s.start,
                        "end_layer": s.start + s.count, "n_layers": sizes.num_blocks}
                       for r, s in enumerate(stages)]
        inst = {"model_id": model_path, "sharding": "Pipeline", "chain": ch["plan_index"],
                "node_layers": node_layers, "capacity": ch["capacity"]}
        instances.append(inst)
        commands.append(f"# chain {ch['plan_index']}: {' -> '.join(s.server for s in stages)}\n"
                        + "\n".join(f"#   {n['node_id']}: layers [{n['start_layer']}, {n['end_layer']}) "
                                    f"rank {n['device_rank']}/{n['world_size']}" for n in node_layers))
    warnings.append("exo chooses a ring's split by itself (in proportion to memory) when asked through "
                    "POST /place_instance; to run this split, create the instance with these pipeline shard "
                    "assignments (start_layer/end_layer per node) in POST /instance")
    notes = ["exo does not reserve KV cache per ring; 'capacity' is how many jobs the plan lets each ring hold."]
    return {"instances": instances, "commands": commands, "warnings": warnings, "notes": notes,
            "disjoint": {"plan": picked["plan"], "export": picked["disjoint"], "dropped_chains": picked["dropped"]}}


_EXPORTERS = {"petals": _export_petals, "vllm": _export_vllm, "sglang": _export_sglang,
              "llama.cpp": _export_llama_cpp, "parallax": _export_parallax, "exo": _export_exo}


def export_plan(plan_doc: dict[str, Any], runtime: str, scenario: Any | None = None, *,
                model_path: str | None = None, **opts: Any) -> dict[str, Any]:
    """``{"runtime", "model_path", "commands": [str], "warnings": [str], "notes": [str], ...}`` for one runtime.

    ``model_path`` is what the runtime loads (a Hugging Face repository id or a
    local path; a GGUF file for llama.cpp); it defaults to the model's name.
    Options: ``initial_peers`` (PETALS, Parallax), ``new_swarm`` (PETALS),
    ``gpu_memory_utilization`` (vLLM), ``mem_fraction_static`` (SGLang),
    ``rpc_port`` and ``local_device`` (llama.cpp).
    """
    if runtime not in _EXPORTERS:
        import difflib
        close = difflib.get_close_matches(runtime, RUNTIMES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ScenarioError(FieldError("runtime", f"unknown runtime {runtime!r}{hint} (known: {', '.join(RUNTIMES)})"))
    if not isinstance(plan_doc, dict) or "placement" not in plan_doc:
        raise ScenarioError(FieldError("plan", "not a plan document (no 'placement')"))
    sizes = _sizes(plan_doc, scenario)
    warnings: list[str] = []
    if model_path is None:
        model_path = sizes.model_name or "MODEL"
        warnings.append(f"model path not given: using {model_path!r}; pass the Hugging Face repository or local "
                        "path the runtime should load")
    out = _EXPORTERS[runtime](plan_doc, scenario, model_path, opts)
    out["warnings"] = warnings + out["warnings"]
    return {"runtime": runtime, "model_path": model_path, "algorithm": plan_doc.get("algorithm"),
            "max_tokens": sizes.max_tokens, **out}


def export_text(doc: dict[str, Any]) -> str:
    """The export as a shell script a user can read and paste."""
    lines = [f"# chainplan export for {doc['runtime']} (plan by {doc.get('algorithm')}, model {doc['model_path']})"]
    lines += [f"# WARNING: {w}" for w in doc.get("warnings", [])]
    lines += [f"# note: {n}" for n in doc.get("notes", [])]
    lines.append("")
    lines += [c + "\n" for c in doc["commands"]]
    return "\n".join(lines)
