"""What the one-engine-per-pipeline exports (vLLM, SGLang, llama.cpp RPC, exo) share: the chains they keep,
the warning that says what dropping shared servers costs, and the dtype flags."""

from __future__ import annotations

import shlex
from typing import Any, Iterable

from ..errors import FieldError, ScenarioError
from .geometry import Sizes, Stage, closest_disjoint, plan_sizes, server_memory, shared_servers

TORCH_DTYPE = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}


def shell_line(args: Iterable[str]) -> str:
    """One command line, each argument quoted for a POSIX shell."""
    return " ".join(shlex.quote(a) for a in args)


def disjoint_warning(plan_doc: dict[str, Any], runtime: str, picked: dict[str, Any]) -> list[str]:
    shared = shared_servers(list(plan_doc.get("chains") or []))
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


def need_chains(plan_doc: dict[str, Any], runtime: str) -> None:
    if not plan_doc.get("feasible", True):
        raise ScenarioError(FieldError("plan", f"the plan is infeasible ({plan_doc.get('reason', 'no reason given')}); "
                                               "nothing to export"))
    if not plan_doc.get("chains"):
        raise ScenarioError(FieldError("plan", f"{runtime} needs the plan's chains (pipelines), and this plan "
                                               f"({plan_doc.get('algorithm')}) has none: its algorithm routes each "
                                               "request itself; export it to PETALS instead"))


def dtype_flags(sizes: Sizes, runtime: str, warnings: list[str]) -> list[str]:
    if sizes.dtype is None:
        return []
    if sizes.dtype in TORCH_DTYPE:
        return ["--dtype", TORCH_DTYPE[sizes.dtype]]
    warnings.append(f"the plan assumes {sizes.dtype} weights; {runtime} loads them so only with a pre-quantised "
                    "checkpoint (or bitsandbytes quantisation where your version supports it with pipeline "
                    "parallelism): check the block size it reports against the plan's")
    return ["--quantization", "bitsandbytes"] if sizes.dtype == "nf4" else []


def pipeline_engines(plan_doc, scenario, runtime: str) -> tuple[dict[str, Any], list[dict[str, Any]], Sizes,
                                                                dict[str, float], list[str]]:
    need_chains(plan_doc, runtime)
    picked = closest_disjoint(plan_doc, scenario)
    warnings = disjoint_warning(plan_doc, runtime, picked)
    return picked, picked["chains"], plan_sizes(plan_doc, scenario), server_memory(plan_doc, scenario), warnings


def engine_row(k: int, ch: dict[str, Any], stages: list[Stage], effective: int | None) -> dict[str, Any]:
    return {"chain": ch["plan_index"], "servers": [s.server for s in stages],
            "layer_partition": [s.count for s in stages],
            "layers": [[s.start, s.start + s.count] for s in stages],
            "plan_capacity": ch["plan_capacity"], "capacity_alone": ch["capacity"],
            "effective_capacity": effective}


def disjoint_section(picked: dict[str, Any]) -> dict[str, Any]:
    """The export's ``disjoint`` entry: the plan's figures, the kept plan's, and the dropped chains."""
    return {"plan": picked["plan"], "export": picked["disjoint"], "dropped_chains": picked["dropped"]}
