"""What ``completion``/``acompletion`` add to a stream: the rebuilt response, partial responses
on errors, and LiteLLM-style ``success_callback``/``failure_callback``, fired once per stream.

Callbacks are any callable, sync or async, with LiteLLM's signature
``(kwargs, completion_response, start_time, end_time)``:

- on completion: ``success_callback`` with ``kwargs["outcome"] == "completed"``;
- on error: ``failure_callback`` with ``kwargs["exception"]``;
- on cancellation (the consumer stopped early): ``success_callback`` with
  ``kwargs["outcome"] == "cancelled"`` and the partial response and its cost, because a
  cancelled stream was still generated and billed.

A callback that raises is logged and never breaks the stream. Async callbacks are scheduled
on the running loop (or rxllm's loop) and not awaited.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable
from typing import Any

import attrs
from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, Disposable

from rxllm._log import get_logger
from rxllm.errors import APIError, InternalServerError
from rxllm.settings import check_repeated_chunk_limit, settings
from rxllm.streams import PullableObservable
from rxllm.types import ChatCompletionChunk, ModelResponse

__all__ = ["CallInfo", "instrument"]

_log = get_logger("rxllm")
_PENDING: set[asyncio.Task[Any]] = set()  # asyncio keeps only weak references


@attrs.define
class CallInfo:
    """One completion call, as callbacks see it; ``response`` is set when the stream ends."""

    model: str
    messages: list[Any]
    params: dict[str, Any]
    stream: bool
    is_async: bool
    llm_provider: str | None = None
    response: ModelResponse | None = None


class _Run:
    """One subscription's instrumentation, as a :class:`~rxllm.streams.PullStep`.

    The Observable path (``instrument``'s subscribe) and an exclusive consumer pulling the
    source (:func:`rxllm.adapters.to_async_iterator`) drive this same object, so the rebuilt
    response, the partial response on errors and the callbacks are one code path.

    Raises:
        ValueError: At construction, for a bad ``rxllm.REPEATED_STREAMING_CHUNK_LIMIT`` (the
            stream then fails before any request).
    """

    __slots__ = ("add", "builder", "check", "ended", "info", "start")

    def __init__(self, info: CallInfo, detect_repeats: bool) -> None:
        from rxllm.builder import ResponseBuilder
        from rxllm.operators._detect_repeated_chunks import RepeatTracker

        self.info = info
        self.check = (
            RepeatTracker(check_repeated_chunk_limit(settings.repeated_chunk_limit)).check if detect_repeats else None
        )
        self.builder = ResponseBuilder(messages=info.messages)
        self.add = self.builder.add
        self.start = datetime.datetime.now()
        self.ended = False

    def next(self, chunk: ChatCompletionChunk) -> Exception | None:
        """Fold in one chunk; the error (through :meth:`fail`) when it repeats once too often."""
        if self.ended:
            return None
        check = self.check
        if check is not None:
            repeated = check(chunk)
            if repeated is not None:
                return self.fail(
                    InternalServerError(
                        f"The model is repeating the same chunk = {repeated}.",
                        llm_provider=self.info.llm_provider,
                        model=chunk.model or None,
                    )
                )
        self.add(chunk)  # chunks are validated at the provider boundary
        return None

    def fail(self, exc: Exception) -> Exception:
        """Attach the partial response (to a copy of an ``APIError``), fire ``failure_callback``."""
        self.ended = True
        info = self.info
        try:
            partial = self.builder.build(partial=True)
        except Exception:  # a partial response is a courtesy; never fail the stream for it
            from rxllm.builder import ResponseBuilder

            partial = ResponseBuilder(messages=info.messages).build(partial=True)
        if isinstance(exc, APIError):
            exc = exc.with_partial_response(partial)  # a copy: never mutate a shared error
        _fire(info, "failure", partial, self.start, exception=exc)
        return exc

    def complete(self) -> Exception | None:
        """Build the response, set ``info.response``, fire ``success_callback`` (or fail, if building fails)."""
        try:
            response = self.builder.build()
        except Exception as exc:
            return self.fail(exc)
        self.ended = True
        self.info.response = response
        _fire(self.info, "completed", response, self.start)
        return None

    def dispose(self) -> None:
        """The consumer stopped early: fire ``success_callback`` with the ``cancelled`` outcome."""
        if not self.ended:
            self.ended = True
            _fire(self.info, "cancelled", self.builder.build(partial=True), self.start)


def instrument(
    info: CallInfo, *, detect_repeats: bool = False
) -> Callable[[Observable[ChatCompletionChunk]], Observable[ChatCompletionChunk]]:
    """Rebuild the response as chunks pass, attach it to errors, and fire the callbacks once.

    ``detect_repeats``: also do ``detect_repeated_chunks``' work (the module limit, read at
    subscription) in the same observer, instead of one more layer per chunk. On a
    :class:`~rxllm.streams.PullableObservable` the result is one too (the instrumentation
    as a fused step), so an exclusive consumer pulls the provider directly.
    """

    def operator(source: Observable[ChatCompletionChunk]) -> Observable[ChatCompletionChunk]:
        def subscribe(
            observer: abc.ObserverBase[ChatCompletionChunk], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            try:
                run = _Run(info, detect_repeats)
            except ValueError as exc:
                observer.on_error(exc)
                return Disposable()  # never subscribe: that would start a request for nothing

            def on_next(chunk: ChatCompletionChunk) -> None:
                if run.ended:
                    return
                error = run.next(chunk)
                if error is not None:
                    observer.on_error(error)
                    return
                observer.on_next(chunk)

            def on_error(exc: Exception) -> None:
                observer.on_error(run.fail(exc))

            def on_completed() -> None:
                error = run.complete()
                if error is not None:
                    observer.on_error(error)
                else:
                    observer.on_completed()

            subscription = source.subscribe(on_next, on_error, on_completed, scheduler=scheduler)
            return CompositeDisposable(subscription, Disposable(run.dispose))

        if isinstance(source, PullableObservable):
            return source.with_step(subscribe, lambda: _Run(info, detect_repeats))
        return Observable(subscribe)

    return operator


def _cost(response: ModelResponse, model: str) -> float | None:
    try:
        from rxllm.pricing import completion_cost

        return completion_cost(completion_response=response, model=model)
    except Exception:
        return None


def _fire(
    info: CallInfo,
    outcome: str,
    response: ModelResponse,
    start: datetime.datetime,
    exception: BaseException | None = None,
) -> None:
    callbacks = list((settings.failure_callback if outcome == "failure" else settings.success_callback) or ())
    if not callbacks:
        return
    end = datetime.datetime.now()
    cost = _cost(response, info.model)
    kwargs: dict[str, Any] = {
        "model": info.model,
        "messages": info.messages,
        "stream": info.stream,
        "optional_params": info.params,
        "litellm_params": {"custom_llm_provider": info.llm_provider},
        "custom_llm_provider": info.llm_provider,
        "response_cost": cost,
        "usage": response.usage,
        "outcome": "error" if outcome == "failure" else outcome,
        "start_time": start,
        "end_time": end,
    }
    if outcome == "failure":
        kwargs["exception"] = exception
        kwargs["partial_response"] = response
    elif info.stream:
        kwargs["complete_streaming_response"] = response
        if info.is_async:
            kwargs["async_complete_streaming_response"] = response
    for callback in callbacks:
        _call(callback, kwargs, response, start, end)


def _call(callback: Any, kwargs: dict[str, Any], response: ModelResponse, start: Any, end: Any) -> None:
    name = getattr(callback, "__name__", repr(callback))
    try:
        result = callback(kwargs, response, start, end)
    except Exception as exc:
        _log.warning("rxllm.callback_failed", callback=name, error=repr(exc))
        return
    if not asyncio.iscoroutine(result):
        return
    try:
        task = asyncio.get_running_loop().create_task(result)
    except RuntimeError:  # a synchronous caller: run it on rxllm's loop, without waiting
        from rxllm.loop import get_loop

        future = asyncio.run_coroutine_threadsafe(result, get_loop())
        future.add_done_callback(lambda f: _log_failure(name, f))
        return
    _PENDING.add(task)
    task.add_done_callback(_PENDING.discard)
    task.add_done_callback(lambda t: _log_failure(name, t))


def _log_failure(name: str, future: Any) -> None:
    if not future.cancelled() and future.exception() is not None:
        _log.warning("rxllm.callback_failed", callback=name, error=repr(future.exception()))
