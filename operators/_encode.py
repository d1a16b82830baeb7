"""The machinery every dialect operator shares: an encoder per subscription, errors as events.

Private: ``to_sse``, ``to_responses_sse``, ``to_messages_sse`` and ``to_ui_message_stream``
are the public faces.
"""

from __future__ import annotations

from collections.abc import Callable

from reactivex import Observable, abc

from rxllm.dialects import Encoder
from rxllm.types import ChatCompletionChunk

__all__ = ["encode_with"]


def encode_with(factory: Callable[[], Encoder]) -> Callable[[Observable[ChatCompletionChunk]], Observable[bytes]]:
    """An operator that runs a fresh encoder (``factory()``) for each subscription.

    Empty outputs are not emitted. An upstream error becomes the encoder's failure frames
    and then completion (the HTTP response is already under way, so the error travels in
    the body); an encoder that raises is reported the same way. Disposal goes upstream.
    """

    def operator(source: Observable[ChatCompletionChunk]) -> Observable[bytes]:
        def subscribe(
            observer: abc.ObserverBase[bytes], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            encoder = factory()
            ended = False

            def on_next(chunk: ChatCompletionChunk) -> None:
                if ended:
                    return
                try:
                    data = encoder.encode(chunk)
                except Exception as exc:
                    on_error(exc)
                    return
                if data:
                    observer.on_next(data)

            def on_error(error: Exception) -> None:
                nonlocal ended
                if ended:
                    return
                ended = True
                data = encoder.fail(error)
                if data:
                    observer.on_next(data)
                observer.on_completed()

            def on_completed() -> None:
                nonlocal ended
                if ended:
                    return
                ended = True
                try:
                    data = encoder.close()
                except Exception as exc:
                    data = encoder.fail(exc)
                if data:
                    observer.on_next(data)
                observer.on_completed()

            return source.subscribe(on_next, on_error, on_completed, scheduler=scheduler)

        return Observable(subscribe)

    return operator
