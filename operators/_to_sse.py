"""``to_sse``: chunks to the bytes of an OpenAI-compatible server-sent-event stream."""

from __future__ import annotations

from collections.abc import Callable

from reactivex import Observable, abc

from rxllm.dialects.chat import ChatEncoder
from rxllm.sse import encode_json
from rxllm.types import ChatCompletionChunk

from ._retry import StreamRestart

__all__ = ["to_sse"]


def to_sse(*, model: str | None = None) -> Callable[[Observable[ChatCompletionChunk]], Observable[bytes]]:
    """Encode chunks as server-sent events, what an aiohttp or FastAPI handler streams out.

    ::

        source:  --a--------b--------|
        output:  --"data: {a}\\n\\n"--"data: {b}\\n\\n"--"data: [DONE]\\n\\n"|

        source:  --a--#
        output:  --"data: {a}\\n\\n"--'data: {"error": {...}}\\n\\n'|

    Each chunk becomes ``data: <its wire JSON>\\n\\n``; completion adds ``data: [DONE]\\n\\n``.
    An error becomes one OpenAI-style error event, ``data: {"error": {"message", "type",
    "param", "code"}}\\n\\n`` (see :func:`rxllm.errors.error_body`), and then the stream *completes*
    without ``[DONE]``: the HTTP response is already under way (status 200), so the error
    must travel in the body, and OpenAI's clients raise an ``APIError`` when they read it.
    Disposal is passed upstream (a client leaving cancels the request). A
    :class:`StreamRestart` from a restarting ``retry_stream`` becomes a named event
    ``event: rxllm.restart`` (``{"attempt", "discarded_chunks"}``), which a browser's
    ``EventSource.onmessage`` ignores unless it listens for it. The encoding is
    :class:`rxllm.dialects.chat.ChatEncoder`'s, which the proxy shares.

    Args:
        model: The model name every chunk reports (the name the client asked for);
            ``None`` keeps each chunk's own.

    Returns:
        An operator ``Observable[ChatCompletionChunk] -> Observable[bytes]``.
    """

    def _to_sse(source: Observable[ChatCompletionChunk]) -> Observable[bytes]:
        def subscribe(
            observer: abc.ObserverBase[bytes], scheduler_: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            encoder = ChatEncoder(model=model)

            def on_next(chunk: ChatCompletionChunk) -> None:
                try:
                    if isinstance(chunk, StreamRestart):
                        data = encode_json(
                            {"attempt": chunk.attempt, "discarded_chunks": chunk.discarded_chunks},
                            event="rxllm.restart",
                        )
                    else:
                        data = encoder.encode(chunk)
                except Exception as exc:
                    on_error(exc)
                    return
                observer.on_next(data)

            def on_error(error: Exception) -> None:
                observer.on_next(encoder.fail(error))
                observer.on_completed()

            def on_completed() -> None:
                observer.on_next(encoder.close())
                observer.on_completed()

            return source.subscribe(on_next, on_error, on_completed, scheduler=scheduler_)

        return Observable(subscribe)

    return _to_sse
