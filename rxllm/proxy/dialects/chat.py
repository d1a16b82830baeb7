"""The OpenAI chat-completions dialect: ``POST /v1/chat/completions``.

``stream: true`` answers ``text/event-stream`` (``data: {chunk}`` events, ``data: [DONE]``);
otherwise one JSON ``chat.completion``. Usage chunks are sent only when the client asked for
them (``stream_options.include_usage``), as OpenAI does; the proxy always asks the upstream
for usage so it can cost every request, and estimates it for an upstream that sends none.
Errors use OpenAI's ``{"error": {"message", "type", "param", "code"}}`` shape, before the
stream as the HTTP body and after it as one last ``data:`` event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import attrs
import orjson
from aiohttp import web

from rxllm.proxy.dialect import Call, Context, Dialect, ErrorInfo
from rxllm.proxy.validation import (
    bad_request,
    check_messages,
    check_types,
    json_type,
    passthrough_params,
    require_object,
)
from rxllm.sse import SSE_DONE, encode_data, encode_json
from rxllm.types import ChatCompletionChunk, ModelResponse, Usage

__all__ = ["DIALECT", "ChatEncoder", "openai_error_body", "translate"]

_HEAD: Final = b"data: "
_TAIL: Final = b"\n\n"
_HANDLED: Final = ("model", "messages", "stream", "stream_options")


def openai_error_body(info: ErrorInfo) -> dict[str, Any]:
    """OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": info.message, "type": info.type, "param": info.param, "code": info.code}}


def translate(body: Any, request: web.Request | None = None) -> Call:
    """A chat-completions request body to an rxllm call.

    Raises:
        ProxyError: 400 naming the first invalid field.
    """
    body = require_object(body)
    model = body.get("model")
    if model is None:
        raise bad_request("you must provide a model parameter", "model")
    if not isinstance(model, str) or not model:
        raise bad_request(f"model must be a non-empty string, got {json_type(model)}", "model")
    messages = check_messages(body.get("messages"))
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise bad_request(f"stream must be a boolean, got {json_type(stream)}", "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise bad_request(f"stream_options must be an object, got {json_type(options)}", "stream_options")
    include_usage = bool(options and options.get("include_usage"))
    check_types(body)
    params = passthrough_params(body, _HANDLED)
    # upstream usage is always requested: the proxy costs every request, and strips it from
    # the answer when the client did not ask for it
    params["stream_options"] = {**(options or {}), "include_usage": True}
    return Call(model, messages, stream, params, options=include_usage)


class ChatEncoder:
    """Chunks as OpenAI's ``data: {chunk}`` events; ``data: [DONE]`` at the end.

    Args:
        include_usage: Whether the client asked for usage (``stream_options.include_usage``);
            without it, usage-only chunks are dropped and usage fields removed, as OpenAI does.
    """

    __slots__ = ("include_usage", "last", "model", "usage_seen")

    def __init__(self, include_usage: bool) -> None:
        self.include_usage = include_usage
        self.usage_seen = False
        self.last: ChatCompletionChunk | None = None
        self.model: str | None = None  # set by renamed(): the name ``last`` is reported under

    def chunk(self, chunk: ChatCompletionChunk) -> bytes:
        """``data: {chunk}\\n\\n`` (usage handled as the client asked)."""
        self.last = chunk
        if chunk.usage is not None:
            if self.include_usage:
                self.usage_seen = True
            elif not chunk.choices:
                return b""
            else:
                chunk = attrs.evolve(chunk, usage=None)
        return _HEAD + chunk.to_json() + _TAIL

    def renamed(self, chunk: ChatCompletionChunk, model: str) -> bytes:
        """What :meth:`chunk` writes for ``chunk`` under the model name ``model``, without building that chunk.

        The exchange calls this instead of renaming each chunk to the client's model name
        (``chunk.model`` must be non-empty, and the chunk's id kept): the wire dict is
        renamed instead, one key store rather than a new chunk object per chunk. The bytes
        are exactly those :meth:`chunk` writes for the renamed chunk.
        """
        self.last = chunk
        self.model = model
        usage = chunk.usage
        if usage is not None:
            if self.include_usage:
                self.usage_seen = True
            elif not chunk.choices:
                return b""
        d = chunk.to_dict()
        d["model"] = model
        if usage is not None and not self.include_usage:
            del d["usage"]
        return _HEAD + orjson.dumps(d) + _TAIL

    def relay(self, chunk: ChatCompletionChunk, data: str | bytes) -> bytes | None:
        """The upstream's own event for ``chunk`` (its ``data`` text), or ``None`` when it must be re-encoded.

        The exchange calls this instead of :meth:`chunk` when ``data`` is exactly ``chunk``
        as JSON (an OpenAI-compatible upstream, the client's model name, nothing
        normalized: see :class:`rxllm.providers.openai.RawEvent`). Only usage the client
        did not ask for still needs rewriting here.
        """
        if chunk.usage is not None:
            if not self.include_usage:
                return None
            self.usage_seen = True
        self.last = chunk
        return _HEAD + (data.encode() if isinstance(data, str) else data) + _TAIL

    def end(self, usage: Usage | None) -> bytes:
        """``data: [DONE]``, after an (estimated) usage chunk if the client wants one and got none."""
        if not self.include_usage or self.usage_seen or usage is None:
            return SSE_DONE
        last = self.last or ChatCompletionChunk()
        model = last.model if self.model is None else self.model
        final = ChatCompletionChunk(id=last.id, created=last.created, model=model, usage=usage)
        return encode_data(final.to_json()) + SSE_DONE

    def error(self, info: ErrorInfo) -> bytes:
        """One ``data: {"error": ...}`` event (what OpenAI's SDK raises as ``APIError``)."""
        return encode_json(openai_error_body(info))


def _encoder(context: Context) -> ChatEncoder:
    return ChatEncoder(bool(context.call.options))


def _respond(response: ModelResponse, context: Context) -> Mapping[str, Any]:
    return response.to_dict()


DIALECT: Final = Dialect(
    name="chat",
    routes=("/v1/chat/completions", "/chat/completions"),
    translate=translate,
    stream_encoder=_encoder,
    respond=_respond,
    error_body=openai_error_body,
)
