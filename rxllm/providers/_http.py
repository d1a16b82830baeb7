"""The transport every provider shares: pooled aiohttp sessions, timeouts, SSE bodies, HTTP errors.

One :class:`aiohttp.ClientSession` per event loop, reused for every request on that loop, so
connections are pooled; :func:`aclose_sessions` closes the current loop's session at shutdown.
:func:`sse_events` is the whole request: POST, map an error status to its :mod:`rxllm.errors`
class with the provider's own message, then decode the body with :class:`~rxllm.sse.SSEDecoder`
from ``resp.content.readany()``. Closing the generator closes the response (and its
connection) at once; that is how disposing a stream reaches the socket.

API keys travel only in request headers handed to aiohttp: they are never logged, never put
in an error, and aiohttp exceptions (whose ``request_info`` holds the headers) are never
chained onto the errors raised here.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import AsyncGenerator, Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final, Literal, overload
from urllib.parse import parse_qsl, urlsplit

import orjson

from rxllm._secrets import register_secret, register_secrets, safe_url, scrub
from rxllm._validate import chunk_problem
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
from rxllm.types import ChatCompletionChunk

if TYPE_CHECKING:
    import aiohttp
    import yarl
else:

    class _LazyModule(ModuleType):
        """A module imported at its first use: ``import rxllm`` stays fast without the transport.

        aiohttp (and yarl, which it brings) take most of the time of importing rxllm, and a
        pipeline over recorded chunks, the mock model or the proxy's config check never open a
        connection. The first attribute read imports the module and puts it in its place here.
        """

        def __getattr__(self, attr: str) -> Any:
            import importlib

            module = importlib.import_module(self.__name__)
            globals()[self.__name__] = module
            return getattr(module, attr)

    aiohttp = _LazyModule("aiohttp")
    yarl = _LazyModule("yarl")

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_STREAM_TIMEOUT",
    "SSEBody",
    "Shape",
    "aclose_sessions",
    "api_key_for",
    "bad_json",
    "checked_chunk",
    "dumps",
    "endpoint",
    "error_from_payload",
    "get_session",
    "shape_error",
    "shape_problem",
    "sse_events",
]

#: Seconds to establish a connection when the caller gives no ``timeout``.
DEFAULT_CONNECT_TIMEOUT: Final = 60.0
#: Seconds allowed between two body reads when the caller gives no ``stream_timeout``; long,
#: because reasoning models can think for minutes before their first token.
DEFAULT_STREAM_TIMEOUT: Final = 600.0

_MAX_ERROR_BODY: Final = 64 * 1024

_sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = weakref.WeakKeyDictionary()
# One closer per session: an async generator the loop tracks (see _watch_loop_end).
_closers: dict[int, AsyncGenerator[None, None]] = {}


def get_session() -> aiohttp.ClientSession:
    """The running loop's shared session, created on first use (a session is bound to its loop).

    The session is closed when its loop ends: ``asyncio.run`` (and every runner that calls
    ``loop.shutdown_asyncgens()``) closes it, so repeated ``asyncio.run(acompletion(...))``
    leaves no session, connection or file descriptor behind. :func:`aclose_sessions` (public
    as ``rxllm.aclose()``) closes it earlier.
    """
    loop = asyncio.get_running_loop()
    session = _sessions.get(loop)
    if session is None or session.closed:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=DEFAULT_CONNECT_TIMEOUT),
            json_serialize=lambda obj: dumps(obj).decode(),
        )
        _sessions[loop] = session
        _watch_loop_end(loop, session)
    return session


async def _closer(loop: asyncio.AbstractEventLoop, session: aiohttp.ClientSession) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        _closers.pop(id(session), None)
        if _sessions.get(loop) is session:
            del _sessions[loop]
        if not session.closed:
            await session.close()
            await asyncio.sleep(0)  # let the transports finish closing before the loop does


def _watch_loop_end(loop: asyncio.AbstractEventLoop, session: aiohttp.ClientSession) -> None:
    """Close ``session`` when ``loop`` shuts down its async generators (as ``asyncio.run`` does).

    The loop tracks every async generator first iterated on it and closes them in
    ``shutdown_asyncgens()``, after the program's own tasks are done: a started generator
    whose ``finally`` closes the session is a shutdown hook any loop honours. Started here
    synchronously (one step to its ``yield``), so ``get_session`` stays a plain function.
    """
    gen = _closer(loop, session)
    step = gen.__anext__()  # the loop's first-iteration hook registers the generator now
    try:
        step.send(None)
    except StopIteration:
        _closers[id(session)] = gen
    else:  # pragma: no cover - the closer never awaits before its yield
        step.close()


async def aclose_sessions() -> None:
    """Close the running loop's shared session and its pooled connections (``rxllm.aclose()``)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    session = _sessions.pop(loop, None)
    if session is None:
        return
    closer = _closers.pop(id(session), None)
    if closer is not None:
        await closer.aclose()
    elif not session.closed:
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
    base = api_base or default_base
    plain, sep, query = base.partition("?")
    plain = plain.rstrip("/")
    query = sep + query  # a query string (``?api-version=...``) stays at the end
    if plain.endswith(path):
        return plain + query
    head, _, tail = path.lstrip("/").partition("/")
    if tail and plain.endswith("/" + head):
        return plain + "/" + tail + query
    return plain + path + query


def api_key_for(explicit: str | None, env_names: tuple[str, ...]) -> str | None:
    """The key to send: the caller's ``api_key``, else the first set environment variable.

    Either way the scrubber learns it (:func:`rxllm._secrets.register_secret`).
    """
    if explicit:
        register_secret(explicit)
        return explicit
    for name in env_names:
        value = os.environ.get(name)
        if value:
            if not name.endswith(("_BASE", "_URL", "_ENDPOINT")):  # endpoints share this lookup
                register_secret(value)
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


# --------------------------------------------------------------------------- payload shapes

#: A provider's expected payload shape: dotted paths (``[]`` for each list element) to types.
Shape = Mapping[str, type | tuple[type, ...]]

_TYPE_NAMES: Final = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number"}


def _values_at(data: Any, path: str) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = [("", data)]
    for segment in path.split("."):
        each = segment.endswith("[]")
        name = segment[:-2] if each else segment
        nxt: list[tuple[str, Any]] = []
        for where, value in found:
            if not isinstance(value, dict) or name not in value:
                continue
            inner = value[name]
            at = f"{where}.{name}" if where else name
            if each:
                if isinstance(inner, list):
                    nxt.extend((f"{at}[{i}]", item) for i, item in enumerate(inner))
            else:
                nxt.append((at, inner))
        found = nxt
    return found


def _fits(value: Any, expected: type | tuple[type, ...]) -> bool:
    kinds = expected if isinstance(expected, tuple) else (expected,)
    if isinstance(value, bool):
        return bool in kinds
    if isinstance(value, int) and float in kinds:
        return True
    return isinstance(value, kinds)


def shape_problem(data: Any, shape: Shape) -> str | None:
    """The first field of a decoded payload whose type is not the one ``shape`` expects (``null`` passes)."""
    for path, expected in shape.items():
        for where, value in _values_at(data, path):
            if value is not None and not _fits(value, expected):
                kinds = expected if isinstance(expected, tuple) else (expected,)
                wanted = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
                shown = repr(value)
                shown = shown if len(shown) <= 60 else shown[:60] + "..."
                return f"{where} must be {wanted}, got {type(value).__name__} {shown}"
    return None


def checked_chunk(chunk: ChatCompletionChunk, provider: str, model: str) -> ChatCompletionChunk:
    """``chunk`` when its fields have the data model's types, else a :class:`MalformedStreamError` naming the field.

    The built-in providers call this on every chunk they yield (and say so with
    ``checks_chunks = True``), so the boundary check costs a function call, not an extra
    iterator hop (see :class:`rxllm.providers.CheckedStream`).
    """
    problem = chunk_problem(chunk)
    if problem is None:
        return chunk
    raise MalformedStreamError(f"malformed chunk from {provider}: {problem}", llm_provider=provider, model=model)


def shape_error(data: Any, shape: Shape, exc: Exception, provider: str, model: str) -> MalformedStreamError:
    """The error for a payload the provider's code could not read: the field at fault, or what broke."""
    problem = shape_problem(data, shape)
    if problem is None:
        problem = f"a field of an unexpected type or shape ({type(exc).__name__}: {scrub(str(exc))})"
    return MalformedStreamError(f"malformed event from {provider}: {problem}", llm_provider=provider, model=model)


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
        if _looks_like_sse(shown):
            # it began as an event stream and ended inside its first event: a cut stream
            return APIConnectionError(
                f"the stream was cut inside its first event (it starts with {shown[:80]!r}): the "
                "connection closed early or the body was cut",
                llm_provider=provider,
                model=model,
            )
        return MalformedStreamError(
            f"the response body is not a server-sent event stream (content-type "
            f"{self.content_type or 'missing'!r}); it starts with {shown!r}",
            llm_provider=provider,
            model=model,
        )


def _looks_like_sse(text: str) -> bool:
    head = text.lstrip("\ufeff").lstrip("\r\n")
    return head.startswith(("data:", "event:", "id:", "retry:", ":"))


def _limit_name(timeout: float | None, stream_timeout: float | None) -> str:
    if stream_timeout is not None:
        return "stream_timeout"
    if timeout is not None:
        return "timeout"
    return "the default stream_timeout"


@overload
def sse_events(
    url: str,
    *,
    headers: Mapping[str, str],
    body: Mapping[str, Any],
    provider: str,
    model: str,
    timeout: float | None = ...,
    stream_timeout: float | None = ...,
    state: SSEBody | None = ...,
    max_event_size: int = ...,
    raw_data: Literal[False] = ...,
) -> AsyncGenerator[list[ServerSentEvent], None]: ...


@overload
def sse_events(
    url: str,
    *,
    headers: Mapping[str, str],
    body: Mapping[str, Any],
    provider: str,
    model: str,
    timeout: float | None = ...,
    stream_timeout: float | None = ...,
    state: SSEBody | None = ...,
    max_event_size: int = ...,
    raw_data: Literal[True],
) -> AsyncGenerator[list[ServerSentEvent | bytes], None]: ...


@overload
def sse_events(
    url: str,
    *,
    headers: Mapping[str, str],
    body: Mapping[str, Any],
    provider: str,
    model: str,
    timeout: float | None = ...,
    stream_timeout: float | None = ...,
    state: SSEBody | None = ...,
    max_event_size: int = ...,
    raw_data: bool,
) -> AsyncGenerator[Sequence[ServerSentEvent | bytes], None]: ...


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
    raw_data: bool = False,
) -> AsyncGenerator[Sequence[ServerSentEvent | bytes], None]:
    """POST ``body`` as JSON and yield the response's server-sent events, a list per network read.

    Batches, not single events: one generator hop per read instead of per event keeps the
    per-chunk cost down when a read carries many events.

    Use it under ``contextlib.aclosing`` so that closing the provider's generator closes this
    one, and with it the HTTP response.

    Timeouts, as the OpenAI SDK and LiteLLM users expect: ``timeout`` bounds connecting and,
    unless ``stream_timeout`` is given, every read too (the wait for the response headers and
    each gap between body reads); ``stream_timeout`` bounds the reads alone. A body read is
    timed while it waits for the server (one timer per stream, see :class:`_ReadWatch`): the
    time the consumer spends between reads does not count. Redirects are never followed (a
    3xx could send the key to another origin): it is an error.

    Args:
        url: The full endpoint URL.
        headers: Request headers, including the provider's auth header.
        body: The JSON request body.
        provider: The provider prefix, for errors.
        model: The model name, for errors.
        timeout: Seconds to connect, and for each read when ``stream_timeout`` is not given
            (default :data:`DEFAULT_CONNECT_TIMEOUT` to connect).
        stream_timeout: Seconds allowed for each read: the response headers and each gap
            between body reads (default ``timeout``, else :data:`DEFAULT_STREAM_TIMEOUT`).
        state: Filled in as the body is read (the decoder, for the caller's end-of-stream checks).
        max_event_size: Passed to :class:`~rxllm.sse.SSEDecoder`.
        raw_data: Decode with :meth:`~rxllm.sse.SSEDecoder.feed_raw`: plain one-line
            ``data:`` events come as their data's bytes (for providers that parse JSON bytes).

    Raises:
        APIError: The class matching an HTTP error status, with the provider's message; a
            plain ``APIError`` (status 3xx) for a redirect, naming the target origin.
        APIConnectionError: When connecting fails or the connection drops mid-body.
        Timeout: When connecting, waiting for the headers or a gap between body reads takes
            too long; the message names the limit that fired.
        MalformedStreamError: When an event exceeds ``max_event_size``.

    No exception raised here has an aiohttp object as its ``__cause__`` or ``__context__``
    (their ``request_info`` holds the request headers, keys included).
    """
    session = get_session()
    read_limit = stream_timeout if stream_timeout is not None else timeout
    connect = timeout if timeout is not None else DEFAULT_CONNECT_TIMEOUT
    client_timeout = aiohttp.ClientTimeout(
        total=None,
        sock_connect=connect,
        sock_read=read_limit if read_limit is not None else DEFAULT_STREAM_TIMEOUT,
    )
    limit_name = _limit_name(timeout, stream_timeout)
    send_headers = {"Content-Type": "application/json", "Accept": "text/event-stream", **headers}
    where = safe_url(url)
    error: APIError | None = None
    resp: aiohttp.ClientResponse | None = None
    try:
        # an exact-size copy: orjson's buffer has 4 KB or more of capacity, and the body is
        # held (by aiohttp and this frame) for as long as the stream is open
        data = bytes(memoryview(dumps(body)))
    except (TypeError, ValueError) as exc:
        error = BadRequestError(f"the request cannot be encoded as JSON: {exc}", llm_provider=provider, model=model)
    else:
        try:
            resp = await session.post(
                url, data=data, headers=send_headers, timeout=client_timeout, allow_redirects=False
            )
        except aiohttp.ConnectionTimeoutError:
            error = Timeout(
                f"could not connect to {where} within {connect:g} s (timeout)", llm_provider=provider, model=model
            )
        except (TimeoutError, aiohttp.ServerTimeoutError):
            error = Timeout(
                f"{where} sent no response headers within {client_timeout.sock_read:g} s of the request ({limit_name})",
                llm_provider=provider,
                model=model,
            )
        except aiohttp.InvalidURL:
            error = BadRequestError(f"invalid URL {where!r}", llm_provider=provider, model=model)
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            error = APIConnectionError(
                f"could not reach {where}: {type(exc).__name__}: {_describe(exc)}", llm_provider=provider, model=model
            )
    if error is not None:
        raise error  # outside the except block: no aiohttp exception in __context__
    assert resp is not None

    completed = False
    watch: _ReadWatch | None = None
    try:
        if 300 <= resp.status < 400:
            raise _redirect_error(resp, provider, model)
        if resp.status >= 400:
            raw = await _read_limited(resp, provider, model, client_timeout)
            raise _error_from_body(resp.status, resp.reason or "", raw, dict(resp.headers), provider, model)
        decoder = state.decoder if state is not None else SSEDecoder(max_event_size=max_event_size)
        if state is not None:
            state.content_type = resp.headers.get("Content-Type", "")
        content = resp.content
        watch = _ReadWatch(resp, content, client_timeout.sock_read)
        read = content.readany  # b"" at the end; called directly: one coroutine frame less per read
        clock = watch.clock
        feed = decoder.feed_raw if raw_data else decoder.feed
        while True:
            error = None
            watch.since = clock()
            try:
                piece = await read()  # (inline, not a helper coroutine: one frame less per read)
            except (aiohttp.ClientError, OSError) as exc:  # TimeoutError (and _ReadStalled) is an OSError
                error = _read_error(exc, provider, model, client_timeout.sock_read, limit_name)
            watch.since = _IDLE
            if error is not None:
                raise error  # outside the except block: no aiohttp exception in __context__
            if not piece:
                break
            if state is not None and not state.first_bytes:
                state.first_bytes = piece[:200]
            events = feed(piece)
            if events:
                if state is not None:
                    state.events += len(events)
                yield events
        completed = True
    finally:
        if watch is not None:
            watch.stop()
        if completed:
            resp.release()
        else:
            # not read to the end (closed early, cancelled, or failed): drop the connection now
            resp.close()


#: :attr:`_ReadWatch.since` while no read is waiting.
_IDLE: Final = float("inf")


class _ReadStalled(TimeoutError):
    """Put on the body's reader by :class:`_ReadWatch`: no data for the whole read limit."""


class _ReadWatch:
    """The body's read timeout as one timer per stream, instead of aiohttp's one timer per read.

    aiohttp enforces ``sock_read`` by cancelling and re-creating a loop timer on every network
    read (a handle allocation, two heap operations and the heap's periodic rebuild of cancelled
    handles), which on a paced stream (one chunk per read) costs more than decoding the chunk.
    Here the reader only stores the loop time before each read and ``_IDLE`` after it; one timer
    per stream looks at that when it fires and re-arms for the time left. Only when a single
    read has waited the whole limit does it put :class:`_ReadStalled` on the reader, which the
    read loop maps to the same :class:`~rxllm.errors.Timeout` aiohttp's timeout became. Time
    between reads (a slow consumer) never counts: only a read waiting on the server is timed,
    as httpx times a read (aiohttp counted from the last bytes received, and stopped only once
    a consumer that did not read had let its buffer fill).

    aiohttp's own timer still bounds the wait for the response headers; it is switched off for
    the body here (``read_timeout = None``, as aiohttp does itself for websockets). When that
    cannot be done (the body was complete with the headers, or an aiohttp without these
    attributes), aiohttp's timer stays and this one is never armed.
    """

    __slots__ = ("_confirming", "_content", "_handle", "_limit", "_loop", "clock", "since")

    def __init__(self, resp: aiohttp.ClientResponse, content: aiohttp.StreamReader, limit: float | None) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.clock = loop.time
        self.since = _IDLE
        self._content = content
        self._limit = limit
        self._confirming = False
        self._handle: asyncio.Handle | None = None
        if limit and limit > 0 and _stop_aiohttp_read_timer(resp):
            self._handle = loop.call_later(limit, self._check)

    def _check(self) -> None:
        limit = self._limit
        assert limit is not None
        since = self.since
        if since == _IDLE:  # no read waiting: the next one gets the whole limit
            self._confirming = False
            self._handle = self._loop.call_later(limit, self._check)
            return
        left = since + limit - self._loop.time()
        if left > 0:
            self._confirming = False
            self._handle = self._loop.call_later(left, self._check)
            return
        if not self._confirming:
            # Data that came in this very loop turn has woken the reader's task, which has not
            # run yet (I/O callbacks run before due timers): look again once it has.
            self._confirming = True
            self._handle = self._loop.call_soon(self._check)
            return
        self._handle = None
        self._content.set_exception(_ReadStalled(f"no data for {limit:g} s"))

    def stop(self) -> None:
        """Cancel the timer (the stream ended, failed or was closed); idempotent."""
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.cancel()


def _stop_aiohttp_read_timer(resp: aiohttp.ClientResponse) -> bool:
    """Switch off aiohttp's per-read ``sock_read`` timer for ``resp``'s body; whether that was done."""
    connection = resp.connection
    protocol = getattr(connection, "protocol", None) if connection is not None else None
    if protocol is None or not hasattr(protocol, "read_timeout") or not hasattr(protocol, "start_timeout"):
        return False
    protocol.read_timeout = None
    protocol.start_timeout()  # re-arms per read_timeout: with None, cancels the armed timer
    return True


def _read_error(exc: BaseException, provider: str, model: str, seconds: float | None, limit_name: str) -> APIError:
    """A failed read of the body, as ours: a timeout names the limit, anything else a broken connection."""
    if isinstance(exc, (TimeoutError, aiohttp.ServerTimeoutError)):
        return Timeout(
            f"no data from the server for {seconds:g} s while streaming ({limit_name})",
            llm_provider=provider,
            model=model,
        )
    if isinstance(exc, aiohttp.ClientPayloadError):
        return APIConnectionError(
            f"the connection broke mid-stream: {_describe(exc)}", llm_provider=provider, model=model
        )
    return APIConnectionError(
        f"the connection broke mid-stream: {type(exc).__name__}: {_describe(exc)}",
        llm_provider=provider,
        model=model,
    )


def _redirect_error(resp: aiohttp.ClientResponse, provider: str, model: str) -> APIError:
    """A 3xx: never followed for API calls (the key would go along); name where it pointed."""
    location = resp.headers.get("Location", "")
    target = ""
    if location:
        try:
            target_url = resp.url.join(yarl.URL(location))
            target = target_url.origin().human_repr() if target_url.absolute else ""
        except (ValueError, TypeError):
            target = ""
    shown = f" to {target}" if target else (" without a Location" if not location else "")
    return APIError(
        f"HTTP {resp.status} redirect{shown}: not followed (API calls never follow redirects, which could "
        "send the API key to another server); point api_base at the final URL",
        llm_provider=provider,
        model=model,
        status_code=resp.status,
    )


async def _read_limited(
    resp: aiohttp.ClientResponse, provider: str, model: str, client_timeout: aiohttp.ClientTimeout
) -> bytes:
    parts: list[bytes] = []
    size = 0
    error: APIError | None = None
    try:
        async for piece in resp.content.iter_any():
            parts.append(piece)
            size += len(piece)
            if size >= _MAX_ERROR_BODY:
                break
    except (TimeoutError, aiohttp.ServerTimeoutError):
        error = Timeout(
            f"HTTP {resp.status}: no data for {client_timeout.sock_read} s while reading the error body",
            llm_provider=provider,
            model=model,
        )
    except (aiohttp.ClientError, OSError):
        pass  # a cut error body still names the status
    if error is not None:
        raise error
    return b"".join(parts)


def _safe_url(url: str) -> str:
    """The URL without user info and query string (where some gateways put keys)."""
    return safe_url(url)


def _describe(exc: BaseException) -> str:
    """An aiohttp exception in words, without its request_info (which holds the headers)."""
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"{exc.status} {scrub(exc.message)}"
    return scrub(str(exc)) or type(exc).__name__


_AUTH_HEADERS: Final = frozenset({"authorization", "x-api-key", "x-goog-api-key", "api-key", "proxy-authorization"})


def register_request_secrets(request: ChatRequest, url: str, headers: Mapping[str, str]) -> None:
    """Tell the scrubber every secret this request carries: keys, auth and extra header values, URL query values."""
    register_secret(request.api_key)
    for name, value in headers.items():
        if name.lower() in _AUTH_HEADERS:
            register_secret(value)
    register_secrets(request.extra_headers)
    for candidate in (url, request.api_base):
        if candidate and ("?" in candidate or "@" in candidate):
            try:
                parts = urlsplit(candidate)
            except ValueError:
                continue
            register_secret(parts.password)
            for _, value in parse_qsl(parts.query, keep_blank_values=False):
                register_secret(value)


@overload
def request_events(
    request: ChatRequest,
    *,
    provider: str,
    url: str,
    headers: Mapping[str, str],
    body: Mapping[str, Any],
    raw_data: Literal[False] = ...,
) -> tuple[AsyncGenerator[list[ServerSentEvent], None], SSEBody, str]: ...


@overload
def request_events(
    request: ChatRequest,
    *,
    provider: str,
    url: str,
    headers: Mapping[str, str],
    body: Mapping[str, Any],
    raw_data: Literal[True],
) -> tuple[AsyncGenerator[list[ServerSentEvent | bytes], None], SSEBody, str]: ...


def request_events(
    request: ChatRequest,
    *,
    provider: str,
    url: str,
    headers: Mapping[str, str],
    body: Mapping[str, Any],
    raw_data: bool = False,
) -> tuple[AsyncGenerator[Sequence[ServerSentEvent | bytes], None], SSEBody, str]:
    """Start :func:`sse_events` for one request: the event batches, the body state, and the
    model name that errors carry (as the caller wrote it). ``raw_data``: see :func:`sse_events`."""
    model_name = request.original_model or request.model
    register_request_secrets(request, url, headers)
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
        raw_data=raw_data,
    )
    return events, state, model_name
