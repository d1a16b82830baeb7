"""Extended thinking round trip: rebuilt thinking_blocks go back to Anthropic; reasoning_effort maps to budgets."""

from __future__ import annotations

from typing import Any

import pytest
from providers.provider_support import SECRET, ReplayServer, fixture_bytes, request_for

import rxllm
from rxllm import operators as ops
from rxllm.errors import BadRequestError
from rxllm.providers import anthropic, gemini
from rxllm.types import ModelResponse

QUESTION = {"role": "user", "content": "Use the fixed_version tool, tell me the version, then a joke."}
THINKING = {"type": "enabled", "budget_tokens": 1024}


def _signature(name: str) -> str:
    """The signature_delta value in a recorded Anthropic body (read from the fixture itself)."""
    import orjson

    for line in fixture_bytes(name).splitlines():
        if b"signature_delta" in line:
            return str(orjson.loads(line[5:])["delta"]["signature"])
    raise AssertionError("no signature in fixture")


async def _response(model: str, messages: list[dict[str, Any]], server: ReplayServer, **kw: Any) -> ModelResponse:
    """One streamed call through rxllm.stream + ops.to_response."""
    stream = rxllm.stream(model, messages, api_base=server.url, api_key=SECRET, **kw).pipe(ops.to_response())
    out: list[ModelResponse] = [r async for r in rxllm.to_async_iterator(stream)]
    return out[0]


class TestThinkingBlocksRoundTrip:
    async def test_tool_use_loop_with_thinking_sends_signed_blocks_back(self, server: ReplayServer) -> None:
        """The rebuilt message carries the signed thinking block; the next request sends it before the tool_use."""
        server.replay("anthropic/thinking_then_tool_use_no_args.sse", "random")
        server.replay("anthropic/text_basic.sse")
        model = "anthropic/claude-haiku-4-5"

        first = await _response(model, [QUESTION], server, thinking=THINKING)
        message = first.choices[0].message
        call = (message.tool_calls or ())[0]
        history = [
            QUESTION,
            message.to_dict(),
            {"role": "tool", "tool_call_id": call.id, "content": "1.2.3"},
        ]
        await _response(model, history, server, thinking=THINKING)
        body = server.requests[1].json

        assert message.thinking_blocks is not None
        assert [b["type"] for b in message.thinking_blocks] == ["thinking"]
        assert message.thinking_blocks[0]["signature"] == _signature("anthropic/thinking_then_tool_use_no_args.sse")
        assert message.thinking_blocks[0]["thinking"] == message.reasoning_content
        assert body["messages"][1] == {
            "role": "assistant",
            "content": [
                {
                    "type": "thinking",
                    "thinking": message.reasoning_content,
                    "signature": _signature("anthropic/thinking_then_tool_use_no_args.sse"),
                },
                {"type": "tool_use", "id": call.id, "name": "fixed_version", "input": {}},
            ],
        }
        assert body["messages"][2] == {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "1.2.3"}],
        }
        assert body["thinking"] == THINKING

    async def test_redacted_blocks_survive_in_order(self, server: ReplayServer) -> None:
        """Both redacted_thinking blocks are rebuilt in order and sent back verbatim before the text."""
        server.replay("anthropic/redacted_thinking.sse", "bytes")
        server.replay("anthropic/text_basic.sse")
        model = "anthropic/claude-sonnet-4-5"

        first = await _response(model, [QUESTION], server, thinking=THINKING)
        message = first.choices[0].message
        await _response(model, [QUESTION, message.to_dict(), {"role": "user", "content": "and?"}], server)
        sent = server.requests[1].json["messages"][1]["content"]

        blocks = message.thinking_blocks or ()
        assert [b["type"] for b in blocks] == ["redacted_thinking", "redacted_thinking"]
        assert all(b["data"] for b in blocks)
        assert sent[:2] == [dict(b) for b in blocks]
        assert sent[2] == {"type": "text", "text": message.content}

    def test_delta_thinking_blocks_reads_like_litellm(self) -> None:
        """A chunk's delta.thinking_blocks is readable as an attribute, as on LiteLLM's deltas."""
        chunk = rxllm.ChatCompletionChunk.from_dict(
            {"choices": [{"index": 0, "delta": {"thinking_blocks": [{"type": "redacted_thinking", "data": "x"}]}}]}
        )

        assert chunk.choices[0].delta.thinking_blocks == [{"type": "redacted_thinking", "data": "x"}]
        assert rxllm.Delta(content="hi").thinking_blocks is None
        assert chunk.to_dict()["choices"][0]["delta"] == {
            "thinking_blocks": [{"type": "redacted_thinking", "data": "x"}]
        }

    def test_unsigned_thinking_is_not_sent(self) -> None:
        """A thinking block without a signature is dropped from the request (the API would reject it)."""
        message = {
            "role": "assistant",
            "content": "ok",
            "thinking_blocks": [{"type": "thinking", "thinking": "hm"}, {"type": "redacted_thinking", "data": "x"}],
        }
        body = anthropic.translate_request(request_for("anthropic", "http://x", messages=[QUESTION, message]))

        assert body["messages"][1]["content"] == [
            {"type": "redacted_thinking", "data": "x"},
            {"type": "text", "text": "ok"},
        ]

    def test_stream_chunk_builder_keeps_thinking_blocks_interleaved_order(self) -> None:
        """Two thinking blocks separated by text stay two blocks, each with its own signature, in order."""
        chunks = [
            {"choices": [{"index": 0, "delta": {"reasoning_content": "a"}}]},
            {"choices": [{"index": 0, "delta": {"thinking_blocks": [{"type": "thinking", "signature": "s1"}]}}]},
            {"choices": [{"index": 0, "delta": {"content": "text"}}]},
            {"choices": [{"index": 0, "delta": {"reasoning_content": "b"}}]},
            {"choices": [{"index": 0, "delta": {"thinking_blocks": [{"type": "redacted_thinking", "data": "r"}]}}]},
            {"choices": [{"index": 0, "delta": {"reasoning_content": "c"}}]},
            {"choices": [{"index": 0, "delta": {"thinking_blocks": [{"type": "thinking", "signature": "s2"}]}}]},
        ]
        response = rxllm.stream_chunk_builder(chunks)

        assert response is not None
        assert response.choices[0].message.thinking_blocks == (
            {"type": "thinking", "thinking": "a", "signature": "s1"},
            {"type": "thinking", "thinking": "b"},
            {"type": "redacted_thinking", "data": "r"},
            {"type": "thinking", "thinking": "c", "signature": "s2"},
        )
        assert response.choices[0].message.to_dict()["thinking_blocks"][0]["signature"] == "s1"


class TestReasoningEffort:
    @pytest.mark.parametrize(("effort", "budget"), [("minimal", 1024), ("low", 1024), ("medium", 2048), ("high", 4096)])
    def test_anthropic_budget(self, effort: str, budget: int) -> None:
        """reasoning_effort becomes an extended-thinking budget, with max_tokens above it."""
        body = anthropic.translate_request(
            request_for("anthropic", "http://x", reasoning_effort=effort, max_tokens=100)
        )

        assert body["thinking"] == {"type": "enabled", "budget_tokens": budget}
        assert body["max_tokens"] == budget + 1
        assert "reasoning_effort" not in body

    def test_anthropic_explicit_thinking_wins_and_none_disables(self) -> None:
        """An explicit thinking parameter beats reasoning_effort; "none" sends no thinking."""
        explicit = anthropic.translate_request(
            request_for("anthropic", "http://x", reasoning_effort="high", thinking=THINKING)
        )
        off = anthropic.translate_request(request_for("anthropic", "http://x", reasoning_effort="none"))

        assert explicit["thinking"] == THINKING
        assert "thinking" not in off

    @pytest.mark.parametrize(
        ("model", "effort", "config"),
        [
            ("gemini-2.5-flash", "low", {"includeThoughts": True, "thinkingBudget": 1024}),
            ("gemini-2.5-pro", "high", {"includeThoughts": True, "thinkingBudget": 4096}),
            ("gemini-2.5-flash", "none", {"includeThoughts": False, "thinkingBudget": 0}),
            ("gemini-3-pro-preview", "medium", {"includeThoughts": True, "thinkingLevel": "high"}),
            ("gemini-3-pro-preview", "minimal", {"includeThoughts": True, "thinkingLevel": "low"}),
            ("gemini-3-pro-preview", "none", {"includeThoughts": False, "thinkingLevel": "low"}),
        ],
    )
    def test_gemini_thinking_config(self, model: str, effort: str, config: dict[str, Any]) -> None:
        """reasoning_effort becomes generationConfig.thinkingConfig (a budget, or a level on Gemini 3)."""
        body = gemini.translate_request(request_for("gemini", "http://x", model=model, reasoning_effort=effort))

        assert body["generationConfig"]["thinkingConfig"] == config

    def test_unknown_effort_is_a_bad_request(self) -> None:
        """An unknown reasoning_effort is rejected with a typed error naming the accepted values."""
        with pytest.raises(BadRequestError, match="minimal/low/medium/high"):
            anthropic.translate_request(request_for("anthropic", "http://x", reasoning_effort="max"))
        with pytest.raises(BadRequestError, match="minimal/low/medium/high"):
            gemini.translate_request(request_for("gemini", "http://x", reasoning_effort="max"))
