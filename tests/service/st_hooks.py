"""Schemathesis hooks for the fuzz test (loaded by ``st`` through SCHEMATHESIS_HOOKS).

One check, ``no_server_error``: Schemathesis's ``not_a_server_error`` with one exception, the
dispatcher's back-pressure answer. ``POST /clusters/{id}/dispatch/acquire/`` answers 503
``{"queued": false, "detail"}`` with ``Retry-After`` when no chain had a free slot within
``wait_s``: the contract's answer (docs/api-contract.md, docs/dispatcher.md; the dispatch
client raises NoFreeChain on it), reached once the fuzzer holds every slot of the adopted
plan. Any other 5xx fails, this operation's included: a store outage (503 without
``queued``), a 500, a 503 without Retry-After.
"""

from __future__ import annotations

import json

ACQUIRE = ("POST", "/api/v1/clusters/{id}/dispatch/acquire/")


def is_backpressure(method: str, path: str, status: int, headers: dict, body: bytes) -> bool:
    """Whether a response is acquire's documented 'no free slot' 503 (headers: lowercase names)."""
    if (method.upper(), path) != ACQUIRE or status != 503:
        return False
    if not headers.get("retry-after"):
        return False
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return False
    return (isinstance(data, dict) and data.get("queued") is False and isinstance(data.get("detail"), str)
            and set(data) == {"queued", "detail"})


try:
    import schemathesis
    from schemathesis.checks import not_a_server_error
except ImportError:         # imported by the tests without Schemathesis: the predicate alone
    schemathesis = None

if schemathesis is not None:
    @schemathesis.check
    def no_server_error(ctx, response, case):
        """No 5xx, but for acquire's documented back-pressure 503 (see the module's docstring)."""
        if is_backpressure(case.method, case.operation.path, response.status_code, response.headers,
                           response.content):
            return None
        return not_a_server_error(ctx, response, case)
