"""``to_ui_message_stream``: chunks to the bytes of a Vercel AI SDK UI message stream."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from reactivex import Observable

from rxllm.dialects.ui_stream import UIMessageStreamEncoder
from rxllm.types import ChatCompletionChunk

from ._encode import encode_with

__all__ = ["to_ui_message_stream"]


def to_ui_message_stream(
    *, send_reasoning: bool = True, secrets: Iterable[str] = ()
) -> Callable[[Observable[ChatCompletionChunk]], Observable[bytes]]:
    """Encode chunks as the Vercel AI SDK's UI message stream (v1), what ``useChat`` reads.

    ::

        source:  --a(text)------b(finish)--|
        output:  --start,start-step,text-start,text-delta--text-end,finish-step,finish,[DONE]|

        source:  --a--#
        output:  --start,...,text-delta--error,[DONE]|

    Send the bytes with :data:`rxllm.dialects.ui_stream.HEADERS` (they include
    ``x-vercel-ai-ui-message-stream: v1``). Reasoning becomes ``reasoning-*`` parts, tool
    calls ``tool-input-start``/``-delta``/``-available``; an upstream error becomes one
    ``error`` part and ``[DONE]``, without ``finish``. Disposal goes upstream.

    Args:
        send_reasoning: Whether reasoning parts are sent.
        secrets: Strings scrubbed from error messages.

    Returns:
        An operator ``Observable[ChatCompletionChunk] -> Observable[bytes]``.
    """
    kept = tuple(secrets)
    return encode_with(lambda: UIMessageStreamEncoder(send_reasoning=send_reasoning, secrets=kept))
