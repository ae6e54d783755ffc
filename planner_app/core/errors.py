"""Uniform error bodies: {"detail": "...", "errors": [{"field", "message"}]}.

Field paths use the scenario contract's notation: ``servers[3].memory_gb``.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from solvers import ScenarioError

from .middleware import too_large_response


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "conflict"
    default_code = "conflict"


def join_path(prefix: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    key = str(key)
    if key in ("non_field_errors", "detail", ""):
        return prefix
    if key.startswith("[") or not prefix:
        return prefix + key
    return f"{prefix}.{key}"


def flatten(detail: Any, prefix: str = "") -> list[dict[str, str]]:
    """DRF's nested error structure as a flat list of field paths and messages."""
    out: list[dict[str, str]] = []
    if isinstance(detail, dict):
        for key, value in detail.items():
            out.extend(flatten(value, join_path(prefix, key)))
    elif isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            out.extend({"field": prefix, "message": str(item)} for item in detail)
        else:
            for i, item in enumerate(detail):
                if item:
                    out.extend(flatten(item, f"{prefix}[{i}]"))
    else:
        out.append({"field": prefix, "message": str(detail)})
    return out


def summary(errors: list[dict[str, str]]) -> str:
    parts = [f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in errors[:3]]
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return "; ".join(parts) + more if parts else "invalid input"


class FieldErrors(exceptions.ValidationError):
    """A validation error from a flat list of {"field", "message"}.

    Stored as DRF's dict form keyed by path, so it nests correctly when raised
    inside a serializer (a field validator gives paths relative to its field).
    """

    def __init__(self, errors: list[dict[str, str]]):
        detail: dict[str, list[str]] = {}
        for e in errors:
            detail.setdefault(e["field"], []).append(e["message"])
        super().__init__(detail)


def scenario_error_to_validation(exc: ScenarioError, prefix: str = "") -> FieldErrors:
    """A solver ScenarioError as FieldErrors whose paths start with ``prefix``."""
    return FieldErrors([{"field": join_path(prefix, e.path) if e.path else prefix, "message": e.message}
                        for e in exc.errors])


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ScenarioError):
        exc = scenario_error_to_validation(exc)
    if isinstance(exc, RequestDataTooBig):
        return too_large_response()
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        errors = flatten(exc.detail)
        detail = summary(errors)
    else:
        detail = str(exc.detail) if not isinstance(exc.detail, (dict, list)) else summary(flatten(exc.detail))
        errors = []
    response.data = {"detail": detail, "errors": errors}
    return response


def csrf_failure(request, reason: str = ""):
    """Django's CSRF rejection in the API's error shape (its default page is HTML)."""
    from django.http import JsonResponse
    return JsonResponse({"detail": f"CSRF check failed: {reason or 'no CSRF token'}; GET /api/v1/auth/csrf/ first "
                                   "and send its token in X-CSRFToken", "errors": []}, status=403)
