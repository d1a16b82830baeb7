"""``to_response`` and ``snapshots``: the chunk stream folded into a ``ModelResponse``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from reactivex import Observable, abc

from rxllm.builder import ResponseBuilder, ResponseSnapshot
from rxllm.errors import APIError
from rxllm.types import ChatCompletionChunk, ModelResponse

__all__ = ["snapshots", "to_response"]


def _attach_partial(exc: Exception, builder: ResponseBuilder) -> Exception:
    """The error carrying the response rebuilt so far (a copy: the upstream's error is not changed)."""
    if isinstance(exc, APIError) and exc.partial_response is None and builder.chunk_count:
        try:
            return exc.with_partial_response(builder.build(partial=True))
        except Exception:  # a failed rebuild must never mask the real error
            return exc
    return exc


def to_response(
    messages: Iterable[Mapping[str, Any]] | None = None,
) -> Callable[[Observable[ChatCompletionChunk]], Observable[ModelResponse]]:
    """Fold the chunks into one final ``ModelResponse``, emitted when the stream completes.

    Built incrementally with :class:`rxllm.builder.ResponseBuilder` (O(total text), no
    chunk is kept); the rules are those of ``rxllm.stream_chunk_builder``. An empty stream
    completes without a value. An ``rxllm.APIError`` from upstream is passed on with the
    partial response attached (``error.partial_response``) unless it already had one.

    ::

        chunks:   -a--b--c--|
        to_response()
        result:   ----------R|      R = response built from a, b, c

    Args:
        messages: The prompt, used only to estimate prompt tokens when no usage is reported.

    Returns:
        An operator ``Observable[ChatCompletionChunk] -> Observable[ModelResponse]``.
    """
    msgs = list(messages) if messages is not None else None

    def _to_response(source: Observable[ChatCompletionChunk]) -> Observable[ModelResponse]:
        def subscribe(
            observer: abc.ObserverBase[ModelResponse], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            builder = ResponseBuilder(msgs)
            add = builder.add

            def on_next(chunk: ChatCompletionChunk) -> None:
                try:
                    add(chunk)
                except Exception as exc:
                    observer.on_error(exc)

            def on_error(exc: Exception) -> None:
                observer.on_error(_attach_partial(exc, builder))

            def on_completed() -> None:
                if builder.chunk_count:
                    try:
                        response = builder.build()
                    except Exception as exc:
                        observer.on_error(exc)
                        return
                    observer.on_next(response)
                observer.on_completed()

            return source.subscribe(on_next, on_error, on_completed, scheduler=scheduler)

        return Observable(subscribe)

    return _to_response


def snapshots(
    messages: Iterable[Mapping[str, Any]] | None = None,
) -> Callable[[Observable[ChatCompletionChunk]], Observable[ResponseSnapshot]]:
    """Emit the running response after each chunk, for UIs that redraw the whole message.

    Each value is a :class:`rxllm.builder.ResponseSnapshot`: ``snap.chunk`` is the chunk
    that arrived, ``snap.response`` the ``ModelResponse`` as it stood then (built on first
    access), ``snap.content(i)`` the text of choice ``i`` so far. Taking a snapshot costs
    O(choices + tool calls) per chunk, not O(text): only what is read is joined. Errors pass
    through with the partial response attached, as in :func:`to_response`.

    ::

        chunks:    -a----b----c--|
        snapshots()
        result:    -A----B----C--|      C.response == response built from a, b, c

    Args:
        messages: The prompt, used only to estimate prompt tokens when no usage is reported.

    Returns:
        An operator ``Observable[ChatCompletionChunk] -> Observable[ResponseSnapshot]``.
    """
    msgs = list(messages) if messages is not None else None

    def _snapshots(source: Observable[ChatCompletionChunk]) -> Observable[ResponseSnapshot]:
        def subscribe(
            observer: abc.ObserverBase[ResponseSnapshot], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            builder = ResponseBuilder(msgs)

            def on_next(chunk: ChatCompletionChunk) -> None:
                try:
                    builder.add(chunk)
                    snap = builder.snapshot(chunk)
                except Exception as exc:
                    observer.on_error(exc)
                    return
                observer.on_next(snap)

            def on_error(exc: Exception) -> None:
                observer.on_error(_attach_partial(exc, builder))

            return source.subscribe(on_next, on_error, observer.on_completed, scheduler=scheduler)

        return Observable(subscribe)

    return _snapshots
