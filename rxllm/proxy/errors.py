"""OpenAI-style error bodies: ``{"error": {"message", "type", "param", "code"}}``.

OpenAI's SDKs pick the exception class from the HTTP status and show ``error.message``, so
every failure the proxy reports (before streaming, as a status and this body; after, as an
SSE event with this body) goes through :func:`rxllm.errors.error_body`. Messages are scrubbed of every
configured secret: an upstream that echoes a key back does not leak it to clients.
"""

from __future__ import annotations

from collections.abc import Iterable

from rxllm.errors import APIError, RateLimitError, error_body, error_status
from rxllm.proxy.dialect import ErrorInfo

__all__ = ["ProxyError", "error_info", "error_status", "retry_after"]


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


def retry_after(exc: BaseException) -> float | None:
    """The ``Retry-After`` hint an error carries, if any."""
    if isinstance(exc, ProxyError | RateLimitError):
        value = exc.retry_after
        return value if isinstance(value, int | float) and value >= 0 else None
    return None


def error_info(exc: BaseException, secrets: Iterable[str] = ()) -> ErrorInfo:
    """Describe ``exc`` for a dialect's error shape, with every secret scrubbed from the message.

    Only rxllm's own errors, whose messages are built to be safe, are described; any other
    exception becomes a generic internal error naming only its class.
    """
    body = error_body(exc, secrets)["error"]
    return ErrorInfo(
        status=error_status(exc),
        type=body["type"],
        message=body["message"],
        param=body.get("param"),
        code=body.get("code"),
        retry_after=retry_after(exc),
        error_type=type(exc).__name__,
    )
