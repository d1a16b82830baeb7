"""The OpenAI Responses dialect: ``POST /v1/responses`` (and ``GET /v1/responses/{id}`` with a store).

The translator and the event encoder are :mod:`rxllm.dialects.responses` (also usable in a
user's own service as ``ops.to_responses_sse``); this module plugs them into the exchange
core. ``stream: true`` answers the Responses event stream; otherwise one JSON ``response``
object. Errors use OpenAI's ``{"error": {...}}`` shape before the stream, and ``error`` +
``response.failed`` events after it.

``general_settings.responses_store_size`` (default 0) keeps that many answers in memory, per
proxy process: ``previous_response_id``, ``item_reference`` items (which the AI SDK sends
for earlier turns) and ``GET /v1/responses/{id}`` then work; a request with ``store: false``
is not kept. Without a store those requests are a 400 naming the field.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any, Final

from aiohttp import web

from rxllm.dialects.responses import ResponsesEncoder, ResponseStore, response_object, translate_request
from rxllm.proxy.dialect import Call, Context, Dialect, ErrorInfo
from rxllm.proxy.dialects.chat import openai_error_body
from rxllm.proxy.errors import ProxyError
from rxllm.proxy.exchange import PROXY_STATE
from rxllm.types import ModelResponse, Usage

__all__ = ["DIALECT", "ResponsesStream", "store_of", "translate"]

#: The response store of each running app (created on first use when configured).
_STORES: Final[weakref.WeakKeyDictionary[web.Application, ResponseStore]] = weakref.WeakKeyDictionary()
_STORE: Final = "_rxllm_store"


def store_of(app: web.Application) -> ResponseStore | None:
    """The app's response store, or None when ``responses_store_size`` is 0."""
    store = _STORES.get(app)
    if store is None:
        size = app[PROXY_STATE].config.responses_store_size
        if not size:
            return None
        store = _STORES[app] = ResponseStore(size)
    return store


def translate(body: Any, request: web.Request | None = None) -> Call:
    """A Responses request body to an rxllm call (see :func:`rxllm.dialects.responses.translate_request`).

    Raises:
        RequestFieldError: 400 naming the first invalid field.
    """
    store = store_of(request.app) if request is not None else None
    call = translate_request(body, store=store)
    keep = store is not None and isinstance(body, dict) and body.get("store") is not False
    options = {**call.options, "store": keep, _STORE: store if keep else None}
    return Call(call.model, call.messages, call.stream, call.params, options=options)


def _save(context: Context, response: Mapping[str, Any]) -> None:
    store = context.call.options.get(_STORE) if isinstance(context.call.options, Mapping) else None
    if isinstance(store, ResponseStore):
        store.save(response, context.call.messages)


class ResponsesStream:
    """The core's stream encoder over :class:`~rxllm.dialects.responses.ResponsesEncoder`.

    ``chunk`` is the encoder's own ``encode`` (no extra call per chunk).

    Args:
        context: The request's context.
        response_id: The response id every event carries (default: a fresh ``resp_…``;
            resumable streams pass the stream's key).
    """

    __slots__ = ("chunk", "context", "encoder")

    def __init__(self, context: Context, response_id: str | None = None) -> None:
        self.context = context
        self.encoder = ResponsesEncoder(model=context.call.model, options=context.call.options, response_id=response_id)
        self.chunk = self.encoder.encode

    def end(self, usage: Usage | None) -> bytes:
        """The closing ``.done`` events and ``response.completed`` (or ``response.incomplete``)."""
        data = self.encoder.close(usage)
        _save(self.context, self.encoder.response())
        return data

    def error(self, info: ErrorInfo) -> bytes:
        """``error`` and ``response.failed``."""
        return self.encoder.fail_with(info.status, info.message, code=info.code, param=info.param)


def _respond(response: ModelResponse, context: Context) -> Mapping[str, Any]:
    body = response_object(response, model=context.call.model, options=context.call.options)
    _save(context, body)
    return body


async def _get(request: web.Request) -> web.Response:
    response_id = request.match_info["response_id"]
    store = store_of(request.app)
    found = store.get(response_id) if store is not None else None
    if found is None:
        why = "was not found" if store is not None else "was not found: this proxy stores no responses"
        raise ProxyError(f"response {response_id!r} {why}", status_code=404, param="response_id", code="not_found")
    return web.json_response(found)


DIALECT: Final = Dialect(
    name="responses",
    routes=("/v1/responses", "/responses"),
    translate=translate,
    stream_encoder=ResponsesStream,
    respond=_respond,
    error_body=openai_error_body,
    extra_routes=(web.get("/v1/responses/{response_id}", _get),),
)
