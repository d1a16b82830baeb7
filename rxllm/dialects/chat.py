"""OpenAI chat completions: chunks as ``data: {chunk}`` server-sent events, ``data: [DONE]`` at the end.

The dialect every OpenAI-compatible client speaks. Each chunk is written as its own wire
JSON; an error after the stream started becomes one ``data: {"error": {...}}`` event (what
OpenAI's SDKs raise ``APIError`` for) and the stream ends without ``[DONE]``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from rxllm.errors import error_body, error_status
from rxllm.sse import SSE_DONE, encode_json
from rxllm.types import ChatCompletionChunk, Usage

from ._common import SSE_HEADERS

__all__ = ["HEADERS", "KEEPALIVE", "ChatEncoder", "error_body", "error_status"]

#: The response headers of a chat-completions stream.
HEADERS: Final = SSE_HEADERS

#: An SSE comment: clients ignore it, load balancers see traffic.
KEEPALIVE: Final = b": ping\n\n"


class ChatEncoder:
    """Encodes one stream of chunks as OpenAI chat-completions SSE.

    Args:
        model: The model name to report in every chunk (the name the client asked for);
            ``None`` keeps each chunk's own.
        secrets: Strings scrubbed from error messages (``***``).
    """

    __slots__ = ("_model", "_secrets")

    def __init__(self, *, model: str | None = None, secrets: Iterable[str] = ()) -> None:
        self._model = model
        self._secrets = tuple(secrets)

    def encode(self, chunk: ChatCompletionChunk) -> bytes:
        """``data: {chunk}\\n\\n``."""
        d = chunk.to_dict()
        if self._model is not None:
            d["model"] = self._model
        return encode_json(d)

    def close(self, usage: Usage | None = None) -> bytes:
        """``data: [DONE]\\n\\n`` (``usage`` is not sent: the chunks carry it)."""
        return SSE_DONE

    def fail(self, error: BaseException) -> bytes:
        """One ``data: {"error": {...}}`` event (see :func:`rxllm.errors.error_body`)."""
        return encode_json(self.error_body(error))

    def keepalive(self) -> bytes:
        """An SSE comment line."""
        return KEEPALIVE

    def error_body(self, error: BaseException) -> dict[str, Any]:
        """The OpenAI-style error object, scrubbed of this encoder's secrets."""
        return error_body(error, self._secrets)
