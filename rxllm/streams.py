"""Bridges from asyncio into Observables.

reactivex 6 has no bridge from an async iterator to an Observable. :func:`from_async_iterable`
is ours: cold (the factory runs once per subscription), one pump task per subscription on
the subscriber's running loop (or rxllm's background loop for synchronous subscribers), and
disposal cancels the task and closes the iterator, which closes the HTTP response behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from contextvars import ContextVar
from typing import Any, Generic, TypeVar

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxllm.loop import get_loop

__all__ = ["PullSource", "from_async_iterable", "live_pump_tasks", "pulling"]

T = TypeVar("T")

# asyncio keeps only weak references to tasks; these are the pumps alive right now.
_PUMPS: set[asyncio.Task[None]] = set()

# Set while an exclusive consumer subscribes (see `pulling`): it adopts the subscription.
_ADOPT: ContextVar[Callable[[PullSource[Any]], bool] | None] = ContextVar("rxllm_adopt", default=None)


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
    observer is then called on that loop's thread. A subscription made inside
    :func:`pulling` has no pump task: its consumer pulls the items (see :class:`PullSource`).
    """

    def subscribe(observer: abc.ObserverBase[T], scheduler: abc.SchedulerBase | None = None) -> abc.DisposableBase:
        try:
            loop = asyncio.get_running_loop()
            on_loop_now = True
        except RuntimeError:
            loop = get_loop()
            on_loop_now = False
        state = _PumpState(loop)
        adopt = _ADOPT.get()
        if adopt is not None and on_loop_now and adopt(PullSource(factory, observer, state)):
            return Disposable(state.dispose)

        async def pump() -> None:
            source = PullSource(factory, observer, state)
            try:
                while await source.pull():
                    pass
            except asyncio.CancelledError:
                return  # disposal: silent; pull() has closed the iterator

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


@contextlib.contextmanager
def pulling(adopt: Callable[[PullSource[Any]], bool]) -> Iterator[None]:
    """Subscriptions made synchronously inside this block may be adopted by ``adopt``.

    For a consumer that is the only one of its pipeline (``acompletion``'s iterator): instead
    of a pump task handing each item to the consumer's task (two task wake-ups per item,
    most of the per-chunk cost when chunks arrive one per network read), the consumer pulls
    the next item itself and pushes it through the operators. ``adopt`` returns ``False`` to
    decline (a second source), which then gets its own pump task as usual. Subscriptions
    made later (a retry, a fallback) are outside the block and get pump tasks too.
    """
    token = _ADOPT.set(adopt)
    try:
        yield
    finally:
        _ADOPT.reset(token)


class PullSource(Generic[T]):
    """One :func:`from_async_iterable` subscription, advanced one item per :meth:`pull`.

    The pump task is a loop over ``pull()``; an adopting consumer (see :func:`pulling`)
    calls it from its own task instead. Either way the emission, disposal, closing and error
    rules live here once.
    """

    __slots__ = ("_closed", "_factory", "_iterator", "_observer", "_state")

    def __init__(
        self, factory: Callable[[], AsyncIterable[T]], observer: abc.ObserverBase[T], state: _PumpState
    ) -> None:
        self._factory = factory
        self._observer = observer
        self._state = state
        self._iterator: AsyncIterator[T] | None = None
        self._closed = False

    async def pull(self) -> bool:
        """Push the next item (or the end, or the error) to the observer; ``False`` once over.

        Raises:
            asyncio.CancelledError: When the consuming task is cancelled (the iterator is
                closed first).
        """
        state = self._state
        if state.disposed:
            await self.aclose()
            return False
        try:
            if self._iterator is None:
                self._iterator = aiter(self._factory())
            item = await anext(self._iterator)
        except StopAsyncIteration:
            # The iterator has finished: report the end, then release it.
            if not state.disposed:
                state.disposed = True
                self._observer.on_completed()
            await self.aclose()
            return False
        except asyncio.CancelledError:
            await self.aclose()
            raise
        except Exception as exc:
            if not state.disposed:
                state.disposed = True
                self._observer.on_error(exc)
            await self.aclose()
            return False
        if state.disposed:  # disposed (from another thread) while waiting for the item
            await self.aclose()
            return False
        self._observer.on_next(item)
        if state.disposed:
            await self.aclose()
            return False
        return True

    async def aclose(self) -> None:
        """Close the iterator (and the request behind it); idempotent."""
        if self._closed:
            return
        self._closed = True
        self._state.disposed = True
        if self._iterator is not None:
            await _aclose(self._iterator)

    @property
    def closed(self) -> bool:
        """Whether the iterator has been closed."""
        return self._closed


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
