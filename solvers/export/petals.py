"""PETALS: one ``run_server`` per server holding blocks; a server serves every chain through it, so any plan
runs as planned.

Every PETALS command chainplan prints for a plan comes from here: the export (CLI and
``GET /plans/{id}/export/``), the plan page's and the re-planning view's launch commands (``petals_launch``,
``petals_commands``) and the testbed's swarm (``petals_server_specs``).
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import FieldError, ScenarioError
from .geometry import placement_rows, plan_sizes
from .pipeline import TORCH_DTYPE, shell_line

# weights stored quantised, computed in a 16-bit dtype
PETALS_QUANT = {"nf4": "nf4", "int8": "int8"}


def run_server_flags(start_block: int, end_block: int, *, attn_cache_tokens: int | None = None,
                     inference_max_length: int | None = None, torch_dtype: str | None = None,
                     quant_type: str | None = None, throughput: float | None = None) -> list[str]:
    """``python -m petals.cli.run_server`` flags for one server's blocks (end exclusive); None leaves a flag out."""
    args = ["--block_indices", f"{start_block}:{end_block}"]
    if attn_cache_tokens is not None:
        args += ["--attn_cache_tokens", str(attn_cache_tokens)]
    if inference_max_length is not None:
        args += ["--inference_max_length", str(inference_max_length)]
    if torch_dtype is not None:
        args += ["--torch_dtype", torch_dtype]
    if quant_type is not None:
        args += ["--quant_type", quant_type]
    if throughput is not None:
        args += ["--throughput", f"{throughput:g}"]
    return args


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


def _petals_dtype(scenario: Any | None) -> dict[str, str]:
    """``torch_dtype`` and ``quant_type`` of the plan's weights; none without an architecture (dtype unknown)."""
    if scenario is None or scenario.model.architecture is None:
        return {}
    arch = scenario.model.architecture
    if arch.dtype in PETALS_QUANT:
        return {"torch_dtype": TORCH_DTYPE.get(arch.kv_dtype, "float16"), "quant_type": PETALS_QUANT[arch.dtype]}
    return {"torch_dtype": TORCH_DTYPE[arch.dtype], "quant_type": "none"}


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
    sizes = plan_sizes(plan_doc, scenario)
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
    dtype = _petals_dtype(scenario)
    specs = []
    for i, p in enumerate(placement_rows(plan_doc)):
        start, m = int(p["start_block"]), int(p["num_blocks"])
        # the KV pool a PETALS server keeps is attn_cache_tokens tokens on each of its blocks; the plan reserves
        # cache_slots_used (block, job) slots of max_tokens tokens each (all its free slots for chain-less plans)
        slots = int(p.get("cache_slots_used", 0)) if has_chains else int(p.get("cache_slots", 0))
        cache_tokens = None
        pool = plan_doc.get("attn_cache_tokens")
        if not has_chains and isinstance(pool, int) and not isinstance(pool, bool) and pool > 0:
            # a plan that routes per request (the PETALS baseline) was planned and simulated with this fixed
            # pool per block: export exactly it, not every free slot
            cache_tokens = pool
        elif sizes.max_tokens is not None:
            cache_tokens = max(sizes.max_tokens, math.ceil(slots * sizes.max_tokens / m))
        throughput = None
        if p["server"] in servers:
            throughput = _petals_throughput(servers[p["server"]], m, scenario)
        args = [model_path, *run_server_flags(start, start + m, attn_cache_tokens=cache_tokens,
                                              inference_max_length=sizes.max_tokens,
                                              throughput=throughput, **dtype)]
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


def petals_launch(plan_doc: dict[str, Any], model_name: str, initial_peers: str | None = None,
                  scenario: Any | None = None) -> tuple[list[str], list[str]]:
    """(commands, warnings): one ``# on <server>`` + ``run_server`` command per server holding blocks.

    What the plan page and the re-planning view show.  With the scenario the commands carry the plan's cache
    size, dtype and throughput, as the export does; without it the warnings say which flags are left out.
    """
    specs, warnings = petals_server_specs(plan_doc, scenario, model_name, initial_peers=initial_peers,
                                          new_swarm=False)
    return [f"# on {s['server']}\n" + _command_line(s) for s in specs], warnings


def petals_commands(plan_doc: dict[str, Any], model_name: str, initial_peers: str | None = None,
                    scenario: Any | None = None) -> list[str]:
    """The commands of ``petals_launch`` (end index exclusive)."""
    return petals_launch(plan_doc, model_name, initial_peers, scenario)[0]


def _command_line(spec: dict[str, Any]) -> str:
    # $INITIAL_PEERS is a placeholder the user's shell expands: double quotes, not single
    return shell_line(["python", "-m", "petals.cli.run_server", *spec["args"]]).replace("'$INITIAL_PEERS'",
                                                                                       '"$INITIAL_PEERS"')


def export_petals(plan_doc, scenario, model_path, opts) -> dict[str, Any]:
    specs, warnings = petals_server_specs(plan_doc, scenario, model_path, initial_peers=opts.get("initial_peers"),
                                          new_swarm=opts.get("new_swarm"))
    commands = [f"# on {s['server']}: blocks {s['start_block']}..{s['end_block'] - 1}\n" + _command_line(s)
                for s in specs]
    notes = ["--block_indices pins each server's range, so PETALS does not move blocks by itself.",
             "Route requests along the plan's chains with the dispatcher (docs/dispatcher.md): a client asks "
             "it for a lease and sends the request through the lease's servers; without it PETALS routes each "
             "request by its own shortest-path rule."]
    if not opts.get("initial_peers"):
        notes.append("Start the first server, copy the multiaddr it prints, export INITIAL_PEERS=<that> on the "
                     "others, then start them.")
    return {"servers": specs, "commands": commands, "warnings": warnings, "notes": notes}
