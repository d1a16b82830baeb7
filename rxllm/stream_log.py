"""Stream logs: a stream's events kept by key, readable from any position by any number of readers.

A :class:`StreamLog` is what makes a stream *resumable* and *fan-out*: a producer appends each
event under the stream's key (:func:`rxllm.operators.tee_to` does it for a chunk stream), and
any reader, now or later, in this process or (with the Redis implementation) in another one,
reads the events after the id it has seen, then the live ones, until the stream's end::

    log = MemoryStreamLog()
    rxllm.stream("mock/echo", messages).pipe(ops.tee_to(log, "run-1")).subscribe()
    rxllm.resume(log, "run-1", after=3)        # events 4, 5, ... then the live ones

Event ids are positions: the n-th event appended to a key has id ``"n"`` (``"1"`` first). A
reader that has received k events resumes with ``after=k`` and gets every later event exactly
once. The stream ends with a marker written by :meth:`StreamLog.finish`: success completes
every reader; a failure ends every reader with a typed error of the same class, status and
message (reconstructed, so it crosses processes). Logs are bounded: at most ``maxlen`` events
are kept per key (a reader that falls behind the oldest kept one gets
:class:`ResumptionLostError`, never a silent gap), and a key expires ``ttl`` seconds after
its last write.

This module holds the interface and the in-process :class:`MemoryStreamLog` (one process, any
number of readers); :class:`rxllm.integrations.redis_log.RedisStreamLog` keeps the events in
a Redis Stream, shared by every process and machine that reaches the server.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from itertools import islice
from typing import Any, Final

import attrs
import orjson
import reactivex
from reactivex import Observable
from reactivex import abc as rxabc
from reactivex.disposable import Disposable

from rxllm.errors import APIError, BadRequestError, error_for_status, resolve_error_class
from rxllm.types import ChatCompletionChunk

__all__ = [
    "DEFAULT_MAXLEN",
    "DEFAULT_TTL",
    "LogEvent",
    "LogWrite",
    "LogWriter",
    "MemoryStreamLog",
    "ResumptionLostError",
    "StreamCancelledError",
    "StreamEnd",
    "StreamInfo",
    "StreamLog",
    "StreamLogError",
    "StreamNotFoundError",
    "parse_event_id",
    "resume",
]

#: Events kept per key unless the log is told otherwise.
DEFAULT_MAXLEN: Final = 10_000

#: Seconds a key lives after its last write unless the log is told otherwise.
DEFAULT_TTL: Final = 3600.0


class StreamLogError(APIError):
    """A stream log could not do what was asked (the message says what and why)."""

    default_status_code = 500


class StreamNotFoundError(StreamLogError):
    """No stream with that key: it never existed, or it expired."""

    default_status_code = 404


class ResumptionLostError(StreamLogError):
    """The events a reader needed are gone (trimmed, expired, or the log's server was lost)."""

    default_status_code = 503


class StreamCancelledError(StreamLogError):
    """The stream was cancelled (:meth:`StreamLog.cancel`); its producer stops appending."""

    default_status_code = 499


_OWN_ERRORS: Final[dict[str, type[APIError]]] = {
    cls.__name__: cls for cls in (StreamLogError, StreamNotFoundError, ResumptionLostError, StreamCancelledError)
}


@attrs.frozen
class LogEvent:
    """One event of a stream log.

    Attributes:
        id: Its position as a decimal string (``"1"`` is the first event of the key).
        data: The bytes appended.
    """

    id: str
    data: bytes


@attrs.frozen
class StreamEnd:
    """How a stream ended, as :meth:`StreamLog.finish` recorded it.

    Attributes:
        error_type: The error's class name (``"RateLimitError"``); ``None`` for success.
        status: The error's HTTP status (0 for success).
        message: The error's message (empty for success).
    """

    error_type: str | None = None
    status: int = 0
    message: str = ""

    @classmethod
    def of(cls, error: BaseException | None) -> StreamEnd:
        """The record for a stream that ended with ``error`` (``None``: success)."""
        if error is None:
            return cls()
        if isinstance(error, APIError):
            return cls(type(error).__name__, error.status_code, error.message)
        return cls("InternalServerError", 500, f"the stream failed ({type(error).__name__})")

    def to_error(self) -> APIError | None:
        """The typed error to end readers with (``None`` for success)."""
        if self.error_type is None:
            return None
        cls = _OWN_ERRORS.get(self.error_type)
        try:
            cls = cls or resolve_error_class(self.error_type)
        except BadRequestError:
            return error_for_status(self.status or 500, self.message)
        error = cls(self.message)
        if self.status:
            error.status_code = self.status
        return error

    def encode(self) -> bytes:
        """Compact JSON (what the Redis log stores)."""
        return orjson.dumps({"t": self.error_type, "s": self.status, "m": self.message})

    @classmethod
    def decode(cls, raw: bytes) -> StreamEnd:
        """The inverse of :meth:`encode` (anything unreadable is a server error)."""
        try:
            data = orjson.loads(raw)
            return cls(data.get("t"), int(data.get("s") or 0), str(data.get("m") or ""))
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
            return cls("InternalServerError", 500, "the stream ended with an unreadable end marker")


@attrs.frozen
class StreamInfo:
    """What a log knows about one key.

    Attributes:
        last_id: The id of the last event appended (``"0"``: none yet).
        end: How it ended, ``None`` while it is live.
        cancelled: Whether :meth:`StreamLog.cancel` was called for it.
    """

    last_id: str
    end: StreamEnd | None = None
    cancelled: bool = False

    @property
    def finished(self) -> bool:
        """Whether the stream has ended (successfully or not)."""
        return self.end is not None


@attrs.frozen
class LogWrite:
    """One key's share of a batched write (:meth:`StreamLog.write_many`).

    Attributes:
        key: The stream's key.
        items: Events to append, in order.
        end: When set, end the stream after ``items`` (:meth:`StreamEnd.of` the error, or
            ``StreamEnd()`` for success).
        create: Create the key first (as :meth:`StreamLog.open`: fails if it exists).
    """

    key: str
    items: Sequence[bytes] = ()
    end: StreamEnd | None = None
    create: bool = False


def parse_event_id(value: int | str | None) -> int:
    """A reader position from an event id (``None`` or ``""``: before the first event).

    Raises:
        BadRequestError: ``value`` is not a non-negative integer (or its decimal string).
    """
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise BadRequestError(f"an event id must be a non-negative integer, got {value!r}")
    if isinstance(value, int):
        position = value
    else:
        text = value.strip()
        if not text.isdigit() or len(text) > 18:
            raise BadRequestError(f"an event id must be a non-negative integer, got {value[:40]!r}")
        position = int(text)
    if position < 0:
        raise BadRequestError(f"an event id must be a non-negative integer, got {value!r}")
    return position


class StreamLog(abc.ABC):
    """Events by stream key: append, finish, read from any position as an Observable.

    Args:
        maxlen: Events kept per key (older ones are dropped; a reader that needs them gets
            :class:`ResumptionLostError`).
        ttl: Seconds a key lives after its last write.

    Implementations keep these promises: ids are positions (``"1"``, ``"2"``, ...) per key;
    :meth:`read` is cold (each subscription reads on its own, from its own position);
    a reader sees every event after its position exactly once and in order, then the end;
    disposing a reader stops it at once.
    """

    def __init__(self, *, maxlen: int = DEFAULT_MAXLEN, ttl: float = DEFAULT_TTL) -> None:
        if maxlen < 1:
            raise ValueError(f"maxlen must be at least 1, got {maxlen}")
        if ttl <= 0:
            raise ValueError(f"ttl must be positive, got {ttl}")
        self.maxlen = maxlen
        self.ttl = ttl
        self._flushers: dict[asyncio.AbstractEventLoop, _Flusher] = {}

    async def open(self, key: str) -> None:
        """Create the stream ``key`` with no events (readers may subscribe before the first one).

        Raises:
            StreamLogError: ``key`` already exists (or the log cannot be reached).
        """
        await self._open(key)

    async def append(self, key: str, data: bytes) -> str:
        """Append one event to ``key`` (creating it if need be); returns its id.

        Raises:
            StreamCancelledError: The stream was cancelled.
            StreamLogError: The stream has finished (or the log cannot be reached).
        """
        ids = await self.append_many(key, (data,))
        return ids[0]

    @abc.abstractmethod
    async def _open(self, key: str) -> None: ...

    @abc.abstractmethod
    async def append_many(self, key: str, items: Sequence[bytes]) -> list[str]:
        """Append several events to ``key`` in order (one round trip); returns their ids.

        Raises:
            StreamCancelledError: The stream was cancelled.
            StreamLogError: The stream has finished (or the log cannot be reached).
        """

    async def write_many(self, writes: Sequence[LogWrite]) -> list[StreamLogError | None]:
        """Several keys' appends (and ends) at once: what the writers of one log and loop share.

        Each write is done in order (create, then its items, then its end); a write whose
        stream was cancelled appends nothing and ends the stream with the
        :class:`StreamCancelledError`, so its readers finish. This default does the writes one
        after the other; the Redis log sends them all in one round trip.

        Returns:
            Per write, in order: ``None`` when done, else the error that stopped it (the
            other writes are not affected; a lost log fails them all).
        """
        results: list[StreamLogError | None] = []
        for write in writes:
            try:
                if write.create:
                    await self.open(write.key)
                if write.items:
                    await self.append_many(write.key, write.items)
                if write.end is not None:
                    await self.finish(write.key, write.end.to_error())
            except StreamCancelledError as exc:
                with contextlib.suppress(StreamLogError):
                    await self.finish(write.key, exc)
                results.append(exc)
                continue
            except StreamLogError as exc:
                results.append(exc)
                continue
            results.append(None)
        return results

    @abc.abstractmethod
    async def finish(self, key: str, error: BaseException | None = None) -> None:
        """Mark ``key`` as ended: readers complete, or fail with ``error``'s type and message.

        Finishing a finished stream does nothing.

        Raises:
            StreamLogError: The log cannot be reached.
        """

    @abc.abstractmethod
    async def info(self, key: str) -> StreamInfo | None:
        """What the log knows about ``key`` (``None``: no such stream).

        Raises:
            StreamLogError: The log cannot be reached.
        """

    @abc.abstractmethod
    async def cancel(self, key: str) -> bool:
        """Ask the producer of ``key`` to stop; returns whether the stream exists.

        Its next :meth:`append_many` raises :class:`StreamCancelledError`.

        Raises:
            StreamLogError: The log cannot be reached.
        """

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Forget ``key`` (live readers end with :class:`ResumptionLostError`)."""

    @abc.abstractmethod
    def read(self, key: str, after: int | str | None = None) -> Observable[LogEvent]:
        """A cold Observable of the events of ``key`` after id ``after``, then the live ones.

        Args:
            key: The stream's key.
            after: The last event id the reader has (``None`` or ``0``: from the start).

        Returns:
            An Observable that emits :class:`LogEvent`\\ s and completes at the stream's end,
            or fails with the error it ended with, :class:`StreamNotFoundError` (no such key
            at subscription), or :class:`ResumptionLostError` (events needed are gone).

        Raises:
            BadRequestError: ``after`` is not a valid event id.
        """

    async def aclose(self) -> None:  # noqa: B027 - optional hook, nothing to close by default
        """Release connections (the memory log has none)."""


# --------------------------------------------------------------------------- in memory


class _Entry:
    """One key of the memory log (guarded by the log's lock)."""

    __slots__ = ("cancelled", "dropped", "end", "events", "expires", "first", "readers")

    def __init__(self, expires: float) -> None:
        self.events: deque[bytes] = deque()
        self.first = 1  # the id of events[0]
        self.end: StreamEnd | None = None
        self.cancelled = False
        self.dropped = False
        self.expires = expires
        self.readers: set[_Reader] = set()

    @property
    def last(self) -> int:
        return self.first + len(self.events) - 1


class _Reader:
    """One subscription to a memory log key: its position and a re-entrancy guard."""

    __slots__ = ("draining", "entry", "lock", "maxlen", "observer", "pending", "position", "raw", "stopped")

    def __init__(
        self,
        lock: threading.RLock,
        entry: _Entry,
        observer: rxabc.ObserverBase[Any],
        position: int,
        maxlen: int,
        raw: bool = False,
    ) -> None:
        self.lock = lock
        self.entry = entry
        self.observer = observer
        self.position = position  # the last id delivered
        self.maxlen = maxlen
        self.raw = raw  # deliver (first position, [data, ...]) batches instead of LogEvents
        self.draining = False
        self.pending = False
        self.stopped = False

    def drain(self) -> None:
        """Deliver everything after ``position`` (then the end), never re-entering itself."""
        lock = self.lock
        with lock:
            if self.draining or self.stopped:
                self.pending = True
                return
            self.draining = True
        released = False
        try:
            while True:
                with lock:
                    self.pending = False
                    entry = self.entry
                    batch: list[Any] = []
                    final: APIError | None = None
                    done = False
                    if self.position + 1 < entry.first:
                        final = ResumptionLostError(
                            f"events {self.position + 1}..{entry.first - 1} of this stream were trimmed "
                            f"(the log keeps the last {self.maxlen}); they cannot be resumed"
                        )
                    elif self.position < entry.last:
                        events = entry.events
                        first = entry.first
                        skip = self.position + 1 - first
                        if self.raw:
                            batch = [(first + skip, list(islice(events, skip, None)))]
                        else:
                            batch = [
                                LogEvent(str(first + skip + i), d) for i, d in enumerate(islice(events, skip, None))
                            ]
                        self.position = entry.last
                    elif entry.end is not None:
                        final = entry.end.to_error()
                        done = True
                    elif entry.dropped:
                        final = ResumptionLostError("the stream expired or was deleted while being read")
                    if final is not None or done:
                        self.stopped = True
                        entry.readers.discard(self)
                observer = self.observer
                for event in batch:
                    if self.stopped:
                        return
                    observer.on_next(event)
                if final is not None:
                    observer.on_error(final)
                    return
                if done:
                    observer.on_completed()
                    return
                with lock:
                    if not self.pending and not batch:
                        self.draining = False  # in the same critical section as the check
                        released = True
                        return
        finally:
            if not released:
                with lock:
                    self.draining = False

    def stop(self) -> None:
        with self.lock:
            self.stopped = True
            self.entry.readers.discard(self)


class MemoryStreamLog(StreamLog):
    """A stream log in this process's memory: fan-out and resumption within one process.

    Readers are called synchronously from :meth:`append_many` and :meth:`finish` (on the
    producer's thread and loop), so a live event costs no task switch. Thread-safe.

    Args:
        maxlen: Events kept per key.
        ttl: Seconds a key lives after its last write.
        clock: Monotonic seconds (tests pass a fake one).
    """

    def __init__(
        self, *, maxlen: int = DEFAULT_MAXLEN, ttl: float = DEFAULT_TTL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(maxlen=maxlen, ttl=ttl)
        self._clock = clock
        self._lock = threading.RLock()
        self._entries: dict[str, _Entry] = {}
        self._writes = 0

    def __repr__(self) -> str:
        return f"MemoryStreamLog(streams={len(self._entries)}, maxlen={self.maxlen}, ttl={self.ttl})"

    def _live(self, key: str, now: float) -> _Entry | None:
        """``key``'s entry unless it expired (then it is dropped and its readers told)."""
        entry = self._entries.get(key)
        if entry is not None and entry.expires <= now:
            self._drop(key)
            return None
        return entry

    def _drop(self, key: str) -> list[_Reader]:
        entry = self._entries.pop(key, None)
        if entry is None:
            return []
        entry.dropped = True
        return list(entry.readers)

    def _sweep(self, now: float) -> list[_Reader]:
        """Drop every expired key now and then (amortised over writes)."""
        self._writes += 1
        if self._writes % 256:
            return []
        stale = [k for k, e in self._entries.items() if e.expires <= now]
        readers: list[_Reader] = []
        for key in stale:
            readers.extend(self._drop(key))
        return readers

    def _create(self, key: str, now: float) -> _Entry:
        entry = _Entry(now + self.ttl)
        self._entries[key] = entry
        return entry

    async def _open(self, key: str) -> None:
        self.open_now(key)

    def open_now(self, key: str) -> None:
        """:meth:`open`, synchronously (the memory log never waits)."""
        with self._lock:
            now = self._clock()
            if self._live(key, now) is not None:
                raise StreamLogError(f"a stream with key {key!r} already exists")
            self._create(key, now)

    async def append_many(self, key: str, items: Sequence[bytes]) -> list[str]:
        """Append events to ``key`` (see :meth:`StreamLog.append_many`)."""
        return self.append_now(key, items)

    def append_now(self, key: str, items: Sequence[bytes]) -> list[str]:
        """:meth:`append_many`, synchronously: live readers are called before it returns."""
        start = self._append(key, items)
        return [str(start + i) for i in range(len(items))]

    def _append(self, key: str, items: Sequence[bytes]) -> int:
        """:meth:`append_now` without the ids: the first new event's position."""
        with self._lock:
            now = self._clock()
            entry = self._live(key, now) or self._create(key, now)
            if entry.cancelled:
                raise StreamCancelledError(f"the stream {key!r} was cancelled")
            if entry.end is not None:
                raise StreamLogError(f"the stream {key!r} has finished; nothing can be appended")
            start = entry.last + 1
            entry.events.extend(items)
            overflow = len(entry.events) - self.maxlen
            for _ in range(max(0, overflow)):
                entry.events.popleft()
                entry.first += 1
            entry.expires = now + self.ttl
            readers = list(entry.readers)
            orphans = self._sweep(now)
        for reader in readers + orphans:
            reader.drain()
        return start

    async def finish(self, key: str, error: BaseException | None = None) -> None:
        """Mark ``key`` as ended (see :meth:`StreamLog.finish`)."""
        self.finish_now(key, error)

    def finish_now(self, key: str, error: BaseException | None = None) -> None:
        """:meth:`finish`, synchronously: live readers end before it returns."""
        with self._lock:
            now = self._clock()
            entry = self._live(key, now) or self._create(key, now)
            if entry.end is not None:
                return
            entry.end = StreamEnd.of(error)
            entry.expires = now + self.ttl
            readers = list(entry.readers)
        for reader in readers:
            reader.drain()

    async def info(self, key: str) -> StreamInfo | None:
        """What the log knows about ``key``."""
        with self._lock:
            entry = self._live(key, self._clock())
            if entry is None:
                return None
            return StreamInfo(str(entry.last), entry.end, entry.cancelled)

    async def cancel(self, key: str) -> bool:
        """Flag ``key`` as cancelled (its next append raises :class:`StreamCancelledError`)."""
        with self._lock:
            entry = self._live(key, self._clock())
            if entry is None:
                return False
            entry.cancelled = True
            return True

    async def delete(self, key: str) -> None:
        """Forget ``key``; its live readers end with :class:`ResumptionLostError`."""
        with self._lock:
            readers = self._drop(key)
        for reader in readers:
            reader.drain()

    def read(self, key: str, after: int | str | None = None) -> Observable[LogEvent]:
        """A cold Observable of ``key``'s events after ``after``, then the live ones."""
        return self._reader(key, parse_event_id(after), raw=False)

    def read_batches(self, key: str, after: int = 0) -> Observable[tuple[int, list[bytes]]]:
        """:meth:`read`, as batches: ``(position of the first, [data, ...])`` per delivery.

        What a relay in this process uses: no :class:`LogEvent` (nor id string) per event.
        """
        return self._reader(key, after, raw=True)

    def _reader(self, key: str, position: int, *, raw: bool) -> Observable[Any]:
        def subscribe(
            observer: rxabc.ObserverBase[Any], scheduler: rxabc.SchedulerBase | None = None
        ) -> rxabc.DisposableBase:
            with self._lock:
                entry = self._live(key, self._clock())
                if entry is not None:
                    reader = _Reader(self._lock, entry, observer, position, self.maxlen, raw)
                    entry.readers.add(reader)
            if entry is None:
                observer.on_error(StreamNotFoundError(f"no stream with key {key!r} (it never existed or it expired)"))
                return Disposable()
            reader.drain()
            return Disposable(reader.stop)

        return reactivex.create(subscribe)


# --------------------------------------------------------------------------- writing


class LogWriter:
    """Appends one stream's events in order, batched with every other writer of its log and loop.

    The producer calls :meth:`write` for every event and :meth:`close` once at the end; it
    never waits. Against a :class:`MemoryStreamLog` every call is synchronous (readers see an
    event before :meth:`write` returns). Against any other log, the writers of one log on one
    loop share a flusher: what they write during one turn of the loop goes out at the end of
    that turn, all streams together, in one :meth:`StreamLog.write_many` (one round trip for
    Redis, an append and its stream's end included); what arrives while that is in flight
    goes in the next one. The delay before an event reaches the log is therefore at most one
    round trip, and the cost per event is a fraction of one.

    Args:
        log: Where to append.
        key: The stream's key.
        on_error: Called once (on the writer's loop) if the log refuses or fails a write
            (:class:`StreamCancelledError`, :class:`ResumptionLostError`, ...); later
            writes are dropped.
        create: Create the key first (:meth:`StreamLog.open`), so readers can subscribe
            before the first event; fails if it exists.
        loop: The loop the flusher runs on (default: the running one).
        lazy_create: With ``create``, against a log other than memory: create the key in the
            first batch that carries this writer's events (or end), or when
            :meth:`wait_opened` asks, rather than in a batch of its own at once.
    """

    __slots__ = (
        "_closing",
        "_create",
        "_end",
        "_error",
        "_flusher",
        "_key",
        "_log",
        "_on_error",
        "_pending",
        "_sent_end",
        "_sync",
        "closed",
        "opened",
        "written",
    )

    def __init__(
        self,
        log: StreamLog,
        key: str,
        *,
        on_error: Callable[[StreamLogError], None] | None = None,
        create: bool = True,
        loop: asyncio.AbstractEventLoop | None = None,
        lazy_create: bool = False,
    ) -> None:
        self._log = log
        self._key = key
        self._on_error = on_error
        self._pending: list[bytes] = []
        self._closing = False
        self._sent_end = False
        self._end: BaseException | None = None
        self._error: StreamLogError | None = None
        self._sync = isinstance(log, MemoryStreamLog)
        self._create = create
        self._flusher: _Flusher | None = None
        #: How many events the log has accepted.
        self.written = 0
        #: Done once the end marker is written (or the writer failed).
        self.closed: asyncio.Future[None] | None = None
        #: Done once the key is created (or the writer failed); ``None`` without ``create``
        #: or for a memory log (created at once).
        self.opened: asyncio.Future[None] | None = None
        if self._sync:
            assert isinstance(log, MemoryStreamLog)
            if create:
                self._guard(lambda: log.open_now(key))
            return
        loop = loop or asyncio.get_running_loop()
        self.closed = loop.create_future()
        if create:
            self.opened = loop.create_future()
        flushers = getattr(log, "_flushers", None)
        if flushers is None:  # a subclass that did not call StreamLog.__init__
            flushers = log._flushers = {}
        flusher = flushers.get(loop)
        if flusher is None:
            flusher = flushers[loop] = _Flusher(log, loop, flushers)
        self._flusher = flusher
        if create and not lazy_create:
            flusher.mark(self)

    @property
    def error(self) -> StreamLogError | None:
        """The log's error that stopped this writer, if any."""
        return self._error

    def _guard(self, call: Callable[[], object]) -> None:
        try:
            call()
        except StreamLogError as exc:
            self._failed(exc)

    def _failed(self, exc: StreamLogError) -> None:
        if self._error is not None:
            return
        self._error = exc
        self._pending = []
        if self._on_error is not None:
            self._on_error(exc)

    def write(self, data: bytes) -> None:
        """Append ``data`` (in order; batched with other pending events)."""
        if self._error is not None or self._closing:
            return
        if self._sync:
            log = self._log
            assert isinstance(log, MemoryStreamLog)
            try:
                log.append_now(self._key, (data,))
            except StreamLogError as exc:
                self._failed(exc)
                return
            self.written += 1
            return
        pending = self._pending
        pending.append(data)
        if len(pending) == 1:
            flusher = self._flusher
            assert flusher is not None
            flusher.mark(self)

    def write_many(self, items: Sequence[bytes]) -> None:
        """:meth:`write` each of ``items``, in order (one call for a batch the producer has)."""
        if self._error is not None or self._closing or not items:
            return
        if self._sync:
            log = self._log
            assert isinstance(log, MemoryStreamLog)
            try:
                log._append(self._key, items)
            except StreamLogError as exc:
                self._failed(exc)
                return
            self.written += len(items)
            return
        pending = self._pending
        was_empty = not pending
        pending.extend(items)
        if was_empty:
            flusher = self._flusher
            assert flusher is not None
            flusher.mark(self)

    def close(self, error: BaseException | None = None) -> None:
        """Write the end (after every pending event): success, or ``error``'s type and message."""
        if self._closing:
            return
        self._closing = True
        self._end = error
        if self._sync:
            log = self._log
            assert isinstance(log, MemoryStreamLog)
            if self._error is None:
                self._guard(lambda: log.finish_now(self._key, error))
            return
        if self._error is not None:
            self._done()
            return
        flusher = self._flusher
        assert flusher is not None
        flusher.mark(self)

    def _take(self) -> LogWrite | None:
        """What this writer has for the next flush (``None``: nothing)."""
        if self._error is not None or self._sent_end:
            return None
        items: Sequence[bytes] = self._pending
        if items:
            self._pending = []
        else:
            items = ()  # never the list later writes go to
        end: StreamEnd | None = None
        if self._closing:
            end = StreamEnd.of(self._end)
            self._sent_end = True
        create = self._create
        self._create = False
        if not items and end is None and not create:
            return None
        return LogWrite(self._key, items, end, create)

    def _result(self, write: LogWrite, error: StreamLogError | None) -> None:
        """The log's answer to :meth:`_take`'s write."""
        opened = self.opened
        if opened is not None and not opened.done():
            opened.set_result(None)
        if error is None:
            self.written += len(write.items)
            if write.end is not None:
                self._done()
            return
        self._failed(error)
        self._done()

    def _done(self) -> None:
        for future in (self.opened, self.closed):
            if future is not None and not future.done():
                future.set_result(None)

    async def wait_opened(self) -> None:
        """Wait until the key is created (then :attr:`error` says whether that failed); at once without ``create``.

        The creation goes out with the other writers' next batch (and this writer's pending
        events), so it costs a share of a round trip rather than one of its own.
        """
        opened = self.opened
        if opened is None:
            return
        if self._create and self._error is None and self._flusher is not None:
            self._flusher.mark(self)  # a lazy creation nothing has carried yet: now
        await asyncio.shield(opened)

    async def wait_closed(self) -> None:
        """Wait until the end marker is written (or the writer failed); at once for a memory log."""
        closed = self.closed
        if closed is not None:
            await asyncio.shield(closed)

    def abandon(self) -> None:
        """Stop at once without writing the end (pending events are dropped)."""
        self._closing = True
        self._sent_end = True
        self._pending = []
        self._done()


class _Flusher:
    """The writers of one log on one loop: their pending writes go out together, one batch at a time.

    A writer with something to write marks itself; the first mark starts a task, whose first
    step runs on the loop's next turn (so everything written during this turn is in the
    batch). While a batch is in flight, marks collect for the next. The task ends when nothing
    is left (no task outlives the writing).
    """

    __slots__ = ("dirty", "flushers", "log", "loop", "task")

    def __init__(
        self, log: StreamLog, loop: asyncio.AbstractEventLoop, flushers: dict[asyncio.AbstractEventLoop, _Flusher]
    ) -> None:
        self.log = log
        self.loop = loop
        self.flushers = flushers
        self.dirty: dict[LogWriter, None] = {}
        self.task: asyncio.Task[None] | None = None

    def mark(self, writer: LogWriter) -> None:
        self.dirty[writer] = None
        if self.task is None:
            self.flushers[self.loop] = self
            self.task = self.loop.create_task(self._run(), name="rxllm-log-flusher")

    async def _run(self) -> None:
        batch: list[tuple[LogWriter, LogWrite]] = []
        try:
            while self.dirty:
                writers = list(self.dirty)
                self.dirty.clear()
                batch = []
                for writer in writers:
                    write = writer._take()
                    if write is not None:
                        batch.append((writer, write))
                if not batch:
                    continue
                try:
                    results = await self.log.write_many([write for _, write in batch])
                except StreamLogError as exc:
                    results = [exc] * len(batch)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a log implementation's bug: its writers fail, typed
                    failure = StreamLogError(f"the stream log failed ({type(exc).__name__})")
                    results = [failure] * len(batch)
                done, batch = batch, []
                for (writer, write), result in zip(done, results, strict=True):
                    try:
                        writer._result(write, result)
                    except Exception as exc:  # an on_error callback's bug must not stop the others
                        self.loop.call_exception_handler(
                            {"message": "a stream log writer's error callback failed", "exception": exc}
                        )
        except asyncio.CancelledError:
            # the loop is going away: the writers stop where they are, without an error
            for writer in [w for w, _ in batch] + list(self.dirty):
                writer.abandon()
            self.dirty.clear()
        finally:
            self.task = None
            if self.dirty:  # pragma: no cover - marks arrive only from the loop, between steps
                self.task = self.loop.create_task(self._run(), name="rxllm-log-flusher")
            elif self.flushers.get(self.loop) is self:
                del self.flushers[self.loop]


# --------------------------------------------------------------------------- chunks


def _decode_chunk(event: LogEvent) -> ChatCompletionChunk:
    return ChatCompletionChunk.from_dict(orjson.loads(event.data))


def resume(log: StreamLog, key: str, after: int | str | None = None) -> Observable[ChatCompletionChunk]:
    """A cold Observable of a logged chunk stream's chunks after ``after``, then the live ones.

    The stream was written by :func:`rxllm.operators.tee_to`; chunk ids are positions, so a
    consumer that has received k chunks resumes with ``after=k`` and gets each later chunk
    exactly once. Any number of consumers can resume one stream, each at its own position.

    Args:
        log: The log the stream was written to.
        key: The stream's key.
        after: How many chunks (the last chunk id) the consumer already has; ``None``: all.

    Returns:
        An Observable of :class:`~rxllm.types.ChatCompletionChunk` that completes when the
        stream completed, or fails with a typed error: the one the stream failed with (same
        class, status and message), :class:`StreamNotFoundError`, or
        :class:`ResumptionLostError`.

    Raises:
        BadRequestError: ``after`` is not a valid event id.
    """
    source = log.read(key, after)

    def subscribe(
        observer: rxabc.ObserverBase[ChatCompletionChunk], scheduler: rxabc.SchedulerBase | None = None
    ) -> rxabc.DisposableBase:
        def on_next(event: LogEvent) -> None:
            try:
                chunk = _decode_chunk(event)
            except Exception as exc:  # a foreign writer's bytes: say so, typed
                disposable.dispose()
                observer.on_error(
                    StreamLogError(f"event {event.id} of stream {key!r} is not a chunk ({type(exc).__name__})")
                )
                return
            observer.on_next(chunk)

        disposable = _Holder()
        disposable.set(source.subscribe(on_next, observer.on_error, observer.on_completed, scheduler=scheduler))
        return disposable

    return reactivex.create(subscribe)


class _Holder(rxabc.DisposableBase):
    """A disposable that may be disposed before the one it holds is known."""

    __slots__ = ("_disposed", "_inner")

    def __init__(self) -> None:
        self._inner: rxabc.DisposableBase | None = None
        self._disposed = False

    def set(self, inner: rxabc.DisposableBase) -> None:
        if self._disposed:
            inner.dispose()
        else:
            self._inner = inner

    def dispose(self) -> None:
        self._disposed = True
        inner, self._inner = self._inner, None
        if inner is not None:
            inner.dispose()
