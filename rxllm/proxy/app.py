"""The OpenAI-compatible streaming proxy: an :mod:`aiohttp.web` application.

A chat request becomes ``rxllm.stream(deployment.model, messages, ...)``; the response is that
Observable written out as server-sent events. Routes:

- ``POST /v1/chat/completions`` (and ``/chat/completions``): ``stream: true`` answers
  ``text/event-stream`` (``data: {chunk}`` events, ``data: [DONE]``); otherwise one JSON
  ``chat.completion``.
- ``GET /v1/models`` (and ``/models``): the configured model names.
- ``GET /health/liveliness``, ``GET /health/readiness``: never need a key.

Failures before the first chunk answer with their HTTP status and an OpenAI-style body, after
trying the model's other deployments (see :mod:`rxllm.proxy.router`); after the first chunk
they become one SSE error event and the stream ends. A client that disconnects disposes the
subscription, which cancels the upstream request: with ``handler_cancellation=True`` (what
:func:`serve` uses) at once, otherwise within the watchdog's period (0.2 s) or at the next
write. Each request is logged once on the ``"rxllm"`` structlog logger as
``rxllm.proxy.request`` with its id, model, deployment, status, outcome, tokens, cost, time to
first chunk and duration; prompts, completions and keys are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

import attrs
import orjson
from aiohttp import web
from reactivex import Observable

import rxllm
from rxllm._log import get_logger
from rxllm.errors import APIError, BadRequestError, Timeout, error_body
from rxllm.operators import CostReport, detect_repeated_chunks, tap_cost
from rxllm.providers._http import aclose_sessions
from rxllm.proxy._exchange import Collector, Exchange, Feed, SSEFeed
from rxllm.proxy.auth import KeyChecker
from rxllm.proxy.config import Deployment, ProxyConfig
from rxllm.proxy.errors import ProxyError, error_status, retry_after
from rxllm.proxy.router import DeploymentState, Router
from rxllm.sse import SSE_DONE, encode_json
from rxllm.types import ChatCompletionChunk, Usage

__all__ = ["PROXY_STATE", "ProxyState", "create_app", "serve"]

_log = get_logger("rxllm.proxy")

#: How often the watchdog looks for clients that left, idle streams and shutdown.
WATCH_INTERVAL: Final = 0.2

#: Request fields a client may not set: they would redirect or re-key the upstream call.
_BLOCKED: Final = frozenset(
    {
        "api_base",
        "base_url",
        "api_key",
        "api_version",
        "extra_headers",
        "headers",
        "timeout",
        "stream_timeout",
        "custom_llm_provider",
        "litellm_params",
    }
)

_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_SSE_HEADERS: Final = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
_SEP: Final = b"\n\ndata: "
_HEAD: Final = b"data: "
_TAIL: Final = b"\n\n"


class _Record:
    """What the per-request log line says; filled in as the request goes."""

    __slots__ = (
        "attempts",
        "deployment",
        "error",
        "first_at",
        "model",
        "outcome",
        "report",
        "request_id",
        "start",
        "status",
        "stream",
    )

    def __init__(self, request_id: str, start: float) -> None:
        self.request_id = request_id
        self.start = start
        self.model: str | None = None
        self.deployment: str | None = None
        self.attempts = 0
        self.status = 200
        self.outcome: str | None = None
        self.stream: bool | None = None
        self.report: CostReport | None = None
        self.first_at: float | None = None
        self.error: BaseException | None = None


@attrs.define
class ProxyState:
    """The app's live state (``app[PROXY_STATE]``): config, router, requests in flight."""

    config: ProxyConfig
    router: Router
    checker: KeyChecker | None
    secrets: list[str] = attrs.field(repr=False)
    created: int = attrs.field(factory=lambda: int(time.time()))
    in_flight: int = 0
    active: set[Exchange] = attrs.field(factory=set)
    draining: bool = False
    watchdog: asyncio.Task[None] | None = None


PROXY_STATE: Final = web.AppKey("rxllm.proxy.state", ProxyState)
_RECORD: Final = web.RequestKey("rxllm.proxy.record", _Record)


def create_app(config: ProxyConfig | None = None) -> web.Application:
    """Build the proxy application.

    Args:
        config: Deployments, master key and limits (default: no deployments, no key, ``mock/*``
            models served offline).

    Returns:
        An :class:`aiohttp.web.Application`; run it with :func:`serve`, ``web.run_app`` or any
        aiohttp runner (pass ``handler_cancellation=True`` for the fastest disconnect path).
    """
    config = config or ProxyConfig()
    state = ProxyState(
        config=config,
        router=Router(config),
        checker=KeyChecker(config.master_key) if config.master_key else None,
        secrets=config.secrets(),
    )
    app = web.Application(client_max_size=config.max_request_size, middlewares=[_middleware])
    app[PROXY_STATE] = state
    for path in ("/v1/chat/completions", "/chat/completions"):
        app.router.add_post(path, _chat_completions)
    for path in ("/v1/models", "/models"):
        app.router.add_get(path, _models)
    app.router.add_get("/health/liveliness", _liveliness)
    app.router.add_get("/health/liveness", _liveliness)
    app.router.add_get("/health/readiness", _readiness)
    app.on_startup.append(_start_watchdog)
    app.on_shutdown.append(_drain)
    app.on_cleanup.append(_cleanup)
    return app


# --------------------------------------------------------------------------- middleware


def _request_id(request: web.Request) -> str:
    given = request.headers.get("X-Request-Id", "")
    return given if _REQUEST_ID.fullmatch(given) else "req_" + uuid.uuid4().hex


@web.middleware
async def _middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Auth, request id, error bodies and the one log line per request."""
    state = request.app[PROXY_STATE]
    record = _Record(_request_id(request), asyncio.get_running_loop().time())
    request[_RECORD] = record
    is_health = request.path.startswith("/health/")
    try:
        if state.checker is not None and not is_health:
            state.checker.check(request.headers)
        response = await handler(request)
        record.status = response.status
        if not response.prepared:
            response.headers["X-Request-Id"] = record.request_id
        return response
    except web.HTTPException as exc:
        error: APIError = ProxyError(exc.reason or "error", status_code=exc.status)
        if exc.status == 404:
            error = ProxyError(f"no route {request.method} {request.path}", status_code=404, code="not_found")
        elif exc.status == 405:
            error = ProxyError(f"method {request.method} not allowed on {request.path}", status_code=405)
        elif exc.status == 413:
            error = _too_large(state.config)
        record.error = error
        return _error_response(error, state, record)
    except APIError as exc:
        record.error = exc
        return _error_response(exc, state, record)
    except asyncio.CancelledError:
        record.outcome = "cancelled"
        record.status = 499
        raise
    except Exception as exc:
        record.error = exc
        _log.error("rxllm.proxy.unhandled", request_id=record.request_id, error=type(exc).__name__)
        return _error_response(exc, state, record)
    finally:
        if not is_health:  # probes every few seconds would drown the request log
            _emit(request, record, state)


def _error_response(exc: BaseException, state: ProxyState, record: _Record) -> web.Response:
    status = error_status(exc)
    record.status = status
    headers = {"X-Request-Id": record.request_id}
    wait = retry_after(exc)
    if wait is not None:
        headers["Retry-After"] = str(max(1, round(wait)))
    return web.Response(
        body=orjson.dumps(error_body(exc, state.secrets)),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _emit(request: web.Request, record: _Record, state: ProxyState) -> None:
    """The canonical log line for one request: no prompt, completion or key in it."""
    end = asyncio.get_running_loop().time()
    report = record.report
    outcome = record.outcome
    if outcome is None:
        outcome = "error" if record.error is not None or record.status >= 400 else "completed"
    fields: dict[str, Any] = {
        "request_id": record.request_id,
        "method": request.method,
        "path": request.path,
        "status": record.status,
        "outcome": outcome,
        "duration": round(end - record.start, 6),
    }
    if record.model is not None:
        fields["model"] = record.model
        fields["deployment"] = record.deployment
        fields["attempts"] = record.attempts
        fields["stream"] = record.stream
        fields["time_to_first_chunk"] = (
            round(record.first_at - record.start, 6) if record.first_at is not None else None
        )
        if report is not None:
            fields["prompt_tokens"] = report.prompt_tokens
            fields["completion_tokens"] = report.completion_tokens
            fields["cost"] = report.cost
            fields["usage_estimated"] = report.usage_estimated
            fields["chunks"] = report.chunk_count
    if record.error is not None:
        fields["error"] = type(record.error).__name__
        fields["error_message"] = error_body(record.error, state.secrets)["error"]["message"][:300]
    _log.info("rxllm.proxy.request", **fields)


# --------------------------------------------------------------------------- simple routes


async def _models(request: web.Request) -> web.Response:
    state = request.app[PROXY_STATE]
    names = state.router.model_names or (["mock/echo"] if state.config.allow_mock_models else [])
    data = [{"id": name, "object": "model", "created": state.created, "owned_by": "rxllm"} for name in names]
    return web.json_response({"object": "list", "data": data}, dumps=_dumps)


async def _liveliness(request: web.Request) -> web.Response:
    return web.json_response({"status": "healthy"})


async def _readiness(request: web.Request) -> web.Response:
    state = request.app[PROXY_STATE]
    body = {
        "status": "draining" if state.draining else "healthy",
        "active_requests": state.in_flight,
        "models": len(state.router.model_names),
    }
    return web.json_response(body, status=503 if state.draining else 200)


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


# --------------------------------------------------------------------------- chat: request


@attrs.frozen
class _Chat:
    """A validated chat request."""

    model: str
    messages: Sequence[Mapping[str, Any]]
    stream: bool
    include_usage: bool
    params: Mapping[str, Any]


def _too_large(config: ProxyConfig) -> ProxyError:
    limit = config.max_request_size
    return ProxyError(
        f"the request body is larger than this proxy's limit of {limit} bytes ({limit / 1048576:g} MiB)",
        status_code=413,
        code="request_too_large",
    )


async def _read_body(request: web.Request, config: ProxyConfig) -> Any:
    length = request.content_length
    if length is not None and length > config.max_request_size:
        raise _too_large(config)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(config) from None
    if not raw:
        raise ProxyError("the request body is empty: send a JSON object", status_code=400)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProxyError(f"the request body is not valid JSON: {exc}", status_code=400) from None


def _parse_chat(body: Any) -> _Chat:
    if not isinstance(body, dict):
        raise ProxyError(f"the request body must be a JSON object, got {_json_type(body)}", status_code=400)
    model = body.get("model")
    if model is None:
        raise ProxyError("you must provide a model parameter", status_code=400, param="model")
    if not isinstance(model, str) or not model:
        raise ProxyError(f"model must be a non-empty string, got {_json_type(model)}", status_code=400, param="model")
    messages = body.get("messages")
    if messages is None:
        raise ProxyError("you must provide a messages parameter", status_code=400, param="messages")
    if not isinstance(messages, list):
        raise ProxyError(
            f"messages must be an array of message objects, got {_json_type(messages)}",
            status_code=400,
            param="messages",
        )
    if not messages:
        raise ProxyError("messages must not be empty", status_code=400, param="messages")
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise ProxyError(f"stream must be a boolean, got {_json_type(stream)}", status_code=400, param="stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise ProxyError(
            f"stream_options must be an object, got {_json_type(options)}", status_code=400, param="stream_options"
        )
    include_usage = bool(options and options.get("include_usage"))
    _check_types(body)
    params = {k: v for k, v in body.items() if k not in _BLOCKED and k not in ("model", "messages", "stream")}
    # upstream usage is always requested: the proxy costs every request, and strips it from
    # the answer when the client did not ask for it
    params["stream_options"] = {**(options or {}), "include_usage": True}
    return _Chat(model, messages, stream, include_usage, params)


_TYPED: Final[dict[str, tuple[tuple[type, ...], str]]] = {
    "temperature": ((int, float), "a number"),
    "top_p": ((int, float), "a number"),
    "presence_penalty": ((int, float), "a number"),
    "frequency_penalty": ((int, float), "a number"),
    "max_tokens": ((int,), "an integer"),
    "max_completion_tokens": ((int,), "an integer"),
    "n": ((int,), "an integer"),
    "seed": ((int,), "an integer"),
    "tools": ((list,), "an array"),
    "functions": ((list,), "an array"),
    "stop": ((str, list), "a string or an array"),
    "user": ((str,), "a string"),
    "tool_choice": ((str, dict), "a string or an object"),
    "response_format": ((dict,), "an object"),
}


def _check_types(body: Mapping[str, Any]) -> None:
    for name, (types, wanted) in _TYPED.items():
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, types):
            raise ProxyError(f"{name} must be {wanted}, got {_json_type(value)}", status_code=400, param=name)
    n = body.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n < 1:
        raise ProxyError(f"n must be at least 1, got {n}", status_code=400, param="n")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# --------------------------------------------------------------------------- chat: upstream


def _source(deployment: Deployment, chat: _Chat, record: _Record) -> Observable[ChatCompletionChunk]:
    """``rxllm.stream`` for one deployment, guarded against looping models and metered.

    A model stuck repeating itself fails the stream with ``InternalServerError`` (before the
    first chunk the router tries the next deployment; after it, the client gets an SSE error
    event), as LiteLLM's proxy does with ``REPEATED_STREAMING_CHUNK_LIMIT``.
    """
    params: dict[str, Any] = {**deployment.params, **chat.params}
    if deployment.api_base is not None:
        params["api_base"] = deployment.api_base
    if deployment.api_key is not None:
        params["api_key"] = deployment.api_key
    if deployment.timeout is not None:
        params["timeout"] = deployment.timeout
    if deployment.stream_timeout is not None:
        params["stream_timeout"] = deployment.stream_timeout

    def on_report(report: CostReport) -> None:
        record.report = report

    return rxllm.stream(deployment.model, chat.messages, **params).pipe(
        detect_repeated_chunks(partial_response=False),
        tap_cost(on_report, model=deployment.model, messages=chat.messages),
    )


def _retryable(exc: BaseException) -> bool:
    """Whether another deployment might succeed where this one failed (not a bad request)."""
    if isinstance(exc, BadRequestError):
        return False
    return error_status(exc) not in (400, 413, 422)


async def _open(
    state: ProxyState,
    exchange: Exchange,
    chat: _Chat,
    plan: list[DeploymentState],
    record: _Record,
    make_feed: Callable[[], Feed],
) -> tuple[Feed, DeploymentState]:
    """Start the first deployment in ``plan`` that produces a chunk (or ends cleanly).

    Raises:
        APIError: The last attempt's error when every deployment failed before its first chunk.
    """
    router = state.router
    last: BaseException | None = None
    for candidate in plan:
        if not router.start(candidate):
            continue
        deployment = candidate.deployment
        record.deployment = deployment.id
        record.attempts += 1
        feed = make_feed()
        try:
            exchange.subscribe(_source(deployment, chat, record), feed)
        except APIError as exc:  # validation or a mock error: raised before any I/O
            router.finish(candidate, failed=_retryable(exc))
            if isinstance(exc, BadRequestError) and exc.message.startswith("messages"):
                exc = ProxyError(exc.message, status_code=400, param="messages")
            last = exc
            if not _retryable(exc):
                break
            continue
        exchange.idle_timeout = deployment.stream_timeout
        limit = deployment.timeout
        try:
            if limit is None:
                await feed.ready()
            else:
                async with asyncio.timeout(limit):
                    await feed.ready()
        except TimeoutError:
            exchange.dispose()
            router.finish(candidate, failed=True)
            last = Timeout(
                f"no response within {limit:g} s (the deployment's timeout)",
                llm_provider=deployment.model.partition("/")[0],
                model=deployment.model,
            )
            continue
        except BaseException:
            exchange.dispose()
            router.finish(candidate, failed=False)
            raise
        if feed.aborted is not None or feed.chunks or feed.error is None:
            return feed, candidate
        exchange.dispose()
        router.finish(candidate, failed=True)
        last = feed.error
        if not _retryable(last):
            break
    if last is None:
        raise ProxyError(
            f"every deployment of {chat.model!r} is at its requests-per-minute limit; retry later",
            status_code=429,
            code="rate_limit_exceeded",
            retry_after=1.0,
        )
    raise last


async def _chat_completions(request: web.Request) -> web.StreamResponse:
    state = request.app[PROXY_STATE]
    record = request[_RECORD]
    if state.draining:
        raise ProxyError("the proxy is shutting down", status_code=503, retry_after=1.0)
    if state.in_flight >= state.config.max_parallel_requests:
        raise ProxyError(
            f"too many concurrent requests (limit {state.config.max_parallel_requests}); retry shortly",
            status_code=429,
            code="too_many_requests",
            retry_after=1.0,
        )
    state.in_flight += 1
    try:
        body = await _read_body(request, state.config)
        chat = _parse_chat(body)
        record.model = chat.model
        record.stream = chat.stream
        plan = state.router.plan(chat.model)
        loop = asyncio.get_running_loop()
        exchange = Exchange(lambda: _transport_alive(request), loop.time())
        state.active.add(exchange)
        try:
            if chat.stream:
                return await _stream(request, state, exchange, chat, plan, record)
            return await _complete(state, exchange, chat, plan, record)
        finally:
            state.active.discard(exchange)
            exchange.dispose()
    finally:
        state.in_flight -= 1


def _transport_alive(request: web.Request) -> bool:
    transport = request.transport
    return transport is not None and not transport.is_closing()


async def _complete(
    state: ProxyState, exchange: Exchange, chat: _Chat, plan: list[DeploymentState], record: _Record
) -> web.Response:
    """A non-streaming answer: collect the stream into one ``chat.completion``."""
    loop = asyncio.get_running_loop()
    feed, candidate = await _open(state, exchange, chat, plan, record, lambda: Collector(loop, chat.messages))
    assert isinstance(feed, Collector)
    failed = True
    try:
        record.first_at = feed.first_at
        limit = candidate.deployment.timeout
        try:
            if limit is None:
                await feed.finished()
            else:
                async with asyncio.timeout(limit):
                    await feed.finished()
        except TimeoutError:
            raise Timeout(
                f"the response did not complete within {limit:g} s (the deployment's timeout)",
                model=candidate.deployment.model,
            ) from None
        if feed.aborted is not None:
            raise _abort_error(feed, record)
        if feed.error is not None:
            raise feed.error
        failed = False
        response = feed.builder.build().to_dict()
        return web.Response(body=orjson.dumps(response), content_type="application/json")
    finally:
        exchange.dispose()
        state.router.finish(candidate, failed=failed and feed.aborted is None)


def _abort_error(feed: Feed, record: _Record) -> APIError:
    if feed.aborted == "shutdown":
        record.outcome = "cancelled"
        return ProxyError("the proxy is shutting down", status_code=503, retry_after=1.0)
    if feed.aborted == "idle_timeout":
        return Timeout("the upstream sent nothing for longer than the deployment's stream_timeout")
    record.outcome = "cancelled"
    return ProxyError("the client disconnected", status_code=499)


async def _stream(
    request: web.Request,
    state: ProxyState,
    exchange: Exchange,
    chat: _Chat,
    plan: list[DeploymentState],
    record: _Record,
) -> web.StreamResponse:
    """A streaming answer: the chunks as SSE, written in batches as they arrive."""
    loop = asyncio.get_running_loop()
    include_usage = chat.include_usage
    feed, candidate = await _open(
        state, exchange, chat, plan, record, lambda: SSEFeed(loop, include_usage=include_usage)
    )
    assert isinstance(feed, SSEFeed)
    failed = False
    try:
        if feed.aborted is not None and not feed.chunks:
            raise _abort_error(feed, record)
        response = web.StreamResponse(headers={**_SSE_HEADERS, "X-Request-Id": record.request_id})
        await response.prepare(request)
        record.first_at = feed.first_at
        failed = await _pump(response, exchange, feed, record, state)
        return response
    finally:
        exchange.dispose()
        state.router.finish(candidate, failed=failed)


async def _pump(
    response: web.StreamResponse, exchange: Exchange, feed: SSEFeed, record: _Record, state: ProxyState
) -> bool:
    """Write the feed out until it ends; returns whether the upstream failed."""
    loop = asyncio.get_running_loop()
    write = response.write
    try:
        while True:
            payloads = feed.payloads
            if payloads:
                feed.payloads = []
                exchange.last_active = loop.time()
                await write(_HEAD + _SEP.join(payloads) + _TAIL)
                continue
            if feed.aborted is not None:
                if feed.aborted == "disconnected":
                    record.outcome = "cancelled"
                    return False
                error = _abort_error(feed, record)
                record.error = error
                exchange.dispose()
                await write(encode_json(error_body(error, state.secrets)))
                break
            if feed.done:
                if feed.error is not None:
                    record.error = feed.error
                    record.outcome = "error"
                    await write(encode_json(error_body(feed.error, state.secrets)))
                    await response.write_eof()
                    return True
                tail = SSE_DONE
                if feed.include_usage and not feed.usage_seen:
                    tail = _usage_event(feed, record) + SSE_DONE
                await write(tail)
                record.outcome = "completed"
                break
            await feed.wait()
        await response.write_eof()
    except ConnectionError:
        record.outcome = "cancelled"
    return False


def _usage_event(feed: Feed, record: _Record) -> bytes:
    """The final usage chunk, estimated, for an upstream that reported none."""
    report = record.report
    chunk = feed.last_chunk or ChatCompletionChunk()
    if report is None:
        return b""
    usage = Usage(report.prompt_tokens, report.completion_tokens, report.total_tokens, estimated=report.usage_estimated)
    last = ChatCompletionChunk(id=chunk.id, created=chunk.created, model=chunk.model, usage=usage)
    return _HEAD + last.to_json() + _TAIL


# --------------------------------------------------------------------------- lifecycle


async def _start_watchdog(app: web.Application) -> None:
    state = app[PROXY_STATE]
    state.watchdog = asyncio.create_task(_watch(state), name="rxllm-proxy-watchdog")


async def _watch(state: ProxyState) -> None:
    """End requests whose client left, and streams idle past their ``stream_timeout``."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(WATCH_INTERVAL)
        now = loop.time()
        for exchange in list(state.active):
            if not exchange.transport_alive():
                exchange.dispose()
                exchange.abort("disconnected")
            elif exchange.idle_timeout is not None and now - exchange.last_active > exchange.idle_timeout:
                feed = exchange.feed
                if feed is not None and feed.chunks and not feed.done:
                    exchange.abort("idle_timeout")


async def _drain(app: web.Application) -> None:
    """Graceful shutdown: refuse new requests, let streams finish, then end the rest cleanly."""
    state = app[PROXY_STATE]
    state.draining = True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + state.config.shutdown_grace_period
    while state.active and loop.time() < deadline:
        await asyncio.sleep(0.05)
    for exchange in list(state.active):
        exchange.dispose()
        exchange.abort("shutdown")
    deadline = loop.time() + 2.0
    while state.active and loop.time() < deadline:
        await asyncio.sleep(0.01)


async def _cleanup(app: web.Application) -> None:
    state = app[PROXY_STATE]
    task = state.watchdog
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await aclose_sessions()


# --------------------------------------------------------------------------- running


async def serve(
    config: ProxyConfig,
    host: str = "127.0.0.1",
    port: int = 4000,
    *,
    on_ready: Callable[[str, int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run the proxy until SIGINT/SIGTERM (or ``stop`` is set), then shut down gracefully.

    Args:
        config: The proxy config.
        host: The address to bind.
        port: The port (0 picks a free one; ``on_ready`` is told which).
        on_ready: Called with the bound host and port once the proxy accepts connections.
        stop: An event that ends the server when set (signals set it too).
    """
    app = create_app(config)
    runner = web.AppRunner(
        app,
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=config.shutdown_grace_period + 5.0,
    )
    await runner.setup()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = port
        for address in runner.addresses:
            if isinstance(address, tuple) and len(address) >= 2:
                bound = int(address[1])
                break
        if on_ready is not None:
            on_ready(host, bound)
        await stop.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await runner.cleanup()
