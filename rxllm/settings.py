"""rxllm's process-wide settings, in one place.

LiteLLM code sets module attributes (``rxllm.REPEATED_STREAMING_CHUNK_LIMIT = 5``,
``rxllm.success_callback = [f]``); those names on the ``rxllm`` package read and write the one
:data:`settings` object here, and every layer that needs a setting imports this module (the
lowest layer), never the package above it.

Environment variables are read once, at import; a bad value is a warning and the default, so
a typo in the environment never makes ``import rxllm`` fail.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "DEFAULT_REPEATED_STREAMING_CHUNK_LIMIT",
    "Settings",
    "check_repeated_chunk_limit",
    "settings",
]

#: LiteLLM's default for how many identical content chunks in a row end a stream.
DEFAULT_REPEATED_STREAMING_CHUNK_LIMIT = 100

_LIMIT_ENV = "REPEATED_STREAMING_CHUNK_LIMIT"


def check_repeated_chunk_limit(value: Any) -> int:
    """``value`` as a repeated-chunk limit (an integer of at least 1).

    Raises:
        ValueError: Naming the setting and the bad value.
    """
    if isinstance(value, bool):
        raise ValueError(f"REPEATED_STREAMING_CHUNK_LIMIT must be an integer, got {value!r}")
    try:
        limit = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"REPEATED_STREAMING_CHUNK_LIMIT must be an integer, got {value!r}") from None
    if isinstance(value, float) and value != limit:
        raise ValueError(f"REPEATED_STREAMING_CHUNK_LIMIT must be an integer, got {value!r}")
    if limit < 1:
        raise ValueError(f"REPEATED_STREAMING_CHUNK_LIMIT must be at least 1, got {limit}")
    return limit


def _limit_from_env(environ: Mapping[str, str]) -> int:
    raw = environ.get(_LIMIT_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_REPEATED_STREAMING_CHUNK_LIMIT
    try:
        return check_repeated_chunk_limit(raw.strip())
    except ValueError as exc:
        warnings.warn(
            f"ignoring the environment variable: {exc}; using {DEFAULT_REPEATED_STREAMING_CHUNK_LIMIT}",
            RuntimeWarning,
            stacklevel=2,
        )
        return DEFAULT_REPEATED_STREAMING_CHUNK_LIMIT


class Settings:
    """The mutable settings LiteLLM code expects at module level.

    Attributes:
        repeated_chunk_limit: ``REPEATED_STREAMING_CHUNK_LIMIT``, read by
            ``detect_repeated_chunks()`` at each subscription.
        success_callback: Callables ``(kwargs, response, start_time, end_time)`` fired once per
            successful (or cancelled) call.
        failure_callback: The same, for failed calls.
    """

    __slots__ = ("failure_callback", "repeated_chunk_limit", "success_callback")

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.repeated_chunk_limit: int = _limit_from_env(os.environ if environ is None else environ)
        self.success_callback: list[Callable[..., Any]] = []
        self.failure_callback: list[Callable[..., Any]] = []


#: The process's settings.
settings = Settings()
