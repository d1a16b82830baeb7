"""Resumable streams in the proxy: ids on every event, generation past a disconnect, resume anywhere, cancel."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis_support import RedisServer
from structlog.testing import capture_logs

from rxllm.proxy import PROXY_STATE, parse_config
from tests.proxy.proxy_support import USER, ProxyServer, config, mock_entry, running

Event = tuple[str | None, bytes]


def parse_events(raw: bytes) -> list[Event]:
    """SSE bytes as (id, data) pairs, comments skipped."""
    events: list[Event] = []
    for block in raw.split(b"\n\n"):
        if not block.strip():
            continue
        event_id: str | None = None
        data: list[bytes] = []
        for line in block.split(b"\n"):
            if line.startswith(b"id: "):
                event_id = line[4:].decode()
            elif line.startswith(b"data: "):
                data.append(line[6:])
        if data:
            events.append((event_id, b"\n".join(data)))
    return events


async def start_stream(session: aiohttp.ClientSession, server: ProxyServer, model: str = "m") -> aiohttp.ClientResponse:
    response = await session.post(
        server.make_url("/v1/chat/completions"), json={"model": model, "messages": USER, "stream": True}
    )
    return response


async def read_some(response: aiohttp.ClientResponse, k: int) -> list[Event]:
    """The first k events, then the connection is dropped."""
    events: list[Event] = []
    try:
        async with asyncio.timeout(20):  # hang guard
            while len(events) < k:
                try:
                    block = await response.content.readuntil(b"\n\n")
                except asyncio.IncompleteReadError:
                    break  # the stream had fewer than k events
                if not block:
                    break  # end of the body (aiohttp returns b"" there)
                events.extend(parse_events(block))
    finally:
        response.close()
    return events


async def resume(
    session: aiohttp.ClientSession, server: ProxyServer, key: str, last: str | None
) -> tuple[int, list[Event]]:
    headers = {} if last is None else {"Last-Event-ID": last}
    url = server.make_url(f"/v1/chat/completions/{key}/stream")
    async with session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=20)) as response:  # hang guard
        return response.status, parse_events(await response.read())


def resumable_config(redis_url: str | None, *entries: dict[str, Any]) -> Any:
    data: dict[str, Any] = {"model_list": list(entries), "general_settings": {"resumable_streams": True}}
    if redis_url is not None:
        data["router_settings"] = {"redis_url": redis_url}
    return parse_config(data, environ={})


@contextlib.asynccontextmanager
async def two(cfg: Any) -> AsyncIterator[tuple[ProxyServer, ProxyServer]]:
    async with running(cfg, handler_cancellation=True) as a, running(cfg, handler_cancellation=True) as b:
        yield a, b


def text_of(events: list[Event]) -> str:
    out = []
    for _, data in events:
        if data != b"[DONE]":
            body = orjson.loads(data)
            for choice in body.get("choices", []):
                out.append(choice["delta"].get("content") or "")
    return "".join(out)


class TestInOneProcess:
    async def test_every_event_has_an_id_and_chunks_carry_the_response_id(self) -> None:
        """Events are numbered 1..n; X-Response-Id is every chunk's id; the OpenAI SDK reads it as usual."""
        cfg = config(mock_entry("m", mock_response="one two three"), resumable_streams=True)
        async with running(cfg) as server, aiohttp.ClientSession() as session:
            async with await start_stream(session, server) as response:
                key = response.headers["X-Response-Id"]
                events = parse_events(await response.read())
            sdk = openai.AsyncOpenAI(base_url=server.make_url("/v1"), api_key="x", max_retries=0)
            chunks = [c async for c in await sdk.chat.completions.create(model="m", messages=USER, stream=True)]
            await sdk.close()

        assert [e[0] for e in events] == [str(i) for i in range(1, len(events) + 1)]
        assert events[-1][1] == b"[DONE]"
        assert all(orjson.loads(d)["id"] == key for _, d in events[:-1])
        assert key.startswith("chatcmpl-") and text_of(events) == "one two three"
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two three"
        assert len({c.id for c in chunks}) == 1

    async def test_generation_continues_after_the_client_leaves(self) -> None:
        """A client that reads one event and leaves: the stream still completes; resume gets the rest."""
        cfg = config(mock_entry("m", mock_response="a b c d e f", mock_delay=0.02), resumable_streams=True)
        async with running(cfg, handler_cancellation=True) as server, aiohttp.ClientSession() as session:
            response = await start_stream(session, server)
            key = response.headers["X-Response-Id"]
            first = await read_some(response, 1)
            status, rest = await resume(session, server, key, first[-1][0])
            state = server.app[PROXY_STATE]

        assert status == 200 and rest[-1][1] == b"[DONE]"
        assert text_of(first + rest) == "a b c d e f"
        assert [e[0] for e in first + rest] == [str(i) for i in range(1, len(first + rest) + 1)]
        assert state.in_flight == 0 and set(state.router.in_flight().values()) <= {0}

    async def test_cancel_stops_the_generation_and_ends_readers_with_an_error_event(self) -> None:
        """POST .../cancel: the reader gets an error event (499) instead of [DONE]; a second cancel says it ended."""
        cfg = config(mock_entry("m", mock_response=" ".join("w" * 40), mock_delay=0.02), resumable_streams=True)
        async with running(cfg) as server, aiohttp.ClientSession() as session:
            async with await start_stream(session, server) as response:
                key = response.headers["X-Response-Id"]
                await response.content.readuntil(b"\n\n")
                async with session.post(server.make_url(f"/v1/chat/completions/{key}/cancel")) as cancel:
                    answer = await cancel.json()
                events = parse_events(await response.read())
            async with session.post(server.make_url(f"/v1/chat/completions/{key}/cancel")) as again:
                second = await again.json()

        assert answer["cancelled"] is True
        error = orjson.loads(events[-1][1])["error"]
        assert "cancelled" in error["message"] and events[-1][0] is None
        assert b"[DONE]" not in [d for _, d in events]
        assert second["cancelled"] is False and second["status"] == "failed"

    async def test_unknown_stream_and_bad_last_event_id(self) -> None:
        """An unknown id is 404; a Last-Event-ID that is not a number is 400 naming the header."""
        cfg = config(mock_entry("m", mock_response="x"), resumable_streams=True)
        async with running(cfg) as server, aiohttp.ClientSession() as session:
            missing, _ = await resume(session, server, "chatcmpl-nope", None)
            async with await start_stream(session, server) as response:
                key = response.headers["X-Response-Id"]
                await response.read()
            async with session.get(
                server.make_url(f"/v1/chat/completions/{key}/stream"), headers={"Last-Event-ID": "abc"}
            ) as bad:
                body = await bad.json()
            async with session.post(server.make_url("/v1/chat/completions/chatcmpl-nope/cancel")) as cancel:
                cancel_status = cancel.status

        assert missing == 404 and cancel_status == 404
        assert bad.status == 400 and body["error"]["param"] == "Last-Event-ID"

    async def test_failure_before_the_first_chunk_keeps_its_http_status(self) -> None:
        """A request that fails before streaming still answers with its status (429 here), not a stream."""
        cfg = config(mock_entry("m", mock_response="rxllm.RateLimitError"), resumable_streams=True)
        async with running(cfg) as server, aiohttp.ClientSession() as session:
            async with await start_stream(session, server) as response:
                status = response.status
                await response.read()
            state = server.app[PROXY_STATE]

        assert status == 429 and state.in_flight == 0

    async def test_without_resumable_streams_a_disconnect_disposes_the_upstream(self) -> None:
        """The default: no ids, no resume route, and the generation stops when its client leaves."""
        cfg = config(mock_entry("m", mock_response=" ".join("w" * 200), mock_delay=0.01))
        async with running(cfg, handler_cancellation=True) as server, aiohttp.ClientSession() as session:
            response = await start_stream(session, server)
            first = await read_some(response, 1)
            state = server.app[PROXY_STATE]
            async with asyncio.timeout(10):  # hang guard
                while state.in_flight:
                    await asyncio.sleep(0.01)
            missing, _ = await resume(session, server, "chatcmpl-x", None)

        assert first[0][0] is None and "X-Response-Id" not in response.headers
        assert missing == 404


@pytest.mark.usefixtures("redis_url")
class TestAcrossInstances:
    @settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(k=st.integers(1, 9), ending=st.sampled_from(["live", "finished", "failed"]))
    def test_read_k_on_a_resume_on_b_is_the_uninterrupted_stream(
        self, redis_server: RedisServer, k: int, ending: str
    ) -> None:
        """Read k events from A, leave, resume on B with Last-Event-ID: the concatenation is the whole
        stream (while it runs, after it finished, and after it failed mid-way)."""
        params: dict[str, Any] = {"mock_response": "a b c d e f g h", "mock_delay": 0.01}
        if ending == "failed":
            params["mock_fail_after"] = 6
        cfg = resumable_config(redis_server.url, mock_entry("m", **params))

        async def scenario() -> None:
            async with two(cfg) as (a, b), aiohttp.ClientSession() as session:
                response = await start_stream(session, a)
                key = response.headers["X-Response-Id"]
                first = await read_some(response, k)
                if ending != "live":
                    async with asyncio.timeout(10):  # hang guard: wait for the generation's end
                        while a.app[PROXY_STATE].in_flight:
                            await asyncio.sleep(0.01)
                status, rest = await resume(session, b, key, first[-1][0])
                whole_status, whole = await resume(session, b, key, None)

            assert status == 200 and whole_status == 200
            assert first + rest == whole
            assert [e[0] for e in whole if e[0] is not None] == [str(i) for i in range(1, len(whole) + 1)]
            if ending == "failed":
                assert b'"error"' in whole[-1][1]
            else:
                assert whole[-1][1] == b"[DONE]" and text_of(whole) == "a b c d e f g h"

        asyncio.run(scenario())

    async def test_cancel_on_b_stops_a_generation_running_on_a(self, redis_url: str) -> None:
        """POST cancel to B: A's generation stops at its next event; A's reader gets the error event."""
        cfg = resumable_config(redis_url, mock_entry("m", mock_response=" ".join("w" * 60), mock_delay=0.02))
        async with two(cfg) as (a, b), aiohttp.ClientSession() as session:
            async with await start_stream(session, a) as response:
                key = response.headers["X-Response-Id"]
                await response.content.readuntil(b"\n\n")
                async with session.post(b.make_url(f"/v1/chat/completions/{key}/cancel")) as cancel:
                    answer = await cancel.json()
                events = parse_events(await response.read())
            async with asyncio.timeout(10):  # hang guard
                while a.app[PROXY_STATE].in_flight:
                    await asyncio.sleep(0.01)
            _, on_b = await resume(session, b, key, None)

        assert answer["cancelled"] is True
        assert "cancelled" in orjson.loads(events[-1][1])["error"]["message"]
        assert len(events) < 60 and "cancelled" in orjson.loads(on_b[-1][1])["error"]["message"]

    async def test_redis_down_at_start_serves_plain_streams_then_recovers(
        self, redis_server: RedisServer, redis_url: str
    ) -> None:
        """Redis killed: a new stream is served plain (no ids) and completes, with one warning;
        once Redis is back, new streams are resumable again."""
        cfg = resumable_config(redis_url, mock_entry("m", mock_response="x y"))
        with capture_logs() as logs:
            async with running(cfg) as server, aiohttp.ClientSession() as session:
                redis_server.kill()
                try:
                    async with await start_stream(session, server) as response:
                        plain = parse_events(await response.read())
                        plain_headers = response.headers
                finally:
                    redis_server.start()
                resumable = server.app[PROXY_STATE].detach.__self__  # type: ignore[union-attr]
                resumable.shared_down_until = 0.0  # retry Redis now rather than after its 1 s pause
                async with await start_stream(session, server) as response:
                    again = parse_events(await response.read())

        assert plain[-1][1] == b"[DONE]" and all(e[0] is None for e in plain)
        assert "X-Response-Id" not in plain_headers
        assert again[0][0] == "1" and again[-1][1] == b"[DONE]"
        events = [e["event"] for e in logs]
        assert events.count("rxllm.proxy.resumable_unavailable") == 1
        assert "rxllm.proxy.resumable_recovered" in events

    async def test_redis_lost_mid_stream_ends_the_reader_with_resumption_lost(
        self, redis_server: RedisServer, redis_url: str
    ) -> None:
        """Redis killed while a resumable stream runs: its reader gets an error event saying resumption was lost."""
        cfg = resumable_config(redis_url, mock_entry("m", mock_response=" ".join("w" * 80), mock_delay=0.02))
        async with running(cfg) as server, aiohttp.ClientSession() as session:
            async with await start_stream(session, server) as response:
                await response.content.readuntil(b"\n\n")
                redis_server.kill()
                try:
                    events = parse_events(await response.read())
                finally:
                    redis_server.start()
            state = server.app[PROXY_STATE]
            async with asyncio.timeout(10):  # hang guard
                while state.in_flight:
                    await asyncio.sleep(0.01)

        error = orjson.loads(events[-1][1])["error"]
        assert "unreachable" in error["message"] and len(events) < 80
