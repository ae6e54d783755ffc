"""OpenAPI post-processing: every operation documents the errors it can answer.

Error bodies have one shape (core/errors.py): ``{"detail": str, "errors": [{"field", "message"}]}``.
Which codes an operation documents follows from what it takes (a body, query
parameters, path parameters, credentials); the few operation-specific ones are listed here.
"""

from __future__ import annotations

ERROR_SCHEMA = {
    "type": "object",
    "description": "An error: a one-line summary and, for invalid input, each problem with its field path.",
    "properties": {
        "detail": {"type": "string"},
        "errors": {"type": "array", "items": {
            "type": "object",
            "properties": {"field": {"type": "string", "description": "e.g. servers[3].memory_gb; empty: the whole "
                                                                       "request"},
                           "message": {"type": "string"}},
            "required": ["field", "message"]}},
    },
    "required": ["detail", "errors"],
}
ERROR_REF = {"$ref": "#/components/schemas/Error"}

DESCRIPTIONS = {
    "400": "Invalid input: each problem names its field",
    "401": "No or invalid credentials",
    "403": "Not allowed (e.g. a session request without its CSRF token)",
    "404": "No such object (or not yours), or a page past the last",
    "409": "Conflicts with the object's current state",
    "413": "Request body larger than the limit",
    "414": "Request line too long (answered by the web server, not JSON)",
    "415": "Request body is not application/json",
    "429": "Too many attempts; retry after the time in Retry-After",
    "503": "The service cannot run jobs now (see the body)",
}

# operationId -> codes beyond those derived from the operation's shape
EXTRA = {
    "jobs_cancel_create": ["409"],
    "plans_adopt_create": ["400", "409"],     # 400: an infeasible plan, or one of an inline scenario
    "auth_token_create": ["429"],
    "auth_login_create": ["403", "429"],
    "plans_diff_retrieve": ["404"],
    "clusters_servers_heartbeat_create": ["503"],
    "clusters_servers_drain_create": ["503"],
    "clusters_servers_drain_destroy": ["409", "503"],
}
# operationId -> code -> description, where the general one above does not fit
DESCRIBED = {
    "clusters_servers_heartbeat_create": {"503": "The dispatcher's store is unavailable (Retry-After); retry shortly"},
    "clusters_servers_drain_create": {"503": "The dispatcher's store is unavailable (Retry-After); retry shortly"},
    "clusters_servers_drain_destroy": {"409": "The server is not draining",
                                       "503": "The dispatcher's store is unavailable (Retry-After); retry shortly"},
}


def document_errors(result, generator, request, public):
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    for path, item in result.get("paths", {}).items():
        for method, op in item.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            params = op.get("parameters") or []
            codes = set(EXTRA.get(op.get("operationId"), []))
            if "requestBody" in op:
                codes |= {"400", "413", "415"}
            if any(p.get("in") == "query" for p in params):
                codes.add("400")
            if "{" in path or any(p.get("name") == "page" for p in params):
                codes.add("404")
            if any(s for s in op.get("security") or [] if s):       # [{}] means no credentials needed
                codes |= {"401", "403"}
            codes.add("414")
            for code in sorted(codes):
                if code in op["responses"]:
                    continue
                response = {"description": DESCRIBED.get(op.get("operationId"), {}).get(code, DESCRIPTIONS[code])}
                if code != "414":
                    response["content"] = {"application/json": {"schema": ERROR_REF}}
                op["responses"][code] = response
    return result
