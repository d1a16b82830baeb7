"""Live views of a stream: one notebook output that updates in place, or plain text elsewhere.

``rxllm.display(source)`` shows a stream as it arrives and returns when it has ended::

    view = rxllm.display(rxllm.stream("mock/echo", messages, mock_delay=0.05))
    view.response.choices[0].message.content

In IPython (Jupyter, VS Code notebooks) it renders ONE output and redraws it in place: the
text, the reasoning (collapsed), tool calls as their arguments assemble, an error if one came,
and at the end a footer with usage, cost, time to first token and tokens per second. Redraws
are throttled (``interval``, default 0.1 s: at most about ten a second, plus the final one),
timed on a ReactiveX scheduler, so the pacing is exact under a ``TestScheduler``. Outside
IPython the same view is written as plain text to ``file`` (stdout): text as it arrives, then
tool calls, the error and the footer.

The pieces compose:

- :func:`frames` (``ops.display_frames``) is an operator ``Observable[chunk] ->
  Observable[Frame]``: the throttled snapshots the views render (a :class:`Frame` renders
  itself as text and HTML);
- :func:`displayed` (``ops.display``) is the operator form: chunks pass through untouched and
  the view is drawn on the side, so it fits in any pipeline
  (``await source.pipe(ops.display(), ops.to_response())`` in a notebook);
- :func:`display_async` is :func:`display` for ``await`` on a running loop.

This module is importable as ``rxllm.display`` and is itself callable, so ``rxllm.display(x)``
works whether or not ``rxllm.display`` was imported as a module.
"""

from __future__ import annotations

import sys
import types
from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from typing import Any, TextIO

from reactivex import Observable

from rxllm.operators import CostReport, tap_cost
from rxllm.operators._display import (
    DEFAULT_INTERVAL,
    Frame,
    LiveDisplay,
    Target,
    _ClockPacer,
    make_target,
)
from rxllm.operators._display import display as displayed
from rxllm.operators._display import display_frames as frames
from rxllm.types import ChatCompletionChunk

__all__ = [
    "DEFAULT_INTERVAL",
    "Frame",
    "LiveDisplay",
    "Target",
    "display",
    "display_async",
    "displayed",
    "frames",
]


def _as_observable(source: Any) -> Observable[ChatCompletionChunk] | None:
    if isinstance(source, Observable):
        return source
    return None


def display(
    source: Any,
    *,
    interval: float = DEFAULT_INTERVAL,
    model: str | None = None,
    messages: Iterable[Mapping[str, Any]] | None = None,
    file: TextIO | None = None,
) -> LiveDisplay:
    """Show a stream live and return when it has ended.

    Args:
        source: An ``Observable`` of chunks (``rxllm.stream(...)``, any pipeline), or an
            iterable of chunks (``completion(..., stream=True)``, a list).
        interval: Seconds between redraws, at most (the final frame is always drawn).
        model: The model the footer's cost is priced for (default: the chunks' model).
        messages: The prompt, to estimate prompt tokens when the provider reports none.
        file: Write plain text here instead (default: a notebook output in IPython, else stdout).

    Returns:
        The :class:`LiveDisplay` (final frame, response, report, error, number of updates).
        A stream's error is shown in the view and kept on ``error``, not raised.

    Raises:
        TypeError: ``source`` is neither an Observable nor an iterable; an async iterable
            needs :func:`display_async`.
    """
    view = LiveDisplay(target=make_target(file))
    observable = _as_observable(source)
    if observable is not None:
        from rxllm.adapters import to_iterator

        with to_iterator(observable.pipe(frames(interval, model=model, messages=messages))) as items:
            for frame in items:
                view._show(frame)
        return view
    if isinstance(source, AsyncIterable) and not isinstance(source, Iterable):
        raise TypeError("display() got an async iterable: use 'await rxllm.display.display_async(...)'")
    if not isinstance(source, Iterable):
        raise TypeError(f"display() needs an Observable or an iterable of chunks, got {type(source).__name__}")
    _drive_sync(source, view, interval, model, messages)
    return view


def _metered(
    model: str | None, messages: Any, pacer: _ClockPacer
) -> tuple[Callable[[ChatCompletionChunk], None], Callable[[BaseException | None], None]]:
    """Feed chunks through tap_cost's meter (for the footer) by way of a subject."""
    from reactivex.subject import Subject

    subject: Subject[ChatCompletionChunk] = Subject()

    def on_report(report: CostReport) -> None:
        pacer.report = report

    subject.pipe(tap_cost(on_report, model=model, messages=messages)).subscribe(pacer.chunk, lambda _e: None)

    def end(error: BaseException | None) -> None:
        if error is None:
            subject.on_completed()
        else:
            subject.on_error(error if isinstance(error, Exception) else Exception(repr(error)))
        pacer.end(error)

    return subject.on_next, end


def _drive_sync(source: Iterable[Any], view: LiveDisplay, interval: float, model: str | None, messages: Any) -> None:
    pacer = _ClockPacer(view._show, interval, messages)
    feed, end = _metered(model, messages, pacer)
    try:
        for item in source:
            feed(_chunk(item))
    except Exception as exc:
        end(exc)
        return
    except BaseException:
        pacer.dispose()
        raise
    end(None)


def _chunk(item: Any) -> ChatCompletionChunk:
    if isinstance(item, ChatCompletionChunk):
        return item
    if isinstance(item, Mapping):
        return ChatCompletionChunk.from_dict(item)
    raise TypeError(f"display() needs chunks, got {type(item).__name__}")


async def display_async(
    source: Any,
    *,
    interval: float = DEFAULT_INTERVAL,
    model: str | None = None,
    messages: Iterable[Mapping[str, Any]] | None = None,
    file: TextIO | None = None,
) -> LiveDisplay:
    """:func:`display` on the running event loop: ``view = await display_async(source)``.

    Args:
        source: An ``Observable`` of chunks, or an async iterable of chunks
            (``await acompletion(..., stream=True)``).
        interval: See :func:`display`.
        model: See :func:`display`.
        messages: See :func:`display`.
        file: See :func:`display`.

    Returns:
        The :class:`LiveDisplay`.

    Raises:
        TypeError: ``source`` is neither an Observable nor an async iterable.
    """
    view = LiveDisplay(target=make_target(file))
    observable = _as_observable(source)
    if observable is not None:
        from rxllm.adapters import to_async_iterator

        async with to_async_iterator(observable.pipe(frames(interval, model=model, messages=messages))) as items:
            async for frame in items:
                view._show(frame)
        return view
    if not isinstance(source, AsyncIterable):
        raise TypeError(
            f"display_async() needs an Observable or an async iterable of chunks, got {type(source).__name__}"
        )
    pacer = _ClockPacer(view._show, interval, messages)
    feed, end = _metered(model, messages, pacer)
    try:
        async for item in source:
            feed(_chunk(item))
    except Exception as exc:
        end(exc)
        return view
    except BaseException:
        pacer.dispose()
        raise
    end(None)
    return view


class _CallableModule(types.ModuleType):
    """Lets ``rxllm.display(source)`` call :func:`display` even once the module is imported."""

    def __call__(self, source: Any, **kwargs: Any) -> LiveDisplay:
        return display(source, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
