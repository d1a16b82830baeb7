"""One upstream attempt: the subscription, what it has delivered, and how to stop it.

The handler subscribes an observer directly (no intermediate iterator) so the per-chunk path
is one method call: a streaming attempt appends ``chunk.to_json()`` to a list and wakes the
writer if it sleeps; the writer joins everything that arrived since its last write into one
``write()``. A fast upstream therefore costs one write per network read, not per chunk.

:class:`Exchange` is what the app's watchdog and shutdown see: a request in flight, its
transport (to notice a client that left), and :meth:`Exchange.abort` to end it early.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import attrs
from reactivex import Observable, abc

from rxllm.builder import ResponseBuilder
from rxllm.types import ChatCompletionChunk

__all__ = ["AbortReason", "Collector", "Exchange", "Feed", "SSEFeed"]

AbortReason = Literal["disconnected", "shutdown", "idle_timeout"]


class Feed:
    """The observer side of one attempt: completion state, the first-chunk time, one waiter.

    Subclasses decide what ``on_next`` keeps. All callbacks run on the proxy's loop thread
    (the provider's pump task runs there), so no locks.
    """

    __slots__ = (
        "aborted",
        "chunks",
        "done",
        "error",
        "first_at",
        "first_chunk",
        "last_chunk",
        "loop",
        "waiter",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiter: asyncio.Future[None] | None = None
        self.done = False
        self.error: Exception | None = None
        self.aborted: AbortReason | None = None
        self.chunks = 0
        self.first_at: float | None = None
        self.first_chunk: ChatCompletionChunk | None = None
        self.last_chunk: ChatCompletionChunk | None = None

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def on_next(self, chunk: ChatCompletionChunk) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def on_error(self, error: Exception) -> None:
        self.error = error
        self.done = True
        self._wake()

    def on_completed(self) -> None:
        self.done = True
        self._wake()

    def abort(self, reason: AbortReason) -> None:
        """Stop waiting: the writer sees ``aborted`` at its next turn."""
        if self.aborted is None:
            self.aborted = reason
        self._wake()

    def has_output(self) -> bool:
        """Whether something worth committing to (a chunk) has arrived."""
        return self.chunks > 0

    async def wait(self) -> None:
        """Sleep until the next callback (or abort)."""
        waiter = self.loop.create_future()
        self.waiter = waiter
        await waiter

    async def ready(self) -> None:
        """Wait for the first chunk, the end, or an abort."""
        while not (self.chunks or self.done or self.aborted):
            await self.wait()


class SSEFeed(Feed):
    """Keeps each chunk's compact JSON for the SSE writer.

    Args:
        loop: The running loop.
        include_usage: Whether the client asked for usage (``stream_options.include_usage``);
            without it, usage chunks are dropped and usage fields removed, as OpenAI does.
    """

    __slots__ = ("include_usage", "payloads", "usage_seen")

    def __init__(self, loop: asyncio.AbstractEventLoop, *, include_usage: bool) -> None:
        super().__init__(loop)
        self.payloads: list[bytes] = []
        self.include_usage = include_usage
        self.usage_seen = False

    def on_next(self, chunk: ChatCompletionChunk) -> None:
        if self.first_chunk is None:
            self.first_chunk = chunk
            self.first_at = self.loop.time()
        self.last_chunk = chunk
        self.chunks += 1
        if chunk.usage is not None:
            if self.include_usage:
                self.usage_seen = True
            elif not chunk.choices:
                return
            else:
                chunk = attrs.evolve(chunk, usage=None)
        self.payloads.append(chunk.to_json())
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)


class Collector(Feed):
    """Folds chunks into a :class:`~rxllm.builder.ResponseBuilder` for a non-streaming answer."""

    __slots__ = ("builder",)

    def __init__(self, loop: asyncio.AbstractEventLoop, messages: Sequence[Mapping[str, Any]]) -> None:
        super().__init__(loop)
        self.builder = ResponseBuilder(messages)

    def on_next(self, chunk: ChatCompletionChunk) -> None:
        if self.first_chunk is None:
            self.first_chunk = chunk
            self.first_at = self.loop.time()
        self.chunks += 1
        self.builder.add(chunk)

    async def finished(self) -> None:
        """Wait for the end (or an abort)."""
        while not (self.done or self.aborted):
            await self.wait()


class Exchange:
    """A chat request in flight, as the watchdog and shutdown see it.

    Attributes:
        transport_alive: Returns False once the client's connection is gone.
        feed: The current attempt's feed (replaced on failover).
        idle_timeout: Seconds without upstream activity before the stream is ended.
        last_active: Loop time of the last upstream activity the writer saw.
    """

    __slots__ = ("_disposable", "aborted", "feed", "idle_timeout", "last_active", "transport_alive")

    def __init__(self, transport_alive: Callable[[], bool], now: float) -> None:
        self.transport_alive = transport_alive
        self.feed: Feed | None = None
        self._disposable: abc.DisposableBase | None = None
        self.idle_timeout: float | None = None
        self.last_active = now
        self.aborted: AbortReason | None = None

    def subscribe(self, source: Observable[ChatCompletionChunk], feed: Feed) -> None:
        """Start an attempt: subscribe ``feed`` to ``source`` (replacing any earlier attempt)."""
        self.dispose()
        self.feed = feed
        if self.aborted is not None:
            feed.abort(self.aborted)
        self._disposable = source.subscribe(feed.on_next, feed.on_error, feed.on_completed)

    def dispose(self) -> None:
        """Cancel the current attempt's upstream request (idempotent)."""
        disposable, self._disposable = self._disposable, None
        if disposable is not None:
            disposable.dispose()

    def abort(self, reason: AbortReason) -> None:
        """End the request early (the handler finishes it and logs the reason)."""
        if self.aborted is None:
            self.aborted = reason
        feed = self.feed
        if feed is not None:
            feed.abort(reason)
