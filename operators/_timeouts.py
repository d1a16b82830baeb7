"""``first_chunk_timeout``, ``stall_timeout`` and ``deadline``: time limits that raise ``rxllm.Timeout``.

reactivex's ``timeout`` raises a bare ``Exception`` on a thread scheduler; these raise
:class:`rxllm.Timeout` (status 408, the model, and the partial response), run their timer on
the operator's scheduler, else the subscription's, else the running loop's
``AsyncIOScheduler``, and dispose the upstream (the HTTP request) before reporting.

The stall watchdog does not re-arm a timer per chunk: it records when data last arrived (one
clock read) and, when its timer fires early, re-arms it for the time left.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable, SerialDisposable, SingleAssignmentDisposable

from rxllm.builder import ResponseBuilder
from rxllm.errors import Timeout
from rxllm.types import ChatCompletionChunk, ModelResponse, carries_data

from ._scheduling import clock, resolve_scheduler

__all__ = ["carries_data", "deadline", "first_chunk_timeout", "stall_timeout"]

_Kind = Literal["first_chunk_timeout", "stall_timeout", "deadline"]
_Operator = Callable[[Observable[ChatCompletionChunk]], Observable[ChatCompletionChunk]]


class _Partial:
    """Folds chunks into part A's ResponseBuilder so a timeout can carry the partial response."""

    __slots__ = ("builder",)

    def __init__(self, enabled: bool) -> None:
        self.builder: Any = None
        if enabled:
            self.builder = ResponseBuilder()

    def add(self, chunk: ChatCompletionChunk) -> None:
        if self.builder is not None:
            try:
                self.builder.add(chunk)
            except Exception:
                self.builder = None  # a partial response is a courtesy; never fail the stream for it

    def build(self) -> ModelResponse | None:
        if self.builder is None:
            return None
        try:
            response: ModelResponse = self.builder.build(partial=True)
        except Exception:
            return None
        return response


def _watchdog(kind: _Kind, seconds: float, scheduler: abc.SchedulerBase | None, partial: bool) -> _Operator:
    if seconds <= 0:
        raise ValueError(f"{kind}: seconds must be positive, got {seconds!r}")

    def _watch(source: Observable[ChatCompletionChunk]) -> Observable[ChatCompletionChunk]:
        def subscribe(
            observer: abc.ObserverBase[ChatCompletionChunk], scheduler_: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            try:
                sched = resolve_scheduler(scheduler, scheduler_, kind)
            except RuntimeError as exc:
                observer.on_error(exc)
                return Disposable()
            now = clock(sched)
            upstream = SingleAssignmentDisposable()
            timer = SerialDisposable()
            acc = _Partial(partial and kind != "first_chunk_timeout")
            done = False
            started = kind != "stall_timeout"  # the stall watch starts with the first chunk
            last = now()
            count = 0
            model = ""

            def expire() -> None:
                nonlocal done
                done = True
                timer.dispose()
                upstream.dispose()
                if kind == "first_chunk_timeout":
                    message = f"no chunk arrived within {seconds:g} s of the request (first_chunk_timeout)"
                elif kind == "stall_timeout":
                    message = (
                        f"no content, reasoning or tool-call data for {seconds:g} s "
                        f"after {count} chunks (stall_timeout)"
                    )
                else:
                    message = f"the stream did not finish within {seconds:g} s; {count} chunks arrived (deadline)"
                observer.on_error(Timeout(message, model=model or None, partial_response=acc.build()))

            def fire(_: abc.SchedulerBase, __: Any = None) -> None:
                if done:
                    return
                if kind == "stall_timeout":
                    left = seconds - (now() - last)
                    if left > 1e-9:
                        timer.disposable = sched.schedule_relative(left, fire)
                        return
                expire()

            def on_next(chunk: ChatCompletionChunk) -> None:
                nonlocal started, last, count, model
                if done:
                    return
                count += 1
                if not model:
                    model = chunk.model
                acc.add(chunk)
                if kind == "first_chunk_timeout":
                    if count == 1:
                        timer.dispose()
                elif kind == "stall_timeout":
                    if not started:
                        started = True
                        last = now()
                        timer.disposable = sched.schedule_relative(seconds, fire)
                    elif carries_data(chunk):
                        last = now()
                observer.on_next(chunk)

            def on_error(error: Exception) -> None:
                nonlocal done
                if not done:
                    done = True
                    timer.dispose()
                    observer.on_error(error)

            def on_completed() -> None:
                nonlocal done
                if not done:
                    done = True
                    timer.dispose()
                    observer.on_completed()

            if started:
                timer.disposable = sched.schedule_relative(seconds, fire)
            upstream.disposable = source.subscribe(on_next, on_error, on_completed, scheduler=scheduler_)
            return CompositeDisposable(upstream, timer)

        return Observable(subscribe)

    return _watch


def first_chunk_timeout(seconds: float, scheduler: abc.SchedulerBase | None = None) -> _Operator:
    """Fail with :class:`rxllm.Timeout` when no chunk arrives within ``seconds`` of subscribing.

    ::

        source:  ------------a--b--|        (first_chunk_timeout(5), subscribed at 0)
        output:  -----#                     (Timeout at 5; the source is disposed)

        source:  --a-------------b--|
        output:  --a-------------b--|       (later gaps are stall_timeout's business)

    Args:
        seconds: The limit, in seconds (virtual seconds under a ``TestScheduler``).
        scheduler: Where the timer runs (default: the subscription's scheduler, else the
            running loop's ``AsyncIOScheduler``; never a thread).

    Returns:
        An operator ``Observable[ChatCompletionChunk] -> Observable[ChatCompletionChunk]``.

    Raises:
        ValueError: When ``seconds`` is not positive.
    """
    return _watchdog("first_chunk_timeout", seconds, scheduler, partial=False)


def stall_timeout(
    seconds: float, scheduler: abc.SchedulerBase | None = None, *, partial_response: bool = True
) -> _Operator:
    """Fail with :class:`rxllm.Timeout` when the stream stops producing data for ``seconds``.

    Only chunks that carry content, reasoning, refusal or tool-call data (see
    :func:`carries_data`) reset the watch; empty deltas, role-only, usage and keep-alive chunks
    do not, so a provider that keeps the connection alive without generating is caught. The
    watch starts at the first chunk (before it, use :func:`first_chunk_timeout`).

    ::

        source:  -a--b--k--k--k--k----c--|     (stall_timeout(4); k carries no data)
        output:  -a--b--k--k--k--#             (Timeout 4 s after b, with b's partial response)

    Args:
        seconds: The longest allowed gap between data-carrying chunks.
        scheduler: Where the timer runs (as for :func:`first_chunk_timeout`).
        partial_response: Fold chunks into a ``ResponseBuilder`` so the ``Timeout`` carries the
            response so far (``partial_response``); False saves that per-chunk work.

    Returns:
        An operator ``Observable[ChatCompletionChunk] -> Observable[ChatCompletionChunk]``.

    Raises:
        ValueError: When ``seconds`` is not positive.
    """
    return _watchdog("stall_timeout", seconds, scheduler, partial=partial_response)


def deadline(seconds: float, scheduler: abc.SchedulerBase | None = None, *, partial_response: bool = True) -> _Operator:
    """Fail with :class:`rxllm.Timeout` when the whole stream takes longer than ``seconds``.

    ::

        source:  --a--b--c--d--e--|     (deadline(10), subscribed at 0)
        output:  --a--b--c-#            (Timeout at 10, carrying a, b and c as the partial response)

    Args:
        seconds: The limit from subscription to completion.
        scheduler: Where the timer runs (as for :func:`first_chunk_timeout`).
        partial_response: As for :func:`stall_timeout`.

    Returns:
        An operator ``Observable[ChatCompletionChunk] -> Observable[ChatCompletionChunk]``.

    Raises:
        ValueError: When ``seconds`` is not positive.
    """
    return _watchdog("deadline", seconds, scheduler, partial=partial_response)
