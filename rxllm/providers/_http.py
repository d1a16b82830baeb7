"""The transport every provider shares: pooled aiohttp sessions, timeouts, SSE bodies, HTTP errors.

One :class:`aiohttp.ClientSession` per event loop, reused for every request on that loop, so
connections are pooled; :func:`aclose_sessions` closes the current loop's session at shutdown.
:func:`sse_events` is the whole request: POST, map an error status to its :mod:`rxllm.errors`
class with the provider's own message, then decode the body with :class:`~rxllm.sse.SSEDecoder`
from ``resp.content.iter_any()``. Closing the generator closes the response (and its
connection) at once; that is how disposing a stream reaches the socket.

API keys travel only in request headers handed to aiohttp: they are never logged, never put
in an error, and aiohttp exceptions (whose ``request_info`` holds the headers) are never
chained onto the errors raised here.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import AsyncGenerator, Mapping
from typing import Any, Final

import aiohttp
import orjson

from rxllm.errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    BadRequestError,
    InternalServerError,
    MalformedStreamError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTooLargeError,
    ServiceUnavailableError,
    Timeout,
    error_for_status,
)
from rxllm.loop import on_shutdown
from rxllm.providers.base import ChatRequest
from rxllm.sse import DEFAULT_MAX_EVENT_SIZE, ServerSentEvent, SSEDecoder

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_STREAM_TIMEOUT",
    "SSEBody",
    "aclose_sessions",
    "api_key_for",
    "bad_json",
    "dumps",
    "endpoint",
    "error_from_payload",
    "get_session",
    "sse_events",
]

#: Seconds to establish a connection when the caller gives no ``timeout``.
DEFAULT_CONNECT_TIMEOUT: Final = 60.0
#: Seconds allowed between two body reads when the caller gives no ``stream_timeout``; long,
#: because reasoning models can think for minutes before their first token.
DEFAULT_STREAM_TIMEOUT: Final = 600.0

_MAX_ERROR_BODY: Final = 64 * 1024

_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = weakref.WeakKeyDictionary()


def get_session() -> aiohttp.ClientSession:
    """The running loop's shared session, created on first use (a session is bound to its loop)."""
    loop = asyncio.get_running_loop()
    session = _sessions.get(loop)
    if session is None or session.closed:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=DEFAULT_CONNECT_TIMEOUT),
            json_serialize=lambda obj: dumps(obj).decode(),
        )
        _sessions[loop] = session
    return session


async def aclose_sessions() -> None:
    """Close the current loop's shared session and its pooled connections (call at shutdown)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    session = _sessions.pop(loop, None)
    if session is not None and not session.closed:
        await session.close()


on_shutdown(aclose_sessions)


def _default(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return dict(obj)
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def dumps(obj: Any) -> bytes:
    """Compact JSON for request bodies; read-only mappings and rxllm objects are accepted."""
    return orjson.dumps(obj, default=_default)


# --------------------------------------------------------------------------- endpoints and keys


def endpoint(api_base: str | None, default_base: str, path: str) -> str:
    """The URL to POST to: ``api_base`` (an SDK-style root) plus ``path``, or a full endpoint unchanged.

    ``api_base`` already ending in ``path`` (LiteLLM style, ``.../chat/completions``) is used as
    given, and so is one whose root already holds the start of ``path`` (``.../v1`` with
    ``/v1/messages``).
    """
    base = (api_base or default_base).rstrip("/")
    plain = base.split("?", 1)[0]
    if plain.endswith(path):
        return base
    head, _, tail = path.lstrip("/").partition("/")
    if tail and plain.endswith("/" + head):
        return base + "/" + tail
    return base + path


def api_key_for(explicit: str | None, env_names: tuple[str, ...]) -> str | None:
    """The key to send: the caller's ``api_key``, else the first set environment variable."""
    if explicit:
        return explicit
    for name in env_names:
        value = os.environ.get(name)
        if value:
            return value
    return None


# --------------------------------------------------------------------------- error mapping

#: Error ``type``/``status`` strings (Anthropic, OpenAI, Gemini) to classes, for in-stream errors.
_BY_TYPE: Final[dict[str, type[APIError]]] = {
    "invalid_request_error": BadRequestError,
    "invalid_argument": BadRequestError,
    "failed_precondition": BadRequestError,
    "authentication_error": AuthenticationError,
    "unauthenticated": AuthenticationError,
    "permission_error": PermissionDeniedError,
    "permission_denied": PermissionDeniedError,
    "not_found_error": NotFoundError,
    "not_found": NotFoundError,
    "request_too_large": RequestTooLargeError,
    "rate_limit_error": RateLimitError,
    "rate_limit_exceeded": RateLimitError,
    "resource_exhausted": RateLimitError,
    "api_error": InternalServerError,
    "server_error": InternalServerError,
    "internal": InternalServerError,
    "overloaded_error": ServiceUnavailableError,
    "unavailable": ServiceUnavailableError,
    "timeout_error": Timeout,
    "deadline_exceeded": Timeout,
}


def _error_object(body: Any) -> Mapping[str, Any] | None:
    """The ``error`` object of an OpenAI, Anthropic or Gemini error body (Gemini may wrap it in a list)."""
    if isinstance(body, list) and body and isinstance(body[0], Mapping):
        body = body[0]
    if not isinstance(body, Mapping):
        return None
    err = body.get("error")
    if isinstance(err, Mapping):
        return err
    if isinstance(err, str):
        return {"message": err}
    if "message" in body or "detail" in body:  # FastAPI-style servers (vLLM, proxies)
        return body
    return None


def _status_of(err: Mapping[str, Any]) -> int | None:
    for key in ("status_code", "code", "status"):
        value = err.get(key)
        if isinstance(value, int) and 100 <= value <= 599:
            return value
        if isinstance(value, str) and value.isdigit() and 100 <= int(value) <= 599:
            return int(value)
    return None


def _message_of(err: Mapping[str, Any]) -> str:
    message = err.get("message")
    if message is None:
        message = err.get("detail")
    if message is None:
        return ""
    return message if isinstance(message, str) else orjson.dumps(message).decode()


def error_from_payload(
    payload: Any,
    *,
    provider: str,
    model: str,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
    context: str = "",
) -> APIError:
    """Turn a decoded provider error body (HTTP error or an error event in a 200 stream) into its class.

    The class comes from the HTTP status when there is one, else from the body's numeric
    ``status_code``/``code``, else from its ``type``/``status`` name (``overloaded_error`` →
    ``ServiceUnavailableError``), else ``APIError``.

    Args:
        payload: The decoded JSON body or event data.
        provider: The provider prefix, for the error.
        model: The model, for the error.
        status: The HTTP status, when the error came as one.
        headers: The response headers (``Retry-After`` is kept).
        context: Words to put before the provider's message (``"error event in stream"``).
    """
    err = _error_object(payload)
    message = _message_of(err) if err is not None else ""
    kind = ""
    if err is not None:
        for key in ("type", "status", "code"):
            value = err.get(key)
            if isinstance(value, str) and value.lower() in _BY_TYPE:
                kind = value.lower()
                break
    if kind and kind not in message:
        message = f"{kind}: {message}" if message else kind
    if not message:
        message = "no error message in the provider's response"
    if context:
        message = f"{context}: {message}"
    kwargs: dict[str, Any] = {"llm_provider": provider, "model": model, "body": payload}
    by_type = _BY_TYPE.get(kind)
    if by_type is ServiceUnavailableError or status == 529:
        # overload: Anthropic sends it as HTTP 529 or as an overloaded_error event
        code = (status or 529) if kind == "overloaded_error" else (status or 503)
        return ServiceUnavailableError(message, status_code=code, response_headers=headers, **kwargs)
    if status is None and err is not None:
        status = _status_of(err)
    if status is not None:
        return error_for_status(status, message, headers=headers, **kwargs)
    if by_type is RateLimitError:
        return error_for_status(429, message, headers=headers, **kwargs)
    if by_type is not None:
        return by_type(message, response_headers=headers, **kwargs)
    return APIError(message, response_headers=headers, **kwargs)


def _error_from_body(
    status: int, reason: str, raw: bytes, headers: Mapping[str, str], provider: str, model: str
) -> APIError:
    try:
        payload: Any = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        payload = None
    if payload is None or _error_object(payload) is None:
        text = raw[:500].decode("utf-8", "replace").strip()
        message = f"HTTP {status} {reason}" + (f": {text}" if text else "")
        if status == 529:
            return ServiceUnavailableError(
                message, status_code=529, response_headers=headers, llm_provider=provider, model=model
            )
        return error_for_status(status, message, headers=headers, llm_provider=provider, model=model, body=text or None)
    return error_from_payload(payload, provider=provider, model=model, status=status, headers=headers)


def bad_json(data: str, provider: str, model: str, what: str = "a JSON object") -> MalformedStreamError:
    """The error for an event whose data is not the JSON object the protocol promises."""
    shown = data if len(data) <= 200 else data[:200] + "..."
    return MalformedStreamError(
        f"a data field in the stream is not {what}: {shown!r}", llm_provider=provider, model=model
    )


# --------------------------------------------------------------------------- requests


class SSEBody:
    """What a provider learns about the body besides its events: the decoder, for end-of-stream checks."""

    __slots__ = ("content_type", "decoder", "events", "first_bytes")

    def __init__(self, decoder: SSEDecoder) -> None:
        self.decoder = decoder
        self.events = 0
        self.first_bytes = b""
        self.content_type = ""

    def not_sse_error(self, provider: str, model: str) -> APIError:
        """The error for a body that ended having produced no event at all."""
        if not self.first_bytes:
            return APIConnectionError(
                "the response body was empty: the server closed the stream before sending any event",
                llm_provider=provider,
                model=model,
            )
        shown = self.first_bytes[:200].decode("utf-8", "replace")
        return MalformedStreamError(
            f"the response body is not a server-sent event stream (content-type "
            f"{self.content_type or 'missing'!r}); it starts with {shown!r}",
            llm_provider=provider,
            model=model,
        )


async def sse_events(
    url: str,
    *,
    headers: Mapping[str, str],
    body: Mapping[str, Any],
    provider: str,
    model: str,
    timeout: float | None = None,
    stream_timeout: float | None = None,
    state: SSEBody | None = None,
    max_event_size: int = DEFAULT_MAX_EVENT_SIZE,
) -> AsyncGenerator[list[ServerSentEvent], None]:
    """POST ``body`` as JSON and yield the response's server-sent events, a list per network read.

    Batches, not single events: one generator hop per read instead of per event keeps the
    per-chunk cost down when a read carries many events.

    Use it under ``contextlib.aclosing`` so that closing the provider's generator closes this
    one, and with it the HTTP response.

    Args:
        url: The full endpoint URL.
        headers: Request headers, including the provider's auth header.
        body: The JSON request body.
        provider: The provider prefix, for errors.
        model: The model name, for errors.
        timeout: Seconds to connect (default :data:`DEFAULT_CONNECT_TIMEOUT`).
        stream_timeout: Seconds allowed between body reads (default :data:`DEFAULT_STREAM_TIMEOUT`).
        state: Filled in as the body is read (the decoder, for the caller's end-of-stream checks).
        max_event_size: Passed to :class:`~rxllm.sse.SSEDecoder`.

    Raises:
        APIError: The class matching an HTTP error status, with the provider's message.
        APIConnectionError: When connecting fails or the connection drops mid-body.
        Timeout: When connecting or a gap between body reads takes too long.
        MalformedStreamError: When an event exceeds ``max_event_size``.
    """
    session = get_session()
    client_timeout = aiohttp.ClientTimeout(
        total=None,
        sock_connect=timeout if timeout is not None else DEFAULT_CONNECT_TIMEOUT,
        sock_read=stream_timeout if stream_timeout is not None else DEFAULT_STREAM_TIMEOUT,
    )
    send_headers = {"Content-Type": "application/json", "Accept": "text/event-stream", **headers}
    try:
        resp = await session.post(url, data=dumps(body), headers=send_headers, timeout=client_timeout)
    except (TimeoutError, aiohttp.ServerTimeoutError):
        raise Timeout(
            f"could not connect to {_safe_url(url)} within {client_timeout.sock_connect} s",
            llm_provider=provider,
            model=model,
        ) from None
    except aiohttp.ClientError as exc:
        raise APIConnectionError(
            f"could not reach {_safe_url(url)}: {type(exc).__name__}: {_describe(exc)}",
            llm_provider=provider,
            model=model,
        ) from None

    completed = False
    try:
        if resp.status >= 400:
            raw = await _read_limited(resp, provider, model, client_timeout)
            raise _error_from_body(resp.status, resp.reason or "", raw, dict(resp.headers), provider, model)
        decoder = state.decoder if state is not None else SSEDecoder(max_event_size=max_event_size)
        if state is not None:
            state.content_type = resp.headers.get("Content-Type", "")
        try:
            async for piece in resp.content.iter_any():
                if state is not None and not state.first_bytes:
                    state.first_bytes = piece[:200]
                events = decoder.feed(piece)
                if events:
                    if state is not None:
                        state.events += len(events)
                    yield events
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise Timeout(
                f"no data from the server for {client_timeout.sock_read} s (stream_timeout) while streaming",
                llm_provider=provider,
                model=model,
            ) from None
        except aiohttp.ClientPayloadError as exc:
            raise APIConnectionError(
                f"the connection broke mid-stream: {_describe(exc)}", llm_provider=provider, model=model
            ) from None
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise APIConnectionError(
                f"the connection broke mid-stream: {type(exc).__name__}: {_describe(exc)}",
                llm_provider=provider,
                model=model,
            ) from None
        completed = True
    finally:
        if completed:
            resp.release()
        else:
            # not read to the end (closed early, cancelled, or failed): drop the connection now
            resp.close()


async def _read_limited(
    resp: aiohttp.ClientResponse, provider: str, model: str, client_timeout: aiohttp.ClientTimeout
) -> bytes:
    parts: list[bytes] = []
    size = 0
    try:
        async for piece in resp.content.iter_any():
            parts.append(piece)
            size += len(piece)
            if size >= _MAX_ERROR_BODY:
                break
    except (TimeoutError, aiohttp.ServerTimeoutError):
        raise Timeout(
            f"HTTP {resp.status}: no data for {client_timeout.sock_read} s while reading the error body",
            llm_provider=provider,
            model=model,
        ) from None
    except aiohttp.ClientError:
        pass  # a cut error body still names the status
    return b"".join(parts)


def _safe_url(url: str) -> str:
    """The URL without its query string (where some gateways put keys)."""
    return url.split("?", 1)[0]


def _describe(exc: BaseException) -> str:
    """An aiohttp exception in words, without its request_info (which holds the headers)."""
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"{exc.status} {exc.message}"
    return str(exc) or type(exc).__name__


def request_events(
    request: ChatRequest, *, provider: str, url: str, headers: Mapping[str, str], body: Mapping[str, Any]
) -> tuple[AsyncGenerator[list[ServerSentEvent], None], SSEBody, str]:
    """Start :func:`sse_events` for one request: the event batches, the body state, and the
    model name that errors carry (as the caller wrote it)."""
    model_name = request.original_model or request.model
    state = SSEBody(SSEDecoder())
    events = sse_events(
        url,
        headers=headers,
        body=body,
        provider=provider,
        model=model_name,
        timeout=request.timeout,
        stream_timeout=request.stream_timeout,
        state=state,
    )
    return events, state, model_name
