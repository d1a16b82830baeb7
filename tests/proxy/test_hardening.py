"""Hostile requests and upstreams: typed 4xx answers, no leaked bookkeeping, no secret out, no freeze."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import shutil
import subprocess
import threading
import time
from typing import Any

import aiohttp
import openai
import orjson
import pytest
import structlog

from rxllm.proxy import PROXY_STATE
from tests.proxy.proxy_support import (
    UPSTREAM_KEY,
    USER,
    client,
    config,
    mock_entry,
    request_logs,
    running,
    upstream,
    upstream_entry,
)

CHAT = "/v1/chat/completions"


async def _post(url: str, body: Any) -> tuple[int, Any, dict[str, str]]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=data, headers={"Content-Type": "application/json"}) as response,
    ):
        raw = await response.read()
        if response.content_type == "text/event-stream":
            return response.status, raw, dict(response.headers)
        return response.status, orjson.loads(raw) if raw else None, dict(response.headers)


def _nested(depth: int) -> bytes:
    """A JSON array nested ``depth`` deep (as text: orjson will not encode it)."""
    return b"[" * depth + b'"x"' + b"]" * depth


class TestMalformedRequests:
    @pytest.mark.parametrize(
        ("messages", "fragment"),
        [
            ([{"role": ["user"], "content": "hi"}], "role"),
            ([{"role": "user", "content": 5}], "content"),
            ([{"role": "user", "content": [1]}], "content[0]"),
            (["hello"], "messages[0]"),
        ],
    )
    async def test_malformed_messages_are_400(self, messages: Any, fragment: str) -> None:
        """A list role, a numeric content, a bare string message: 400 naming the field, never 500."""
        async with running() as server:
            status, body, _ = await _post(server.make_url(CHAT), {"model": "mock/echo", "messages": messages})

        assert status == 400
        assert body["error"]["type"] == "invalid_request_error"
        assert fragment in body["error"]["message"]

    async def test_deep_nesting_is_400_and_leaks_no_bookkeeping(self) -> None:
        """1000-deep nesting answers 400 (five times), then traffic still alternates between deployments."""
        cfg = config(mock_entry("m", mock_response="a"), mock_entry("m", mock_response="b"))
        async with running(cfg) as server:
            statuses = []
            for _ in range(5):
                deep = (
                    b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "metadata": '
                    + _nested(1000)
                    + b"}"
                )
                statuses.append((await _post(server.make_url(CHAT), deep))[0])
                body = {"model": "m", "messages": [{"role": ["user"], "content": "x"}]}
                statuses.append((await _post(server.make_url(CHAT), body))[0])
            answers = [
                (await client(server).chat.completions.create(model="m", messages=USER)).choices[0].message.content
                for _ in range(4)
            ]
            counts = server.app[PROXY_STATE].router.in_flight()

        assert statuses == [400] * 10
        assert sorted(answers) == ["a", "a", "b", "b"]
        assert set(counts.values()) == {0}


class TestBookkeeping:
    async def test_failures_timeouts_and_cancels_leave_no_attempt_in_flight(self) -> None:
        """Upstream errors, failover, first-chunk timeouts and clients leaving all release their lease."""
        async with upstream(count=50, delay=0.02) as slow, upstream() as broken:
            broken.fail_status = 500
            cfg = config(
                upstream_entry("m", broken),
                upstream_entry("m", slow),
                upstream_entry("t", slow, timeout=0.001),
                mock_entry("x", mock_response="a b c", mock_fail_after=1),
            )
            async with running(cfg, handler_cancellation=True) as server:
                api = client(server)
                for _ in range(4):
                    stream = await api.chat.completions.create(model="m", messages=USER, stream=True)
                    await stream.__anext__()
                    await stream.close()
                    with contextlib.suppress(openai.APIError):
                        await api.chat.completions.create(model="t", messages=USER)
                    with contextlib.suppress(openai.APIError):
                        await api.chat.completions.create(model="x", messages=USER)
                state = server.app[PROXY_STATE]
                for _ in range(100):  # hang guard: cancellations settle within a few loop turns
                    if not state.active and set(state.router.in_flight().values()) == {0}:
                        break
                    await asyncio.sleep(0.02)

                assert set(state.router.in_flight().values()) == {0}
                assert state.in_flight == 0


class TestRetryAfter:
    @pytest.mark.parametrize(
        ("given", "relayed"),
        [("5", "5"), ("0.2", "1"), ("3600", "60"), ("1e308", None), ("inf", None), ("nan", None), ("-4", None)],
    )
    async def test_upstream_retry_after_is_relayed_sanely(self, given: str, relayed: str | None) -> None:
        """An upstream 429's Retry-After is capped at 60 s; non-finite or absurd values are dropped; JSON always."""
        async with upstream() as up:
            up.fail_status = 429
            up.fail_headers = {"Retry-After": given}
            async with running(config(upstream_entry("m", up))) as server:
                status, body, headers = await _post(server.make_url(CHAT), {"model": "m", "messages": USER})

        assert status == 429
        assert body["error"]["type"]
        assert headers.get("Retry-After") == relayed


class TestSecrets:
    def test_reprs_hide_keys_and_header_values(self) -> None:
        """repr(ProxyConfig) and repr(Deployment) show neither api keys, key-like params nor extra_headers values."""
        cfg = config(
            {
                "model_name": "m",
                "litellm_params": {
                    "model": "openai/x",
                    "api_key": "sk-visible-NOT-1234",
                    "extra_headers": {"X-Custom-Auth": "hdr-secret-5678"},
                    "aws_secret_access_key": "aws-secret-9012",
                    "temperature": 0.5,
                    "max_tokens": 100,
                },
            },
            master_key="sk-master-NOT-3456",
        )
        shown = repr(cfg) + repr(cfg.deployments[0]) + str(cfg)

        for secret in ("sk-visible-NOT-1234", "hdr-secret-5678", "aws-secret-9012", "sk-master-NOT-3456"):
            assert secret not in shown
        assert "X-Custom-Auth" in shown and "0.5" in shown
        assert "'max_tokens': 100" in shown  # not a secret for ending in "tokens"

    async def test_an_upstream_echoing_secrets_leaks_them_nowhere(self) -> None:
        """An error body echoing the key and a header value: not in the client's body, not in the log."""
        header_secret = "hdr-value-SECRET-4242"
        async with upstream() as up:
            up.fail_status = 401
            up.fail_message = f"bad key {UPSTREAM_KEY} with header {header_secret}"
            entry = upstream_entry("m", up, extra_headers={"X-Auth": header_secret})
            async with running(config(entry)) as server:
                with structlog.testing.capture_logs() as logs:
                    status, body, _ = await _post(server.make_url(CHAT), {"model": "m", "messages": USER})
                    stream_status, stream_body, _ = await _post(
                        server.make_url(CHAT), {"model": "m", "messages": USER, "stream": True}
                    )

        text = orjson.dumps([body, stream_body, logs]).decode()
        assert status == stream_status == 401
        assert UPSTREAM_KEY not in text
        assert header_secret not in text
        assert "bad key" in body["error"]["message"]
        assert request_logs(logs)


class TestAdmission:
    async def test_n_is_capped(self) -> None:
        """n above max_n (default 16) is a 400 naming n; 16 is served."""
        async with running() as server:
            status, body, _ = await _post(server.make_url(CHAT), {"model": "mock/echo", "messages": USER, "n": 200000})
            ok = await client(server).chat.completions.create(model="mock/echo", messages=USER, n=16)

        assert status == 400 and body["error"]["param"] == "n"
        assert len(ok.choices) == 16

    async def test_mock_prompt_and_max_tokens_are_bounded(self) -> None:
        """A huge echo prompt, n copies of a large one, and an absurd max_tokens are 400s for mock models."""
        async with running(config(mock_max_prompt_chars=10000)) as server:
            huge = [{"role": "user", "content": "word " * 4000}]
            results = [
                await _post(server.make_url(CHAT), {"model": "mock/echo", "messages": huge}),
                await _post(server.make_url(CHAT), {"model": "mock/echo", "messages": huge[:1] and USER, "n": 1}),
                await _post(
                    server.make_url(CHAT),
                    {"model": "mock/echo", "messages": [{"role": "user", "content": "w " * 1000}], "n": 16},
                ),
                await _post(server.make_url(CHAT), {"model": "mock/echo", "messages": USER, "max_tokens": 10**9}),
            ]

        assert [r[0] for r in results] == [400, 200, 400, 400]
        assert results[0][1]["error"]["param"] == "messages"
        assert results[3][1]["error"]["param"] == "max_tokens"

    async def test_request_body_mocks_are_refused_for_real_deployments(self) -> None:
        """mock_response in a request to a real deployment is a 400 and the upstream is not called."""
        async with upstream() as up, running(config(upstream_entry("real", up))) as server:
            results = [
                await _post(server.make_url(CHAT), {"model": "real", "messages": USER, field: value})
                for field, value in (("mock_response", "fake"), ("mock_delay", 1), ("mock_fail_after", 0))
            ]

        assert [(status, body["error"]["param"]) for status, body, _ in results] == [
            (400, "mock_response"),
            (400, "mock_delay"),
            (400, "mock_fail_after"),
        ]
        assert up.requests == []

    async def test_request_body_mocks_need_mocks_allowed(self) -> None:
        """With allow_mock_models off, even a configured mock/ model refuses request-body mock_* fields."""
        async with running(config(mock_entry("m"), allow_mock_models=False)) as server:
            refused = await _post(server.make_url(CHAT), {"model": "m", "messages": USER, "mock_response": "x"})
            served = await _post(server.make_url(CHAT), {"model": "m", "messages": USER})
        async with running(config(mock_entry("m"))) as server:
            allowed = await _post(server.make_url(CHAT), {"model": "m", "messages": USER, "mock_response": "own"})

        assert refused[0] == 400 and served[0] == 200
        assert allowed[0] == 200 and allowed[1]["choices"][0]["message"]["content"] == "own"

    async def test_a_long_mock_answer_does_not_freeze_the_loop(self) -> None:
        """While a 16-choice mock answer streams, a health check is answered before it ends."""
        words = "w " * 3000
        async with running(config(mock_entry("m", mock_response=words))) as server:
            order: list[str] = []

            async def big() -> None:
                await _post(server.make_url(CHAT), {"model": "m", "messages": USER, "n": 16, "stream": True})
                order.append("stream")

            async def health() -> None:
                await asyncio.sleep(0.05)
                async with aiohttp.ClientSession() as session, session.get(server.make_url("/health/liveliness")):
                    order.append("health")

            await asyncio.gather(big(), health())

        assert order == ["health", "stream"]


class TestSlowClients:
    async def test_dripping_headers_are_cut_off(self) -> None:
        """A connection that never finishes its headers is closed after header_timeout."""
        async with running(config(header_timeout=0.5)) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
            closed = False
            for _ in range(60):  # drip one byte every 50 ms for up to 3 s
                try:
                    writer.write(b"X")
                    await writer.drain()
                except ConnectionError:
                    closed = True
                    break
                with contextlib.suppress(TimeoutError):
                    if await asyncio.wait_for(reader.read(1), 0.05) == b"":
                        closed = True
                        break
            writer.close()

        assert closed

    async def test_dripping_bodies_hold_no_slot_and_get_408(self) -> None:
        """With one slot, three clients dripping bodies do not block a normal request; they get 408."""
        async with running(config(global_max_parallel_requests=1, body_timeout=1)) as server:
            drips = []
            for _ in range(3):
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.write(
                    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 1000\r\n\r\n{"
                )
                await writer.drain()
                drips.append((reader, writer))
            served = await client(server).chat.completions.create(model="mock/echo", messages=USER)
            answers = [await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10) for reader, _ in drips]
            for _, writer in drips:
                writer.close()

        assert served.choices[0].message.content == "hello proxy"
        assert all(answer.startswith(b"HTTP/1.1 408") for answer in answers)

    async def test_a_burst_of_2000_connections_is_served(self) -> None:
        """2,000 connections opened at once, while the proxy's loop is busy, all get their answer."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < 5000:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
        async with running() as server:
            started = threading.Event()
            results: list[Any] = []

            def burst() -> None:
                async def one() -> bytes:
                    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                    try:
                        writer.write(b"GET /health/liveliness HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        return await reader.read()
                    finally:
                        writer.close()

                async def all_at_once() -> list[Any]:
                    tasks = [asyncio.ensure_future(one()) for _ in range(2000)]
                    started.set()
                    return await asyncio.gather(*tasks, return_exceptions=True)

                results.extend(asyncio.run(all_at_once()))

            thread = threading.Thread(target=burst)
            thread.start()
            started.wait(30)
            time.sleep(0.5)  # the proxy's loop is busy while the connections queue up in the kernel
            await asyncio.get_running_loop().run_in_executor(None, thread.join, 120)
            backlog = _listen_backlog(server.port)

        failures = [r for r in results if not isinstance(r, bytes) or not r.startswith(b"HTTP/1.1 200")]
        assert len(results) == 2000
        assert failures == []
        assert backlog is None or backlog >= 2048


def _listen_backlog(port: int) -> int | None:
    """The listening socket's backlog as the kernel reports it (``ss``'s Send-Q), if ``ss`` exists."""
    if shutil.which("ss") is None:
        return None
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=False).stdout
    fields = out.split()
    return int(fields[2]) if len(fields) >= 3 else None
