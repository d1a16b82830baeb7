"""``to_responses_sse``: chunks to the bytes of an OpenAI Responses API event stream."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from reactivex import Observable

from rxllm.dialects.responses import ResponsesEncoder
from rxllm.types import ChatCompletionChunk

from ._encode import encode_with

__all__ = ["to_responses_sse"]


def to_responses_sse(
    *,
    model: str | None = None,
    options: Mapping[str, Any] | None = None,
    secrets: Iterable[str] = (),
) -> Callable[[Observable[ChatCompletionChunk]], Observable[bytes]]:
    """Encode chunks as OpenAI Responses API server-sent events, for a ``/v1/responses`` handler.

    ::

        source:  --a(text)------b(finish, usage)--|
        output:  --created,in_progress,item.added,part.added,text.delta--text.done,...,completed|

        source:  --a--#
        output:  --created,...,text.delta--error,response.failed|

    Each event is ``event: <type>\\ndata: {json}\\n\\n`` with a ``sequence_number`` that
    increases by one; see :class:`rxllm.dialects.responses.ResponsesEncoder` for the events.
    An upstream error becomes an ``error`` event and ``response.failed`` (never
    ``response.completed``), then the stream completes. Disposal goes upstream. State is per
    subscription: one response id per subscription.

    Args:
        model: The model name the events report (the name the client asked for); ``None``
            keeps the chunks' own.
        options: Request fields the response object echoes (``instructions``, ``tools``...;
            ``TranslatedRequest.options`` from :func:`rxllm.dialects.responses.translate_request`).
        secrets: Strings scrubbed from error messages.

    Returns:
        An operator ``Observable[ChatCompletionChunk] -> Observable[bytes]``.
    """
    kept = tuple(secrets)
    return encode_with(lambda: ResponsesEncoder(model=model, options=options, secrets=kept))
