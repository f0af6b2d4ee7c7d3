"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

from typing import Any

# HTTP status -> OpenAI error type (what the openai client maps to its exception classes)
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    503: "server_overloaded",
    500: "server_error",
}


class ApiError(Exception):
    """An error answered to the client: an HTTP status, a message and OpenAI's ``param``/``code``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        kind: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON body OpenAI's servers and clients use."""
        return error_body(self.status, self.message, param=self.param, code=self.code, kind=self.kind)


def error_body(
    status: int, message: str, *, param: str | None = None, code: str | None = None, kind: str | None = None
) -> dict[str, Any]:
    """``{"error": {...}}`` for an HTTP status (``kind``: the ``type``, when not the status's usual one)."""
    kind = kind or _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
