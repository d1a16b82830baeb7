"""Anthropic: recorded Messages API streams replayed over a real socket; request translation checked."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from providers.provider_support import MODES, SECRET, Long, ReplayServer, collect, rebuild, request_for, tool_calls

from rxllm.errors import APIConnectionError, ServiceUnavailableError
from rxllm.providers import ChatRequest, get_provider


@attrs.frozen
class Want:
    id: str
    model: str
    content: Any
    finish: str
    usage: tuple[int, int, int]
    reasoning: Any = None
    tools: tuple[tuple[str, str, Any], ...] = ()
    reasoning_tokens: int | None = None


HAIKU = "claude-haiku-4-5-20251001"

EXPECTED: dict[str, Want] = {
    "anthropic/text_basic.sse": Want("msg_01T8kTq7cYyYJeQ5DxcVUc6D", HAIKU, "Hello", "stop", (10, 4, 14)),
    "anthropic/tool_use_single.sse": Want(
        "msg_01AusY9WEbCaj3N7Tv5J4YjH",
        HAIKU,
        None,
        "tool_calls",
        (656, 74, 730),
        tools=(("toolu_018acGYLtfR52q9yDbWaEdQZ", "get_weather", {"location": "San Francisco, CA", "units": "f"}),),
    ),
    "anthropic/text_then_tool_use_parallel_2.sse": Want(
        "msg_013zKrzHmx2EAPhcF2gQKQ4k",
        "claude-sonnet-4-20250514",
        "I'll retrieve the secrets for both passwords you provided.",
        "tool_calls",
        (416, 109, 525),
        tools=(
            ("toolu_015cUijgET79LXjgeYQerN2h", "secret_retrieval_tool", {"password": "mellon"}),
            ("toolu_01XZTimPexA7h3EVKesnKt5T", "secret_retrieval_tool", {"password": "radiance"}),
        ),
    ),
    "anthropic/thinking_then_text.sse": Want(
        "msg_01RTjjePNDCQNgHXg3KeDPfv",
        "claude-sonnet-4-5-20250929",
        "- Captain\n- Scoop",
        "stop",
        (46, 84, 130),
        reasoning=Long(
            "The user wants two names for a pet pelican, and wants me to be brief.",
            "I'll pick two good ones and keep it very short.",
            218,
        ),
    ),
    "anthropic/thinking_then_tool_use_no_args.sse": Want(
        "msg_01JdU4xqNHXL9QCFWkwCDKGr",
        HAIKU,
        None,
        "tool_calls",
        (598, 92, 690),
        reasoning=Long(
            "The user wants me to:\n1. Use the fixed_version tool",
            "Let me first call the fixed_version tool to see what version it returns.",
            180,
        ),
        tools=(("toolu_01825dXWLSoJwCst1qTsiWdb", "fixed_version", {}),),
        reasoning_tokens=53,
    ),
    "anthropic/redacted_thinking.sse": Want(
        "msg_018XZkwvj9asBiffg3fXt88s",
        "claude-sonnet-4-5-20250929",
        Long(
            "I notice that you've sent what appears to be some kind of test string or command.",
            "How can I assist you today with a legitimate task or question?",
            359,
        ),
        "stop",
        (92, 189, 281),
    ),
    "anthropic/max_tokens.sse": Want(
        "msg_0135e9LyciVm4QrXrdNRjpNS",
        "claude-sonnet-4-20250514",
        Long("Here are all 50 U.S. states in alphabetical order:\n\n1. Alabama", "7. Connecticut\n8. Delaware\n9", 150),
        "length",
        (15, 50, 65),
    ),
    "anthropic/server_tool_web_search_citations.sse": Want(
        "msg_01TRpkkgb2QsnyjsGSVdRtGr",
        "claude-opus-4-1-20250805",
        Long(
            "Based on the search results, here's the current weather in San Francisco:\n\nToday (November 15, 2025)",
            "with a Level 1 storm system bringing periods of rain this weekend.",
            650,
        ),
        "stop",
        (10423, 341, 10764),
    ),
}


class TestRecordedStreams:
    @pytest.mark.parametrize("mode", MODES)
    @pytest.mark.parametrize("name", list(EXPECTED))
    async def test_rebuilt_response_matches(self, server: ReplayServer, name: str, mode: str) -> None:
        """Each recorded Anthropic body rebuilds to its text, reasoning, tool calls, finish reason and usage."""
        want = EXPECTED[name]
        server.replay(name, mode)

        response = await rebuild("anthropic", server.url)

        assert (response.id, response.model) == (want.id, want.model)
        assert len(response.choices) == 1
        message = response.choices[0].message
        assert message.content == want.content
        assert message.reasoning_content == want.reasoning
        assert tool_calls(response) == list(want.tools)
        assert response.choices[0].finish_reason == want.finish
        assert response.usage is not None
        usage = response.usage
        assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == want.usage
        if want.reasoning_tokens is not None:
            assert usage.reasoning_tokens == want.reasoning_tokens

    @pytest.mark.parametrize("mode", MODES)
    async def test_truncated_tool_json_and_missing_final_blank_line(self, server: ReplayServer, mode: str) -> None:
        """max_tokens mid tool-JSON: the cut arguments are kept as sent, finish is length, the stream ends cleanly."""
        server.replay("anthropic/tool_use_truncated_json_max_tokens.sse", mode)

        response = await rebuild("anthropic", server.url)

        message = response.choices[0].message
        assert message.content == (
            "I'll create a comprehensive tax guide for someone with multiple W2s and save it in a file called "
            "taxes.txt. Let me do that for you now."
        )
        assert message.tool_calls is not None
        [call] = message.tool_calls
        assert (call.id, call.function.name) == ("toolu_01EKqbqmZrGRXy18eN7m9kvY", "make_file")
        assert call.function.arguments == (
            '{"filename": "taxes.txt", "lines_of_text": [\n"# COMPREHENSIVE TAX GUIDE FOR INDIVIDUALS WITH '
            'MULTIPLE W-2s",\n"",\n"## INTRODUCTION",\n"",\n"Filing taxes'
        )
        assert response.choices[0].finish_reason == "length"
        assert response.usage is not None
        assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (450, 124)

    async def test_tool_blocks_get_sequential_indices(self, server: ReplayServer) -> None:
        """Content blocks 1 and 2 (after a text block) become tool-call indices 0 and 1."""
        server.replay("anthropic/text_then_tool_use_parallel_2.sse")

        chunks = await collect("anthropic", server.url)

        indices = [
            tc.index for c in chunks for ch in c.choices for tc in (ch.delta.tool_calls or ()) if tc.id is not None
        ]
        assert indices == [0, 1]

    async def test_signature_redacted_thinking_and_citations_are_kept(self, server: ReplayServer) -> None:
        """Signatures, redacted thinking data and citations travel in delta.extra."""
        server.replay("anthropic/thinking_then_text.sse")
        server.replay("anthropic/redacted_thinking.sse")
        server.replay("anthropic/server_tool_web_search_citations.sse")

        thinking = await collect("anthropic", server.url)
        redacted = await collect("anthropic", server.url)
        cited = await collect("anthropic", server.url)

        signatures = [b for c in thinking for b in c.choices[0].delta.extra.get("thinking_blocks", ())]
        assert len(signatures) == 1
        assert signatures[0]["signature"].startswith("EvoCCkYICxgCKkCY593DZILKPT3")
        blocks = [b for c in redacted for b in c.choices[0].delta.extra.get("thinking_blocks", ())]
        assert [b["type"] for b in blocks] == ["redacted_thinking", "redacted_thinking"]
        assert blocks[0]["data"].startswith("EqkECkYIBxgCKkA8AZ4noDfV5VcOJe")
        citations = [x for c in cited for x in c.choices[0].delta.extra.get("citations", ())]
        assert len(citations) == 5
        assert citations[0]["url"] == "https://www.wunderground.com/hourly/us/ca/san-francisco"

    async def test_server_tool_blocks_are_not_client_tool_calls(self, server: ReplayServer) -> None:
        """web_search server_tool_use is run by Anthropic: no tool-call delta is emitted for it."""
        server.replay("anthropic/server_tool_web_search_citations.sse")

        chunks = await collect("anthropic", server.url)

        assert not any(ch.delta.tool_calls for c in chunks for ch in c.choices)


def _synthetic(*events: tuple[str, str]) -> bytes:
    return b"".join(f"event: {name}\ndata: {data}\n\n".encode() for name, data in events)


_START = (
    "message_start",
    '{"type":"message_start","message":{"id":"msg_x","model":"claude-x","usage":{"input_tokens":5,"output_tokens":1}}}',
)
_TEXT = (
    "content_block_delta",
    '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}',
)


class TestStreamEnds:
    async def test_overloaded_error_event_is_service_unavailable(self, server: ReplayServer) -> None:
        """`event: error` with overloaded_error (synthetic, as documented) raises ServiceUnavailableError."""
        overloaded = (
            "error",
            '{"type":"error","error":{"details":null,"type":"overloaded_error","message":"Overloaded"},'
            '"request_id":"req_1" }',
        )
        server.reply(_synthetic(_START, _TEXT, overloaded))
        seen = []

        with pytest.raises(ServiceUnavailableError, match="Overloaded") as info:
            async for chunk in get_provider("anthropic").stream(request_for("anthropic", server.url)):
                seen.append(chunk)

        assert info.value.status_code == 529
        assert [c.choices[0].delta.content for c in seen] == ["", "Hi"]

    async def test_body_without_message_stop_is_a_connection_error(self, server: ReplayServer) -> None:
        """A body that ends after a text delta, with no message_stop, is reported as cut."""
        server.reply(_synthetic(_START, _TEXT))

        with pytest.raises(APIConnectionError, match="message_stop"):
            await collect("anthropic", server.url)

    async def test_unknown_events_and_blocks_are_skipped(self, server: ReplayServer) -> None:
        """Events and block types this version does not know do not break the stream."""
        server.reply(
            _synthetic(
                _START,
                ("future_event", '{"type":"future_event","x":1}'),
                (
                    "content_block_start",
                    '{"type":"content_block_start","index":0,"content_block":{"type":"hologram","h":1}}',
                ),
                ("content_block_delta", '{"type":"content_block_delta","index":0,"delta":{"type":"hologram_delta"}}'),
                _TEXT,
                (
                    "message_delta",
                    '{"type":"message_delta","delta":{"stop_reason":"refusal"},"usage":{"output_tokens":3}}',
                ),
                ("message_stop", '{"type":"message_stop"}'),
            )
        )

        response = await rebuild("anthropic", server.url)

        assert response.choices[0].message.content == "Hi"
        assert response.choices[0].finish_reason == "content_filter"


class TestRequestShape:
    async def test_conversation_translation(self, server: ReplayServer) -> None:
        """System, image, assistant tool call and tool result become Anthropic blocks; headers and path are right."""
        server.replay("anthropic/text_basic.sse")
        request = ChatRequest(
            model="claude-sonnet-4-5",
            provider="anthropic",
            messages=(
                {"role": "system", "content": "You are terse."},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this, and the weather in Paris?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                    ],
                },
                {
                    "role": "assistant",
                    "content": "Checking.",
                    "tool_calls": [
                        {
                            "id": "toolu_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "toolu_1", "content": '{"temp_c": 21}'},
            ),
            params={
                "tools": [
                    {
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "description": "Weather for a city",
                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                        },
                    }
                ],
                "tool_choice": "required",
                "temperature": 0.5,
                "stop": "END",
            },
            api_base=server.url,
            api_key=SECRET,
        )

        [c async for c in get_provider("anthropic").stream(request)]

        seen = server.requests[0]
        assert seen.path == "/v1/messages"
        assert seen.headers["x-api-key"] == SECRET
        assert seen.headers["anthropic-version"] == "2023-06-01"
        assert "Authorization" not in seen.headers
        assert seen.json == {
            "model": "claude-sonnet-4-5",
            "system": "You are terse.",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this, and the weather in Paris?"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                        },
                    ],
                },
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "Checking."},
                        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                    ],
                },
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": '{"temp_c": 21}'}],
                },
            ],
            "max_tokens": 4096,
            "temperature": 0.5,
            "stop_sequences": ["END"],
            "tools": [
                {
                    "name": "get_weather",
                    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
                    "description": "Weather for a city",
                }
            ],
            "tool_choice": {"type": "any"},
            "stream": True,
        }

    async def test_thinking_and_max_tokens(self, server: ReplayServer) -> None:
        """`thinking` is passed through and max_tokens is raised above its budget."""
        server.replay("anthropic/thinking_then_text.sse")

        await collect("anthropic", server.url, thinking={"type": "enabled", "budget_tokens": 8000}, max_tokens=1000)

        body = server.requests[0].json
        assert body["thinking"] == {"type": "enabled", "budget_tokens": 8000}
        assert body["max_tokens"] == 8001

    @pytest.mark.parametrize(
        ("choice", "parallel", "expected"),
        [
            ("auto", None, {"type": "auto"}),
            ("none", None, {"type": "none"}),
            ({"type": "function", "function": {"name": "f"}}, None, {"type": "tool", "name": "f"}),
            (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ],
    )
    def test_tool_choice_translation(self, choice: Any, parallel: Any, expected: dict[str, Any]) -> None:
        """OpenAI tool_choice values map to Anthropic's, and parallel_tool_calls=False disables parallel use."""
        from rxllm.providers.anthropic import translate_request

        params = {"tool_choice": choice, "parallel_tool_calls": parallel}
        request = ChatRequest(
            model="m", provider="anthropic", messages=({"role": "user", "content": "x"},), params=params
        )

        assert translate_request(request)["tool_choice"] == expected

    async def test_api_base_with_v1_is_not_doubled(self, server: ReplayServer) -> None:
        """An api_base ending in /v1 posts to /v1/messages, not /v1/v1/messages."""
        server.replay("anthropic/text_basic.sse")

        await collect("anthropic", server.url + "/v1")

        assert server.requests[0].path == "/v1/messages"
