"""The dialect interface: what one wire protocol must supply to be served by the proxy.

The proxy keeps one stream in the middle, the Observable of chat-completion chunks; every wire
protocol (OpenAI chat completions, OpenAI Responses, Anthropic Messages, ...) is a *dialect* at
its edges. The shared exchange core (:mod:`rxllm.proxy.exchange`) does everything that is the
same for all of them: auth, reading and size-checking the body, admission (the concurrency
slot), routing and failover with the router's bookkeeping done exactly once per attempt, cost
and usage, the keepalive timer, disconnect → dispose, backpressure, the one log line. A
dialect supplies only what differs, as one :class:`Dialect` value:

- ``routes``: the POST paths it answers (``("/v1/chat/completions", "/chat/completions")``);
- ``translate(body, request) -> Call``: the decoded JSON body to an rxllm call (raise
  :class:`~rxllm.proxy.errors.ProxyError` with a 4xx status for a bad request);
- ``stream_encoder(context) -> StreamEncoder``: a fresh, per-request chunk → bytes encoder
  (its bytes are already SSE-framed, see :mod:`rxllm.sse`);
- ``respond(response, context) -> dict``: the non-streaming answer's JSON body;
- ``error_body(info) -> dict``: the dialect's error shape (for HTTP errors before streaming);
- ``keepalive``: the bytes written after a stretch of silence (an SSE comment ``: ping`` by
  default; Anthropic's dialect sends its ``ping`` event; ``None`` for none);
- ``stream_headers``: extra response headers for a stream (the SSE ones are always sent).

Adding a dialect means adding one module to :mod:`rxllm.proxy.dialects` that defines a module
attribute ``DIALECT``; :func:`rxllm.proxy.dialects.load_dialects` finds it.

Everything in this module is a stable interface: the core calls exactly these members.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Protocol

import attrs

from rxllm.sse import SSE_PING
from rxllm.types import ChatCompletionChunk, ModelResponse, Usage

if TYPE_CHECKING:
    from aiohttp import web

__all__ = [
    "SSE_HEADERS",
    "Call",
    "Context",
    "Dialect",
    "ErrorInfo",
    "StreamEncoder",
]

#: Headers every streamed answer carries (a dialect's ``stream_headers`` are added).
SSE_HEADERS: Final[Mapping[str, str]] = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


@attrs.frozen
class Call:
    """What a dialect's translator made of a request: one rxllm call.

    Attributes:
        model: The model name the client asked for: the router's key, and the name every
            answer reports (never the deployment's ``provider/model``).
        messages: OpenAI-format messages for :func:`rxllm.stream`.
        stream: Whether the client wants a stream.
        params: Other :func:`rxllm.stream` parameters (``temperature``, ``tools``, ...). The
            transport settings (``api_base``, ``api_key``, timeouts) always come from the
            deployment; the core drops them if present.
        options: Dialect-private data for the encoder and ``respond`` (for example whether
            the client asked for usage), passed through untouched in :attr:`Context.call`.
    """

    model: str
    messages: Sequence[Mapping[str, Any]]
    stream: bool
    params: Mapping[str, Any] = attrs.field(factory=dict)
    options: Any = None


@attrs.frozen
class Context:
    """What an encoder (and ``respond``) may know about the request it answers.

    Attributes:
        call: The translated call (``call.model`` is the client's model name).
        request_id: The proxy's request id (also in the ``X-Request-Id`` header).
        created: Unix seconds at which the request arrived.
    """

    call: Call
    request_id: str
    created: int


@attrs.frozen
class ErrorInfo:
    """A failure, described safely: what a dialect needs to build its error shape.

    The message is already scrubbed of every secret the proxy knows; dialects show it as is.

    Attributes:
        status: The HTTP status (400-599).
        type: OpenAI's error type for the status (``"invalid_request_error"``,
            ``"rate_limit_error"``, ``"server_error"``, ...).
        message: A human-readable description, safe to send to the client.
        param: The request field at fault, if known.
        code: A machine-readable code (``"model_not_found"``), if known.
        retry_after: Seconds the client should wait before retrying, if known.
        error_type: The exception's class name (``"RateLimitError"``), for logs and metrics.
    """

    status: int
    type: str
    message: str
    param: str | None = None
    code: str | None = None
    retry_after: float | None = None
    error_type: str = "APIError"


class StreamEncoder(Protocol):
    """One streamed answer's encoder: chunks in, SSE-framed bytes out.

    A fresh encoder is made per request. The core calls :meth:`chunk` for every chunk (with
    the client's model name already set), then exactly one of :meth:`end` (the upstream
    completed) or :meth:`error` (it failed after the response started). Returning ``b""``
    writes nothing. Encoders should be cheap: :meth:`chunk` is on the per-chunk hot path.
    """

    def chunk(self, chunk: ChatCompletionChunk) -> bytes:
        """The bytes for one chunk (possibly several events, possibly none)."""
        ...

    def end(self, usage: Usage | None) -> bytes:
        """The success terminator; ``usage`` is the final usage (upstream or estimated)."""
        ...

    def error(self, info: ErrorInfo) -> bytes:
        """The error event that ends a failed stream (never a success terminator)."""
        ...


@attrs.frozen
class Dialect:
    """One wire protocol the proxy speaks (see the module docstring for each member).

    Attributes:
        name: A short name for logs and metrics (``"chat"``, ``"responses"``, ``"messages"``).
        routes: POST paths served by the exchange core with this dialect.
        translate: ``(body, request) -> Call``; raises ``ProxyError`` (4xx) for a bad request.
        stream_encoder: ``(context) -> StreamEncoder``, one per streamed request.
        respond: ``(response, context) -> dict``, the non-streaming JSON body.
        error_body: ``(info) -> dict``, the dialect's JSON error body.
        keepalive: Bytes to write after ``keepalive_interval`` seconds of silence on a stream
            (``None``: never).
        stream_headers: Extra headers for a streamed answer.
        extra_routes: Other routes the dialect serves itself (plain aiohttp route defs).
    """

    name: str
    routes: tuple[str, ...]
    translate: Callable[[Any, web.Request], Call]
    stream_encoder: Callable[[Context], StreamEncoder]
    respond: Callable[[ModelResponse, Context], Mapping[str, Any]]
    error_body: Callable[[ErrorInfo], Mapping[str, Any]]
    keepalive: bytes | None = SSE_PING
    stream_headers: Mapping[str, str] = attrs.field(factory=dict)
    extra_routes: tuple[web.AbstractRouteDef, ...] = ()
