"""``tee_to``: write a chunk stream through to a stream log, for resumption and fan-out."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from reactivex import Observable, abc
from reactivex.disposable import Disposable, SingleAssignmentDisposable

from rxllm.loop import get_loop
from rxllm.stream_log import LogWriter, MemoryStreamLog, StreamCancelledError, StreamLog, StreamLogError
from rxllm.types import ChatCompletionChunk

__all__ = ["tee_to"]


def tee_to(
    log: StreamLog, key: str, *, create: bool = True
) -> Callable[[Observable[ChatCompletionChunk]], Observable[ChatCompletionChunk]]:
    """Pass chunks through unchanged while appending each one to ``log`` under ``key``.

    ::

        source:  --a----b----c--|
        tee_to(log, "k")
        result:  --a----b----c--|     (completes once the log holds a, b, c and the end)
        log "k": 1:a  2:b  3:c  end

    Any number of readers can follow the stream while it runs, or later, each from its own
    position, with :func:`rxllm.resume` (``after=k`` after k chunks). The key is created
    when the operator is subscribed, so readers may subscribe before the first chunk.
    An upstream error is recorded as the stream's end (readers fail with the same class,
    status and message) and then passed on. The writes are batched and never block the
    chunks: the result completes (or fails) once the end is in the log.

    If the log refuses a write, the upstream is disposed and the result fails with the
    log's typed error: :class:`~rxllm.stream_log.StreamCancelledError` when someone called
    ``log.cancel(key)``, :class:`~rxllm.stream_log.ResumptionLostError` when the log's server
    was lost, :class:`~rxllm.stream_log.StreamLogError` when ``key`` already exists.
    Disposing the result disposes the upstream and ends the logged stream with
    ``StreamCancelledError``, so its readers end too.

    Args:
        log: The stream log (:class:`~rxllm.stream_log.MemoryStreamLog`, or
            :class:`~rxllm.integrations.redis_log.RedisStreamLog` to resume from anywhere).
        key: The stream's key (unique per stream; a response id, say).
        create: Create the key at subscription (the default; fails if it exists). Pass
            ``False`` after ``await log.open(key)`` yourself, when readers must be able to
            subscribe before the tee is (the Redis log creates a key asynchronously).

    Returns:
        An operator ``Observable[ChatCompletionChunk] -> Observable[ChatCompletionChunk]``.
    """

    def _tee_to(source: Observable[ChatCompletionChunk]) -> Observable[ChatCompletionChunk]:
        def subscribe(
            observer: abc.ObserverBase[ChatCompletionChunk], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            upstream = SingleAssignmentDisposable()
            ended = False
            writer: LogWriter | None = None
            loop: asyncio.AbstractEventLoop | None = None
            direct = True  # the writer's calls run at once (on its loop), or are queued to it
            if not isinstance(log, MemoryStreamLog):
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:
                    loop = get_loop()
                    direct = False

            def on_log_error(exc: StreamLogError) -> None:
                nonlocal ended
                if ended:
                    return
                ended = True
                upstream.dispose()
                observer.on_error(exc)

            def run(call: Callable[[], None]) -> None:
                """On the writer's loop, in order."""
                if direct or loop is None:
                    call()
                else:
                    loop.call_soon_threadsafe(call)

            def start() -> None:
                nonlocal writer
                writer = LogWriter(log, key, on_error=on_log_error, create=create, loop=loop)

            def on_next(chunk: ChatCompletionChunk) -> None:
                if ended:
                    return
                try:
                    data = chunk.to_json()
                except Exception as exc:
                    on_error(exc)
                    return

                def write() -> None:
                    if writer is not None:
                        writer.write(data)

                run(write)
                if not ended:
                    observer.on_next(chunk)

            def finish(error: Exception | None) -> None:
                def close() -> None:
                    nonlocal ended
                    if ended or writer is None:
                        return
                    writer.close(error)

                    def deliver() -> None:
                        nonlocal ended
                        if ended:
                            return
                        ended = True
                        if error is not None:
                            observer.on_error(error)
                        elif writer is not None and writer.error is not None:
                            observer.on_error(writer.error)
                        else:
                            observer.on_completed()

                    closed = writer.closed
                    if closed is None:
                        deliver()
                    else:
                        closed.add_done_callback(lambda _: deliver())

                run(close)

            def on_error(error: Exception) -> None:
                finish(error)

            def on_completed() -> None:
                finish(None)

            def dispose() -> None:
                nonlocal ended
                upstream.dispose()
                if ended:
                    return
                ended = True

                def close() -> None:
                    if writer is not None:
                        writer.close(StreamCancelledError("the stream's consumer stopped it before the end"))

                run(close)

            run(start)
            if not ended:
                upstream.disposable = source.subscribe(on_next, on_error, on_completed, scheduler=scheduler)
            return Disposable(dispose)

        return Observable(subscribe)

    return _tee_to
