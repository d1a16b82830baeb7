"""Properties over generated streams: the official SDKs' accumulators rebuild what the chunks say.

Streams come from ``strategies.stream_specs`` + ``chunkings`` (text and reasoning interleaved
anyhow, tool calls whole or in fragments, usage or not). The bytes each encoder writes are
decoded and fed, event by event, to ``openai``'s ``ResponseStreamState`` and ``anthropic``'s
``accumulate_event`` (what ``responses.stream()`` and ``messages.stream()`` run); the result
must equal what :class:`rxllm.builder.ResponseBuilder` rebuilds from the same chunks.
"""

from __future__ import annotations

import json
from typing import Any

import openai
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import RawMessageStreamEvent
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.lib.streaming.responses import ResponseStreamState
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter
from strategies import chunkings, stream_specs

from rxllm.builder import stream_chunk_builder
from rxllm.dialects.messages import MessagesEncoder
from rxllm.dialects.responses import ResponsesEncoder
from rxllm.dialects.ui_stream import UIMessageStreamEncoder
from rxllm.types import ChatCompletionChunk, ModelResponse
from tests.dialects.dialect_support import encode_all, events

OPENAI_EVENT: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
ANTHROPIC_EVENT: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
_OMIT: Any = getattr(openai, "omit", getattr(openai, "NOT_GIVEN", None))


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[ChatCompletionChunk], ModelResponse]:
    """A one-choice chunk stream and the response it rebuilds to."""
    spec = draw(stream_specs(max_choices=1))
    chunks = draw(chunkings(spec))
    expected = stream_chunk_builder(chunks)
    assert expected is not None
    return chunks, expected


def calls_of(response: ModelResponse) -> list[tuple[str, str, Any]]:
    return [
        (c.id, c.function.name, json.loads(c.function.arguments)) for c in response.choices[0].message.tool_calls or ()
    ]


class TestResponsesAccumulation:
    @settings(max_examples=40, deadline=None)
    @given(streams())
    def test_the_sdk_rebuilds_text_reasoning_and_calls(self, stream: Any) -> None:
        """ResponseStreamState ends with the builder's text, reasoning and calls (incomplete at a token limit)."""
        chunks, expected = stream
        body = encode_all(ResponsesEncoder(model="m"), chunks)
        state = ResponseStreamState(input_tools=_OMIT, text_format=_OMIT)
        sequence = []
        last: Any = None
        for _, data in events(body):
            event = OPENAI_EVENT.validate_python(data)
            sequence.append(event.sequence_number)
            last = state.handle_event(event)[-1]
        final = state._completed_response
        if expected.choices[0].finish_reason == "length":
            assert last.type == "response.incomplete"
            final = last.response
        assert final is not None
        assert sequence == list(range(len(sequence)))
        message = expected.choices[0].message
        assert final.output_text == (message.content or "")
        summary = "".join(s.text for item in final.output if item.type == "reasoning" for s in item.summary)
        assert summary == (message.reasoning_content or "")
        calls = [(i.call_id, i.name, json.loads(i.arguments)) for i in final.output if i.type == "function_call"]
        assert calls == calls_of(expected)
        if expected.usage is not None and not expected.usage.estimated:
            assert final.usage is not None
            assert final.usage.output_tokens == expected.usage.completion_tokens


class TestMessagesAccumulation:
    @settings(max_examples=40, deadline=None)
    @given(streams())
    def test_the_sdk_rebuilds_text_thinking_and_tool_use(self, stream: Any) -> None:
        """anthropic's accumulate_event ends with the builder's text, thinking and tool_use blocks."""
        chunks, expected = stream
        body = encode_all(MessagesEncoder(model="m"), chunks)
        snapshot = None
        buffers: dict[int, bytes] = {}
        for name, data in events(body):
            if name != "ping":
                event = ANTHROPIC_EVENT.validate_python(data)
                snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=buffers)
        assert snapshot is not None

        message = expected.choices[0].message
        blocks = snapshot.content
        assert "".join(b.text for b in blocks if b.type == "text") == (message.content or "")
        assert "".join(b.thinking for b in blocks if b.type == "thinking") == (message.reasoning_content or "")
        assert [(b.id, b.name, b.input) for b in blocks if b.type == "tool_use"] == calls_of(expected)
        finish = expected.choices[0].finish_reason
        stop = {"length": "max_tokens", "tool_calls": "tool_use"}.get(finish or "", "end_turn")
        if (
            finish == "stop"
            and message.tool_calls
            and not any(c.choices and c.choices[0].finish_reason for c in chunks)
        ):
            stop = "tool_use"  # no finish reason came (the builder says "stop"): the calls say why the turn ended
        assert snapshot.stop_reason == stop


class TestUIStream:
    @settings(max_examples=40, deadline=None)
    @given(streams())
    def test_parts_rebuild_text_reasoning_and_tool_inputs(self, stream: Any) -> None:
        """The UI parts' deltas join to the text and reasoning; tool-input-available has each call's input."""
        chunks, expected = stream
        parts = [data for _, data in events(encode_all(UIMessageStreamEncoder(), chunks))][:-1]

        message = expected.choices[0].message
        assert "".join(p["delta"] for p in parts if p["type"] == "text-delta") == (message.content or "")
        assert "".join(p["delta"] for p in parts if p["type"] == "reasoning-delta") == (message.reasoning_content or "")
        tools = [(p["toolCallId"], p["toolName"], p["input"]) for p in parts if p["type"] == "tool-input-available"]
        assert tools == calls_of(expected)
        opened = [p["id"] for p in parts if p["type"].endswith("-start") and "id" in p]
        closed = [p["id"] for p in parts if p["type"].endswith("-end")]
        assert opened == closed
