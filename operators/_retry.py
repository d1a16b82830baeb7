"""``retry_stream`` and ``fallback``: try again, or elsewhere, without ever delivering a chunk twice.

Before the first chunk of an attempt reaches the consumer, a retry or fallback is invisible:
the consumer just sees chunks arrive later. Once chunks were delivered, re-running the request
would deliver a different (or duplicate) beginning, so the error propagates, unless the
caller opted into ``restart=True``. Then the consumer is told in-band: a :class:`StreamRestart`
item arrives first, meaning "discard what this stream gave you so far; it starts over".
(An in-band marker rather than a callback, so the announcement is ordered with the chunks
and reaches every edge: iterators, ``subscribe``, SSE.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar, overload

import attrs
from reactivex import Observable, abc
from reactivex.disposable import SerialDisposable, SingleAssignmentDisposable

from rxllm.errors import (
    APIError,
    RateLimitError,
    parse_retry_after,
)
from rxllm.retry_policy import DEFAULT_MAX_RETRY_AFTER, DEFAULT_RETRY_ON, Backoff, exponential_backoff

from ._scheduling import clock, resolve_scheduler

__all__ = ["StreamRestart", "fallback", "retry_stream"]

T = TypeVar("T")


@attrs.frozen
class StreamRestart:
    """In-band announcement from ``retry_stream``/``fallback`` with ``restart=True``.

    Everything the stream delivered before this item belongs to an attempt that failed:
    discard it (clear the text on screen, reset any accumulator). The chunks after it are a
    complete new response.

    Attributes:
        attempt: The number of the attempt that starts now (2 for the first retry).
        error: Why the previous attempt failed.
        discarded_chunks: How many items of the failed attempt had been delivered.
    """

    attempt: int
    error: BaseException
    discarded_chunks: int


_Plan = Callable[[int, Exception], "tuple[Observable[Any], float] | None"]


def _resilient(
    source: Observable[Any],
    plan: _Plan,
    restart: bool,
    scheduler: abc.SchedulerBase | None,
    who: str,
    budget: float | None = None,
) -> Observable[Any]:
    """Run ``source``; on an error, ask ``plan`` for the next source and delay, or give up.

    ``budget``: seconds from subscription after which no new attempt starts (a delay that
    would end past it is not waited: the error propagates).
    """

    def subscribe(observer: abc.ObserverBase[Any], scheduler_: abc.SchedulerBase | None = None) -> abc.DisposableBase:
        current = SerialDisposable()
        attempt = 0
        delivered = 0
        now = clock(scheduler or scheduler_) if budget is not None else None
        started = now() if now is not None else 0.0

        def run(obs: Observable[Any], number: int) -> None:
            nonlocal attempt, delivered
            attempt = number
            delivered = 0
            sub = SingleAssignmentDisposable()
            current.disposable = sub

            def on_next(item: Any) -> None:
                nonlocal delivered
                if attempt == number:
                    delivered += 1
                    observer.on_next(item)

            def on_error(error: Exception) -> None:
                if attempt == number:
                    failed(error, number)

            def on_completed() -> None:
                if attempt == number:
                    observer.on_completed()

            sub.disposable = obs.subscribe(on_next, on_error, on_completed, scheduler=scheduler_)

        def failed(error: Exception, number: int) -> None:
            try:
                step = plan(number, error) if (delivered == 0 or restart) else None
            except Exception as exc:  # a user backoff function that raises
                observer.on_error(exc)
                return
            if step is None:
                observer.on_error(error)
                return
            nxt, delay = step
            if budget is not None and now is not None and now() - started + delay > budget:
                observer.on_error(error)  # the next attempt would start past the deadline
                return
            if delivered:
                observer.on_next(StreamRestart(attempt=number + 1, error=error, discarded_chunks=delivered))
            if delay > 0:
                try:
                    sched = resolve_scheduler(scheduler, scheduler_, who)
                except RuntimeError as exc:
                    observer.on_error(exc)
                    return

                def again(_: abc.SchedulerBase, __: Any = None) -> None:
                    run(nxt, number + 1)

                current.disposable = sched.schedule_relative(delay, again)
            else:
                run(nxt, number + 1)

        run(source, 1)
        return current

    return Observable(subscribe)


@overload
def retry_stream(
    attempts: int,
    retry_on: tuple[type[BaseException], ...] = ...,
    backoff: Backoff = ...,
    scheduler: abc.SchedulerBase | None = ...,
    restart: Literal[False] = ...,
    *,
    max_retry_after: float = ...,
    deadline: float | None = ...,
) -> Callable[[Observable[T]], Observable[T]]: ...


@overload
def retry_stream(
    attempts: int,
    retry_on: tuple[type[BaseException], ...] = ...,
    backoff: Backoff = ...,
    scheduler: abc.SchedulerBase | None = ...,
    *,
    restart: Literal[True],
    max_retry_after: float = ...,
    deadline: float | None = ...,
) -> Callable[[Observable[T]], Observable[T | StreamRestart]]: ...


def retry_stream(
    attempts: int,
    retry_on: tuple[type[BaseException], ...] = DEFAULT_RETRY_ON,
    backoff: Backoff = exponential_backoff(),  # noqa: B008 - a pure function, shared safely
    scheduler: abc.SchedulerBase | None = None,
    restart: bool = False,
    *,
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
    deadline: float | None = None,
) -> Callable[[Observable[T]], Observable[Any]]:
    """Resubscribe (a new request) after a retryable error, never delivering a chunk twice.

    ::

        attempt 1:  --#                          (error before any chunk)
        attempt 2:        --a--b--|              (after the backoff delay)
        output:     ----------a--b--|            (the retry is invisible)

        attempt 1:  --a--#                       (error after a chunk was delivered)
        output:     --a--#                       (restart=False: the error propagates)
        output:     --a--R--a'--b'--|            (restart=True: R is a StreamRestart)

    Args:
        attempts: How many attempts in all, the first included (1 means no retry).
        retry_on: The error classes worth retrying (default: server errors, overload, rate
            limits, timeouts, connection failures; never a bad request or a bad key).
        backoff: Seconds to wait before retry ``n`` (1, 2, ...): a function or a constant
            (default: 0.5, 1, 2, 4, 8, 8, ... seconds). A ``RateLimitError`` with
            ``retry_after`` waits at least that long, up to ``max_retry_after``.
        scheduler: Where delays run (default: the subscription's scheduler, else the running
            loop's ``AsyncIOScheduler``; never a thread).
        restart: After chunks were delivered, retry anyway and announce it with a
            :class:`StreamRestart` item. Put aggregating operators (``to_response``) *upstream*
            of a restarting retry, or reset them on ``StreamRestart``; put ``tap_cost`` upstream
            too, for one report (one bill) per attempt.
        max_retry_after: The longest a server's ``Retry-After`` may make it wait (default
            :data:`rxllm.retry_policy.DEFAULT_MAX_RETRY_AFTER`, 60 s); non-finite, negative and absurd values
            (over a day) are ignored.
        deadline: Seconds from subscription after which no retry starts: a retry whose delay
            would end past it is not made, and the error propagates (``None``: no limit).

    Returns:
        An operator; the last error propagates when the attempts run out (or it is not
        retryable, or the next attempt would start past ``deadline``).

    Raises:
        ValueError: When ``attempts`` is less than 1, or ``max_retry_after``/``deadline`` is
            negative or not finite.
    """
    if attempts < 1:
        raise ValueError(f"retry_stream: attempts must be at least 1, got {attempts!r}")
    if not (0 <= max_retry_after < float("inf")):
        raise ValueError(f"retry_stream: max_retry_after must be a finite number >= 0, got {max_retry_after!r}")
    if deadline is not None and not (0 < deadline < float("inf")):
        raise ValueError(f"retry_stream: deadline must be a positive finite number, got {deadline!r}")

    def delay_for(retry: int, error: Exception) -> float:
        d = backoff(retry) if callable(backoff) else float(backoff)
        if not (0 <= d < float("inf")):
            d = 0.0  # a backoff function that returns nonsense does not get to hang the stream
        if isinstance(error, RateLimitError):
            hint = parse_retry_after(error.retry_after)
            if hint:
                d = max(d, min(hint, max_retry_after))
        return d

    def _retry_stream(source: Observable[T]) -> Observable[Any]:
        def plan(number: int, error: Exception) -> tuple[Observable[Any], float] | None:
            if number >= attempts or not isinstance(error, retry_on):
                return None
            return source, delay_for(number, error)

        return _resilient(source, plan, restart, scheduler, "retry_stream", deadline)

    return _retry_stream


@overload
def fallback(
    *alternatives: Observable[T],
    fallback_on: tuple[type[BaseException], ...] = ...,
    restart: Literal[False] = ...,
) -> Callable[[Observable[T]], Observable[T]]: ...


@overload
def fallback(
    *alternatives: Observable[T],
    fallback_on: tuple[type[BaseException], ...] = ...,
    restart: Literal[True],
) -> Callable[[Observable[T]], Observable[T | StreamRestart]]: ...


def fallback(
    *alternatives: Observable[T],
    fallback_on: tuple[type[BaseException], ...] = (APIError,),
    restart: bool = False,
) -> Callable[[Observable[T]], Observable[Any]]:
    """On an error, switch to the next alternative stream (another model or provider).

    ::

        source:       --#                    (fails before its first chunk)
        alternative:     --x--y--|
        output:       ----x--y--|            (transparent)

    The same rule as :func:`retry_stream`: after chunks were delivered, the error propagates
    unless ``restart=True``, which announces the switch with a :class:`StreamRestart` item.
    Alternatives are cold Observables, subscribed only when needed, in order.

    Args:
        *alternatives: The streams to try, in order, after the source fails.
        fallback_on: The error classes that trigger a switch (default: any ``rxllm`` API
            error; a bug in your code is not hidden behind another model's answer).
        restart: As for :func:`retry_stream`.

    Returns:
        An operator; the last alternative's error propagates when all have failed.
    """

    def _fallback(source: Observable[T]) -> Observable[Any]:
        def plan(number: int, error: Exception) -> tuple[Observable[Any], float] | None:
            if number > len(alternatives) or not isinstance(error, fallback_on):
                return None
            return alternatives[number - 1], 0.0

        return _resilient(source, plan, restart, None, "fallback")

    return _fallback
