"""Bridges from asyncio into Observables.

reactivex 6 has no bridge from an async iterator to an Observable. :func:`from_async_iterable`
is ours: cold (the factory runs once per subscription), one pump task per subscription on
the subscriber's running loop (or rxllm's background loop for synchronous subscribers), and
disposal cancels the task and closes the iterator, which closes the HTTP response behind it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any, TypeVar

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxllm.loop import get_loop

__all__ = ["from_async_iterable", "live_pump_tasks"]

T = TypeVar("T")

# asyncio keeps only weak references to tasks; these are the pumps alive right now.
_PUMPS: set[asyncio.Task[None]] = set()


def live_pump_tasks() -> int:
    """How many pump tasks are running (for leak tests and diagnostics)."""
    return sum(1 for t in list(_PUMPS) if not t.done())


def from_async_iterable(factory: Callable[[], AsyncIterable[T]]) -> Observable[T]:
    """A cold Observable of the items of a fresh async iterable per subscription.

    Args:
        factory: Called once per subscription, on the loop that runs the pump, to create the
            async iterable (typically an async generator making one HTTP request).

    Returns:
        An Observable that emits the items, then completes; an exception raised by the
        iterable arrives as ``on_error``. Disposing cancels the pump task and closes the
        iterator (``aclose()``), so the request behind it stops at once. Cancellation is
        silent: observers never see ``CancelledError``.

    The pump runs on the running loop of the subscribing thread; a subscriber with no
    running loop is served by rxllm's background loop (:func:`rxllm.loop.get_loop`), and its
    observer is then called on that loop's thread.
    """

    def subscribe(observer: abc.ObserverBase[T], scheduler: abc.SchedulerBase | None = None) -> abc.DisposableBase:
        try:
            loop = asyncio.get_running_loop()
            on_loop_now = True
        except RuntimeError:
            loop = get_loop()
            on_loop_now = False
        state = _PumpState(loop)

        async def pump() -> None:
            iterator: AsyncIterator[T] | None = None
            try:
                iterator = aiter(factory())
                on_next = observer.on_next
                async for item in iterator:
                    if state.disposed:
                        return
                    on_next(item)
                    if state.disposed:
                        return
            except asyncio.CancelledError:
                return
            except Exception as exc:
                if not state.disposed:
                    state.disposed = True
                    observer.on_error(exc)
                return
            finally:
                if iterator is not None:
                    await _aclose(iterator)
            if not state.disposed:
                state.disposed = True
                observer.on_completed()

        def start() -> None:
            if state.disposed:
                return
            state.thread_id = threading.get_ident()
            task = loop.create_task(pump())
            state.task = task
            _PUMPS.add(task)
            task.add_done_callback(_PUMPS.discard)

        if on_loop_now:
            start()
        else:
            loop.call_soon_threadsafe(start)
        return Disposable(state.dispose)

    return reactivex.create(subscribe)


class _PumpState:
    """Per-subscription state shared by the pump task and its disposable."""

    __slots__ = ("disposed", "loop", "task", "thread_id")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.task: asyncio.Task[None] | None = None
        self.disposed = False
        self.thread_id: int | None = None

    def dispose(self) -> None:
        if self.disposed:
            return
        self.disposed = True
        task = self.task
        if task is None or task.done():
            return  # not started yet: start() sees the flag and never starts
        if threading.get_ident() == self.thread_id:
            # Disposed from inside an emission (take(1), an operator's error): the pump
            # sees the flag as soon as on_next returns and closes the iterator itself.
            if asyncio.current_task(self.loop) is not task:
                task.cancel()
        else:
            self.loop.call_soon_threadsafe(task.cancel)


async def _aclose(iterator: Any) -> None:
    """Close an async iterator, even while its task is being cancelled."""
    aclose = getattr(iterator, "aclose", None)
    if aclose is None:
        return
    try:
        await aclose()
    except (Exception, asyncio.CancelledError):  # noqa: S110 - closing must not mask the outcome
        pass
