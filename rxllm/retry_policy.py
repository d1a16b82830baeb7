"""Retry policy values: which errors are worth another attempt, and how long to wait.

Plain values and functions, shared by ``retry_stream`` (an operator) and ``completion()``'s
``num_retries`` (the API), so neither has to import the other.
"""

from __future__ import annotations

from collections.abc import Callable

from rxllm.errors import APIConnectionError, InternalServerError, RateLimitError, ServiceUnavailableError, Timeout

__all__ = ["DEFAULT_MAX_RETRY_AFTER", "DEFAULT_RETRY_ON", "Backoff", "exponential_backoff"]

#: The longest a server's ``Retry-After`` may make a retry wait, in seconds (a hint, capped).
DEFAULT_MAX_RETRY_AFTER = 60.0

#: The errors worth another attempt: the provider or the network failed, not the request.
DEFAULT_RETRY_ON: tuple[type[BaseException], ...] = (
    InternalServerError,
    ServiceUnavailableError,
    RateLimitError,
    Timeout,
    APIConnectionError,
)

#: A backoff: a function from the retry number (1, 2, ...) to seconds, or a fixed delay.
Backoff = Callable[[int], float] | float


def exponential_backoff(
    initial: float = 0.5, factor: float = 2.0, maximum: float = 8.0, jitter: float = 0.0
) -> Callable[[int], float]:
    """A backoff schedule: ``initial * factor ** (retry - 1)`` seconds, capped at ``maximum``.

    Args:
        initial: The delay before the first retry.
        factor: The growth per retry.
        maximum: The cap.
        jitter: A fraction (0..1) of the delay to randomize away, so many clients that failed
            together do not retry together (0: deterministic, the default).

    Returns:
        A function from the retry number (1, 2, ...) to a delay in seconds.
    """

    def delay(retry: int) -> float:
        d = min(maximum, initial * factor ** (retry - 1))
        if jitter:
            import random  # at the first jittered delay: the module costs a few ms at import

            d -= d * jitter * random.random()
        return d

    return delay
