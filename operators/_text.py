"""``text`` and ``reasoning``: just the content text, or just the reasoning text, of a chunk stream."""

from __future__ import annotations

import operator
from collections.abc import Callable

from reactivex import Observable, abc

from rxllm.types import ChatCompletionChunk

__all__ = ["reasoning", "text"]


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

    return _delta_strings("content", choice)


def reasoning(choice: int | None = 0) -> Callable[[Observable[ChatCompletionChunk]], Observable[str]]:
    """Emit each non-empty ``delta.reasoning_content`` as a string (the model's visible thinking).

    The counterpart of :func:`text` for reasoning: DeepSeek's and GLM's ``reasoning_content``,
    Groq/OpenRouter/vLLM ``reasoning`` (normalized by the provider), Anthropic thinking and
    Gemini thought parts all arrive there; ``<think>`` tags in content get there through
    ``split_think_tags()``. Choice 0 by default; another index, or ``None`` for every choice.

    ::

        chunks:  -a------b-----c---|     a.reasoning_content="Hm", b.content="Hi", c.reasoning_content="."
        reasoning()
        result:  -"Hm"---------"."-|

    Args:
        choice: The choice index to follow, or ``None`` for all choices.

    Returns:
        An operator ``Observable[ChatCompletionChunk] -> Observable[str]``.
    """

    return _delta_strings("reasoning_content", choice)


def _delta_strings(field: str, choice: int | None) -> Callable[[Observable[ChatCompletionChunk]], Observable[str]]:
    """Each non-empty string ``delta.<field>`` of the followed choice(s), in arrival order."""
    read = operator.attrgetter(field)

    def _strings(source: Observable[ChatCompletionChunk]) -> Observable[str]:
        def subscribe(
            observer: abc.ObserverBase[str], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            def on_next(chunk: ChatCompletionChunk) -> None:
                try:
                    parts = [
                        v
                        for sc in chunk.choices
                        if (choice is None or sc.index == choice) and (v := read(sc.delta)) and v.__class__ is str
                    ]
                except Exception as exc:
                    observer.on_error(exc)
                    return
                for part in parts:
                    observer.on_next(part)

            return source.subscribe(on_next, observer.on_error, observer.on_completed, scheduler=scheduler)

        return Observable(subscribe)

    return _strings
