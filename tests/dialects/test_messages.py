"""The Messages dialect: its translator, and its events as the official ``anthropic`` SDK reads them."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter
from strategies import content_chunk, finish_chunk, make_chunk, tool_chunk, tool_fragment

from rxllm.dialects.messages import MessagesEncoder, error_body, message_object, translate_request
from rxllm.errors import BadRequestError, ServiceUnavailableError
from rxllm.types import ChatCompletionChunk
from tests.dialects.dialect_support import BodyServer, encode_all, events

USAGE = {
    "prompt_tokens": 30,
    "completion_tokens": 7,
    "total_tokens": 37,
    "prompt_tokens_details": {"cached_tokens": 10, "cache_creation_tokens": 5},
}
USER = [{"role": "user", "content": "hi"}]


def thinking_chunks(text: str, signature: str) -> list[ChatCompletionChunk]:
    """Thinking text then its signature, as rxllm's Anthropic provider emits them."""
    return [
        make_chunk({"index": 0, "delta": {"reasoning_content": text}, "finish_reason": None}),
        make_chunk(
            {
                "index": 0,
                "delta": {"thinking_blocks": [{"type": "thinking", "signature": signature}]},
                "finish_reason": None,
            }
        ),
    ]


def tool_stream() -> list[ChatCompletionChunk]:
    """Text, then one tool call in fragments, then the finish and usage."""
    return [
        content_chunk("Checking."),
        tool_chunk(tool_fragment(0, "toolu_1", "get_weather", "", "function")),
        tool_chunk(tool_fragment(0, arguments='{"city": ')),
        tool_chunk(tool_fragment(0, arguments='"Paris"}')),
        finish_chunk("tool_calls"),
        make_chunk(usage=USAGE),
    ]


class TestTranslateRequest:
    def test_system_blocks_and_tool_round_trip(self) -> None:
        """system, tool_use and tool_result blocks become chat messages in order."""
        body = {
            "model": "claude",
            "max_tokens": 100,
            "system": [{"type": "text", "text": "be brief"}],
            "messages": [
                {"role": "user", "content": "weather?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "hmm", "signature": "sig=="},
                        {"type": "text", "text": "Checking."},
                        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                        {"type": "text", "text": "thanks"},
                    ],
                },
            ],
        }
        call = translate_request(body)

        assert call.messages[0] == {"role": "system", "content": "be brief"}
        assert call.messages[1] == {"role": "user", "content": "weather?"}
        assistant = call.messages[2]
        assert assistant["content"] == "Checking."
        assert assistant["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
        assert assistant["thinking_blocks"] == [{"type": "thinking", "thinking": "hmm", "signature": "sig=="}]
        assert call.messages[3] == {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"}
        assert call.messages[4] == {"role": "user", "content": [{"type": "text", "text": "thanks"}]}

    def test_parameters_map_to_chat_completions(self) -> None:
        """tools, tool_choice, thinking, stop_sequences and metadata take their chat names."""
        body = {
            "model": "claude",
            "max_tokens": 2048,
            "messages": USER,
            "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "stop_sequences": ["END"],
            "metadata": {"user_id": "u-1"},
            "temperature": 0.2,
            "top_k": 5,
            "stream": True,
        }
        call = translate_request(body)

        assert call.stream is True
        assert call.params["tools"] == [
            {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}, "description": "d"}}
        ]
        assert call.params["tool_choice"] == "required"
        assert call.params["parallel_tool_calls"] is False
        assert call.params["thinking"] == {"type": "enabled", "budget_tokens": 1024}
        assert call.params["stop"] == ["END"]
        assert call.params["user"] == "u-1"
        assert (call.params["max_tokens"], call.params["temperature"], call.params["top_k"]) == (2048, 0.2, 5)

    def test_images_become_image_url_parts(self) -> None:
        """base64 and url image blocks become chat image_url parts."""
        content = [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}},
            {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
        ]
        call = translate_request({"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": content}]})

        urls = [p["image_url"]["url"] for p in call.messages[0]["content"]]
        assert urls == ["data:image/png;base64,AAA", "https://x/y.png"]

    @pytest.mark.parametrize(
        ("body", "param"),
        [
            ({"max_tokens": 5, "messages": USER}, "model"),
            ({"model": "c", "messages": USER}, "max_tokens"),
            ({"model": "c", "max_tokens": "5", "messages": USER}, "max_tokens"),
            ({"model": "c", "max_tokens": 5}, "messages"),
            ({"model": "c", "max_tokens": 5, "messages": []}, "messages"),
            ({"model": "c", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}, "messages.0.role"),
            (
                {"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "tool_result"}]}]},
                "messages.0.content.0.tool_use_id",
            ),
            ({"model": "c", "max_tokens": 5, "messages": USER, "tools": [{"name": "f"}]}, "tools.0.input_schema"),
            ({"model": "c", "max_tokens": 5, "messages": USER, "tool_choice": {"type": "x"}}, "tool_choice.type"),
            (
                {"model": "c", "max_tokens": 5, "messages": USER, "thinking": {"type": "enabled"}},
                "thinking.budget_tokens",
            ),
        ],
    )
    def test_invalid_fields_are_named(self, body: dict[str, Any], param: str) -> None:
        """Each malformed request is a typed 400 whose param names the field at fault."""
        with pytest.raises(BadRequestError) as info:
            translate_request(body)

        assert info.value.status_code == 400
        assert getattr(info.value, "param", None) == param

    def test_error_body_is_anthropics_shape(self) -> None:
        """Errors render as {"type": "error", "error": {"type", "message"}} with Anthropic's type names."""
        body = error_body(ServiceUnavailableError("busy", llm_provider="anthropic"))

        assert body == {"type": "error", "error": {"type": "overloaded_error", "message": "anthropic error: busy"}}
        assert error_body(BadRequestError("bad"))["error"]["type"] == "invalid_request_error"


class TestEncoderWithTheSDK:
    async def test_text_stream_and_final_message(self, body_server: BodyServer) -> None:
        """messages.stream() gives text_stream deltas and get_final_message() the message and usage."""
        chunks = [content_chunk("Hel"), content_chunk("lo"), finish_chunk("stop"), make_chunk(usage=USAGE)]
        body_server.queue(encode_all(MessagesEncoder(model="claude-asked"), chunks))

        async with body_server.anthropic().messages.stream(model="c", max_tokens=10, messages=USER) as stream:
            texts = [t async for t in stream.text_stream]
            final = await stream.get_final_message()

        assert texts == ["Hel", "lo"]
        assert final.content[0].type == "text"
        assert final.content[0].text == "Hello"
        assert final.model == "claude-asked"
        assert final.stop_reason == "end_turn"
        assert (final.usage.input_tokens, final.usage.output_tokens) == (15, 7)
        assert (final.usage.cache_read_input_tokens, final.usage.cache_creation_input_tokens) == (10, 5)

    async def test_tool_use_block_accumulates_its_input(self, body_server: BodyServer) -> None:
        """A tool call streams as a tool_use block whose input_json_delta pieces the SDK parses."""
        body_server.queue(encode_all(MessagesEncoder(), tool_stream()))

        async with body_server.anthropic().messages.stream(model="c", max_tokens=10, messages=USER) as stream:
            final = await stream.get_final_message()

        assert [b.type for b in final.content] == ["text", "tool_use"]
        tool = final.content[1]
        assert tool.type == "tool_use"
        assert (tool.id, tool.name, tool.input) == ("toolu_1", "get_weather", {"city": "Paris"})
        assert final.stop_reason == "tool_use"

    async def test_thinking_block_carries_its_signature(self, body_server: BodyServer) -> None:
        """Reasoning becomes a thinking block with thinking_delta, then signature_delta."""
        chunks = [*thinking_chunks("Let me think.", "EqQBCgIYAh=="), content_chunk("42"), finish_chunk()]
        body_server.queue(encode_all(MessagesEncoder(), chunks))

        async with body_server.anthropic().messages.stream(model="c", max_tokens=10, messages=USER) as stream:
            kinds = [e.type async for e in stream]
            final = await stream.get_final_message()

        thinking = final.content[0]
        assert thinking.type == "thinking"
        assert (thinking.thinking, thinking.signature) == ("Let me think.", "EqQBCgIYAh==")
        assert final.content[1].type == "text"
        assert "signature" in kinds

    async def test_a_failure_raises_in_the_sdk_and_sends_no_message_stop(self, body_server: BodyServer) -> None:
        """A mid-stream error is an Anthropic error event: the SDK raises, and no message_stop is sent."""
        body = encode_all(MessagesEncoder(), [content_chunk("par")], error=ServiceUnavailableError("overloaded"))
        body_server.queue(body)

        with pytest.raises(anthropic.APIStatusError) as info:
            async with body_server.anthropic().messages.stream(model="c", max_tokens=10, messages=USER) as stream:
                async for _ in stream:
                    pass

        assert "overloaded_error" in str(info.value)
        names = [name for name, _ in events(body)]
        assert names[-1] == "error"
        assert "message_stop" not in names

    async def test_non_streaming_message_is_what_messages_create_returns(self, body_server: BodyServer) -> None:
        """message_object() is a valid Message that messages.create() parses."""
        obj = message_object([*thinking_chunks("t", "sig"), *tool_stream()], model="claude-asked")
        body_server.queue(json.dumps(obj).encode(), "application/json")
        message = await body_server.anthropic().messages.create(model="c", max_tokens=10, messages=USER)

        Message.model_validate(obj)
        assert [b.type for b in message.content] == ["thinking", "text", "tool_use"]
        assert message.content[0].signature == "sig"
        assert message.stop_reason == "tool_use"
        assert message.model == "claude-asked"


class TestEncoderProperties:
    def test_every_event_is_valid_for_the_sdk_types(self) -> None:
        """Every event validates against the SDK's RawMessageStreamEvent models."""
        adapter: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
        chunks = [*thinking_chunks("t", "s"), *tool_stream()]
        for name, data in events(encode_all(MessagesEncoder(model="m"), chunks)):
            if name != "ping":
                adapter.validate_python(data)
            assert data["type"] == name

    @settings(max_examples=40, deadline=None)
    @given(
        st.lists(st.text(min_size=1, max_size=8), max_size=5),
        st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=8),
    )
    def test_blocks_are_sequential_and_deltas_join_to_the_message(self, thinking: list[str], text: list[str]) -> None:
        """Blocks open and close one at a time, in index order, and their deltas join to the message."""
        chunks = [make_chunk({"index": 0, "delta": {"reasoning_content": t}, "finish_reason": None}) for t in thinking]
        chunks += [content_chunk(t) for t in text]
        encoder = MessagesEncoder()
        parsed = events(encode_all(encoder, [*chunks, finish_chunk()]))

        open_index: int | None = None
        starts = []
        joined: dict[int, str] = {}
        for name, data in parsed:
            if name == "content_block_start":
                assert open_index is None
                open_index = data["index"]
                starts.append(open_index)
            elif name == "content_block_delta":
                assert data["index"] == open_index
                delta = data["delta"]
                joined[open_index] = joined.get(open_index, "") + delta.get("text", delta.get("thinking", ""))
            elif name == "content_block_stop":
                assert data["index"] == open_index
                open_index = None
        assert starts == list(range(len(starts)))
        assert [name for name, _ in parsed][-2:] == ["message_delta", "message_stop"]
        blocks = encoder.message()["content"]
        assert [joined[i] for i in starts] == [b.get("text", b.get("thinking")) for b in blocks]
        assert blocks[-1] == {"type": "text", "text": "".join(text)}


class TestNonStreaming:
    def test_a_rebuilt_response_keeps_each_thinking_block_and_signature(self) -> None:
        """message_object() of a ModelResponse renders each thinking_blocks entry as its own signed block."""
        from rxllm.types import ModelResponse

        response = ModelResponse.from_dict(
            {
                "id": "chatcmpl-1",
                "model": "claude",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {
                            "role": "assistant",
                            "content": "done",
                            "reasoning_content": "ab",
                            "thinking_blocks": [
                                {"type": "thinking", "thinking": "a", "signature": "s1"},
                                {"type": "redacted_thinking", "data": "xyz"},
                                {"type": "thinking", "thinking": "b", "signature": "s2"},
                            ],
                        },
                    }
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
            }
        )
        message = message_object(response)

        assert message["content"] == [
            {"type": "thinking", "thinking": "a", "signature": "s1"},
            {"type": "redacted_thinking", "data": "xyz"},
            {"type": "thinking", "thinking": "b", "signature": "s2"},
            {"type": "text", "text": "done"},
        ]
        assert message["usage"]["output_tokens"] == 2
        Message.model_validate(message)
