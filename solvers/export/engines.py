"""The engines file the gateway reads (``serving.gateway.engines.openai``): each chain's OpenAI URL.

One-engine-per-pipeline runtimes (vLLM, SGLang, llama.cpp RPC, exo) serve each exported chain as
one OpenAI-compatible server.  The file keys each engine by its chain's servers in order, so
the gateway finds it from a dispatcher lease (whose hops name the servers), and an entry keeps
matching after a plan switch that keeps the chain.  ``capacity`` is the engine's own
concurrency limit: what the export gave it (``--max-num-seqs``, ``-np``), the chain's capacity.
"""

from __future__ import annotations

from typing import Any

from ..errors import FieldError, ScenarioError

__all__ = ["DEFAULT_API_PORTS", "ENGINES_FORMAT", "engines_file"]

ENGINES_FORMAT = "chainplan-engines/1"       # serving.gateway.engines.openai reads this format
# where each runtime's OpenAI server listens by default, and on which server of the chain it runs
DEFAULT_API_PORTS = {"vllm": 8000, "sglang": 30000, "llama.cpp": 8080, "exo": 52415}
_API_ON_LAST = {"llama.cpp"}                 # llama-server runs on the chain's last server (its local device)


def _capacity(row: dict[str, Any]) -> int:
    for key in ("max_num_seqs", "parallel", "effective_capacity", "capacity_alone", "plan_capacity", "capacity"):
        v = row.get(key)
        if isinstance(v, (int, float)) and v >= 1:
            return int(v)
    return 1


def engines_file(export: dict[str, Any], *, model: str | None = None, port: int | None = None) -> dict[str, Any]:
    """The engines file of one export (``export_plan``'s answer); ``port`` overrides the port the export gave
    (its ``api_port`` option, else the runtime's default)."""
    runtime = export.get("runtime", "")
    rows = export.get("engines") or export.get("instances") or []
    if runtime not in DEFAULT_API_PORTS or not rows:
        raise ScenarioError(FieldError("--engines-file", f"runtime {runtime!r} has no per-chain OpenAI engines to "
                                                         f"list (known: {', '.join(DEFAULT_API_PORTS)}); PETALS "
                                                         "chains run in the gateway itself"))
    engines = []
    for row in rows:
        servers = [s if isinstance(s, str) else s.get("server") for s in row.get("servers") or []]
        if not servers or not all(servers):
            continue
        host = servers[-1] if runtime in _API_ON_LAST else servers[0]
        # the port the export's command listens on (row "port"), unless the caller names another
        at = port or row.get("port") or DEFAULT_API_PORTS[runtime]
        engines.append({"chain": row.get("chain"), "servers": servers, "url": f"http://{host}:{at}/v1",
                        "capacity": _capacity(row)})
    return {"format": ENGINES_FORMAT, "runtime": runtime, "model": model or export.get("model_path"),
            "engines": engines}
