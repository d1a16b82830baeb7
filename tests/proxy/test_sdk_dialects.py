"""The Responses, Messages and UI message stream dialects through a running proxy, as the real SDKs see them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import anthropic
import openai
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from providers.provider_support import ReplayServer

from rxllm.providers._http import aclose_sessions
from tests.proxy.proxy_support import (
    MASTER_KEY,
    UPSTREAM_KEY,
    ProxyServer,
    client,
    config,
    mock_entry,
    running,
    upstream,
    upstream_entry,
)

TOOL_CALLS = [{"id": "call_1", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]
TOOLS_RESPONSES = [{"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}]
TOOLS_MESSAGES = [{"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}]
USER = [{"role": "user", "content": "hello proxy"}]


_CLIENTS: list[Any] = []


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    """Close every SDK client a test made (an unclosed one is closed later, on a dead loop)."""
    yield
    while _CLIENTS:
        await _CLIENTS.pop().close()


def gpt(server: ProxyServer) -> openai.AsyncOpenAI:
    """The official OpenAI client pointed at the proxy (closed after the test)."""
    made = client(server)
    _CLIENTS.append(made)
    return made


def claude(server: ProxyServer, api_key: str = "unused") -> anthropic.AsyncAnthropic:
    """The official Anthropic client pointed at the proxy, with retries off (closed after the test)."""
    made = anthropic.AsyncAnthropic(base_url=server.make_url(""), api_key=api_key, max_retries=0, timeout=10)
    _CLIENTS.append(made)
    return made


@asynccontextmanager
async def replaying(name: str) -> AsyncIterator[ReplayServer]:
    """A local server replaying one recorded provider body (the upstream of a deployment)."""
    replay = ReplayServer()
    replay.replay(name)
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", replay.handle)
    server = TestServer(app)
    await server.start_server()
    replay.url = str(server.make_url("")).rstrip("/")
    try:
        yield replay
    finally:
        replay.release.set()
        await aclose_sessions()
        await server.close()


def recorded_entry(name: str, provider: str, replay: ReplayServer) -> dict[str, Any]:
    """A model_list entry whose upstream is the replay server, spoken to by ``provider``."""
    return {
        "model_name": name,
        "litellm_params": {"model": f"{provider}/recorded", "api_base": replay.url, "api_key": "sk-recorded"},
    }


RECORDED = [
    ("openai", "openai/tool_calls_parallel_2.sse"),
    ("anthropic", "anthropic/thinking_then_text.sse"),
    ("anthropic", "anthropic/text_then_tool_use_parallel_2.sse"),
    ("gemini", "gemini/function_calls_parallel_2.sse"),
    ("gemini", "gemini/thinking_thought_parts.sse"),
]


class TestResponses:
    async def test_create_without_stream_returns_the_response_object(self) -> None:
        """responses.create() answers one response with the text and the client's model name."""
        async with running(config(mock_entry("m", mock_response="one two three"))) as server:
            response = await gpt(server).responses.create(model="m", input="hi")

        assert response.output_text == "one two three"
        assert response.model == "m"
        assert response.status == "completed"
        assert response.usage is not None and response.usage.output_tokens > 0

    async def test_create_with_stream_yields_typed_events(self) -> None:
        """responses.create(stream=True) yields the Responses events, numbered in order."""
        async with running(config(mock_entry("m", mock_response="a b c"))) as server:
            stream = await gpt(server).responses.create(model="m", input="hi", stream=True)
            seen = [event async for event in stream]

        assert seen[0].type == "response.created"
        assert seen[-1].type == "response.completed"
        assert [e.sequence_number for e in seen] == list(range(len(seen)))
        assert "".join(e.delta for e in seen if e.type == "response.output_text.delta") == "a b c"

    async def test_stream_helper_gets_the_final_response(self) -> None:
        """responses.stream() and get_final_response() work against the proxy."""
        async with (
            running(config(mock_entry("m", mock_response="streamed words"))) as server,
            gpt(server).responses.stream(model="m", input="hi", instructions="x") as stream,
        ):
            final = await stream.get_final_response()

        assert final.output_text == "streamed words"
        assert final.instructions == "x"

    async def test_function_calls_and_their_outputs_round_trip(self) -> None:
        """A function_call answer, sent back with its output, reaches the upstream as tool messages."""
        async with upstream(count=2) as up:
            cfg = config(mock_entry("tools", mock_tool_calls=TOOL_CALLS, mock_response=""), upstream_entry("up", up))
            async with running(cfg) as server:
                first = await gpt(server).responses.create(model="tools", input="weather?", tools=TOOLS_RESPONSES)
                call = next(item for item in first.output if item.type == "function_call")
                items: list[Any] = [
                    {"role": "user", "content": "weather?"},
                    {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
                    {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
                ]
                second = await gpt(server).responses.create(model="up", input=items, tools=TOOLS_RESPONSES)

        assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Paris"})
        sent = up.requests[0]["messages"]
        assert sent[1]["tool_calls"][0]["id"] == call.call_id
        assert sent[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "sunny"}
        assert up.requests[0]["tools"][0]["function"]["name"] == "get_weather"
        assert second.output_text == "tok0 tok1 "

    async def test_previous_response_id_is_a_400_naming_it(self) -> None:
        """previous_response_id is refused (no store) with OpenAI's error shape naming the field."""
        async with running(config(mock_entry("m"))) as server:
            with pytest.raises(openai.BadRequestError) as info:
                await gpt(server).responses.create(model="m", input="hi", previous_response_id="resp_1")

        assert info.value.status_code == 400
        assert isinstance(info.value.body, dict)
        assert info.value.body["param"] == "previous_response_id"

    async def test_a_mid_stream_failure_ends_with_response_failed(self) -> None:
        """An upstream failure after the first chunk ends with error and response.failed, never completed."""
        async with running(config(mock_entry("m", mock_response="w " * 20, mock_fail_after=3))) as server:
            stream = await gpt(server).responses.create(model="m", input="hi", stream=True)
            kinds = [event.type async for event in stream]

        assert kinds[-2:] == ["error", "response.failed"]
        assert "response.completed" not in kinds

    async def test_client_leaving_disposes_the_upstream(self) -> None:
        """Closing a Responses stream mid-way closes the upstream request."""
        async with upstream(count=200, delay=0.05) as up, running(config(upstream_entry("slow", up))) as server:
            stream = await gpt(server).responses.create(model="slow", input="hi", stream=True)
            async for event in stream:
                if event.type == "response.output_text.delta":
                    break
            await stream.close()
            await asyncio.wait_for(up.disconnected.wait(), timeout=30.0)  # a hang guard, not a timing bound

        assert up.sent < 200

    @pytest.mark.parametrize(("provider", "name"), RECORDED)
    async def test_recorded_upstreams(self, provider: str, name: str) -> None:
        """Recorded OpenAI-compatible, Anthropic and Gemini streams come out as Responses the SDK accumulates."""
        async with (
            replaying(name) as replay,
            running(config(recorded_entry("rec", provider, replay))) as server,
            gpt(server).responses.stream(model="rec", input="hi") as stream,
        ):
            final = await stream.get_final_response()

        assert final.model == "rec"
        assert final.status == "completed"
        kinds = {item.type for item in final.output}
        assert kinds <= {"message", "function_call", "reasoning"} and kinds
        for item in final.output:
            if item.type == "function_call":
                assert isinstance(json.loads(item.arguments), dict)


class TestMessages:
    async def test_create_returns_the_message(self) -> None:
        """messages.create() answers one Anthropic message with the client's model name."""
        async with running(config(mock_entry("claude", mock_response="hello there"))) as server:
            message = await claude(server).messages.create(model="claude", max_tokens=50, messages=USER)

        assert message.content[0].type == "text"
        assert message.content[0].text == "hello there"
        assert message.model == "claude"
        assert message.stop_reason == "end_turn"

    async def test_stream_text_and_final_message(self) -> None:
        """messages.stream() yields text_stream pieces and get_final_message() the whole message."""
        async with (
            running(config(mock_entry("claude", mock_response="one two three"))) as server,
            claude(server).messages.stream(model="claude", max_tokens=50, messages=USER) as stream,
        ):
            text = [t async for t in stream.text_stream]
            final = await stream.get_final_message()

        assert "".join(text) == "one two three"
        assert final.usage.output_tokens > 0

    async def test_tool_use_round_trip(self) -> None:
        """A tool_use answer, sent back with its tool_result, reaches the upstream as tool messages."""
        async with upstream(count=2) as up:
            cfg = config(mock_entry("tools", mock_tool_calls=TOOL_CALLS, mock_response=""), upstream_entry("up", up))
            async with running(cfg) as server:
                first = await claude(server).messages.create(
                    model="tools", max_tokens=50, messages=USER, tools=TOOLS_MESSAGES
                )
                tool = next(block for block in first.content if block.type == "tool_use")
                history: list[Any] = [
                    *USER,
                    {"role": "assistant", "content": [tool.model_dump(include={"type", "id", "name", "input"})]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool.id, "content": "sunny"}]},
                ]
                second = await claude(server).messages.create(
                    model="up", max_tokens=50, messages=history, tools=TOOLS_MESSAGES
                )

        assert (tool.name, tool.input, first.stop_reason) == ("get_weather", {"city": "Paris"}, "tool_use")
        sent = up.requests[0]["messages"]
        assert sent[1]["tool_calls"][0]["id"] == tool.id
        assert sent[2] == {"role": "tool", "tool_call_id": tool.id, "content": "sunny"}
        assert second.content[0].type == "text"

    async def test_errors_use_anthropics_shape(self) -> None:
        """A request without messages is a 400 in Anthropic's error shape, which the SDK raises."""
        async with running(config(mock_entry("claude"))) as server:
            with pytest.raises(anthropic.BadRequestError) as info:
                await claude(server).messages.create(model="claude", max_tokens=5, messages=[])
            async with (
                aiohttp.ClientSession() as session,
                session.post(server.make_url("/v1/messages"), json={"model": "claude"}) as resp,
            ):
                raw = await resp.json()

        assert info.value.status_code == 400
        assert info.value.body == {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": "messages: at least one message is required"},
        }
        assert raw == {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": "max_tokens: field required"},
        }

    async def test_a_mid_stream_failure_raises_in_the_sdk(self) -> None:
        """An upstream failure after the first chunk is an error event; the SDK raises it."""
        async with running(config(mock_entry("claude", mock_response="w " * 20, mock_fail_after=3))) as server:
            with pytest.raises(anthropic.APIStatusError) as info:
                async with claude(server).messages.stream(model="claude", max_tokens=50, messages=USER) as stream:
                    async for _ in stream:
                        pass

        assert "api_error" in str(info.value)

    async def test_client_leaving_disposes_the_upstream(self) -> None:
        """Closing a Messages stream mid-way closes the upstream request."""
        async with (
            upstream(count=200, delay=0.05) as up,
            running(config(upstream_entry("slow", up))) as server,
        ):
            async with claude(server).messages.stream(model="slow", max_tokens=50, messages=USER) as stream:
                async for _ in stream.text_stream:
                    break
            await asyncio.wait_for(up.disconnected.wait(), timeout=30.0)  # a hang guard, not a timing bound

        assert up.sent < 200

    async def test_thinking_blocks_keep_their_signatures(self) -> None:
        """A recorded Anthropic thinking stream arrives with its thinking block and signature intact."""
        async with (
            replaying("anthropic/thinking_then_text.sse") as replay,
            running(config(recorded_entry("rec", "anthropic", replay))) as server,
            claude(server).messages.stream(model="rec", max_tokens=50, messages=USER) as stream,
        ):
            final = await stream.get_final_message()

        thinking = final.content[0]
        assert thinking.type == "thinking"
        assert thinking.thinking and thinking.signature
        assert final.content[1].type == "text"
        assert replay.requests[0].json["messages"][0]["role"] == "user"

    @pytest.mark.parametrize(("provider", "name"), RECORDED)
    async def test_recorded_upstreams(self, provider: str, name: str) -> None:
        """Recorded OpenAI-compatible, Anthropic and Gemini streams come out as Messages the SDK accumulates."""
        async with (
            replaying(name) as replay,
            running(config(recorded_entry("rec", provider, replay))) as server,
            claude(server).messages.stream(model="rec", max_tokens=50, messages=USER) as stream,
        ):
            final = await stream.get_final_message()

        assert final.model == "rec"
        kinds = [block.type for block in final.content]
        assert set(kinds) <= {"text", "thinking", "tool_use"} and kinds
        assert final.stop_reason == ("tool_use" if "tool_use" in kinds else "end_turn")


class TestUIMessageStream:
    async def test_use_chat_request_streams_ui_parts(self) -> None:
        """POST /api/chat with a useChat body answers the v1 UI message stream."""
        body = {"id": "c", "messages": [{"id": "1", "role": "user", "parts": [{"type": "text", "text": "hi there"}]}]}
        async with (
            running(config(mock_entry("echo"))) as server,
            aiohttp.ClientSession() as session,
            session.post(server.make_url("/api/chat?model=echo"), json=body) as resp,
        ):
            header = resp.headers.get("x-vercel-ai-ui-message-stream")
            raw = await resp.read()

        parts = [line[6:] for line in raw.decode().split("\n\n") if line.startswith("data: ")]
        assert header == "v1"
        assert parts[-1] == "[DONE]"
        decoded = [orjson.loads(p) for p in parts[:-1]]
        assert [p["type"] for p in decoded][:3] == ["start", "start-step", "text-start"]
        assert decoded[-1] == {"type": "finish"}


class TestKeepalivesAndAuth:
    async def test_messages_keepalives_are_ping_events_the_sdk_skips(self) -> None:
        """A silent Messages stream gets Anthropic ping events; the SDK still reads the whole answer."""
        cfg = config(mock_entry("claude", mock_response="a b", mock_delay=0.5), keepalive_interval=0.15)
        body = {"model": "claude", "max_tokens": 50, "messages": USER, "stream": True}
        async with running(cfg) as server:
            async with (
                aiohttp.ClientSession() as session,
                session.post(server.make_url("/v1/messages"), json=body) as r,
            ):
                raw = await r.read()
            async with claude(server).messages.stream(model="claude", max_tokens=50, messages=USER) as stream:
                text = "".join([t async for t in stream.text_stream])

        assert raw.count(b'event: ping\ndata: {"type":"ping"}\n\n') >= 2  # one after message_start, then keepalives
        assert b": ping" not in raw.split(b"\n")  # no SSE comments: Anthropic's dialect uses its ping event
        assert text == "a b"

    async def test_responses_keepalives_are_comments_the_sdk_ignores(self) -> None:
        """A silent Responses stream gets ': ping' comments; the SDK still accumulates the response."""
        cfg = config(mock_entry("m", mock_response="a b", mock_delay=0.5), keepalive_interval=0.15)
        body = {"model": "m", "input": "hi", "stream": True}
        async with running(cfg) as server:
            async with (
                aiohttp.ClientSession() as session,
                session.post(server.make_url("/v1/responses"), json=body) as r,
            ):
                raw = await r.read()
            async with gpt(server).responses.stream(model="m", input="hi") as stream:
                final = await stream.get_final_response()

        assert b": ping\n\n" in raw
        assert final.output_text == "a b"

    async def test_the_anthropic_sdk_authenticates_with_its_x_api_key_header(self) -> None:
        """With a master key, the Anthropic SDK's x-api-key is accepted; a wrong key is Anthropic's 401."""
        async with running(config(mock_entry("claude", mock_response="ok"), master_key=MASTER_KEY)) as server:
            message = await claude(server, MASTER_KEY).messages.create(model="claude", max_tokens=5, messages=USER)
            bad = claude(server, "sk-wrong")
            with pytest.raises(anthropic.AuthenticationError) as info:
                await bad.messages.create(model="claude", max_tokens=5, messages=USER)

        assert message.content[0].type == "text"
        assert isinstance(info.value.body, dict)
        assert info.value.body["type"] == "error"
        assert info.value.body["error"]["type"] == "authentication_error"
        assert MASTER_KEY not in str(info.value.body)


class TestUIMessageStreamErrors:
    async def test_a_mid_stream_failure_is_an_error_part_without_finish(self) -> None:
        """An upstream failure after the first chunk ends with an error part and [DONE], no finish."""
        cfg = config(mock_entry("m", mock_response="w " * 20, mock_fail_after=3))
        body = {"model": "m", "messages": [{"id": "1", "role": "user", "parts": [{"type": "text", "text": "x"}]}]}
        async with (
            running(cfg) as server,
            aiohttp.ClientSession() as session,
            session.post(server.make_url("/api/chat"), json=body) as resp,
        ):
            raw = (await resp.read()).decode()

        parts = [block[len("data: ") :] for block in raw.split("\n\n") if block.startswith("data: ")]
        assert parts[-1] == "[DONE]"
        assert orjson.loads(parts[-2])["type"] == "error"
        assert all(orjson.loads(p)["type"] != "finish" for p in parts[:-1])

    async def test_without_a_model_the_only_configured_one_answers(self) -> None:
        """With no model in the body or the query, a proxy serving one model uses it."""
        body = {"messages": [{"id": "1", "role": "user", "parts": [{"type": "text", "text": "only one"}]}]}
        async with (
            running(config(mock_entry("solo", mock_response="from solo"))) as server,
            aiohttp.ClientSession() as session,
            session.post(server.make_url("/api/chat"), json=body) as resp,
        ):
            raw = await resp.text()

        deltas = [orjson.loads(b[6:]) for b in raw.split("\n\n") if b.startswith('data: {"type":"text-delta"')]
        assert "".join(d["delta"] for d in deltas) == "from solo"

    async def test_a_request_without_a_model_is_a_400_naming_it(self) -> None:
        """No model in the body or the query, and several models configured: a 400 whose param is model."""
        body = {"messages": [{"id": "1", "role": "user", "parts": [{"type": "text", "text": "x"}]}]}
        async with (
            running(config(mock_entry("m"), mock_entry("n"))) as server,
            aiohttp.ClientSession() as session,
            session.post(server.make_url("/api/chat"), json=body) as resp,
        ):
            status, error = resp.status, await resp.json()

        assert status == 400
        assert error["error"]["param"] == "model"

    async def test_client_leaving_disposes_the_upstream(self) -> None:
        """Closing a UI message stream mid-way closes the upstream request."""
        body = {"model": "slow", "messages": [{"id": "1", "role": "user", "parts": [{"type": "text", "text": "x"}]}]}
        async with upstream(count=200, delay=0.05) as up, running(config(upstream_entry("slow", up))) as server:
            async with aiohttp.ClientSession() as session:
                resp = await session.post(server.make_url("/api/chat"), json=body)
                first = await resp.content.readuntil(b"text-delta")
                resp.close()
            await asyncio.wait_for(up.disconnected.wait(), timeout=30.0)  # a hang guard, not a timing bound

        assert b'"type":"start"' in first
        assert up.sent < 200


class TestResponseStore:
    async def test_previous_response_id_continues_a_stored_conversation(self) -> None:
        """With responses_store_size, previous_response_id sends the earlier turn upstream again."""
        async with (
            upstream(count=2) as up,
            running(config(upstream_entry("up", up), responses_store_size=10)) as server,
        ):
            first = await gpt(server).responses.create(model="up", input="first question")
            second = await gpt(server).responses.create(model="up", input="second", previous_response_id=first.id)
            fetched = await gpt(server).responses.retrieve(first.id)

        sent = up.requests[1]["messages"]
        assert [(m["role"], m["content"]) for m in sent] == [
            ("user", "first question"),
            ("assistant", "tok0 tok1 "),
            ("user", "second"),
        ]
        assert first.store is True
        assert second.previous_response_id == first.id
        assert fetched.id == first.id and fetched.output_text == "tok0 tok1 "

    async def test_streamed_answers_are_stored_and_item_references_resolve(self) -> None:
        """A streamed answer is kept too; an item_reference to its message resolves upstream."""
        async with (
            upstream(count=1) as up,
            running(config(upstream_entry("up", up), responses_store_size=10)) as server,
        ):
            async with gpt(server).responses.stream(model="up", input="q") as stream:
                first = await stream.get_final_response()
            items: list[Any] = [
                {"role": "user", "content": "q"},
                {"type": "item_reference", "id": first.output[0].id},
                {"role": "user", "content": "again"},
            ]
            await gpt(server).responses.create(model="up", input=items)

        assert [m["content"] for m in up.requests[1]["messages"]] == ["q", "tok0 ", "again"]

    async def test_store_false_is_not_kept_and_unknown_ids_are_404(self) -> None:
        """store: false answers are not kept; GET of an unknown id is OpenAI's 404."""
        async with running(config(mock_entry("m", mock_response="x"), responses_store_size=10)) as server:
            answer = await gpt(server).responses.create(model="m", input="hi", store=False)
            with pytest.raises(openai.NotFoundError):
                await gpt(server).responses.retrieve(answer.id)
            with pytest.raises(openai.BadRequestError) as info:
                await gpt(server).responses.create(model="m", input="hi", previous_response_id=answer.id)

        assert answer.store is False
        assert isinstance(info.value.body, dict) and info.value.body["param"] == "previous_response_id"


class TestFailover:
    async def test_responses_stream_fails_over_before_its_first_chunk(self) -> None:
        """A deployment answering 500 is skipped: the Responses stream comes from the next one."""
        async with upstream() as broken, upstream(count=2) as healthy:
            broken.fail_status = 500
            cfg = config(upstream_entry("gpt", broken), upstream_entry("gpt", healthy))
            async with running(cfg) as server, gpt(server).responses.stream(model="gpt", input="hi") as stream:
                final = await stream.get_final_response()

        assert final.output_text == "tok0 tok1 "
        assert (len(broken.requests), len(healthy.requests)) == (1, 1)

    async def test_messages_stream_fails_over_before_its_first_chunk(self) -> None:
        """A deployment answering 500 is skipped: the Messages stream comes from the next one."""
        async with upstream() as broken, upstream(count=2) as healthy:
            broken.fail_status = 500
            cfg = config(upstream_entry("c", broken), upstream_entry("c", healthy))
            async with (
                running(cfg) as server,
                claude(server).messages.stream(model="c", max_tokens=50, messages=USER) as stream,
            ):
                final = await stream.get_final_message()

        assert final.content[0].type == "text" and final.content[0].text == "tok0 tok1 "
        assert (len(broken.requests), len(healthy.requests)) == (1, 1)

    async def test_when_every_deployment_fails_messages_get_anthropics_error_shape(self) -> None:
        """With no healthy deployment the Anthropic SDK raises the upstream's status in Anthropic's shape."""
        async with upstream() as up:
            up.fail_status = 503
            async with running(config(upstream_entry("c", up))) as server:
                with pytest.raises(anthropic.APIStatusError) as info:
                    await claude(server).messages.create(model="c", max_tokens=50, messages=USER)

        assert info.value.status_code == 503
        assert isinstance(info.value.body, dict)
        assert info.value.body["error"]["type"] == "overloaded_error"
        assert UPSTREAM_KEY not in str(info.value.body)
