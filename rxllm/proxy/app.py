"""The streaming proxy: an :mod:`aiohttp.web` application serving every dialect.

A request in any dialect becomes ``rxllm.stream(deployment.model, messages, ...)``; the answer
is that Observable encoded in the dialect's own events (see :mod:`rxllm.proxy.dialect` and the
modules in :mod:`rxllm.proxy.dialects`; :mod:`rxllm.proxy.exchange` is the shared core).
Routes:

- every dialect's POST routes, e.g. ``POST /v1/chat/completions`` (and ``/chat/completions``):
  ``stream: true`` answers ``text/event-stream``; otherwise one JSON answer;
- ``GET /v1/models`` (and ``/models``): the configured model names; ``GET /v1/models/{id}``;
- ``GET /health/liveliness``, ``GET /health/readiness``: never need a key (readiness also
  names the answering process: its ``pid``, and its ``worker`` index under ``--workers``);
- ``GET /metrics`` when metrics are enabled (:mod:`rxllm.proxy.metrics`; the master key
  applies, as to every route but the health checks).

Every request passes the middleware first: a web page's ``Origin`` that is not allowed
(:mod:`rxllm.proxy.cors`) is refused with 403 before anything else; allowed preflights are
answered; then the master key is checked (``Authorization: Bearer``, ``x-api-key`` or
``api-key``, see :mod:`rxllm.proxy.auth`).

Failures before the first chunk answer with their HTTP status and the dialect's error body,
after trying the model's other deployments (see :mod:`rxllm.proxy.router`); after the first
chunk they become the dialect's error event and the stream ends. A client that disconnects
disposes the subscription, which cancels the upstream request: with
``handler_cancellation=True`` (what :func:`serve` uses) at once, otherwise within the
watchdog's period (0.2 s) or at the next write. Each request is logged once on the
``rxllm.proxy`` logger as ``rxllm.proxy.request`` with its id, dialect, model, deployment,
status, outcome, tokens, cost, time to first chunk and duration; prompts, completions and keys
are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import signal
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final

import orjson
from aiohttp import web

from rxllm._log import get_logger
from rxllm._secrets import register_secrets
from rxllm.errors import APIError
from rxllm.providers._http import aclose_sessions
from rxllm.proxy.auth import KeyChecker
from rxllm.proxy.config import ProxyConfig
from rxllm.proxy.cors import CorsPolicy
from rxllm.proxy.dialect import Dialect
from rxllm.proxy.dialects import load_dialects
from rxllm.proxy.dialects.chat import openai_error_body
from rxllm.proxy.errors import ProxyError, retry_after_header
from rxllm.proxy.exchange import (
    OUTCOME,
    PROXY_STATE,
    WATCH_INTERVAL,
    Outcome,
    ProxyState,
    handle,
    new_request_id,
)
from rxllm.proxy.router import Router
from rxllm.proxy.shared_state import LocalState, RouterState
from rxllm.proxy.tuning import tune_process

__all__ = ["PROXY_STATE", "WATCH_INTERVAL", "ProxyState", "create_app", "make_runner", "serve"]

_log = get_logger("rxllm.proxy")

_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_ORIGIN: Final = web.RequestKey("rxllm.proxy.origin", str)
#: The worker index of this process under ``rxllm serve --workers`` (absent otherwise).
_WORKER: Final = web.AppKey("rxllm.proxy.worker", int)


def create_app(config: ProxyConfig | None = None, *, dialects: Iterable[Dialect] | None = None) -> web.Application:
    """Build the proxy application.

    Args:
        config: Deployments, master key and limits (default: no deployments, no key, ``mock/*``
            models served offline).
        dialects: The wire protocols to serve (default: every module in
            :mod:`rxllm.proxy.dialects`).

    Returns:
        An :class:`aiohttp.web.Application`; run it with :func:`serve`, ``web.run_app`` or any
        aiohttp runner (pass ``handler_cancellation=True`` for the fastest disconnect path).

    Raises:
        ValueError: Two dialects share a name or a route.
    """
    config = config or ProxyConfig()
    state = ProxyState(
        config=config,
        router=Router(config, state=router_state(config)),
        checker=KeyChecker(config.master_key) if config.master_key else None,
        secrets=config.secrets(),
        cors=CorsPolicy(config.cors_allowed_origins),
    )
    register_secrets(state.secrets)  # every message and log line rxllm writes is scrubbed of them
    app = web.Application(client_max_size=config.max_request_size, middlewares=[_middleware])
    app[PROXY_STATE] = state
    resumable = None
    if config.resumable_streams:
        from rxllm.proxy.resumable import RESUMABLE, Resumable

        resumable = Resumable.from_config(config)
        app[RESUMABLE] = resumable
        state.detach = resumable.detach
    for dialect in load_dialects() if dialects is None else dialects:
        if dialect.name in state.dialects:
            raise ValueError(f"two dialects are named {dialect.name!r}")
        state.dialects[dialect.name] = dialect
        # the exchange's handler itself: no wrapper coroutine (one frame less per request, and
        # per resumption of the handler's task)
        handler = functools.partial(handle, dialect=dialect)
        for path in dialect.routes:
            if path in state.route_dialects:
                raise ValueError(f"dialects {state.route_dialects[path].name!r} and {dialect.name!r} both serve {path}")
            state.route_dialects[path] = dialect
            app.router.add_post(path, handler)
        extra: list[web.AbstractRouteDef] = list(dialect.extra_routes)
        if resumable is not None:
            extra, resumable_routes = resumable.route_handlers(dialect, dialect.extra_routes)
            for method, path, route_handler in resumable_routes:
                app.router.add_route(method, path, route_handler)
        if extra:
            app.router.add_routes(extra)
    for path in ("/v1/models", "/models"):
        app.router.add_get(path, _models)
    for path in ("/v1/models/{model:.+}", "/models/{model:.+}"):
        app.router.add_get(path, _model)
    app.router.add_get("/health/liveliness", _liveliness)
    app.router.add_get("/health/liveness", _liveliness)
    app.router.add_get("/health/readiness", _readiness)
    config.apply_environment()
    for warning in config.warnings:
        _log.warning("rxllm.proxy.config_warning", message=warning)
    if config.metrics:
        from rxllm.proxy.metrics import install_metrics

        install_metrics(app, state)
    app.on_response_prepare.append(_add_cors_headers)
    app.on_startup.append(_start_watchdog)
    app.on_startup.append(_start_shared_state)
    app.on_shutdown.append(_drain)
    app.on_cleanup.append(_cleanup)
    return app


# --------------------------------------------------------------------------- middleware


def _request_id(request: web.Request) -> str:
    given = request.headers.get("X-Request-Id", "")
    return given if _REQUEST_ID.fullmatch(given) else new_request_id()


@web.middleware
async def _middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Auth, request id, error bodies and the one log line per request."""
    state = request.app[PROXY_STATE]
    outcome = Outcome(_request_id(request), request.method, request.path, asyncio.get_running_loop().time())
    request[OUTCOME] = outcome
    is_health = request.path.startswith("/health/")
    quiet = is_health or request.path == "/metrics"
    try:
        origin = request.headers.get("Origin")
        if origin is not None:
            # before the body, the key or any upstream: a page elsewhere must not run requests
            if not state.cors.allows(origin, f"{request.scheme}://{request.host}"):
                raise ProxyError(
                    f"requests from web pages on {_shown_origin(origin)} are not allowed by this proxy "
                    "(general_settings.cors_allowed_origins)",
                    status_code=403,
                    code="origin_not_allowed",
                )
            request[_ORIGIN] = origin
            if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
                outcome.status = 204
                return web.Response(status=204, headers=state.cors.preflight_headers(origin, request.headers))
        if state.checker is not None and not is_health:
            state.checker.check(request.headers)
        response = await handler(request)
        outcome.status = response.status
        if not response.prepared:
            response.headers["X-Request-Id"] = outcome.request_id
        return response
    except web.HTTPException as exc:
        error: APIError = ProxyError(exc.reason or "error", status_code=exc.status)
        if exc.status == 404:
            error = ProxyError(f"no route {request.method} {request.path}", status_code=404, code="not_found")
        elif exc.status == 405:
            error = ProxyError(f"method {request.method} not allowed on {request.path}", status_code=405)
        elif exc.status == 413:
            limit = state.config.max_request_size
            error = ProxyError(
                f"the request body is larger than this proxy's limit of {limit} bytes ({limit / 1048576:g} MiB)",
                status_code=413,
                code="request_too_large",
            )
        outcome.error = error
        return _error_response(error, request, state, outcome)
    except APIError as exc:
        outcome.error = exc
        return _error_response(exc, request, state, outcome)
    except asyncio.CancelledError:
        outcome.outcome = "cancelled"
        outcome.status = 499
        raise
    except Exception as exc:
        outcome.error = exc
        _log.error("rxllm.proxy.unhandled", request_id=outcome.request_id, error=type(exc).__name__)
        return _error_response(exc, request, state, outcome)
    finally:
        if not quiet:  # probes and scrapes every few seconds would drown the request log
            _finish(outcome, state)


def _shown_origin(origin: str) -> str:
    """An Origin header for a message: printable and short."""
    shown = "".join(c if c.isprintable() else "?" for c in origin[:100])
    return repr(shown)


async def _add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: allowed pages may read every answer, streamed ones included."""
    origin = request.get(_ORIGIN)
    if origin is not None:
        response.headers.update(request.app[PROXY_STATE].cors.response_headers(origin))


def _error_response(exc: BaseException, request: web.Request, state: ProxyState, outcome: Outcome) -> web.Response:
    """The dialect's JSON error body; never aiohttp's plain-text 500, whatever the error holds."""
    headers = {"X-Request-Id": outcome.request_id}
    try:
        info = state.describe(exc)
        if info.retry_after is not None:
            headers["Retry-After"] = retry_after_header(info.retry_after)
        dialect = state.route_dialects.get(request.path)
        body = orjson.dumps(dialect.error_body(info) if dialect is not None else openai_error_body(info))
        status = info.status
    except Exception as failure:  # a bug in describing the error: still a JSON answer
        _log.error("rxllm.proxy.error_body_failed", error=type(failure).__name__)
        status = 500
        headers.pop("Retry-After", None)
        body = orjson.dumps({"error": {"message": "internal error", "type": "server_error"}})
    outcome.status = status
    response = web.Response(body=body, status=status, content_type="application/json", headers=headers)
    if status == 408:
        response.force_close()  # the rest of a dripping body is not worth waiting for
    return response


def _finish(outcome: Outcome, state: ProxyState) -> None:
    """The canonical log line for one request (no prompt, completion or key), then the hooks."""
    outcome.end = asyncio.get_running_loop().time()
    fields: dict[str, Any] = {
        "request_id": outcome.request_id,
        "method": outcome.method,
        "path": outcome.path,
        "status": outcome.status,
        "outcome": outcome.result,
        "duration": round(outcome.end - outcome.start, 6),
    }
    if outcome.dialect is not None:
        fields["dialect"] = outcome.dialect
    if outcome.model is not None:
        report = outcome.report
        ttft = outcome.ttft
        fields["model"] = outcome.model
        fields["deployment"] = outcome.deployment
        fields["attempts"] = outcome.attempts
        fields["stream"] = outcome.stream
        fields["time_to_first_chunk"] = round(ttft, 6) if ttft is not None else None
        if report is not None:
            fields["prompt_tokens"] = report.prompt_tokens
            fields["completion_tokens"] = report.completion_tokens
            fields["cost"] = report.cost
            fields["usage_estimated"] = report.usage_estimated
            fields["chunks"] = report.chunk_count
    if outcome.error is not None:
        fields["error"] = type(outcome.error).__name__
        fields["error_message"] = state.describe(outcome.error).message[:300]
    _log.info("rxllm.proxy.request", **fields)
    for hook in state.outcome_hooks:
        try:
            hook(outcome)
        except Exception as exc:
            _log.warning("rxllm.proxy.outcome_hook_failed", error=type(exc).__name__)


# --------------------------------------------------------------------------- simple routes


def _model_object(state: ProxyState, name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": state.created, "owned_by": "rxllm"}


async def _models(request: web.Request) -> web.Response:
    state = request.app[PROXY_STATE]
    names = state.router.model_names or (["mock/echo"] if state.config.allow_mock_models else [])
    data = [_model_object(state, name) for name in names]
    return web.json_response({"object": "list", "data": data}, dumps=_dumps)


async def _model(request: web.Request) -> web.Response:
    """``GET /v1/models/{id}``: one model (configured, or any ``mock/*`` when mocks are allowed)."""
    state = request.app[PROXY_STATE]
    name = request.match_info["model"]
    known = name in state.router.model_names
    if not known and not (state.config.allow_mock_models and name.startswith("mock/") and len(name) > 5):
        listed = ", ".join(state.router.model_names) or "none configured"
        raise ProxyError(
            f"the model {name!r} does not exist on this proxy; available models: {listed}",
            status_code=404,
            param="model",
            code="model_not_found",
        )
    return web.json_response(_model_object(state, name), dumps=_dumps)


async def _liveliness(request: web.Request) -> web.Response:
    return web.json_response({"status": "healthy"})


async def _readiness(request: web.Request) -> web.Response:
    state = request.app[PROXY_STATE]
    body = {
        "status": "draining" if state.draining else "healthy",
        "active_requests": state.in_flight,
        "models": len(state.router.model_names),
        "pid": os.getpid(),
    }
    worker = request.app.get(_WORKER)
    if worker is not None:
        body["worker"] = worker
    return web.json_response(body, status=503 if state.draining else 200)


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


# --------------------------------------------------------------------------- lifecycle


async def _start_watchdog(app: web.Application) -> None:
    state = app[PROXY_STATE]
    state.watchdog = asyncio.create_task(_watch(state), name="rxllm-proxy-watchdog")


async def _watch(state: ProxyState) -> None:
    """End requests whose client left and streams idle past their ``stream_timeout``; send keepalives."""
    loop = asyncio.get_running_loop()
    keepalive = state.config.keepalive_interval
    while True:
        await asyncio.sleep(WATCH_INTERVAL)
        now = loop.time()
        for exchange in list(state.active):
            exchange.watch(now, keepalive)


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


def router_state(config: ProxyConfig) -> RouterState:
    """The router's bookkeeping: shared through Redis when ``router_settings`` names one, else per worker."""
    if config.redis_url is None:
        return LocalState()
    from rxllm.proxy.shared_state import RedisState

    return RedisState(config.redis_url, cooldown=config.cooldown_time, cache_ttl=config.redis_cache_ttl)


async def _start_shared_state(app: web.Application) -> None:
    router = app[PROXY_STATE].router
    await router.shared.start_background(router.groups())


async def _cleanup(app: web.Application) -> None:
    state = app[PROXY_STATE]
    from rxllm.proxy.resumable import RESUMABLE

    resumable = app.get(RESUMABLE)
    if resumable is not None:
        await resumable.aclose()
    await state.router.shared.aclose()
    task = state.watchdog
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await aclose_sessions()


# --------------------------------------------------------------------------- running


def make_runner(app: web.Application, **overrides: Any) -> web.AppRunner:
    """An :class:`aiohttp.web.AppRunner` for the proxy app with the proxy's connection limits.

    ``handler_cancellation`` is on (a client that leaves cancels its upstream at once), there
    is no access log (the proxy logs each request itself), and the keepalive timeout is the
    config's ``header_timeout``: aiohttp (3.14, the version rxllm is tested with, starts that
    timer when a connection opens) closes a connection that has not sent a complete request's
    headers within it (from connect, or from the end of the previous response), so
    a client dripping its headers is cut off; the unread rest of a body answered early is
    drained for at most 2 s. Bind it with ``web.TCPSite(runner, host, port,
    backlog=config.listen_backlog)``.

    Args:
        app: The app from :func:`create_app`.
        **overrides: Other ``AppRunner`` arguments (they win).
    """
    config = app[PROXY_STATE].config
    kwargs: dict[str, Any] = {
        "handler_cancellation": True,
        "access_log": None,
        "shutdown_timeout": config.shutdown_grace_period + 5.0,
        "keepalive_timeout": config.header_timeout,
        # after an early answer (401, 408, 413) the unread rest of a body is drained this long
        "lingering_time": 2.0,
    }
    kwargs.update(overrides)
    return web.AppRunner(app, **kwargs)


async def serve(
    config: ProxyConfig,
    host: str = "127.0.0.1",
    port: int = 4000,
    *,
    on_ready: Callable[[str, int], None] | None = None,
    stop: asyncio.Event | None = None,
    sock: socket.socket | None = None,
    worker: int | None = None,
) -> None:
    """Run the proxy until SIGINT/SIGTERM (or ``stop`` is set), then shut down gracefully.

    Before it accepts connections it tunes its process (:mod:`rxllm.proxy.tuning`): the soft
    file-descriptor limit is raised for ``global_max_parallel_requests`` streams (as far as
    the hard limit allows, else ``rxllm.proxy.fd_limit`` is logged), and with ``gc_tuning``
    the start-up objects are frozen and young collections made rarer.

    Args:
        config: The proxy config.
        host: The address to bind.
        port: The port (0 picks a free one; ``on_ready`` is told which).
        on_ready: Called with the bound host and port once the proxy accepts connections.
        stop: An event that ends the server when set (signals set it too).
        sock: An already listening socket to accept on instead of binding ``host:port``
            (``rxllm serve --workers``: every worker accepts on the supervisor's socket).
        worker: This process's worker index, shown by ``/health/readiness``.
    """
    app = create_app(config)
    if worker is not None:
        app[_WORKER] = worker
    runner = make_runner(app)
    await runner.setup()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        tune_process(config)  # the fd limit for the configured capacity; GC frozen after start-up
        site: web.BaseSite
        if sock is not None:
            site = web.SockSite(runner, sock, backlog=config.listen_backlog)
        else:
            site = web.TCPSite(runner, host, port, backlog=config.listen_backlog)
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
