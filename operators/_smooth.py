"""``smooth``: content re-chunked into words or lines and paced on the scheduler, for UIs."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import attrs
from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, SerialDisposable

from rxllm.types import ChatCompletionChunk

from ._scheduling import clock, resolve_scheduler

__all__ = ["smooth"]

_Operator = Callable[[Observable[ChatCompletionChunk]], Observable[ChatCompletionChunk]]

_PATTERNS = {"word": re.compile(r"\S+\s+"), "line": re.compile(r"\n+")}


def _pure_content(chunk: ChatCompletionChunk) -> str | None:
    """The content of a chunk that carries nothing but content for one choice, else None."""
    if chunk.usage is not None or len(chunk.choices) != 1:
        return None
    sc = chunk.choices[0]
    d = sc.delta
    c = d.content
    if (
        not c
        or c.__class__ is not str
        or sc.finish_reason is not None
        or sc.logprobs is not None
        or d.tool_calls
        or d.function_call is not None
        or d.reasoning_content
        or d.refusal
        or d.extra
    ):
        return None
    return c


def _with_content(chunk: ChatCompletionChunk, text: str, first: bool = True) -> ChatCompletionChunk:
    """A copy of ``chunk`` carrying ``text``; a role stays on the first piece cut from it only."""
    sc = chunk.choices[0]
    delta = attrs.evolve(sc.delta, content=text) if first else attrs.evolve(sc.delta, content=text, role=None)
    return attrs.evolve(chunk, choices=(attrs.evolve(sc, delta=delta),))


def smooth(
    by: str | re.Pattern[str] = "word",
    delay: float | timedelta | None = 0.01,
    *,
    scheduler: abc.SchedulerBase | None = None,
) -> _Operator:
    """Re-chunk content text into words (or lines, or regex matches) and pace them for display.

    Like the Vercel AI SDK's ``smoothStream``: text is cut after each match of the chunking
    pattern (``"word"``: a run of non-space then space, ``"line"``: newlines, or your own
    regex) and the pieces are emitted at most one per ``delay``; the unfinished rest waits
    for more text. Everything that is not plain content (a role, reasoning, tool calls, a
    finish reason, usage) is never delayed: the text waiting before it is sent at once, then
    the chunk itself; the end of the stream (completion or error) flushes at once too. Each
    piece is a copy of the chunk it came from with only ``content`` changed; per choice.

    ::

        content: -"Hello wor"-"ld, how are"--------|
        smooth("word", delay=10)
        result:  -"Hello "----"world, "-(10)-"how "-(10)-("are" + end)|

    Args:
        by: ``"word"``, ``"line"`` or a regular expression (string or compiled).
        delay: Seconds (or a ``timedelta``) between pieces; ``None`` or 0 to re-chunk only.
        scheduler: The scheduler for the delays (default: the subscription's, else the
            running event loop's).

    Returns:
        An operator ``Observable[ChatCompletionChunk] -> Observable[ChatCompletionChunk]``.
    """
    pattern = _PATTERNS.get(by) if isinstance(by, str) else by
    if pattern is None:
        pattern = re.compile(by) if isinstance(by, str) else by
    seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay or 0)
    if seconds < 0:
        raise ValueError(f"smooth: delay must not be negative, got {delay!r}")

    def _smooth(source: Observable[ChatCompletionChunk]) -> Observable[ChatCompletionChunk]:
        def subscribe(
            observer: abc.ObserverBase[ChatCompletionChunk], scheduler_: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            sched = resolve_scheduler(scheduler, scheduler_, "smooth") if seconds else None
            now = clock(sched)
            queue: deque[ChatCompletionChunk] = deque()
            rests: dict[int, tuple[ChatCompletionChunk, str]] = {}  # choice -> (template, unfinished text)
            timer = SerialDisposable()
            state: dict[str, Any] = {"next": 0.0, "waiting": False}

            def emit_one() -> None:
                observer.on_next(queue.popleft())
                state["next"] = now() + seconds

            def tick(_s: abc.SchedulerBase, _st: Any = None) -> None:
                state["waiting"] = False
                if queue:
                    emit_one()
                    pump()

            def pump() -> None:
                if not queue or state["waiting"]:
                    return
                if sched is None:
                    while queue:
                        observer.on_next(queue.popleft())
                    return
                wait = state["next"] - now()
                if wait <= 0:
                    emit_one()
                    if not queue:
                        return
                    wait = seconds
                state["waiting"] = True
                timer.disposable = sched.schedule_relative(wait, tick)

            def flush_all() -> None:
                for index in sorted(rests):
                    template, rest = rests[index]
                    queue.append(_with_content(template, rest))
                rests.clear()
                timer.disposable = None
                state["waiting"] = False
                while queue:
                    observer.on_next(queue.popleft())

            def on_next(chunk: ChatCompletionChunk) -> None:
                try:
                    text = _pure_content(chunk)
                    if text is None:
                        flush_all()
                        observer.on_next(chunk)
                        return
                    index = chunk.choices[0].index
                    held = rests.pop(index, None)
                    buf = held[1] + text if held else text
                    start = 0
                    first = held is None  # the role (if any) goes with the first piece
                    while True:
                        m = pattern.search(buf, start)
                        if m is None or m.end() == start:
                            break
                        queue.append(_with_content(chunk, buf[start : m.end()], first))
                        first = False
                        start = m.end()
                    if start < len(buf):
                        template = chunk if first else _with_content(chunk, "", False)
                        rests[index] = (template, buf[start:])
                    pump()
                except Exception as exc:
                    observer.on_error(exc)

            def on_error(exc: Exception) -> None:
                flush_all()
                observer.on_error(exc)

            def on_completed() -> None:
                flush_all()
                observer.on_completed()

            upstream = source.subscribe(on_next, on_error, on_completed, scheduler=scheduler_)
            return CompositeDisposable(upstream, timer)

        return Observable(subscribe)

    return _smooth
