"""The Vercel AI SDK UI message stream dialect: ``POST /api/chat`` (``useChat``'s default) and ``/v1/ui/chat``.

The translator and the encoder are :mod:`rxllm.dialects.ui_stream` (also usable in a user's
own service as ``ops.to_ui_message_stream``). The model comes from the body's ``model``
(``useChat``'s ``body`` option), the ``?model=`` query parameter, or else the proxy's only
model (``mock/echo`` when none is configured and mock models are allowed). Always streams; errors
before the stream use OpenAI's ``{"error": {...}}`` shape (``useChat`` shows the text), and
an ``error`` part after it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web

from rxllm.dialects.ui_stream import HEADERS, UIMessageStreamEncoder, translate_request
from rxllm.proxy.dialect import Call, Context, Dialect, ErrorInfo
from rxllm.proxy.dialects.chat import openai_error_body
from rxllm.proxy.exchange import PROXY_STATE
from rxllm.types import ModelResponse, Usage

__all__ = ["DIALECT", "UIStream", "translate"]


def translate(body: Any, request: web.Request | None = None) -> Call:
    """A ``useChat`` request body to an rxllm call (always streaming).

    Raises:
        RequestFieldError: 400 naming the first invalid field.
    """
    model = request.query.get("model") if request is not None else None
    if not model and request is not None:
        state = request.app[PROXY_STATE]
        names = state.router.model_names
        if len(names) == 1:
            model = names[0]
        elif not names and state.config.allow_mock_models:
            model = "mock/echo"
    call = translate_request(body, model=model)
    return Call(call.model, call.messages, True, call.params, options=call.options)


class UIStream:
    """The core's stream encoder over :class:`~rxllm.dialects.ui_stream.UIMessageStreamEncoder`."""

    __slots__ = ("chunk", "encoder")

    def __init__(self, context: Context) -> None:
        self.encoder = UIMessageStreamEncoder()
        self.chunk = self.encoder.encode

    def end(self, usage: Usage | None) -> bytes:
        """``finish-step``, ``finish``, ``[DONE]``."""
        return self.encoder.close(usage)

    def error(self, info: ErrorInfo) -> bytes:
        """One ``error`` part and ``[DONE]``."""
        return self.encoder.fail_with(info.status, info.message)


def _respond(response: ModelResponse, context: Context) -> Mapping[str, Any]:  # pragma: no cover - always streams
    return response.to_dict()


DIALECT: Final = Dialect(
    name="ui_stream",
    routes=("/api/chat", "/v1/ui/chat"),
    translate=translate,
    stream_encoder=UIStream,
    respond=_respond,
    error_body=openai_error_body,
    stream_headers={"x-vercel-ai-ui-message-stream": HEADERS["x-vercel-ai-ui-message-stream"]},
)
