"""Resumable streams for the Responses dialect: ids are sequence numbers, resume with starting_after anywhere."""

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
from rxllm.proxy.resumable import RESUMABLE
from tests.proxy.proxy_support import ProxyServer, config, mock_entry, running

Event = tuple[str | None, str | None, dict[str, Any]]


def parse_events(raw: bytes) -> list[Event]:
    """SSE bytes as (id, event name, data) triples, comments skipped."""
    events: list[Event] = []
    for block in raw.split(b"\n\n"):
        event_id: str | None = None
        name: str | None = None
        data: list[bytes] = []
        for line in block.split(b"\n"):
            if line.startswith(b"id: "):
                event_id = line[4:].decode()
            elif line.startswith(b"event: "):
                name = line[7:].decode()
            elif line.startswith(b"data: "):
                data.append(line[6:])
        if data:
            events.append((event_id, name, orjson.loads(b"\n".join(data))))
    return events


async def start(session: aiohttp.ClientSession, server: ProxyServer, **extra: Any) -> aiohttp.ClientResponse:
    body = {"model": "m", "input": "hi", "stream": True, **extra}
    return await session.post(server.make_url("/v1/responses"), json=body)


async def read_some(response: aiohttp.ClientResponse, k: int) -> list[Event]:
    """The first k events, then the connection is dropped."""
    events: list[Event] = []
    try:
        async with asyncio.timeout(20):  # hang guard
            while len(events) < k:
                try:
                    block = await response.content.readuntil(b"\n\n")
                except asyncio.IncompleteReadError:
                    break
                if not block:
                    break
                events.extend(parse_events(block))
    finally:
        response.close()
    return events


async def resume(
    session: aiohttp.ClientSession,
    server: ProxyServer,
    key: str,
    starting_after: int | None = None,
    *,
    header: bool = False,
) -> tuple[int, list[Event]]:
    params = {"stream": "true"}
    headers = {}
    if starting_after is not None:
        if header:
            headers["Last-Event-ID"] = str(starting_after)
        else:
            params["starting_after"] = str(starting_after)
    url = server.make_url(f"/v1/responses/{key}")
    timeout = aiohttp.ClientTimeout(total=20)  # hang guard
    async with session.get(url, params=params, headers=headers, timeout=timeout) as response:
        return response.status, parse_events(await response.read())


def text_of(events: list[Event]) -> str:
    return "".join(d.get("delta", "") for _, name, d in events if name == "response.output_text.delta")


def resumable_config(redis_url: str | None, *entries: dict[str, Any]) -> Any:
    data: dict[str, Any] = {"model_list": list(entries), "general_settings": {"resumable_streams": True}}
    if redis_url is not None:
        data["router_settings"] = {"redis_url": redis_url}
    return parse_config(data, environ={})


@contextlib.asynccontextmanager
async def two(cfg: Any) -> AsyncIterator[tuple[ProxyServer, ProxyServer]]:
    async with running(cfg, handler_cancellation=True) as a, running(cfg, handler_cancellation=True) as b:
        yield a, b


async def wait_idle(server: ProxyServer) -> None:
    async with asyncio.timeout(10):  # hang guard: wait for the generation's end
        while server.app[PROXY_STATE].in_flight:
            await asyncio.sleep(0.01)


def sdk(server: ProxyServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.make_url("/v1"), api_key="x", max_retries=0)


class TestResponsesInOneProcess:
    async def test_ids_are_sequence_numbers_and_the_key_is_the_response_id(self) -> None:
        """Every event's id: is its sequence_number; every response object's id is X-Response-Id (resp_…)."""
        cfg = config(mock_entry("m", mock_response="one two three"), resumable_streams=True)
        async with running(cfg) as server, aiohttp.ClientSession() as session:
            response = await start(session, server)
            key = response.headers["X-Response-Id"]
            events = parse_events(await response.read())
            response.close()

        assert key.startswith("resp_")
        assert [e[0] for e in events] == [str(d["sequence_number"]) for _, _, d in events]
        assert [d["sequence_number"] for _, _, d in events] == list(range(len(events)))
        assert all(d["response"]["id"] == key for _, _, d in events if "response" in d)
        assert events[0][1] == "response.created" and events[-1][1] == "response.completed"
        assert text_of(events) == "one two three"

    async def test_the_sdk_creates_then_retrieves_with_starting_after(self) -> None:
        """openai SDK: responses.create(stream=True), then responses.retrieve(id, stream=True, starting_after=N)."""
        cfg = config(mock_entry("m", mock_response="a b c d"), resumable_streams=True)
        async with running(cfg) as server:
            client = sdk(server)
            try:
                created = [e async for e in await client.responses.create(model="m", input="hi", stream=True)]
                key = created[0].response.id  # type: ignore[union-attr]
                after = 3
                resumed = [e async for e in await client.responses.retrieve(key, stream=True, starting_after=after)]
                whole = [e async for e in await client.responses.retrieve(key, stream=True)]
            finally:
                await client.close()

        assert [e.sequence_number for e in resumed] == [e.sequence_number for e in created[after + 1 :]]
        assert [e.model_dump() for e in whole] == [e.model_dump() for e in created]
        assert resumed[-1].type == "response.completed" and resumed[-1].response.id == key  # type: ignore[union-attr]

    async def test_last_event_id_resumes_like_starting_after(self) -> None:
        """Last-Event-ID: N and ?starting_after=N give the same events: sequence_number > N."""
        cfg = config(mock_entry("m", mock_response="x y z"), resumable_streams=True)
        async with running(cfg) as server, aiohttp.ClientSession() as session:
            async with await start(session, server) as response:
                key = response.headers["X-Response-Id"]
                whole = parse_events(await response.read())
            _, by_query = await resume(session, server, key, 4)
            _, by_header = await resume(session, server, key, 4, header=True)
            _, from_zero = await resume(session, server, key, 0)

        assert by_query == by_header == whole[5:]
        assert from_zero == whole[1:]

    async def test_cancel_ends_readers_with_error_and_response_failed(self) -> None:
        """POST /v1/responses/{id}/cancel: the reader ends with error + response.failed, numbered on."""
        cfg = config(mock_entry("m", mock_response=" ".join("w" * 40), mock_delay=0.02), resumable_streams=True)
        async with running(cfg) as server, aiohttp.ClientSession() as session:
            async with await start(session, server) as response:
                key = response.headers["X-Response-Id"]
                head = await response.content.readuntil(b"\n\n")
                async with session.post(server.make_url(f"/v1/responses/{key}/cancel")) as cancel:
                    answer = await cancel.json()
                events = parse_events(head + await response.read())
            client = sdk(server)
            try:
                again = await client.responses.cancel(key)
            finally:
                await client.close()

        assert answer == {"id": key, "object": "response", "cancelled": True, "status": "cancelled"}
        assert [name for _, name, _ in events[-2:]] == ["error", "response.failed"]
        assert "cancelled" in events[-2][2]["message"]
        assert [d["sequence_number"] for _, _, d in events] == list(range(len(events)))
        assert events[-1][0] is None and events[-1][2]["response"]["id"] == key
        assert again.id == key and again.status == "failed"

    async def test_get_without_stream_still_answers_from_the_store(self) -> None:
        """GET /v1/responses/{id} (no stream=true) returns the stored response, as without resumable streams."""
        cfg = config(mock_entry("m", mock_response="kept"), resumable_streams=True, responses_store_size=10)
        async with running(cfg) as server, aiohttp.ClientSession() as session:
            async with await start(session, server) as response:
                key = response.headers["X-Response-Id"]
                await response.read()
            async with session.get(server.make_url(f"/v1/responses/{key}")) as got:
                stored = await got.json()
            async with session.get(server.make_url("/v1/responses/resp_unknown")) as missing:
                missing_status = missing.status

        assert got.status == 200 and stored["id"] == key and stored["status"] == "completed"
        assert stored["output"][0]["content"][0]["text"] == "kept"
        assert missing_status == 404

    async def test_unknown_ids_and_bad_positions(self) -> None:
        """Unknown or chat ids are 404 on the Responses routes; a bad starting_after is 400 naming it."""
        cfg = config(mock_entry("m", mock_response="x"), resumable_streams=True)
        async with running(cfg) as server, aiohttp.ClientSession() as session:
            missing, _ = await resume(session, server, "resp_nope")
            async with await start(session, server) as response:
                key = response.headers["X-Response-Id"]
                await response.read()
            async with session.get(
                server.make_url(f"/v1/responses/{key}"), params={"stream": "true", "starting_after": "-1"}
            ) as bad:
                body = await bad.json()
            chat = await session.post(
                server.make_url("/v1/chat/completions"),
                json={"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True},
            )
            chat_key = chat.headers["X-Response-Id"]
            await chat.read()
            wrong, _ = await resume(session, server, chat_key)
            async with session.post(server.make_url("/v1/responses/resp_nope/cancel")) as cancel:
                cancel_status = cancel.status

        assert missing == 404 and wrong == 404 and cancel_status == 404
        assert bad.status == 400 and body["error"]["param"] == "starting_after"

    async def test_messages_streams_stay_plain(self) -> None:
        """The Anthropic Messages dialect is not resumable: its streams carry no ids and no X-Response-Id."""
        cfg = config(mock_entry("m", mock_response="x y"), resumable_streams=True)
        body = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], "stream": True}
        async with running(cfg) as server, aiohttp.ClientSession() as session:
            response = await session.post(server.make_url("/v1/messages"), json=body)
            raw = await response.read()
            headers = response.headers
            response.close()

        assert b"message_stop" in raw and b"\nid: " not in raw and not raw.startswith(b"id: ")
        assert "X-Response-Id" not in headers


@pytest.mark.usefixtures("redis_url")
class TestResponsesAcrossInstances:
    @settings(max_examples=18, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        k=st.integers(1, 16),
        ending=st.sampled_from(["live", "finished", "failed"]),
        header=st.booleans(),
    )
    def test_read_k_on_a_resume_on_b_is_the_uninterrupted_stream(
        self, redis_server: RedisServer, k: int, ending: str, header: bool
    ) -> None:
        """Read k events from A, leave, resume on B after the last sequence number (query or Last-Event-ID):
        the concatenation is the whole stream, while it runs, after it finished, and after it failed."""
        params: dict[str, Any] = {"mock_response": "a b c d e f g h", "mock_delay": 0.01}
        if ending == "failed":
            params["mock_fail_after"] = 5
        cfg = resumable_config(redis_server.url, mock_entry("m", **params))

        async def scenario() -> None:
            async with two(cfg) as (a, b), aiohttp.ClientSession() as session:
                response = await start(session, a)
                key = response.headers["X-Response-Id"]
                first = await read_some(response, k)
                if ending != "live":
                    await wait_idle(a)
                last = first[-1][2]["sequence_number"]
                status, rest = await resume(session, b, key, last, header=header)
                whole_status, whole = await resume(session, b, key)

            assert status == 200 and whole_status == 200
            assert first + rest == whole
            assert [e[0] for e in whole] == [str(i) for i in range(len(whole))]
            assert all(d["response"]["id"] == key for _, _, d in whole if "response" in d)
            if ending == "failed":
                assert [name for _, name, _ in whole[-2:]] == ["error", "response.failed"]
            else:
                assert whole[-1][1] == "response.completed" and text_of(whole) == "a b c d e f g h"

        asyncio.run(scenario())

    async def test_the_sdk_resumes_on_the_other_instance(self, redis_url: str) -> None:
        """The openai SDK reads part of a stream from A, then retrieve(stream=True, starting_after=N) on B."""
        cfg = resumable_config(redis_url, mock_entry("m", mock_response="p q r s t", mock_delay=0.01))
        async with two(cfg) as (a, b):
            on_a, on_b = sdk(a), sdk(b)
            try:
                first = []
                async with await on_a.responses.create(model="m", input="hi", stream=True) as stream:
                    async for event in stream:
                        first.append(event)
                        if len(first) == 4:
                            break
                key = first[0].response.id  # type: ignore[union-attr]
                rest = [
                    e
                    async for e in await on_b.responses.retrieve(
                        key, stream=True, starting_after=first[-1].sequence_number
                    )
                ]
            finally:
                await on_a.close()
                await on_b.close()

        events = first + rest
        assert [e.sequence_number for e in events] == list(range(len(events)))
        assert events[-1].type == "response.completed"
        deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")  # type: ignore[union-attr]
        assert deltas == "p q r s t"

    async def test_cancel_on_b_stops_a_generation_running_on_a(self, redis_url: str) -> None:
        """POST /v1/responses/{id}/cancel to B: A's generation stops; readers on both end with response.failed."""
        cfg = resumable_config(redis_url, mock_entry("m", mock_response=" ".join("w" * 60), mock_delay=0.02))
        async with two(cfg) as (a, b), aiohttp.ClientSession() as session:
            async with await start(session, a) as response:
                key = response.headers["X-Response-Id"]
                await response.content.readuntil(b"\n\n")
                async with session.post(b.make_url(f"/v1/responses/{key}/cancel")) as cancel:
                    answer = await cancel.json()
                events = parse_events(await response.read())
            await wait_idle(a)
            _, on_b = await resume(session, b, key)

        assert answer["cancelled"] is True
        assert events[-1][1] == "response.failed" and on_b[-1][1] == "response.failed"
        assert "cancelled" in on_b[-2][2]["message"] and len(events) < 60
        assert [d["sequence_number"] for _, _, d in on_b] == list(range(len(on_b)))

    async def test_redis_down_at_start_serves_a_plain_stream_and_a_leaving_client_ends_it(
        self, redis_server: RedisServer, redis_url: str
    ) -> None:
        """Redis killed before a stream: it is served plain (no ids, no X-Response-Id) and completes, with
        one warning; a client that leaves such a stream ends its generation (nothing left in flight)."""
        cfg = resumable_config(redis_url, mock_entry("m", mock_response=" ".join("w" * 60), mock_delay=0.01))
        with capture_logs() as logs:
            async with running(cfg, handler_cancellation=True) as server, aiohttp.ClientSession() as session:
                redis_server.kill()
                try:
                    response = await start(session, server)
                    headers = response.headers
                    first = await read_some(response, 3)
                    await wait_idle(server)
                    resumable = server.app[RESUMABLE]
                    left = await resumable.local.info(first[0][2]["response"]["id"])
                    resumable.shared_down_until = 0.0  # try Redis again at once (it is still down)
                    whole = await start(session, server)
                    events = parse_events(await whole.read())
                    whole.close()
                finally:
                    redis_server.start()

        assert "X-Response-Id" not in headers and all(e[0] is None for e in first)
        assert left is not None and left.end is not None and left.end.error_type == "StreamCancelledError"
        assert int(left.last_id) < 60
        assert all(e[0] is None for e in events) and events[-1][1] == "response.completed"
        assert [d["sequence_number"] for _, _, d in events] == list(range(len(events)))
        assert [e["event"] for e in logs].count("rxllm.proxy.resumable_unavailable") == 1
