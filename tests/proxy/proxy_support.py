"""Helpers for the proxy tests: the proxy on a real local port, an OpenAI-compatible upstream, clients."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import openai
import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer

from rxllm.proxy import PROXY_STATE, ProxyConfig, create_app, parse_config
from rxllm.proxy.app import make_runner

#: The upstream key in configs: it must never reach a log line, an error body or a repr.
UPSTREAM_KEY = "sk-upstream-SECRET-never-log-5678"
MASTER_KEY = "sk-master-SECRET-0001"

USER = [{"role": "user", "content": "hello proxy"}]


def config(*entries: Mapping[str, Any], **general: Any) -> ProxyConfig:
    """A ProxyConfig from ``model_list`` entries written as dicts and general settings."""
    return parse_config({"model_list": list(entries), "general_settings": general}, environ={})


def mock_entry(name: str, **params: Any) -> dict[str, Any]:
    """A model_list entry served by the mock provider."""
    return {"model_name": name, "litellm_params": {"model": "mock/x", **params}}


class ProxyServer:
    """The proxy app served by a real ``AppRunner`` on a free loopback port."""

    def __init__(self, app: web.Application, runner: web.AppRunner, port: int) -> None:
        self.app = app
        self.runner = runner
        self.port = port

    def make_url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextlib.asynccontextmanager
async def running(
    cfg: ProxyConfig | None = None, *, handler_cancellation: bool = False, shutdown_timeout: float = 5.0
) -> AsyncIterator[ProxyServer]:
    """The proxy app on a free local port.

    ``handler_cancellation`` defaults to aiohttp's own default (off), so the tests cover the
    proxy's watchdog; :func:`rxllm.proxy.serve` turns it on.
    """
    app = create_app(cfg)
    runner = make_runner(app, handler_cancellation=handler_cancellation, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=app[PROXY_STATE].config.listen_backlog)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield ProxyServer(app, runner, port)
    finally:
        await runner.cleanup()


def client(server: ProxyServer, api_key: str = "unused") -> openai.AsyncOpenAI:
    """The official OpenAI client pointed at the proxy, with retries off (tests count requests)."""
    return openai.AsyncOpenAI(base_url=server.make_url("/v1"), api_key=api_key, max_retries=0, timeout=10)


def sse_chunk(i: int, *, content: str | None = None, finish: str | None = None, model: str = "up-model") -> bytes:
    """One OpenAI chunk event as an upstream would send it."""
    delta: dict[str, Any] = {}
    if i == 0:
        delta["role"] = "assistant"
    if content is not None:
        delta["content"] = content
    chunk = {
        "id": "chatcmpl-up",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


class Upstream:
    """A local OpenAI-compatible server: streams ``count`` chunks ``delay`` s apart, or fails.

    Attributes:
        requests: Request bodies received.
        auth: Authorization headers received.
        disconnected: Set when a client left mid-stream.
        sent: Content chunks written so far.
        fail_status: Answer with this HTTP status and an OpenAI error body instead.
        fail_after: Send an error event after this many chunks.
        first_delay: Seconds to wait before answering at all (a model thinking).
    """

    def __init__(self, count: int = 3, delay: float = 0.0) -> None:
        self.count = count
        self.delay = delay
        self.fail_status: int | None = None
        self.fail_after: int | None = None
        self.fail_message: str | None = None
        self.first_delay = 0.0
        self.fail_headers: dict[str, str] = {}
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self.disconnected = asyncio.Event()
        self.sent = 0  # content chunks written
        self.server: TestServer | None = None

    @property
    def api_base(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/v1"))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(await request.json())
        self.auth.append(request.headers.get("Authorization"))
        if self.first_delay:
            await asyncio.sleep(self.first_delay)
        if self.fail_status is not None:
            message = self.fail_message or f"upstream says {self.fail_status}"
            body = {"error": {"message": message, "type": "server_error"}}
            return web.json_response(body, status=self.fail_status, headers=self.fail_headers)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            for i in range(self.count):
                if self.fail_after is not None and i == self.fail_after:
                    error = {"error": {"message": "upstream broke mid-stream", "type": "server_error", "code": 500}}
                    await response.write(b"data: " + orjson.dumps(error) + b"\n\n")
                    return response
                if self.delay and i:
                    await asyncio.sleep(self.delay)
                await response.write(sse_chunk(i, content=f"tok{i} "))
                self.sent += 1
            await response.write(sse_chunk(self.count, finish="stop"))
            usage = {
                "id": "chatcmpl-up",
                "object": "chat.completion.chunk",
                "created": 1700000000,
                "model": "up-model",
                "choices": [],
                "usage": {"prompt_tokens": 7, "completion_tokens": self.count, "total_tokens": 7 + self.count},
            }
            await response.write(b"data: " + orjson.dumps(usage) + b"\n\ndata: [DONE]\n\n")
        except (ConnectionError, asyncio.CancelledError):
            self.disconnected.set()
            raise
        return response


@contextlib.asynccontextmanager
async def upstream(count: int = 3, delay: float = 0.0) -> AsyncIterator[Upstream]:
    """An :class:`Upstream` on a free local port (handlers are cancelled when a client leaves)."""
    up = Upstream(count, delay)
    app = web.Application()
    app.router.add_post("/v1/chat/completions", up.handle)
    server = TestServer(app)  # aiohttp's test server cancels handlers when a client leaves
    await server.start_server()
    up.server = server
    try:
        yield up
    finally:
        await server.close()


def upstream_entry(name: str, up: Upstream, **params: Any) -> dict[str, Any]:
    """A model_list entry that streams from ``up`` through rxllm's OpenAI provider."""
    return {
        "model_name": name,
        "litellm_params": {"model": "openai/up-model", "api_base": up.api_base, "api_key": UPSTREAM_KEY, **params},
    }


def request_logs(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The proxy's per-request log lines among captured structlog events."""
    return [entry for entry in logs if entry.get("event") == "rxllm.proxy.request"]
