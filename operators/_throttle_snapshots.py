"""``throttle_snapshots``: at most one value per interval, and always the last one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from reactivex import Observable, abc
from reactivex.disposable import CompositeDisposable, SerialDisposable

from ._scheduling import resolve_scheduler

__all__ = ["throttle_snapshots"]

_T = TypeVar("_T")


def throttle_snapshots(
    interval: float | timedelta, *, scheduler: abc.SchedulerBase | None = None
) -> Callable[[Observable[_T]], Observable[_T]]:
    """Pass on at most one value per ``interval``: the first at once, then the latest of each window.

    For notebooks and UIs that redraw the whole message (``snapshots()``, ``tool_call_snapshots()``,
    ``structured_output()`` partials): redrawing after every chunk wastes frames, but the
    newest state must never be lost. A value arriving in a quiet period is emitted at once
    and opens a window of ``interval``; values arriving inside the window replace each other,
    and the latest is emitted when the window closes (opening the next one). When the source
    completes, a value still waiting is emitted at once, then completion; errors pass at once.

    ::

        source:  -a-b-c------d----|
        throttle_snapshots(5)
        result:  -a----c-----d----|      (windows of 5 ticks after a and after c)

    Args:
        interval: Seconds (or a ``timedelta``) between emissions.
        scheduler: The scheduler for the windows (default: the subscription's, else the
            running event loop's).

    Returns:
        An operator ``Observable[T] -> Observable[T]``.
    """
    seconds = interval.total_seconds() if isinstance(interval, timedelta) else float(interval)
    if seconds <= 0:
        raise ValueError(f"throttle_snapshots: interval must be positive, got {interval!r}")

    def _throttle_snapshots(source: Observable[_T]) -> Observable[_T]:
        def subscribe(
            observer: abc.ObserverBase[_T], scheduler_: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            sched = resolve_scheduler(scheduler, scheduler_, "throttle_snapshots")
            timer = SerialDisposable()
            state: dict[str, Any] = {"open": False, "has": False, "latest": None}

            def close_window(_s: abc.SchedulerBase, _st: Any = None) -> None:
                if state["has"]:
                    value = state["latest"]
                    state["has"] = False
                    state["latest"] = None
                    observer.on_next(value)
                    timer.disposable = sched.schedule_relative(seconds, close_window)
                else:
                    state["open"] = False

            def on_next(value: _T) -> None:
                if state["open"]:
                    state["latest"] = value
                    state["has"] = True
                    return
                state["open"] = True
                observer.on_next(value)
                timer.disposable = sched.schedule_relative(seconds, close_window)

            def on_error(exc: Exception) -> None:
                timer.dispose()
                observer.on_error(exc)

            def on_completed() -> None:
                timer.dispose()
                if state["has"]:
                    state["has"] = False
                    observer.on_next(state["latest"])
                observer.on_completed()

            upstream = source.subscribe(on_next, on_error, on_completed, scheduler=scheduler_)
            return CompositeDisposable(upstream, timer)

        return Observable(subscribe)

    return _throttle_snapshots
