"""``display``: a live view of each subscription, drawn beside the stream (the operator form of ``rxllm.display``).

The pieces (throttled :class:`Frame` snapshots on the scheduler, their text and HTML, the
IPython and plain-text targets) live here so that pipelines can draw a live view with
``ops.display()``; :mod:`rxllm.display` adds the blocking and async entry points.
"""

from __future__ import annotations

import html
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, TextIO

import attrs
from reactivex import Observable, abc
from reactivex import operators as rx_ops
from reactivex.disposable import CompositeDisposable, Disposable, SerialDisposable
from reactivex.scheduler import ImmediateScheduler

from rxllm.builder import ResponseBuilder
from rxllm.types import ChatCompletionChunk, ModelResponse

from ._scheduling import resolve_scheduler
from ._tap_cost import CostReport, tap_cost

__all__ = ["DEFAULT_INTERVAL", "Frame", "LiveDisplay", "Target", "display", "display_frames", "make_target"]

#: Seconds between redraws, at most (the final frame is drawn at once).
DEFAULT_INTERVAL = 0.1


# --------------------------------------------------------------------------- frames


@attrs.frozen
class Frame:
    """What a live view shows at one moment.

    Attributes:
        response: The response so far (partial until ``done``).
        done: True for the last frame of a stream.
        report: The stream's :class:`~rxllm.operators.CostReport`, on the last frame.
        error: The exception the stream ended with, if any.
        chunks: How many chunks had arrived.
    """

    response: ModelResponse
    done: bool = False
    report: CostReport | None = None
    error: BaseException | None = None
    chunks: int = 0

    def footer(self) -> str:
        """Usage, cost, time to first token and tokens per second (``""`` before the end)."""
        r = self.report
        if r is None:
            return ""
        parts = [f"{r.prompt_tokens} prompt + {r.completion_tokens} completion tokens"]
        if r.usage_estimated:
            parts[0] += " (estimated)"
        parts.append(f"${r.cost:.6f}" if r.cost is not None else "cost n/a")
        ttft = r.time_to_first_content if r.time_to_first_content is not None else r.time_to_first_chunk
        parts.append(f"TTFT {ttft:.3f} s" if ttft is not None else "TTFT n/a")
        rate = r.output_tokens_per_second
        parts.append(f"{rate:.1f} tokens/s" if rate is not None else "tokens/s n/a")
        parts.append(f"{r.duration:.3f} s")
        parts.append(r.outcome)
        return " · ".join(parts)

    def _choices(self) -> list[tuple[int, str, str, list[str]]]:
        out = []
        for choice in self.response.choices:
            message = choice.message
            calls = [
                f"{call.function.name or '?'}({call.function.arguments or ''})" for call in message.tool_calls or ()
            ]
            out.append((choice.index, message.content or "", message.reasoning_content or "", calls))
        return out

    def to_text(self) -> str:
        """The frame as plain text: reasoning collapsed to its length, then text, tool calls, error, footer."""
        lines: list[str] = []
        many = len(self.response.choices) > 1
        for index, text, reasoning, calls in self._choices():
            if many:
                lines.append(f"[choice {index}]")
            if reasoning:
                lines.append(f"[reasoning: {len(reasoning)} characters]")
            if text:
                lines.append(text)
            lines.extend(f"tool call: {call}" for call in calls)
        if self.error is not None:
            lines.append(f"error: {type(self.error).__name__}: {_message(self.error)}")
        footer = self.footer()
        if footer:
            lines.append(footer)
        return "\n".join(lines)

    def to_html(self) -> str:
        """The frame as HTML: reasoning in a closed ``<details>``, text, tool calls, error, footer."""
        parts = ['<div class="rxllm-live" style="font-family: var(--jp-content-font-family, sans-serif)">']
        many = len(self.response.choices) > 1
        for index, text, reasoning, calls in self._choices():
            if many:
                parts.append(f"<div><b>choice {index}</b></div>")
            if reasoning:
                parts.append(
                    f"<details><summary>reasoning ({len(reasoning)} characters)</summary>"
                    f'<pre style="white-space: pre-wrap">{html.escape(reasoning)}</pre></details>'
                )
            if text:
                parts.append(f'<div style="white-space: pre-wrap">{html.escape(text)}</div>')
            for call in calls:
                parts.append(f"<div><code>tool call: {html.escape(call)}</code></div>")
        if self.error is not None:
            parts.append(
                f'<div style="color: #b00020">error: {html.escape(type(self.error).__name__)}: '
                f"{html.escape(_message(self.error))}</div>"
            )
        footer = self.footer()
        if footer:
            parts.append(f'<div style="color: #666; font-size: 85%">{html.escape(footer)}</div>')
        parts.append("</div>")
        return "".join(parts)

    def _repr_html_(self) -> str:
        return self.to_html()

    def __repr__(self) -> str:
        return self.to_text()


def _message(error: BaseException) -> str:
    text = getattr(error, "message", None) or str(error)
    return " ".join(str(text).split())


class _Pacer:
    """Per-subscription state: folds chunks, emits throttled frames, and the final frame at the end.

    The first chunk is drawn at once; later chunks mark the view dirty and one timer draws it
    ``interval`` after the previous draw, so frames come at most once per interval.
    """

    def __init__(
        self,
        emit: Callable[[Frame], None],
        scheduler: abc.SchedulerBase,
        interval: float,
        messages: Iterable[Mapping[str, Any]] | None,
    ) -> None:
        self.emit = emit
        self.scheduler = scheduler
        self.interval = interval
        self.builder = ResponseBuilder(messages)
        self.timer = SerialDisposable()
        self.lock = threading.RLock()
        self.dirty = False
        self.scheduled = False
        self.finished = False
        self.report: CostReport | None = None

    def frame(self, *, done: bool = False, error: BaseException | None = None) -> Frame:
        response = self.builder.build(partial=not done or error is not None)
        return Frame(response, done, self.report if done else None, error, self.builder.chunk_count)

    def chunk(self, chunk: ChatCompletionChunk) -> None:
        with self.lock:
            if self.finished:
                return
            self.builder.add(chunk)
            if self.scheduled:
                self.dirty = True
                return
            self.emit(self.frame())
            self._arm()

    def _arm(self) -> None:
        if self.interval <= 0:
            return
        self.scheduled = True
        self.timer.disposable = self.scheduler.schedule_relative(self.interval, self._tick)

    def _tick(self, _scheduler: abc.SchedulerBase, _state: Any = None) -> None:
        with self.lock:
            self.scheduled = False
            if self.finished or not self.dirty:
                return
            self.dirty = False
            self.emit(self.frame())
            self._arm()

    def end(self, error: BaseException | None) -> None:
        with self.lock:
            if self.finished:
                return
            self.finished = True
            self.timer.dispose()
            self.emit(self.frame(done=True, error=error))

    def dispose(self) -> None:
        with self.lock:
            self.finished = True
            self.timer.dispose()


class _ClockPacer(_Pacer):
    """A pacer without a timer (iterables, or no scheduler at all): frames on chunk arrival only."""

    def __init__(self, emit: Callable[[Frame], None], interval: float, messages: Any) -> None:
        super().__init__(emit, ImmediateScheduler(), interval, messages)
        self.last: float | None = None

    def chunk(self, chunk: ChatCompletionChunk) -> None:
        if self.finished:
            return
        self.builder.add(chunk)
        now = time.monotonic()
        if self.last is None or now - self.last >= self.interval:
            self.last = now
            self.emit(self.frame())


def display_frames(
    interval: float = DEFAULT_INTERVAL,
    *,
    model: str | None = None,
    messages: Iterable[Mapping[str, Any]] | None = None,
    scheduler: abc.SchedulerBase | None = None,
) -> Callable[[Observable[ChatCompletionChunk]], Observable[Frame]]:
    """Throttled :class:`Frame` snapshots of a stream, for live views.

    ::

        chunks:  -a-b-c-d-------e-|
        frames:  -A---C---D-----E-(F|)       (interval = 4 ticks; F is the final frame)

    The first chunk gives a frame at once; later ones are drawn at most once per ``interval``
    (a frame ``interval`` after the previous one, if anything changed). When the stream ends
    the final frame (``done=True``, with the cost report and any error) is emitted and the
    Observable completes: an error is shown, not raised. Disposing stops everything.

    Args:
        interval: Seconds between frames, at most (0: a frame per chunk).
        model: The model to price the footer's cost for (default: the chunks' model).
        messages: The prompt, to estimate prompt tokens when the provider reports none.
        scheduler: Where the timer runs (default: the subscription's, else the running loop).

    Returns:
        An operator ``Observable[ChatCompletionChunk] -> Observable[Frame]``.
    """
    prompt = list(messages) if messages is not None else None

    def _frames(source: Observable[ChatCompletionChunk]) -> Observable[Frame]:
        def subscribe(
            observer: abc.ObserverBase[Frame], scheduler_: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            pacer: _Pacer
            if interval <= 0:
                pacer = _Pacer(observer.on_next, scheduler or scheduler_ or ImmediateScheduler(), 0, prompt)
            else:
                try:
                    timer = resolve_scheduler(scheduler, scheduler_, "display_frames()")
                except RuntimeError:  # no scheduler and no running loop: pace on chunk arrival
                    pacer = _ClockPacer(observer.on_next, interval, prompt)
                else:
                    pacer = _Pacer(observer.on_next, timer, interval, prompt)

            def on_report(report: CostReport) -> None:
                pacer.report = report

            def on_error(error: Exception) -> None:
                pacer.end(error)
                observer.on_completed()

            def on_completed() -> None:
                pacer.end(None)
                observer.on_completed()

            metered = source.pipe(tap_cost(on_report, model=model, messages=prompt, scheduler=scheduler))
            upstream = metered.subscribe(pacer.chunk, on_error, on_completed, scheduler=scheduler_)
            return CompositeDisposable(Disposable(pacer.dispose), upstream)

        return Observable(subscribe)

    return _frames


# --------------------------------------------------------------------------- targets


class Target(Protocol):
    """Where a live view is drawn."""

    def show(self, frame: Frame) -> None:
        """Draw ``frame`` (the first call creates the output, later ones update it)."""


class _IPythonTarget:
    """One IPython output, created on the first frame and updated in place."""

    def __init__(self) -> None:
        self.handle: Any = None

    def show(self, frame: Frame) -> None:
        import IPython.display

        ipython_display: Any = IPython.display.display
        if self.handle is None:
            self.handle = ipython_display(frame, display_id=True)
        else:
            self.handle.update(frame)


class _TextTarget:
    """Plain text: new text as it arrives; tool calls, the error and the footer at the end."""

    def __init__(self, file: TextIO | None) -> None:
        self.file = file
        self.written: dict[int, int] = {}
        self.current: int | None = None

    def show(self, frame: Frame) -> None:
        out = self.file or sys.stdout
        for index, text, _reasoning, calls in frame._choices():
            done = self.written.get(index, 0)
            if len(text) > done:
                if self.current != index and len(frame.response.choices) > 1:
                    out.write(f"\n[choice {index}] ")
                self.current = index
                out.write(text[done:])
                self.written[index] = len(text)
            if frame.done:
                for call in calls:
                    out.write(f"\ntool call: {call}")
        if frame.done:
            if frame.error is not None:
                out.write(f"\nerror: {type(frame.error).__name__}: {_message(frame.error)}")
            footer = frame.footer()
            out.write(("\n" + footer if footer else "") + "\n")
        out.flush()


def _in_notebook() -> bool:
    """True in an IPython kernel (a notebook front end that can update an output in place)."""
    ipython_module = sys.modules.get("IPython")
    if ipython_module is None:
        return False
    try:
        shell = ipython_module.get_ipython()
    except Exception:
        return False
    return shell is not None and getattr(shell, "kernel", None) is not None


def make_target(file: TextIO | None = None) -> Target:
    if file is None and _in_notebook():
        return _IPythonTarget()
    return _TextTarget(file)


# --------------------------------------------------------------------------- display


@attrs.define
class LiveDisplay:
    """The outcome of a live view: what was last drawn and how often.

    Attributes:
        final: The last frame (``None`` until the stream has ended).
        updates: How many times the output was redrawn after it was first drawn.
        frames: How many frames were drawn in all (``updates + 1`` once anything was drawn).
    """

    final: Frame | None = None
    updates: int = 0
    frames: int = 0
    _target: Any = attrs.field(default=None, repr=False)

    def _show(self, frame: Frame) -> None:
        self._target.show(frame)
        self.frames += 1
        self.updates = self.frames - 1
        if frame.done:
            self.final = frame

    @property
    def response(self) -> ModelResponse | None:
        """The final (or, after an error, partial) response."""
        return None if self.final is None else self.final.response

    @property
    def report(self) -> CostReport | None:
        """The stream's cost report."""
        return None if self.final is None else self.final.report

    @property
    def error(self) -> BaseException | None:
        """The error the stream ended with, if any."""
        return None if self.final is None else self.final.error

    def __repr__(self) -> str:
        state = "running" if self.final is None else (self.final.report.outcome if self.final.report else "done")
        return f"<LiveDisplay {state} frames={self.frames} updates={self.updates}>"


def display(
    interval: float = DEFAULT_INTERVAL,
    *,
    model: str | None = None,
    messages: Iterable[Mapping[str, Any]] | None = None,
    file: TextIO | None = None,
    scheduler: abc.SchedulerBase | None = None,
    on_end: Callable[[LiveDisplay], Any] | None = None,
) -> Callable[[Observable[ChatCompletionChunk]], Observable[ChatCompletionChunk]]:
    """Draw a live view of each subscription beside the stream; chunks pass through untouched.

    ::

        source:  -a-b-c-d---|
        output:  -a-b-c-d---|
        view:    [A   C   D  F]      (one output, redrawn at most once per interval, F final)

    The operator form of :func:`rxllm.display`: in IPython one output updated in place (text,
    reasoning collapsed, tool calls as they assemble, errors, a usage/cost/TTFT/tokens-per-
    second footer); elsewhere plain text on ``file`` (default stdout). Each subscription draws
    its own view, on the thread the stream is delivered on (in a notebook with top-level
    ``await``: the kernel's loop, which is the cell's thread). Errors are drawn and still
    passed on; disposal stops the drawing.

    Args:
        interval: Seconds between redraws, at most (0: one per chunk); the final frame is
            always drawn.
        model: The model the footer's cost is priced for (default: the chunks' model).
        messages: The prompt, to estimate prompt tokens when the provider reports none.
        file: Write plain text here (default: a notebook output in IPython, else stdout).
        scheduler: Where the redraw timer runs (default: the subscription's, else the running loop).
        on_end: Called with the :class:`LiveDisplay` once the stream has ended.

    Returns:
        An operator ``Observable[ChatCompletionChunk] -> Observable[ChatCompletionChunk]``.
    """

    def _display(source: Observable[ChatCompletionChunk]) -> Observable[ChatCompletionChunk]:
        def subscribe(
            observer: abc.ObserverBase[ChatCompletionChunk], scheduler_: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            published = source.pipe(rx_ops.publish())
            view = LiveDisplay(target=make_target(file))

            def shown(frame: Frame) -> None:
                view._show(frame)
                if frame.done and on_end is not None:
                    on_end(view)

            drawing = published.pipe(
                display_frames(interval, model=model, messages=messages, scheduler=scheduler)
            ).subscribe(shown, lambda _e: None, scheduler=scheduler_)
            passing = published.subscribe(observer, scheduler=scheduler_)
            connection = published.connect(scheduler_)
            return CompositeDisposable(passing, drawing, connection or Disposable())

        return Observable(subscribe)

    return _display
