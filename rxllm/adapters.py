"""The edges: Observables as blocking iterators and as async iterators.

Both edges subscribe once, buffer what arrives, re-raise errors where the consumer waits
(always typed: anything that is not an :class:`rxllm.APIError` arrives wrapped in one), and
dispose the subscription on ``close()``/``aclose()``, on leaving a ``with`` block, on task
cancellation, and when the iterator is garbage collected (an abandoned ``for ... break``).

Backpressure: each edge holds at most about ``max_buffer`` bytes per stream (default
:data:`DEFAULT_MAX_BUFFER`, 256 KiB, estimated from the items' text). Past that, the sources
it subscribed (:func:`rxllm.stream` and everything built on :func:`from_async_iterable`)
stop pulling from the provider, so the socket is not read until the consumer catches up;
the event loop is never blocked. ``pull=True`` needs no buffer: it reads on demand.

The async edge pulls straight from the source when it can: an Observable made by
:func:`~rxllm.streams.from_async_iterable` (:func:`rxllm.stream` is one), or one with only
fused steps after it (``acompletion``'s instrumentation), is a
:class:`~rxllm.streams.PullableObservable`, and since each subscription to it is the
iterator's alone, the iterator iterates the source itself and runs the steps inline: per
item, one ``await`` of the source and one call per step (no pump task, observer chain or
hand-over buffer). Items, errors, completion and disposal are those of a subscription.

The observer side holds only a small channel object, never the iterator, so dropping the
iterator really does let it be collected and the upstream request be cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sys
import threading
from asyncio import current_task
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator
from types import TracebackType
from typing import Any, Generic, TypeVar

from reactivex import Observable, abc

from rxllm._log import get_logger
from rxllm.errors import APIError, as_api_error
from rxllm.loop import get_loop, in_loop_thread
from rxllm.streams import (
    FlowControl,
    PullableObservable,
    PullSource,
    PullStep,
    _aclose,
    flow_control,
    pulling,
    track_pump,
)
from rxllm.types import ChatCompletionChunk

_task_of: Callable[[asyncio.AbstractEventLoop], asyncio.Task[Any] | None] = current_task
if sys.version_info < (3, 12):  # pragma: no branch - one of the two, per interpreter
    # 3.11's current_task(loop) is Python code around this one dict lookup (3.12 has it in C):
    # the direct pull asks once per item
    _current: Any = getattr(asyncio.tasks, "_current_tasks", None)
    if isinstance(_current, dict):
        _task_of = _current.get

__all__ = [
    "DEFAULT_MAX_BUFFER",
    "AsyncStreamIterator",
    "BlockingStreamIterator",
    "approximate_size",
    "to_async_iterator",
    "to_iterator",
]

#: Bytes (estimated) an edge holds for a slow consumer before the upstream stops being read.
DEFAULT_MAX_BUFFER = 256 * 1024

_CHUNK_OVERHEAD = 320  # a chunk object with one choice and its delta, roughly
_CHOICE_OVERHEAD = 160


def approximate_size(item: Any) -> int:
    """About how many bytes ``item`` holds: its text plus a per-object overhead (cheap, O(choices))."""
    cls = item.__class__
    if cls is ChatCompletionChunk:
        n = _CHUNK_OVERHEAD
        for choice in item.choices:
            d = choice.delta
            n += _CHOICE_OVERHEAD + len(d.content or "") + len(d.reasoning_content or "")
            tcs = d.tool_calls
            if tcs:
                for tc in tcs:
                    fn = tc.function
                    n += _CHOICE_OVERHEAD + (len(fn.arguments or "") if fn is not None else 0)
        return n
    if cls is bytes or cls is str or cls is bytearray:
        return 64 + len(item)
    return _CHUNK_OVERHEAD


def _resolve_limit(max_buffer: int | None) -> int:
    if max_buffer is None:
        return DEFAULT_MAX_BUFFER
    if isinstance(max_buffer, bool) or not isinstance(max_buffer, int) or max_buffer < 1:
        raise ValueError(f"max_buffer must be a positive number of bytes, got {max_buffer!r}")
    return max_buffer


T = TypeVar("T")

_NEXT, _ERROR, _DONE = 0, 1, 2

_log = get_logger("rxllm.adapters")


class _SubscriptionSlot:
    """Holds a disposable that may arrive after dispose was asked for (thread-safe)."""

    __slots__ = ("_disposable", "_disposed", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._disposable: abc.DisposableBase | None = None
        self._disposed = False

    def set(self, disposable: abc.DisposableBase) -> None:
        with self._lock:
            if not self._disposed:
                self._disposable = disposable
                return
        disposable.dispose()

    def dispose(self) -> None:
        with self._lock:
            if self._disposed:
                return
            self._disposed = True
            disposable, self._disposable = self._disposable, None
        if disposable is not None:
            disposable.dispose()


# --------------------------------------------------------------------------- blocking


class BlockingStreamIterator(Iterator[T]):
    """A blocking iterator over an Observable, served by rxllm's background loop.

    It subscribes at construction, on rxllm's loop thread, so it works the same in a
    script, a worker thread and a Jupyter cell (whose own loop is busy running the cell).
    Use it as a context manager, or call :meth:`close`, to cancel early; garbage
    collection cancels too.
    """

    def __init__(self, source: Observable[T], *, max_buffer: int | None = None) -> None:
        if in_loop_thread():
            raise RuntimeError(
                "a blocking iterator cannot be used on rxllm's own event-loop thread; use to_async_iterator there"
            )
        limit = _resolve_limit(max_buffer)
        self._queue: queue.SimpleQueue[tuple[int, Any, int]] = queue.SimpleQueue()
        self._slot = _SubscriptionSlot()
        self._finished = False
        self._loop = get_loop()
        self._flow = flow = FlowControl(self._loop, limit)
        put = self._queue.put
        slot = self._slot
        add = flow.add

        def on_next(item: Any) -> None:
            n = approximate_size(item)
            add(n)
            put((_NEXT, item, n))

        def subscribe() -> None:
            try:
                with flow_control(flow):
                    disposable = source.subscribe(
                        on_next=on_next,
                        on_error=lambda exc: put((_ERROR, as_api_error(exc), 0)),
                        on_completed=lambda: put((_DONE, None, 0)),
                    )
            except Exception as exc:
                put((_ERROR, as_api_error(exc), 0))
                return
            slot.set(disposable)

        self._loop.call_soon_threadsafe(subscribe)

    def __iter__(self) -> BlockingStreamIterator[T]:
        return self

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        kind, value, n = self._queue.get()
        if kind == _NEXT:
            self._flow.release(n)
            return value  # type: ignore[no-any-return]
        self._finished = True
        self._dispose()
        if kind == _ERROR:
            raise value
        raise StopIteration

    def close(self) -> None:
        """Stop early: dispose the subscription (cancelling the request)."""
        self._finished = True
        self._dispose()

    def _dispose(self) -> None:
        loop = self._loop
        if loop.is_closed():
            return
        self._flow.close()
        try:
            loop.call_soon_threadsafe(self._slot.dispose)
        except RuntimeError:  # loop closed concurrently (interpreter exit)
            pass

    def __enter__(self) -> BlockingStreamIterator[T]:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_finished", True):
            self.close()


def to_iterator(source: Observable[T], *, max_buffer: int | None = None) -> BlockingStreamIterator[T]:
    """A blocking iterator over ``source`` (subscribes now, on rxllm's loop thread).

    Args:
        source: The Observable to iterate.
        max_buffer: Bytes (estimated) held for a slow consumer before the upstream stops
            being read (default :data:`DEFAULT_MAX_BUFFER`).

    Returns:
        The iterator; errors are raised typed (:class:`rxllm.APIError`) at ``next()``.

    Raises:
        RuntimeError: When called on rxllm's own loop thread, where blocking would deadlock.
        ValueError: When ``max_buffer`` is not a positive integer.
    """
    return BlockingStreamIterator(source, max_buffer=max_buffer)


# --------------------------------------------------------------------------- async


class _Channel(Generic[T]):
    """The observer side of an async iterator: a buffer and one waiter, on one loop.

    Everything happens on the loop's thread (items emitted on another thread are handed
    over first), so the flow accounting needs no lock.
    """

    __slots__ = ("buffer", "flow", "loop", "thread_id", "waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self.loop = loop
        self.thread_id = threading.get_ident()
        self.buffer: deque[tuple[int, Any, int]] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.flow = FlowControl(loop, limit)

    def push(self, item: tuple[int, Any, int]) -> None:
        if threading.get_ident() != self.thread_id:
            self.loop.call_soon_threadsafe(self._push, item)
        else:
            self._push(item)

    def push_next(self, value: Any) -> None:
        if threading.get_ident() != self.thread_id:
            self.loop.call_soon_threadsafe(self.push_next, value)
            return
        n = approximate_size(value)
        self.flow.size += n  # FlowControl.add_here, inlined
        self._push((_NEXT, value, n))

    def _push(self, item: tuple[int, Any, int]) -> None:
        self.buffer.append(item)
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)


class _DirectPull:
    """An exclusive consumer's pull of a :class:`~rxllm.streams.PullableObservable`, without subscribing.

    The source's iterator (made on the first :meth:`next`) and its steps' states, opened at
    construction, downstream first, as subscriptions are: a step that refuses to open ends
    the stream before any request, its error passed through the steps below it. The rules
    are :class:`~rxllm.streams.PullSource`'s: the iterator's own error passes through the
    steps as it is, an exception a step raises reaches the steps typed, and what reaches
    the consumer is always typed; the iterator is closed when the stream ends, fails or is
    disposed; a disposal while the consumer waits for the source (another task's
    ``aclose()``) ends the wait silently.
    """

    __slots__ = (
        "anext",
        "cancels",
        "closed",
        "ended",
        "factory",
        "finished",
        "head",
        "iterator",
        "loop",
        "nexts",
        "puller",
        "steps",
        "thread_id",
    )

    def __init__(self, source: PullableObservable[Any], loop: asyncio.AbstractEventLoop) -> None:
        self.factory: Callable[[], AsyncIterable[Any]] = source.factory
        self.loop = loop
        self.thread_id = threading.get_ident()
        self.iterator: AsyncIterator[Any] | None = None
        self.anext: Callable[[], Awaitable[Any]] | None = None
        #: The outcome taken before the consumer asked for it (``peek``, a step refusing to open).
        self.head: tuple[int, Any] | None = None
        self.ended = False  # the steps have seen the end or an error
        self.finished = False  # nothing more to deliver after ``head``
        self.closed = False  # the iterator is closed (or never made)
        self.puller: asyncio.Task[Any] | None = None  # the task awaiting the source right now
        self.cancels = 0  # cancellations of the puller that are disposals
        self.steps: list[PullStep[Any]] = []
        openers = source.steps
        for i in range(len(openers) - 1, -1, -1):
            try:
                self.steps.insert(0, openers[i]())
            except Exception as exc:
                self.head = (_ERROR, as_api_error(self._fail_from(0, exc)))
                self.ended = self.finished = self.closed = True
                break
        self.nexts = tuple(step.next for step in self.steps)

    # ------------------------------------------------------------------ the steps

    def _fail_from(self, start: int, exc: Exception) -> Exception:
        """Pass an error through the steps from ``start`` on; the error that leaves the last."""
        self.ended = True
        for step in self.steps[start:]:
            try:
                exc = step.fail(exc)
            except Exception as inner:  # a step's error handler raised: keep the error it was given
                _log.warning("rxllm.adapters.step_failed", error=repr(inner), original=repr(exc))
        return exc

    def _complete(self) -> APIError | None:
        """The iterator finished: complete the steps in order; the consumer's error, if one fails it."""
        self.ended = True
        for i, step in enumerate(self.steps):
            try:
                error = step.complete()
            except Exception as exc:
                error = as_api_error(exc)
            if error is not None:
                return as_api_error(self._fail_from(i + 1, error))
        return None

    def dispose(self) -> None:
        """The consumer is done: every step hears it, upstream first (steps that ended ignore it)."""
        self.finished = True
        steps, self.steps, self.nexts = self.steps, [], ()
        for step in steps:
            step.dispose()

    # ------------------------------------------------------------------ pulling

    async def next(self) -> Any:
        """The next item; ``StopAsyncIteration`` at the end; the stream's error, typed.

        Raises:
            StopAsyncIteration: At the end, and after an error or a disposal.
            APIError: The stream's error (once).
            asyncio.CancelledError: The awaiting task was cancelled (the stream is disposed).
        """
        head = self.head
        if head is not None:
            self.head = None
            kind, value = head
            if kind == _NEXT:
                return value
            self.finished = True
            if kind == _ERROR:
                raise value
            raise StopAsyncIteration
        if self.finished:
            raise StopAsyncIteration
        error: APIError | None = None
        step = self.anext
        if step is None:
            try:
                iterator = self.iterator = aiter(self.factory())
            except Exception as exc:
                error = as_api_error(self._fail_from(0, exc))
            if error is not None:
                self.closed = True
                self.dispose()
                raise error  # outside the except block: nothing in its __context__
            step = self.anext = iterator.__anext__
        task = self.puller = _task_of(self.loop)  # (with the loop given: no get_running_loop)
        try:
            item = await step()
        except StopAsyncIteration:
            self.puller = None
            error = self._complete()
            if error is None:
                await self.aclose()
                self.dispose()
                raise
        except asyncio.CancelledError:
            self.puller = None
            await self.aclose()
            self.dispose()
            if self.cancels and task is not None and task.uncancel() == 0:
                self.cancels = 0
                raise StopAsyncIteration from None  # disposed by another task while we waited
            raise
        except Exception as exc:
            self.puller = None
            error = as_api_error(self._fail_from(0, exc))  # the iterator's own error, through the steps as it is
        else:
            self.puller = None
            if self.finished:  # disposed (by another task) while the item was on its way
                await self.aclose()
                raise StopAsyncIteration
            nexts = self.nexts
            try:
                for step_next in nexts:
                    ended = step_next(item)
                    if ended is not None:
                        error = as_api_error(self._fail_from(nexts.index(step_next) + 1, ended))
                        break
                else:
                    return item
            except Exception as exc:
                # a step raised: typed, through every step, as a subscription delivers it
                error = as_api_error(self._fail_from(0, as_api_error(exc)))
        assert error is not None
        await self.aclose()
        self.dispose()
        raise error  # outside the except blocks: nothing in its __context__

    async def peek(self) -> None:
        """Take the first outcome (item, end or error) into ``head`` without delivering it."""
        if self.head is not None or self.finished:
            return
        try:
            item = await self.next()
        except StopAsyncIteration:
            self.head = (_DONE, None)
        except APIError as exc:
            self.head = (_ERROR, exc)
        else:
            self.head = (_NEXT, item)

    def first_error(self) -> BaseException | None:
        head = self.head
        return head[1] if head is not None and head[0] == _ERROR else None

    # ------------------------------------------------------------------ closing

    async def aclose(self) -> None:
        """Close the iterator (awaited); idempotent."""
        if self.closed:
            return
        self.closed = True
        if self.iterator is not None:
            await _aclose(self.iterator)

    def close_soon(self) -> None:
        """Close the iterator without waiting for it (from ``__del__`` or a disposal in another task)."""
        if self.closed or self.iterator is None:
            self.closed = True
            return
        puller = self.puller
        if puller is not None:
            # a task waits for the next item: wake it; it closes the iterator itself
            if not puller.done() and current_task(self.loop) is not puller:
                self.cancels += 1
                if threading.get_ident() == self.thread_id:
                    puller.cancel()
                else:
                    self.loop.call_soon_threadsafe(puller.cancel)
            return
        self.closed = True
        if threading.get_ident() == self.thread_id:
            _start_closing(self.loop, self.iterator)
        elif not self.loop.is_closed():
            self.loop.call_soon_threadsafe(_start_closing, self.loop, self.iterator)


def _start_closing(loop: asyncio.AbstractEventLoop, iterator: AsyncIterator[Any]) -> None:
    if loop.is_closed():
        return
    _CLOSING.add(task := loop.create_task(_aclose(iterator)))
    task.add_done_callback(_CLOSING.discard)


async def _pump_direct(direct: _DirectPull, channel: _Channel[Any]) -> None:
    """A pump for the default (buffered) mode: the direct pull, into the channel, paced by its flow."""
    push = channel._push
    flow = channel.flow
    try:
        while True:
            try:
                item = await direct.next()
            except StopAsyncIteration:
                push((_DONE, None, 0))
                return
            except APIError as exc:
                push((_ERROR, exc, 0))
                return
            n = approximate_size(item)
            flow.size += n  # FlowControl.add_here, inlined: the pump runs on the channel's loop
            push((_NEXT, item, n))
            if flow.size > flow.limit:
                await flow.wait()  # the consumer holds enough: stop reading the socket
    except asyncio.CancelledError:
        await direct.aclose()  # disposal: silent


class AsyncStreamIterator(AsyncIterator[T]):
    """An async iterator over an Observable, on the running loop.

    It subscribes on first use (or at :meth:`start`). ``aclose()``, leaving an
    ``async with`` block, cancelling the consuming task, or garbage collection disposes
    the subscription; errors are raised at the ``await``.

    With ``pull=True`` the iterator declares itself the pipeline's only consumer: an
    :func:`~rxllm.streams.from_async_iterable` source subscribed while it starts is pulled
    from the consumer's own task, item by item, instead of by a pump task (one task wake-up
    per item instead of two). Do not use it on a source shared with other subscribers.

    A :class:`~rxllm.streams.PullableObservable` (``rxllm.stream()``, anything from
    :func:`~rxllm.streams.from_async_iterable`, ``acompletion``'s pipeline) is not
    subscribed at all: its subscription could only ever be this iterator's, so the source
    is iterated directly, its fused steps run inline (from the consumer's task with
    ``pull=True``; else from a pump task filling the buffer, as for any source).
    """

    def __init__(self, source: Observable[T], *, pull: bool = False, max_buffer: int | None = None) -> None:
        self._source = source
        self._limit = _resolve_limit(max_buffer)
        self._pull_enabled = pull
        self._pull: PullSource[Any] | None = None
        self._channel: _Channel[T] | None = None
        self._direct: _DirectPull | None = None
        self._pump: asyncio.Task[None] | None = None
        self._slot = _SubscriptionSlot()
        self._finished = False

    def start(self) -> None:
        """Subscribe now (idempotent); must be called with a running loop."""
        if self._channel is not None or self._direct is not None:
            return
        source = self._source
        if source.__class__ is PullableObservable:
            loop = asyncio.get_running_loop()
            direct = self._direct = _DirectPull(source, loop)
            if not self._pull_enabled:
                channel = self._channel = _Channel(loop, self._limit)
                self._pump = track_pump(loop.create_task(_pump_direct(direct, channel)))
            return
        channel = _Channel(asyncio.get_running_loop(), self._limit)
        self._channel = channel
        push = channel.push
        try:
            with (
                pulling(self._adopt) if self._pull_enabled else contextlib.nullcontext(),
                flow_control(channel.flow),
            ):
                disposable = self._source.subscribe(
                    on_next=channel.push_next,
                    on_error=lambda exc: push((_ERROR, as_api_error(exc), 0)),
                    on_completed=lambda: push((_DONE, None, 0)),
                )
        except Exception as exc:
            push((_ERROR, as_api_error(exc), 0))
            return
        self._slot.set(disposable)

    def _adopt(self, source: PullSource[Any]) -> bool:
        if self._pull is not None:
            return False
        self._pull = source
        return True

    def __aiter__(self) -> AsyncStreamIterator[T]:
        return self

    def __anext__(self) -> Awaitable[T]:
        # a plain method returning the one coroutine that does the work (no await layer more)
        if self._channel is None:
            direct = self._direct
            if direct is None and not self._finished:
                self.start()
                direct = self._direct
            if direct is not None and self._channel is None:
                return direct.next()
        return self._next_channel()

    def direct_anext(self) -> Callable[[], Awaitable[T]] | None:
        """What :meth:`__anext__` calls for every item once started on a pulled source, or ``None``.

        A started iterator over a :class:`~rxllm.streams.PullableObservable` with ``pull=True``
        hands each ``__anext__`` to its direct pull; a wrapper that iterates it may call this
        instead (one call less per item). ``None`` when the iterator has not started or uses
        its buffer.
        """
        direct = self._direct
        if direct is None or self._channel is not None:
            return None
        return direct.next

    async def _fill(self) -> deque[tuple[int, Any, int]]:
        """Wait until the buffer holds something: pull from an adopted source, else wait."""
        if self._channel is None:
            self.start()
        channel = self._channel
        assert channel is not None
        buffer = channel.buffer
        try:
            while not buffer:
                source = self._pull
                if source is not None:
                    if not await source.pull():
                        self._pull = None
                    continue
                waiter = channel.loop.create_future()
                channel.waiter = waiter
                await waiter
        except asyncio.CancelledError:
            self._finish()
            raise
        return buffer

    async def _next_channel(self) -> T:
        if self._finished:
            raise StopAsyncIteration
        channel = self._channel
        buffer = channel.buffer if channel is not None and channel.buffer else await self._fill()
        kind, value, n = buffer.popleft()
        if kind == _NEXT:
            if channel is not None and n:
                channel.flow.release_here(n)
            return value  # type: ignore[no-any-return]
        self._finish()
        if kind == _ERROR:
            raise value
        raise StopAsyncIteration

    async def peek_ready(self) -> None:
        """Wait until the first item, error or completion has arrived (without taking it)."""
        if self._finished:
            return
        if self._channel is None and self._direct is None:
            self.start()
        direct = self._direct
        if direct is not None and self._channel is None:
            await direct.peek()
        else:
            await self._fill()

    def first_error(self) -> BaseException | None:
        """The error at the head of the buffer, if the stream failed before any item."""
        channel = self._channel
        if channel is None:
            return self._direct.first_error() if self._direct is not None else None
        if channel.buffer and channel.buffer[0][0] == _ERROR:
            exc: BaseException = channel.buffer[0][1]
            return exc
        return None

    async def aclose(self) -> None:
        """Stop early: dispose the subscription, and close a pulled source before returning."""
        source, self._pull = self._pull, None
        direct = self._direct
        if direct is not None and self._pump is None:
            self._finished = True
            direct.head = None
            direct.dispose()
            if direct.puller is None:
                await direct.aclose()
            else:
                direct.close_soon()  # the consumer waits in another task: it closes the iterator
            return
        self._finish()
        if source is not None:
            await source.aclose()

    def _finish(self) -> None:
        self._finished = True
        channel = self._channel
        if channel is not None:
            channel.flow.close()
        direct = self._direct
        if direct is not None:
            direct.head = None
            direct.dispose()
            pump = self._pump
            if pump is None:
                direct.close_soon()
            elif not pump.done() and current_task(direct.loop) is not pump:
                if threading.get_ident() == direct.thread_id:
                    pump.cancel()  # the pump closes the iterator
                else:
                    direct.loop.call_soon_threadsafe(pump.cancel)
            return
        self._slot.dispose()
        source = self._pull
        if source is not None and not source.closed:
            # Not awaited here (this also runs from __del__): close it on its loop.
            self._pull = None
            channel = self._channel
            if channel is not None and not channel.loop.is_closed():
                _CLOSING.add(task := channel.loop.create_task(source.aclose()))
                task.add_done_callback(_CLOSING.discard)

    async def __aenter__(self) -> AsyncStreamIterator[T]:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        if not getattr(self, "_finished", True):
            self._finish()


# Closing tasks for pulled sources abandoned without aclose() (asyncio keeps weak references).
_CLOSING: set[asyncio.Task[None]] = set()


def to_async_iterator(
    source: Observable[T], *, pull: bool = False, max_buffer: int | None = None
) -> AsyncStreamIterator[T]:
    """An async iterator over ``source``; it subscribes on first ``__anext__``.

    Args:
        source: The Observable to iterate.
        pull: The iterator is the source's only consumer and pulls it from its own task
            (see :class:`AsyncStreamIterator`); leave it off for sources shared with others.
        max_buffer: Bytes (estimated) held for a slow consumer before the upstream stops
            being read (default :data:`DEFAULT_MAX_BUFFER`).

    Returns:
        The iterator; errors are raised typed (:class:`rxllm.APIError`) at the ``await``.

    Raises:
        ValueError: When ``max_buffer`` is not a positive integer.
    """
    return AsyncStreamIterator(source, pull=pull, max_buffer=max_buffer)
