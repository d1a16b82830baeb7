"""Recorded provider streams, replayed through rxllm's providers, then encoded in every dialect.

Each recorded body is served by a local aiohttp server, read by the OpenAI-compatible,
Anthropic or Gemini provider, and the chunks are encoded as Responses, Messages and UI
message stream events. The official SDKs' accumulators must rebuild what
``stream_chunk_builder`` rebuilds from the same chunks.
"""

from __future__ import annotations

import json

import pytest
from providers.provider_support import ReplayServer, collect

from rxllm.builder import stream_chunk_builder
from rxllm.dialects.messages import MessagesEncoder
from rxllm.dialects.responses import ResponsesEncoder
from rxllm.dialects.ui_stream import UIMessageStreamEncoder
from rxllm.types import ChatCompletionChunk, ModelResponse
from tests.dialects.dialect_support import BodyServer, encode_all, events

USER = [{"role": "user", "content": "hi"}]

RECORDED = [
    ("openai", "openai/text_basic.sse"),
    ("openai", "openai/tool_calls_parallel_2.sse"),
    ("openai", "deepseek/reasoner_tool_call.sse"),
    ("anthropic", "anthropic/thinking_then_text.sse"),
    ("anthropic", "anthropic/text_then_tool_use_parallel_2.sse"),
    ("anthropic", "anthropic/thinking_then_tool_use_no_args.sse"),
    ("gemini", "gemini/text_basic.sse"),
    ("gemini", "gemini/function_calls_parallel_2.sse"),
    ("gemini", "gemini/thinking_thought_parts.sse"),
]


async def replayed(replay: ReplayServer, provider: str, name: str) -> tuple[list[ChatCompletionChunk], ModelResponse]:
    """The provider's chunks for a recorded body, and the response they rebuild to."""
    replay.replay(name)
    chunks = await collect(provider, replay.url)
    expected = stream_chunk_builder(chunks)
    assert expected is not None
    return chunks, expected


def calls_of(response: ModelResponse) -> list[tuple[str, object]]:
    """(name, parsed arguments) of the first choice's tool calls."""
    return [(c.function.name, c.function.parsed_arguments()) for c in response.choices[0].message.tool_calls or ()]


@pytest.mark.parametrize(("provider", "name"), RECORDED)
class TestRecordedStreams:
    async def test_responses_sdk_rebuilds_the_answer(
        self, provider: str, name: str, replay: ReplayServer, body_server: BodyServer
    ) -> None:
        """openai's responses.stream() accumulates the same text, reasoning and tool calls."""
        chunks, expected = await replayed(replay, provider, name)
        body_server.queue(encode_all(ResponsesEncoder(model="asked"), chunks))

        async with body_server.openai().responses.stream(model="asked", input="hi") as stream:
            final = await stream.get_final_response()

        message = expected.choices[0].message
        assert final.output_text == (message.content or "")
        reasoning = "".join(s.text for item in final.output if item.type == "reasoning" for s in item.summary)
        assert reasoning == (message.reasoning_content or "")
        calls = [(i.name, json.loads(i.arguments)) for i in final.output if i.type == "function_call"]
        assert calls == calls_of(expected)
        assert final.usage is not None
        assert final.usage.output_tokens == (expected.usage.completion_tokens if expected.usage else 0)

    async def test_messages_sdk_rebuilds_the_answer(
        self, provider: str, name: str, replay: ReplayServer, body_server: BodyServer
    ) -> None:
        """anthropic's messages.stream() accumulates the same text, thinking and tool_use blocks."""
        chunks, expected = await replayed(replay, provider, name)
        body_server.queue(encode_all(MessagesEncoder(model="asked"), chunks))

        async with body_server.anthropic().messages.stream(model="asked", max_tokens=5, messages=USER) as stream:
            text = "".join([t async for t in stream.text_stream])
            final = await stream.get_final_message()

        message = expected.choices[0].message
        assert text == (message.content or "")
        thinking = [b for b in final.content if b.type == "thinking"]
        assert "".join(b.thinking for b in thinking) == (message.reasoning_content or "")
        if provider == "anthropic" and thinking:
            assert all(b.signature for b in thinking)  # signatures survive the round trip
        calls = [(b.name, b.input) for b in final.content if b.type == "tool_use"]
        assert calls == calls_of(expected)
        assert final.stop_reason == ("tool_use" if calls else "end_turn")

    async def test_ui_message_stream_rebuilds_the_answer(self, provider: str, name: str, replay: ReplayServer) -> None:
        """The UI message stream's text deltas and tool-input-available parts match the answer."""
        chunks, expected = await replayed(replay, provider, name)
        got = [data for _, data in events(encode_all(UIMessageStreamEncoder(), chunks))]

        message = expected.choices[0].message
        assert "".join(p["delta"] for p in got[:-1] if p["type"] == "text-delta") == (message.content or "")
        tools = [(p["toolName"], p["input"]) for p in got[:-1] if p["type"] == "tool-input-available"]
        assert tools == calls_of(expected)
        assert got[-2:] == [{"type": "finish"}, "[DONE]"]
