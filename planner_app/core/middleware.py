"""Request size limit and the last line of defence against tracebacks."""

from __future__ import annotations

import io
import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.handlers.wsgi import LimitedStream
from django.http import JsonResponse

log = logging.getLogger("planner_app")


def error_response(status: int, detail: str, errors: list[dict[str, str]] | None = None) -> JsonResponse:
    return JsonResponse({"detail": detail, "errors": errors or []}, status=status)


def too_large_response() -> JsonResponse:
    limit = settings.MAX_REQUEST_BYTES
    return error_response(413, f"request body is larger than the limit of {limit} bytes",
                          [{"field": "", "message": f"at most {limit} bytes"}])


class RequestSizeLimitMiddleware:
    """Refuse bodies above MAX_REQUEST_BYTES from the Content-Length header, before reading them.

    A chunked body (Transfer-Encoding: chunked, no Content-Length) is read here up to the
    limit (one byte more tells it is too large), so views see it instead of an empty body.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        length = request.META.get("CONTENT_LENGTH") or ""
        if not length and "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
            refused = _read_chunked(request)
            if refused is not None:
                return refused
            length = request.META["CONTENT_LENGTH"]
        try:
            too_big = int(length or "0") > settings.MAX_REQUEST_BYTES
        except ValueError:
            return error_response(400, "invalid Content-Length header")
        if too_big:
            return too_large_response()
        return self.get_response(request)


def _read_chunked(request) -> JsonResponse | None:
    """Read a chunked body into memory (within the limit) and give it to Django as a sized one."""
    stream = request.META.get("wsgi.input")
    if stream is None:      # ASGI: Django has spooled the body already; its stream is bounded by length 0
        inner = getattr(request, "_stream", None)
        stream = getattr(inner, "stream", None)
    if stream is None:
        return error_response(411, "a chunked request body cannot be read here: send Content-Length")
    limit = settings.MAX_REQUEST_BYTES
    parts, size = [], 0
    while size <= limit:
        chunk = stream.read(min(65536, limit + 1 - size))
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    if size > limit:
        return too_large_response()
    body = b"".join(parts)
    request._stream = LimitedStream(io.BytesIO(body), len(body))
    request.META["CONTENT_LENGTH"] = str(len(body))
    return None


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
