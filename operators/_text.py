"""``text``: just the content text of a chunk stream."""

from __future__ import annotations

from collections.abc import Callable

from reactivex import Observable, abc

from rxllm.types import ChatCompletionChunk

__all__ = ["text"]


def text(choice: int | None = 0) -> Callable[[Observable[ChatCompletionChunk]], Observable[str]]:
    """Emit each non-empty ``delta.content`` as a string, skipping chunks without text.

    By default only choice 0, because with ``n > 1`` the choices interleave and their text
    joined together would be garbage; pass another index to follow that choice, or ``None``
    for the content of every choice in arrival order (use ``chunk.choices[i].index`` upstream
    when you need to tell them apart). Reasoning, refusals and tool-call arguments are not
    content and are skipped.

    ::

        chunks:  -a----b-----c---|     a.content="Hel", b has only a role, c.content="lo"
        text()
        result:  -"Hel"------"lo"|

    Args:
        choice: The choice index to follow, or ``None`` for all choices.

    Returns:
        An operator ``Observable[ChatCompletionChunk] -> Observable[str]``.
    """

    def _text(source: Observable[ChatCompletionChunk]) -> Observable[str]:
        def subscribe(
            observer: abc.ObserverBase[str], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            def on_next(chunk: ChatCompletionChunk) -> None:
                try:
                    parts = [
                        c
                        for sc in chunk.choices
                        if (choice is None or sc.index == choice) and (c := sc.delta.content) and c.__class__ is str
                    ]
                except Exception as exc:
                    observer.on_error(exc)
                    return
                for part in parts:
                    observer.on_next(part)

            return source.subscribe(on_next, observer.on_error, observer.on_completed, scheduler=scheduler)

        return Observable(subscribe)

    return _text
