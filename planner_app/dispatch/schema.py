"""OpenAPI description of the ASGI dispatcher's endpoints (a drf-spectacular postprocessing hook).

They are not Django views, so the schema generator cannot see them; this hook adds them, with
the request and answer shapes written out here, so /api/v1/schema/ describes exactly
what the dispatcher serves.
"""

from __future__ import annotations

from serving.dispatch.protocol import MAX_ERROR, MAX_SERVER_ID, SERVER_STATES
from solvers.dispatch_policy import LIVE_POLICIES

DISPATCH_SECURITY = {"type": "apiKey", "in": "header", "name": "Authorization",
                     "description": "`Dispatch <token>` from POST /api/v1/clusters/{id}/dispatch/tokens/"}


def _obj(properties: dict, required: list[str] | None = None, **extra) -> dict:
    required = list(properties) if required is None else required     # [] means none (OpenAPI 3.0: omitted)
    return {"type": "object", "properties": properties, **({"required": required} if required else {}), **extra}


NUM = {"type": "number", "format": "double"}
COMPONENTS = {
    "DispatchAcquireRequest": _obj({
        "wait_s": {**NUM, "minimum": 0, "maximum": 300, "default": 30,
                   "description": "How long to wait for a free chain (long poll); 0 answers at once."},
        "policy": {"type": "string", "enum": list(LIVE_POLICIES),
                   "description": "Dispatch policy for this request (default: the cluster's dispatch_policy)."},
    }, required=[], additionalProperties=False),
    "DispatchHop": _obj({"server": {"type": "string"}, "start_block": {"type": "integer", "minimum": 0},
                         "num_blocks": {"type": "integer", "minimum": 1}}),
    "DispatchLease": _obj({
        "lease": {"type": "string"},
        "chain": {"type": "integer", "minimum": 0, "description": "Index of the chain in the adopted plan's chains."},
        "servers": {"type": "array", "items": {"$ref": "#/components/schemas/DispatchHop"}},
        "ttl_s": NUM, "expires_at": {"type": "string", "format": "date-time"}, "waited_s": NUM}),
    "DispatchLeaseRequest": _obj({"lease": {"type": "string", "maxLength": 64, "pattern": "^[A-Za-z0-9_-]+$"}},
                                 additionalProperties=False),
    "DispatchFailedHop": _obj({
        "server": {"type": "string", "minLength": 1, "maxLength": MAX_SERVER_ID,
                   "description": "The server whose hop failed: one of the lease's servers (else 400)."},
        "error": {"type": "string", "maxLength": MAX_ERROR, "description": "What went wrong (kept in the "
                                                                          "server's event log)."},
    }, required=["server"], additionalProperties=False),
    "DispatchReleaseRequest": _obj({
        "lease": {"type": "string", "maxLength": 64, "pattern": "^[A-Za-z0-9_-]+$"},
        "failed": {"$ref": "#/components/schemas/DispatchFailedHop"},
    }, required=["lease"], additionalProperties=False),
    "DispatchReleased": _obj({
        "released": {"type": "boolean", "description": "false: the lease was already released or had expired."},
        "server_state": {"type": "string", "enum": list(SERVER_STATES),
                         "description": "With a failure report: the reported server's state after it (an up "
                                        "server turns suspect and its chains are masked at once)."},
    }, required=["released"]),
    "DispatchRenewed": _obj({"ttl_s": NUM, "expires_at": {"type": "string", "format": "date-time"}}),
    "DispatchNotQueued": _obj({"queued": {"type": "boolean"}, "detail": {"type": "string"}}),
    "DispatchChainState": _obj({"chain": {"type": "integer"}, "capacity": {"type": "integer"},
                                "in_progress": {"type": "integer"},
                                "masked": {"type": "boolean", "description": "A server of the chain is not up: "
                                                                             "no new grants on it."}}),
    "DispatchServerState": _obj({
        "server": {"type": "string"}, "state": {"type": "string", "enum": list(SERVER_STATES)},
        "since": {"type": "string", "format": "date-time", "nullable": True,
                  "description": "When it entered that state; null: never reported, so up all along."}}),
    "DispatchState": _obj({
        "plan": {"type": "integer", "nullable": True}, "policy": {"type": "string", "nullable": True},
        "chains": {"type": "array", "items": {"$ref": "#/components/schemas/DispatchChainState"}},
        "queue_length": {"type": "integer"}, "arrival_rate": {**NUM, "nullable": True},
        "servers": {"type": "array", "items": {"$ref": "#/components/schemas/DispatchServerState"},
                    "description": "The adopted plan's servers and every server ever reported, by id."},
        "observations": {"type": "object", "additionalProperties": True, "description": "docs/dispatcher.md"},
    }, required=["plan", "policy", "chains", "queue_length", "arrival_rate", "servers"]),
}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {
        "type": "object", "properties": {"detail": {"type": "string"}}, "required": ["detail"]}}}}


def add_dispatch_paths(result, generator, request, public):
    refs = {"acquire": _ref("DispatchAcquireRequest"), "lease": _ref("DispatchLease"),
            "lease_req": _ref("DispatchLeaseRequest"), "release_req": _ref("DispatchReleaseRequest"),
            "released": _ref("DispatchReleased"),
            "renewed": _ref("DispatchRenewed"), "not_queued": _ref("DispatchNotQueued"), "state": _ref("DispatchState")}
    result.setdefault("components", {}).setdefault("schemas", {}).update(COMPONENTS)
    result["components"].setdefault("securitySchemes", {})["DispatchAuth"] = DISPATCH_SECURITY
    security = [{"DispatchAuth": []}, {"tokenAuth": []}]
    cluster_param = [{"in": "path", "name": "id", "required": True, "schema": {"type": "integer"},
                      "description": "The cluster's id."}]
    common = {
        "401": _error("Missing or invalid credentials."),
        "403": _error("The dispatch token belongs to another cluster."),
        "404": _error("The cluster does not exist or is not yours (owner token)."),
        "503": {"description": "The dispatcher's store is unavailable (Retry-After header); retry shortly.",
                "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"detail": {"type": "string"}}, "required": ["detail"]}}}},
    }
    too_large = {"413": _error("Body too large.")}

    def json_body(ref):
        return {"required": True, "content": {"application/json": {"schema": ref}}}

    def ok(ref, description="OK"):
        return {"description": description, "content": {"application/json": {"schema": ref}}}

    base = "/api/v1/clusters/{id}/dispatch/"
    tags = ["dispatch"]
    paths = {
        base + "acquire/": {"post": {
            "operationId": "clusters_dispatch_acquire", "tags": tags, "security": security,
            "summary": "Ask for a chain before a request (join the fastest free chain, FIFO queue)",
            "parameters": cluster_param, "requestBody": {**json_body(refs["acquire"]), "required": False},
            "responses": {"200": ok(refs["lease"], "A lease on a chain."),
                          "400": _error("Bad input (names the problem)."),
                          **common,
                          "409": _error("The cluster has no adopted plan."),
                          "413": _error("Body too large."),
                          "503": {"description": "No slot freed within wait_s (Retry-After header), or the "
                                                 "dispatcher's store is unavailable.",
                                  "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                                  "content": {"application/json": {"schema": refs["not_queued"]}}}}}},
        base + "release/": {"post": {
            "operationId": "clusters_dispatch_release", "tags": tags, "security": security,
            "summary": "Hand a chain back when the request ends (idempotent); optionally report the hop that failed",
            "description": "With `failed`, the release reports a failed hop in the same atomic step: an `up` "
                           "server turns `suspect` (a second report from another lease: `down`) and its "
                           "chains get no new grants at once. docs/dispatcher.md, \"Liveness and masking\".",
            "parameters": cluster_param, "requestBody": json_body(refs["release_req"]),
            "responses": {"200": ok(refs["released"]),
                          "400": _error("Bad input, or a `failed.server` that is not on the lease's chain."),
                          **too_large, **common}}},
        base + "renew/": {"post": {
            "operationId": "clusters_dispatch_renew", "tags": tags, "security": security,
            "summary": "Extend a lease for a long request",
            "parameters": cluster_param, "requestBody": json_body(refs["lease_req"]),
            "responses": {"200": ok(refs["renewed"]), "400": _error("Bad input."),
                          "410": {"description": "The lease expired or was released; or it is over because its "
                                                 "chain passes through a server that is down (`server` names it).",
                                  "content": {"application/json": {"schema": {
                                      "type": "object", "required": ["detail"],
                                      "properties": {"detail": {"type": "string"},
                                                     "server": {"type": "string"}}}}}},
                          **too_large, **common}}},
        base + "state/": {"get": {
            "operationId": "clusters_dispatch_state", "tags": tags, "security": security,
            "summary": "Chains with capacity, jobs in progress and masks, servers' states, queue length, arrival rate",
            "parameters": cluster_param,
            "responses": {"200": ok(refs["state"]), **common}}},
        "/api/v1/dispatch/metrics": {"get": {
            "operationId": "dispatch_metrics", "tags": tags, "security": [{}, {"bearerAuth": []}],
            "summary": "Prometheus text format: arrival rate, waiting time, occupancy and service time per chain",
            "responses": {"200": {"description": "Prometheus exposition format",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}},
                          "401": _error("CHAINPLAN_METRICS_TOKEN is set and the bearer token is missing.")}}},
        "/api/v1/dispatch/health/": {"get": {
            "operationId": "dispatch_health", "tags": tags, "security": [{}],
            "summary": "Whether the dispatcher's store answers",
            "responses": {"200": ok({"type": "object", "properties": {"status": {"type": "string"}}}),
                          "503": ok({"type": "object", "properties": {"status": {"type": "string"},
                                                                      "store": {"type": "string"}}},
                                    "The store is unavailable.")}}},
    }
    result["components"]["securitySchemes"].setdefault("bearerAuth", {"type": "http", "scheme": "bearer"})
    result.setdefault("paths", {}).update(paths)
    return result
