"""OpenAI-style error bodies: ``{"error": {"message", "type", "param", "code"}}``.

OpenAI's SDKs pick the exception class from the HTTP status and show ``error.message``, so
every failure the proxy reports (before streaming, as a status and this body; after, as an
SSE event with this body) goes through :func:`rxllm.errors.error_body`. Messages are scrubbed of every
configured secret: an upstream that echoes a key back does not leak it to clients.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Final

from rxllm._secrets import scrub
from rxllm.errors import APIError, error_body, error_status
from rxllm.proxy.dialect import ErrorInfo

__all__ = ["MAX_RETRY_AFTER", "ProxyError", "error_info", "error_status", "retry_after", "retry_after_header"]


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


#: The longest ``Retry-After`` the proxy relays (seconds); longer upstream hints are capped.
MAX_RETRY_AFTER: Final = 60.0
#: Upstream hints beyond this many seconds are not hints but garbage: they are ignored.
_ABSURD_RETRY_AFTER: Final = 86400.0


def retry_after(exc: BaseException, cap: float = MAX_RETRY_AFTER) -> float | None:
    """The ``Retry-After`` hint an error carries, made sane: finite, 0 to ``cap`` seconds.

    Non-numbers, negative, non-finite (``inf``, ``nan``) and absurd values (more than a day)
    are ignored (``None``); anything longer than ``cap`` is capped.
    """
    if not isinstance(exc, APIError):
        return None
    value = getattr(exc, "retry_after", None)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    if not math.isfinite(value) or value < 0 or value > _ABSURD_RETRY_AFTER:
        return None
    return min(value, cap)


def retry_after_header(seconds: float) -> str:
    """``Retry-After``'s value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


def error_info(exc: BaseException, secrets: Iterable[str] = ()) -> ErrorInfo:
    """Describe ``exc`` for a dialect's error shape, with every secret scrubbed from the message.

    Only rxllm's own errors, whose messages are built to be safe, are described; any other
    exception becomes a generic internal error naming only its class. The message goes
    through :func:`rxllm._secrets.scrub` as well as having ``secrets`` removed.
    """
    body = error_body(exc, secrets)["error"]
    param, code = body.get("param"), body.get("code")
    return ErrorInfo(
        status=error_status(exc),
        type=body["type"],
        message=scrub(str(body["message"])),
        param=param if isinstance(param, str) else None,
        code=scrub(code) if isinstance(code, str) else None,
        retry_after=retry_after(exc),
        error_type=type(exc).__name__,
    )
