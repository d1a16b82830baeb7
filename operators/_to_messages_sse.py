"""``to_messages_sse``: chunks to the bytes of an Anthropic Messages API event stream."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from reactivex import Observable

from rxllm.dialects.messages import MessagesEncoder
from rxllm.types import ChatCompletionChunk

from ._encode import encode_with

__all__ = ["to_messages_sse"]


def to_messages_sse(
    *, model: str | None = None, secrets: Iterable[str] = ()
) -> Callable[[Observable[ChatCompletionChunk]], Observable[bytes]]:
    """Encode chunks as Anthropic Messages API server-sent events, for a ``/v1/messages`` handler.

    ::

        source:  --a(text)------b(finish, usage)--|
        output:  --message_start,ping,block_start,text_delta--block_stop,message_delta,message_stop|

        source:  --a--#
        output:  --message_start,...,text_delta--error|

    Thinking becomes ``thinking`` blocks (``thinking_delta``, and ``signature_delta`` from
    the chunks' ``thinking_blocks``), tool calls ``tool_use`` blocks (``input_json_delta``);
    see :class:`rxllm.dialects.messages.MessagesEncoder`. An upstream error becomes one
    ``error`` event in Anthropic's shape (no ``message_stop``), then the stream completes.
    Disposal goes upstream.

    Args:
        model: The model name ``message_start`` reports; ``None`` keeps the chunks' own.
        secrets: Strings scrubbed from error messages.

    Returns:
        An operator ``Observable[ChatCompletionChunk] -> Observable[bytes]``.
    """
    kept = tuple(secrets)
    return encode_with(lambda: MessagesEncoder(model=model, secrets=kept))
