"""The OpenAI Responses dialect: ``POST /v1/responses``.

The translator and the event encoder are :mod:`rxllm.dialects.responses` (also usable in a
user's own service as ``ops.to_responses_sse``); this module plugs them into the exchange
core. ``stream: true`` answers the Responses event stream; otherwise one JSON ``response``
object. ``previous_response_id`` is refused with a 400: the proxy stores no responses.
Errors use OpenAI's ``{"error": {...}}`` shape before the stream, and ``error`` +
``response.failed`` events after it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web

from rxllm.dialects.responses import ResponsesEncoder, response_object, translate_request
from rxllm.proxy.dialect import Call, Context, Dialect, ErrorInfo
from rxllm.proxy.dialects.chat import openai_error_body
from rxllm.types import ModelResponse, Usage

__all__ = ["DIALECT", "ResponsesStream", "translate"]


def translate(body: Any, request: web.Request | None = None) -> Call:
    """A Responses request body to an rxllm call (see :func:`rxllm.dialects.responses.translate_request`).

    Raises:
        RequestFieldError: 400 naming the first invalid field.
    """
    call = translate_request(body)
    return Call(call.model, call.messages, call.stream, call.params, options=call.options)


class ResponsesStream:
    """The core's stream encoder over :class:`~rxllm.dialects.responses.ResponsesEncoder`.

    ``chunk`` is the encoder's own ``encode`` (no extra call per chunk).
    """

    __slots__ = ("chunk", "encoder")

    def __init__(self, context: Context) -> None:
        self.encoder = ResponsesEncoder(model=context.call.model, options=context.call.options)
        self.chunk = self.encoder.encode

    def end(self, usage: Usage | None) -> bytes:
        """The closing ``.done`` events and ``response.completed`` (or ``response.incomplete``)."""
        return self.encoder.close(usage)

    def error(self, info: ErrorInfo) -> bytes:
        """``error`` and ``response.failed``."""
        return self.encoder.fail_with(info.status, info.message, code=info.code, param=info.param)


def _respond(response: ModelResponse, context: Context) -> Mapping[str, Any]:
    return response_object(response, model=context.call.model, options=context.call.options)


DIALECT: Final = Dialect(
    name="responses",
    routes=("/v1/responses", "/responses"),
    translate=translate,
    stream_encoder=ResponsesStream,
    respond=_respond,
    error_body=openai_error_body,
)
