"""Request size limit and the last line of defence against tracebacks."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse

log = logging.getLogger("planner_app")


def error_response(status: int, detail: str, errors: list[dict[str, str]] | None = None) -> JsonResponse:
    return JsonResponse({"detail": detail, "errors": errors or []}, status=status)


def too_large_response() -> JsonResponse:
    limit = settings.MAX_REQUEST_BYTES
    return error_response(413, f"request body is larger than the limit of {limit} bytes",
                          [{"field": "", "message": f"at most {limit} bytes"}])


class RequestSizeLimitMiddleware:
    """Refuse bodies above MAX_REQUEST_BYTES from the Content-Length header, before reading them."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        length = request.META.get("CONTENT_LENGTH") or "0"
        try:
            too_big = int(length) > settings.MAX_REQUEST_BYTES
        except ValueError:
            return error_response(400, "invalid Content-Length header")
        if too_big:
            return too_large_response()
        return self.get_response(request)


class JsonErrorMiddleware:
    """Unexpected exceptions become a JSON answer without a traceback (and are logged)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, RequestDataTooBig):
            return too_large_response()
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal error; the administrator can find the details in the server log")
