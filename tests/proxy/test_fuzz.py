"""Proxy fuzzing: one field of a recorded upstream stream replaced by any JSON value.

Recorded bodies of each provider, with one field of one event changed (hypothesis), are served
by a real local upstream; the proxy (on its own thread and loop, as in production) forwards
them to a client, streaming and not. The promise: the answer or a typed error (an HTTP error
with a JSON body, or the dialect's error event), never an internal error, never a hang, and
no task exception logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import fixture_path

from rxllm.proxy import create_app, parse_config
from rxllm.proxy.app import make_runner
from tests.strategies import json_values

FIXTURES: dict[str, tuple[str, ...]] = {
    "openai/gpt-4o": ("openai/tool_calls_parallel_2.sse", "openai/n3_choices.sse", "openai/text_basic.sse"),
    "anthropic/claude-sonnet-4-5": ("anthropic/text_then_tool_use_parallel_2.sse", "anthropic/thinking_then_text.sse"),
    "gemini/gemini-2.5-flash": ("gemini/function_calls_parallel_2.sse", "gemini/text_basic.sse"),
}
KEY = "sk-fuzz-key-1234"
GUARD = 30.0  # seconds: a hang detector only (the deployments' stream_timeout bounds each read)
replacements = json_values | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False, allow_infinity=False)


def _events(body: bytes) -> list[bytes]:
    return body.replace(b"\r\n", b"\n").split(b"\n\n")


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a field or item inside a decoded JSON value."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield (*prefix, i)
            yield from _paths(item, (*prefix, i))


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replace(copy[head], rest, new)
    return copy


def _mutated(body: bytes, event_pick: int, path_pick: int, new: Any) -> bytes:
    """``body`` with one field of one JSON ``data:`` event replaced by ``new``."""
    events = _events(body)
    candidates = []
    for i, event in enumerate(events):
        for line_no, line in enumerate(event.split(b"\n")):
            if line.startswith(b"data: ") and line[6:7] in (b"{", b"["):
                with contextlib.suppress(orjson.JSONDecodeError):
                    candidates.append((i, line_no, orjson.loads(line[6:])))
    i, line_no, data = candidates[event_pick % len(candidates)]
    lines = events[i].split(b"\n")
    paths = list(_paths(data))
    if paths:
        data = _replace(data, paths[path_pick % len(paths)], new)
    lines[line_no] = b"data: " + orjson.dumps(data)
    events[i] = b"\n".join(lines)
    return b"\n\n".join(events)


class _Servers:
    """The upstream (serving ``body`` on every POST) and the proxy, on one background loop."""

    def __init__(self) -> None:
        self.body = b""
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="proxy-fuzz", daemon=True)
        self.thread.start()
        self.proxy_url, self._close = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)

    async def _upstream(self, request: Any) -> Any:
        from aiohttp import web

        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(self.body)
        return response

    async def _start(self) -> tuple[str, Any]:
        from aiohttp import web

        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self._upstream)
        up_runner = web.AppRunner(app)
        await up_runner.setup()
        up_site = web.TCPSite(up_runner, "127.0.0.1", 0)
        await up_site.start()
        base = f"http://127.0.0.1:{up_runner.addresses[0][1]}"
        entries = [
            {
                "model_name": model,
                "litellm_params": {
                    "model": model,
                    "api_base": base,
                    "api_key": "sk-fuzz-key-1234",
                    "stream_timeout": 5,
                },
            }
            for model in FIXTURES
        ]
        proxy = create_app(parse_config({"model_list": entries}, environ={}))
        runner = make_runner(proxy)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()

        async def close() -> None:
            await runner.cleanup()
            await up_runner.cleanup()

        return f"http://127.0.0.1:{runner.addresses[0][1]}", close

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def servers() -> Iterator[_Servers]:
    """One upstream and one proxy for the module."""
    both = _Servers()
    yield both
    both.close()


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def _logged_errors() -> Iterator[_Errors]:
    handler = _Errors()
    loggers = [logging.getLogger("asyncio"), logging.getLogger("rxllm")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def _check_error_body(body: Any) -> None:
    error = body["error"]
    assert isinstance(error["type"], str) and error["type"]
    assert not error["message"].startswith("internal error"), error["message"]
    assert KEY not in error["message"]


async def _exchange(url: str, model: str, stream: bool) -> None:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    timeout = aiohttp.ClientTimeout(total=GUARD)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.post(url, json=body) as response:
        raw = await response.read()
    if response.status != 200:
        assert response.status != 500 or b"internal error" not in raw
        _check_error_body(orjson.loads(raw))
        return
    if not stream:
        answer = orjson.loads(raw)
        assert answer["object"] == "chat.completion"
        assert answer["model"] == model
        return
    events = [e for e in raw.split(b"\n\n") if e.startswith(b"data: ")]
    assert events, raw[:200]
    last = events[-1][6:]
    if last != b"[DONE]":
        _check_error_body(orjson.loads(last))
    for event in events[:-1]:
        chunk = orjson.loads(event[6:])
        assert isinstance(chunk["choices"], list)
        assert chunk["model"] == model


class TestProxyFuzz:
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        model=st.sampled_from(sorted(FIXTURES)),
        fixture_pick=st.integers(0, 10),
        event_pick=st.integers(0, 10_000),
        path_pick=st.integers(0, 10_000),
        new=replacements,
        stream=st.booleans(),
    )
    def test_one_replaced_field_gives_an_answer_or_a_typed_error(
        self,
        servers: _Servers,
        model: str,
        fixture_pick: int,
        event_pick: int,
        path_pick: int,
        new: Any,
        stream: bool,
    ) -> None:
        """Any one field of a recorded stream replaced: the answer or a typed error, never internal, never a hang."""
        names = FIXTURES[model]
        original = fixture_path(names[fixture_pick % len(names)]).read_bytes()
        servers.body = _mutated(original, event_pick, path_pick, new)
        gc.collect()  # garbage left by earlier tests (an SDK client's orphaned close) is not this example's

        with _logged_errors() as errors:
            asyncio.run(asyncio.wait_for(_exchange(servers.proxy_url + "/v1/chat/completions", model, stream), GUARD))

        assert [r.getMessage() for r in errors.records] == []
