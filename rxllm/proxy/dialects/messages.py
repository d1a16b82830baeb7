"""The Anthropic Messages dialect: ``POST /v1/messages``.

The translator and the event encoder are :mod:`rxllm.dialects.messages` (also usable in a
user's own service as ``ops.to_messages_sse``); this module plugs them into the exchange
core. ``stream: true`` answers Anthropic's event stream, with ``ping`` events as keepalives;
otherwise one JSON ``message``. Errors use Anthropic's shape,
``{"type": "error", "error": {"type", "message"}}``, as the HTTP body before the stream and
as an ``error`` event after it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web

from rxllm.dialects.messages import KEEPALIVE, MessagesEncoder, error_type, message_object, translate_request
from rxllm.proxy.dialect import Call, Context, Dialect, ErrorInfo
from rxllm.types import ModelResponse, Usage

__all__ = ["DIALECT", "MessagesStream", "anthropic_error_body", "translate"]


def translate(body: Any, request: web.Request | None = None) -> Call:
    """A Messages request body to an rxllm call (see :func:`rxllm.dialects.messages.translate_request`).

    Raises:
        RequestFieldError: 400 naming the first invalid field.
    """
    call = translate_request(body)
    return Call(call.model, call.messages, call.stream, call.params, options=call.options)


def anthropic_error_body(info: ErrorInfo) -> dict[str, Any]:
    """Anthropic's error shape: ``{"type": "error", "error": {"type", "message"}}``."""
    return {"type": "error", "error": {"type": error_type(info.status), "message": info.message}}


class MessagesStream:
    """The core's stream encoder over :class:`~rxllm.dialects.messages.MessagesEncoder`."""

    __slots__ = ("chunk", "encoder")

    def __init__(self, context: Context) -> None:
        self.encoder = MessagesEncoder(model=context.call.model)
        self.chunk = self.encoder.encode

    def end(self, usage: Usage | None) -> bytes:
        """``content_block_stop``, ``message_delta`` (stop reason, usage) and ``message_stop``."""
        return self.encoder.close(usage)

    def error(self, info: ErrorInfo) -> bytes:
        """One ``error`` event."""
        return self.encoder.fail_with(info.status, info.message)


def _respond(response: ModelResponse, context: Context) -> Mapping[str, Any]:
    return message_object(response, model=context.call.model)


DIALECT: Final = Dialect(
    name="messages",
    routes=("/v1/messages",),
    translate=translate,
    stream_encoder=MessagesStream,
    respond=_respond,
    error_body=anthropic_error_body,
    keepalive=KEEPALIVE,
)
