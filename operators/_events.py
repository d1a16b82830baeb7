"""``events``: the chunk stream as typed events (text, reasoning, tool calls, usage, finish)."""

from __future__ import annotations

from collections.abc import Callable

from reactivex import Observable, abc

from rxllm.events import Event, EventBuilder
from rxllm.types import ChatCompletionChunk

__all__ = ["events"]


def events() -> Callable[[Observable[ChatCompletionChunk]], Observable[Event]]:
    """Turn chunks into typed, frozen events (see :mod:`rxllm.events`), per choice index.

    Per choice: ``TextDelta``/``TextDone``, ``ReasoningDelta``/``ReasoningDone`` (with the
    block's signature), ``RedactedReasoning``, ``RefusalDelta``/``RefusalDone``,
    ``ToolCallStart``, ``ToolCallArgumentsDelta`` (the fragment, the argument text so far and
    the partial parsed value), ``ToolCallDone`` (text, parsed value or a typed
    ``InvalidToolArgumentsError``), then ``Finish``; ``UsageUpdate`` whenever usage arrives.
    Works for every provider, ``n > 1`` and parallel tool calls, and agrees with
    ``to_response`` on what the stream contains. When the source completes, whatever is still
    open is closed (a choice that sent no finish reason gets ``Finish("stop")``); errors pass
    through unchanged.

    ::

        chunks:  -[text "Hel"]-[text "lo"]-[finish stop]-|
        events()
        result:  -TextDelta----TextDelta---(TextDone, Finish)-|

    Returns:
        An operator ``Observable[ChatCompletionChunk] -> Observable[Event]``.
    """

    def _events(source: Observable[ChatCompletionChunk]) -> Observable[Event]:
        def subscribe(
            observer: abc.ObserverBase[Event], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            builder = EventBuilder()

            def on_next(chunk: ChatCompletionChunk) -> None:
                try:
                    out = builder.add(chunk)
                except Exception as exc:
                    observer.on_error(exc)
                    return
                for event in out:
                    observer.on_next(event)

            def on_completed() -> None:
                try:
                    out = builder.close()
                except Exception as exc:
                    observer.on_error(exc)
                    return
                for event in out:
                    observer.on_next(event)
                observer.on_completed()

            return source.subscribe(on_next, observer.on_error, on_completed, scheduler=scheduler)

        return Observable(subscribe)

    return _events
