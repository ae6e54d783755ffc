"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}`` with the usual statuses.

One exception (``OpenAIError``) carries everything the answer needs; the app turns it into the
response in one place, so a refusal is never a traceback and always names the parameter.
"""

from __future__ import annotations

from typing import Any

__all__ = ["OpenAIError", "bad_param", "error_body"]

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error",
          429: "rate_limit_error", 499: "invalid_request_error", 500: "server_error", 502: "server_error",
          503: "service_unavailable"}


class OpenAIError(Exception):
    """A refusal or failure answered as OpenAI does; ``retry_after_s`` adds a Retry-After header."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str | None = None, retry_after_s: float | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or _TYPES.get(status, "server_error")
        self.retry_after_s = retry_after_s

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)

    def headers(self) -> dict[str, str]:
        headers = {"www-authenticate": "Bearer"} if self.status == 401 else {}
        if self.retry_after_s is not None:
            headers["retry-after"] = str(max(1, round(self.retry_after_s)))
        return headers


def error_body(message: str, type: str, param: str | None, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def bad_param(param: str, message: str, code: str = "invalid_value") -> OpenAIError:
    """400 naming the parameter (its JSON path, as ``messages[2].content``)."""
    return OpenAIError(400, message, param=param, code=code)
