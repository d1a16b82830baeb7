"""OpenAI-style error bodies: ``{"error": {"message", "type", "param", "code"}}``.

OpenAI's SDKs pick the exception class from the HTTP status and show ``error.message``, so
every failure the proxy reports (before streaming, as a status and this body; after, as an
SSE event with this body) goes through :func:`error_body`. Messages are scrubbed of every
configured secret: an upstream that echoes a key back does not leak it to clients.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rxllm.errors import APIError, NotFoundError, RateLimitError

__all__ = ["ProxyError", "error_body", "error_status", "retry_after"]

_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    408: "timeout_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    504: "timeout_error",
}

_CODES: dict[int, str] = {
    401: "invalid_api_key",
    408: "timeout",
    413: "request_too_large",
    429: "rate_limit_exceeded",
    504: "timeout",
}


class ProxyError(APIError):
    """A request the proxy itself refuses, with OpenAI's ``param`` and ``code`` fields.

    Args:
        message: What is wrong with the request.
        status_code: The HTTP status.
        param: The request field at fault (``"messages"``), if one is.
        code: A machine-readable code (``"model_not_found"``).
        retry_after: Seconds for a ``Retry-After`` header (429/503).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code)
        self.param = param
        self.code = code
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message


def error_status(exc: BaseException) -> int:
    """The HTTP status to answer with for ``exc`` (500 for anything that is not an APIError)."""
    if isinstance(exc, APIError):
        status = exc.status_code
        if isinstance(status, int) and 400 <= status <= 599:
            return status
    return 500


def error_body(exc: BaseException, secrets: Iterable[str] = ()) -> dict[str, Any]:
    """The OpenAI-style error object for ``exc``, with ``secrets`` replaced by ``***``.

    Exceptions that are not :class:`~rxllm.errors.APIError` are bugs: their text is not sent,
    only their class name.
    """
    status = error_status(exc)
    param: str | None = None
    code: str | None = _CODES.get(status)
    if isinstance(exc, APIError):
        message = exc.message or type(exc).__name__
        if isinstance(exc, ProxyError):
            param = exc.param
            code = exc.code or code
        elif isinstance(exc, NotFoundError):
            code = "model_not_found"
        if exc.llm_provider and not isinstance(exc, ProxyError):
            message = f"{exc.llm_provider} error: {message}"
    else:
        message = f"internal error ({type(exc).__name__})"
    for secret in secrets:
        if secret and secret in message:
            message = message.replace(secret, "***")
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def retry_after(exc: BaseException) -> float | None:
    """The ``Retry-After`` hint an error carries, if any."""
    if isinstance(exc, ProxyError | RateLimitError):
        value = exc.retry_after
        return value if isinstance(value, int | float) and value >= 0 else None
    return None
