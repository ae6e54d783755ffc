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

One module per runtime (as networkx's ``readwrite/`` has one per format):
``petals``, ``vllm``, ``sglang``, ``llama_cpp``, ``parallax``, ``exo``; the plan
geometry they share (``closest_disjoint``, ``stage_capacity``) is in
``geometry``, the one-engine-per-pipeline helpers in ``pipeline``.  A new
runtime is a module with an ``export_<name>(plan_doc, scenario, model_path,
opts)`` function, added to ``EXPORTERS`` below.
"""


from __future__ import annotations

from typing import Any, Callable

from ..errors import FieldError, ScenarioError
from .exo import export_exo
from .geometry import Sizes, Stage, chain_stages, closest_disjoint, idle_servers, plan_sizes, stage_capacity
from .llama_cpp import export_llama_cpp
from .parallax import PARALLAX_DEFAULT_PARAM_RATIO, export_parallax
from .petals import (PETALS_QUANT, export_petals, petals_commands, petals_launch, petals_server_args, petals_server_specs,
                     run_server_flags)
from .pipeline import TORCH_DTYPE
from .sglang import SGLANG_DEFAULT_MEM_FRACTION_STATIC, export_sglang
from .vllm import VLLM_DEFAULT_GPU_MEMORY_UTILIZATION, export_vllm

__all__ = [
    "EXPORTERS", "PARALLAX_DEFAULT_PARAM_RATIO", "PETALS_QUANT", "RUNTIMES", "SGLANG_DEFAULT_MEM_FRACTION_STATIC",
    "TORCH_DTYPE", "VLLM_DEFAULT_GPU_MEMORY_UTILIZATION", "Sizes", "Stage", "chain_stages", "closest_disjoint",
    "export_plan", "export_text", "petals_commands", "petals_launch", "petals_server_args", "petals_server_specs",
    "run_server_flags", "stage_capacity",
]

Exporter = Callable[[dict[str, Any], Any, str, dict[str, Any]], dict[str, Any]]
EXPORTERS: dict[str, Exporter] = {"petals": export_petals, "vllm": export_vllm, "sglang": export_sglang,
                                  "llama.cpp": export_llama_cpp, "parallax": export_parallax, "exo": export_exo}
RUNTIMES: tuple[str, ...] = tuple(EXPORTERS)


def export_plan(plan_doc: dict[str, Any], runtime: str, scenario: Any | None = None, *,
                model_path: str | None = None, **opts: Any) -> dict[str, Any]:
    """``{"runtime", "model_path", "commands": [str], "warnings": [str], "notes": [str], ...}`` for one runtime.

    ``model_path`` is what the runtime loads (a Hugging Face repository id or a
    local path; a GGUF file for llama.cpp); it defaults to the model's name.
    Options: ``initial_peers`` (PETALS, Parallax), ``new_swarm`` (PETALS),
    ``gpu_memory_utilization`` (vLLM), ``mem_fraction_static`` (SGLang),
    ``rpc_port`` and ``local_device`` (llama.cpp), ``api_port`` (where vLLM, SGLang and llama.cpp answer the
    OpenAI API; the engines file follows it).
    """
    if runtime not in EXPORTERS:
        import difflib
        close = difflib.get_close_matches(runtime, RUNTIMES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ScenarioError(FieldError("runtime", f"unknown runtime {runtime!r}{hint} (known: {', '.join(RUNTIMES)})"))
    if not isinstance(plan_doc, dict) or "placement" not in plan_doc:
        raise ScenarioError(FieldError("plan", "not a plan document (no 'placement')"))
    sizes = plan_sizes(plan_doc, scenario)
    warnings: list[str] = []
    if model_path is None:
        model_path = sizes.model_name or "MODEL"
        warnings.append(f"model path not given: using {model_path!r}; pass the Hugging Face repository or local "
                        "path the runtime should load")
    out = EXPORTERS[runtime](plan_doc, scenario, model_path, opts)
    out["warnings"] = warnings + out["warnings"]
    idle = idle_servers(plan_doc)
    if idle:
        out["notes"] = [f"left out {', '.join(idle)}: {'they hold' if len(idle) > 1 else 'it holds'} blocks that no "
                        "chain of the plan passes through (idle_servers), so starting "
                        f"{'them' if len(idle) > 1 else 'it'} would load weights that never serve"] + out["notes"]
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
