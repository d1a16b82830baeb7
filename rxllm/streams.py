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
from typing import Any, Generic, Protocol, TypeVar

from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxllm._log import get_logger
from rxllm.errors import as_api_error
from rxllm.loop import get_loop

__all__ = [
    "FlowControl",
    "PullSource",
    "PullStep",
    "PullableObservable",
    "flow_control",
    "from_async_iterable",
    "live_pump_tasks",
    "pulling",
    "track_pump",
]

_log = get_logger("rxllm.streams")

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)

# asyncio keeps only weak references to tasks; these are the pumps alive right now.
_PUMPS: set[asyncio.Task[None]] = set()

# Set while an exclusive consumer subscribes (see `pulling`): it adopts the subscription.
_ADOPT: ContextVar[Callable[[PullSource[Any]], bool] | None] = ContextVar("rxllm_adopt", default=None)
# Set while an edge with a bounded buffer subscribes (see `flow_control`): pumps wait on it.
_FLOW: ContextVar[FlowControl | None] = ContextVar("rxllm_flow", default=None)


def live_pump_tasks() -> int:
    """How many pump tasks are running (for leak tests and diagnostics)."""
    return sum(1 for t in list(_PUMPS) if not t.done())


def track_pump(task: asyncio.Task[None]) -> asyncio.Task[None]:
    """Keep a pump task alive until it ends, counted by :func:`live_pump_tasks`; returns it."""
    _PUMPS.add(task)
    task.add_done_callback(_PUMPS.discard)
    return task


class PullStep(Protocol[T_contra]):
    """One subscription's state of a per-item step fused into a :class:`PullableObservable`.

    The step sees every item, the end and the error exactly as an operator's observer would,
    but returns instead of pushing: whoever drives the chain (an Observable subscription or
    an exclusive consumer pulling the source, see :class:`PullableObservable`) passes the
    item on, or the error it returns. A step never changes items; it watches them and may end
    the stream with an error.
    """

    def next(self, item: T_contra) -> Exception | None:
        """Take one item; ``None`` passes it on, an exception (already through :meth:`fail`) ends the stream."""

    def fail(self, exc: Exception) -> Exception:
        """The stream failed upstream with ``exc``: the error as it leaves this step."""

    def complete(self) -> Exception | None:
        """The stream completed; an exception (already through :meth:`fail`) fails it instead."""

    def dispose(self) -> None:
        """The consumer stopped early (also called after an end, when it must do nothing)."""


class PullableObservable(Observable[T]):
    """An Observable whose items an exclusive consumer may pull straight from the source.

    :func:`from_async_iterable` returns one (no steps), and an operator that can run as a
    :class:`PullStep` keeps it pullable by returning ``source.with_step(subscribe, open_step)``.
    Subscribing works as for any Observable. But an edge that is the subscription's only
    consumer (:func:`rxllm.adapters.to_async_iterator`) need not subscribe at all: it calls
    :attr:`factory`, iterates the async iterable itself and runs the steps inline, one call
    per step per item, with no observer chain (and, pulling from the consumer's task, no pump
    task and no hand-over buffer). Both ways deliver the same items, errors and completion,
    and dispose the same way.

    Args:
        subscribe: The Observable subscription (the general path).
        factory: Makes the source's async iterable, once per subscription.
        steps: Per-subscription step openers, upstream first: each returns the step's state
            for one subscription, or raises when that subscription fails at once (its
            exception then goes downstream, and no request is made).
    """

    def __init__(
        self,
        subscribe: Callable[[abc.ObserverBase[T], abc.SchedulerBase | None], abc.DisposableBase],
        factory: Callable[[], AsyncIterable[Any]],
        steps: tuple[Callable[[], PullStep[Any]], ...] = (),
    ) -> None:
        super().__init__(subscribe)
        self.factory = factory
        self.steps = steps

    def with_step(
        self,
        subscribe: Callable[[abc.ObserverBase[T], abc.SchedulerBase | None], abc.DisposableBase],
        open_step: Callable[[], PullStep[Any]],
    ) -> PullableObservable[T]:
        """This Observable with one more step: ``subscribe`` for the general path, ``open_step`` for pulling."""
        return PullableObservable(subscribe, self.factory, (*self.steps, open_step))


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
    :func:`pulling` has no pump task: its consumer pulls the items (see :class:`PullSource`),
    and an exclusive consumer may skip the subscription altogether: the Observable is a
    :class:`PullableObservable`.
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
        if adopt is not None and on_loop_now and adopt(PullSource(factory, observer, state, adopted=True)):
            return Disposable(state.dispose)
        flow = _FLOW.get()

        async def pump() -> None:
            _ADOPT.set(None)  # later subscriptions made from this task are not adoptable
            source = PullSource(factory, observer, state)
            try:
                while await source.pull():
                    if flow is not None and flow.paused:
                        await flow.wait()  # the edge holds enough: stop reading the socket
            except asyncio.CancelledError:
                await source.aclose()  # disposal: silent
                return

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

    return PullableObservable(subscribe, factory)


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
    rules live here once: whatever raises reaches the observer as one ``on_error`` and the
    iterator is closed; nothing escapes the pump. The iterator's own errors pass as they are
    (providers raise typed errors); an error raised by the observers it pushes to (an
    operator, a user's callback) arrives typed (:func:`rxllm.errors.as_api_error`).
    """

    __slots__ = ("_adopted", "_closed", "_factory", "_iterator", "_observer", "_state")

    def __init__(
        self,
        factory: Callable[[], AsyncIterable[T]],
        observer: abc.ObserverBase[T],
        state: _PumpState,
        *,
        adopted: bool = False,
    ) -> None:
        self._factory = factory
        self._observer = observer
        self._state = state
        self._iterator: AsyncIterator[T] | None = None
        self._closed = False
        self._adopted = adopted

    async def pull(self) -> bool:
        """Push the next item (or the end, or the error) to the observer; ``False`` once over.

        Raises:
            asyncio.CancelledError: When the consuming task is cancelled (the iterator is
                closed first). A cancellation that is the disposal of this subscription (a
                timeout operator firing while an adopting consumer waits) is not raised:
                ``pull`` returns ``False``.
        """
        state = self._state
        if state.disposed:
            await self.aclose()
            return False
        task = asyncio.current_task() if self._adopted else None
        try:
            if self._iterator is None:
                self._iterator = aiter(self._factory())
            state.puller = task
            item = await anext(self._iterator)
        except StopAsyncIteration:
            state.puller = None
            # The iterator has finished: report the end, then release it.
            if not state.disposed:
                state.disposed = True
                self._complete()
            await self.aclose()
            return False
        except asyncio.CancelledError:
            state.puller = None
            await self.aclose()
            if task is not None and state.dispose_cancels and task.uncancel() == 0:
                state.dispose_cancels = 0
                return False  # disposed while we waited: silence, as for a pump
            raise
        except Exception as exc:
            state.puller = None
            if not state.disposed:
                state.disposed = True
                self._fail(exc, typed=False)  # the iterator's own error, as it is
            await self.aclose()
            return False
        state.puller = None
        if state.disposed:  # disposed (from another thread) while waiting for the item
            await self.aclose()
            return False
        try:
            self._observer.on_next(item)
        except Exception as exc:
            # an operator or a user's callback downstream raised: the stream ends here, typed
            if not state.disposed:
                state.disposed = True
                self._fail(exc)
            await self.aclose()
            return False
        if state.disposed:
            await self.aclose()
            return False
        return True

    def _complete(self) -> None:
        try:
            self._observer.on_completed()
        except Exception as exc:
            # an observer's on_completed raised; observers are stopped now, so say it once
            self._fail(exc)

    def _fail(self, exc: Exception, *, typed: bool = True) -> None:
        try:
            self._observer.on_error(as_api_error(exc) if typed else exc)
        except Exception as inner:  # an observer's on_error raised: nothing left to tell
            _log.warning("rxllm.streams.observer_failed", error=repr(inner), original=repr(exc))

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
    """Per-subscription state shared by the pump task (or the adopting consumer) and its disposable."""

    __slots__ = ("dispose_cancels", "disposed", "loop", "puller", "task", "thread_id")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.task: asyncio.Task[None] | None = None
        self.disposed = False
        self.thread_id: int | None = None
        #: The adopting consumer's task while it waits inside ``pull`` (else None).
        self.puller: asyncio.Task[Any] | None = None
        self.dispose_cancels = 0

    def dispose(self) -> None:
        if self.disposed:
            return
        self.disposed = True
        puller = self.puller
        if puller is not None:
            # an adopting consumer waits for the next item: a timeout operator (or anything
            # else on the loop) disposed us, so wake it; pull() turns this cancel into silence
            if asyncio.current_task(self.loop) is not puller and not puller.done():
                self.dispose_cancels += 1
                puller.cancel()
            return
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


class FlowControl:
    """How much an edge holds for its consumer; pumps stop pulling while it is over ``limit``.

    The edge calls :meth:`add` when it buffers an item and :meth:`release` when its consumer
    takes one (from any thread); a pump subscribed under :func:`flow_control` awaits
    :meth:`wait` after an item while :attr:`paused`. While no pump pulls, aiohttp's own read
    buffer fills and it stops reading the socket: the upstream is paced by the consumer.

    Args:
        loop: The loop the pumps run on.
        limit: Bytes (estimated) held before pumps pause; they resume below half of it.
    """

    __slots__ = ("_lock", "_waiter", "limit", "loop", "size")

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self.loop = loop
        self.limit = limit
        self.size = 0
        self._lock = threading.Lock()
        self._waiter: asyncio.Future[None] | None = None

    @property
    def paused(self) -> bool:
        """Whether the edge holds more than ``limit``."""
        return self.size > self.limit

    def add(self, n: int) -> None:
        """The edge buffered an item of about ``n`` bytes."""
        with self._lock:
            self.size += n

    def release(self, n: int) -> None:
        """The consumer took an item of about ``n`` bytes (thread-safe)."""
        with self._lock:
            self.size -= n
            if self.size < 0:
                self.size = 0
            waiter = self._waiter
            if waiter is None or self.size > self.limit // 2:
                return
            self._waiter = None
        if self.loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            _wake(waiter)
        else:
            self.loop.call_soon_threadsafe(_wake, waiter)

    def add_here(self, n: int) -> None:
        """:meth:`add` without the lock, for an edge whose every ``add``/``release`` runs on :attr:`loop`'s thread."""
        self.size += n

    def release_here(self, n: int) -> None:
        """:meth:`release` without the lock, on :attr:`loop`'s thread (see :meth:`add_here`)."""
        size = self.size - n
        self.size = size = size if size > 0 else 0
        waiter = self._waiter
        if waiter is not None and size <= self.limit // 2:
            self._waiter = None
            _wake(waiter)

    def close(self) -> None:
        """The edge is gone: never hold a pump again."""
        self.limit = 1 << 62
        self.release(0)

    async def wait(self) -> None:
        """Wait until the consumer has taken enough (the buffer is below half the limit)."""
        while True:
            with self._lock:
                if self.size <= self.limit // 2:
                    return
                waiter = self._waiter
                if waiter is None or waiter.done():
                    waiter = self._waiter = self.loop.create_future()
            await waiter


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


@contextlib.contextmanager
def flow_control(flow: FlowControl | None) -> Iterator[None]:
    """Sources subscribed inside this block (and later from their pumps) are paced by ``flow``."""
    token = _FLOW.set(flow)
    try:
        yield
    finally:
        _FLOW.reset(token)


async def _aclose(iterator: Any) -> None:
    """Close an async iterator, even while its task is being cancelled."""
    aclose = getattr(iterator, "aclose", None)
    if aclose is None:
        return
    try:
        await aclose()
    except (Exception, asyncio.CancelledError):  # noqa: S110 - closing must not mask the outcome
        pass
