"""Validation shared by serializers and services.

Scenario rules live in ``solvers.parse_scenario`` (the contract's own parser);
this module only adds what the service needs on top: size limits checked
before any expensive work, strings PostgreSQL cannot store, and mapping of the
solver's field paths onto request fields.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from solvers import Scenario, ScenarioError, parse_scenario

from .errors import FieldErrors, join_path, scenario_error_to_validation


def nul_errors(value: Any, path: str, out: list[dict[str, str]], limit: int = 20) -> list[dict[str, str]]:
    """Strings with a NUL character anywhere in a JSON value (PostgreSQL rejects them)."""
    stack = [(value, path)]
    while stack and len(out) < limit:
        item, where = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                out.append({"field": where, "message": "must not contain NUL characters"})
        elif isinstance(item, dict):
            for key, sub in item.items():
                if isinstance(key, str) and "\x00" in key:
                    out.append({"field": where, "message": "keys must not contain NUL characters"})
                stack.append((sub, f"{where}.{key}" if where else str(key)))
        elif isinstance(item, list):
            stack.extend((sub, f"{where}[{i}]") for i, sub in enumerate(item))
    return out


def check_server_count(count: int, field: str) -> None:
    limit = settings.MAX_SERVERS_PER_CLUSTER
    if count > limit:
        raise FieldErrors([{"field": field, "message": f"at most {limit} servers are allowed, got {count}"}])


def parse_scenario_document(doc: Any, prefix: str = "scenario") -> Scenario:
    """Validate a whole scenario document from a request; raise FieldErrors naming ``prefix.path``."""
    if not isinstance(doc, dict):
        raise FieldErrors([{"field": prefix, "message": "must be a JSON object (a scenario document)"}])
    servers = doc.get("servers")
    if isinstance(servers, list):
        check_server_count(len(servers), join_path(prefix, "servers"))   # before per-server work
    errors = nul_errors(doc, prefix, [])
    if errors:
        raise FieldErrors(errors)
    try:
        return parse_scenario(doc)
    except ScenarioError as exc:
        raise scenario_error_to_validation(exc, prefix) from None


# A model and workload that any server fits, used to check servers on their own
# (a cluster is stored before it is planned with a particular model).
_PROBE_MODEL = {"name": "check", "num_blocks": 1, "block_size_gb": 1e-9, "cache_size_gb": 1.0,
                "flops_per_token_gflops": 1.0}
_PROBE_WORKLOAD = {"arrival_rate": 1.0, "input_tokens": 1, "output_tokens": 1}


def check_servers(servers: list[dict[str, Any]], field: str = "servers") -> None:
    """Check server documents (scenario shape, ``id`` key) by the contract's rules.

    Errors name ``servers[i].server_id`` etc., the REST field names.
    """
    doc = {"name": "check", "model": _PROBE_MODEL, "servers": servers, "workload": _PROBE_WORKLOAD}
    try:
        parse_scenario(doc)
    except ScenarioError as exc:
        errors = []
        for e in exc.errors:
            path = e.path
            if path.startswith("servers"):
                path = field + path[len("servers"):]
                if path.endswith("].id"):
                    path = path[:-len("id")] + "server_id"
            errors.append({"field": path, "message": e.message})
        raise FieldErrors(errors) from None


def derive_model(doc: dict[str, Any], max_tokens: int | None = None) -> dict[str, Any]:
    """Resolve a model document (explicit numbers and/or architecture) to its numbers.

    Errors name the model's own fields (``architecture.hidden_size``) and ``max_tokens``.
    """
    errors = nul_errors(doc, "", [])
    if errors:
        raise FieldErrors(errors)
    workload: dict[str, Any] = {"arrival_rate": 1.0}
    if max_tokens is not None:
        workload["max_tokens"] = max_tokens
    scenario_doc = {"name": "derive", "model": doc, "workload": workload,
                    "servers": [{"id": "check", "memory_gb": 1.0, "comm_time_s": 0.0, "block_time_s": 1.0}]}
    try:
        model = parse_scenario(scenario_doc).model
    except ScenarioError as exc:
        mapped = []
        for e in exc.errors:
            if e.path.startswith("model."):
                mapped.append({"field": e.path[len("model."):], "message": e.message})
            elif e.path.startswith("workload.max_tokens"):
                mapped.append({"field": "max_tokens", "message": e.message})
            else:
                mapped.append({"field": e.path, "message": e.message})
        raise FieldErrors(mapped) from None
    return {"num_blocks": model.num_blocks, "block_size_gb": model.block_size_gb,
            "cache_size_gb": model.cache_size_gb, "flops_per_token_gflops": model.flops_per_token_gflops,
            "cache_tokens": model.cache_tokens, "cache_tokens_source": model.cache_tokens_source}
