"""Gemini: recorded streamGenerateContent bodies (CRLF framed) replayed; request translation checked."""

from __future__ import annotations

import re
from typing import Any

import attrs
import pytest
from providers.provider_support import MODES, SECRET, Long, ReplayServer, collect, rebuild

from rxllm.errors import APIConnectionError, AuthenticationError, RateLimitError
from rxllm.providers import ChatRequest, get_provider


@attrs.frozen
class Want:
    id: str
    model: str
    content: Any
    finish: str
    usage: tuple[int, int, int]
    reasoning: Any = None
    tools: tuple[tuple[str, Any], ...] = ()
    reasoning_tokens: int | None = None


EXPECTED: dict[str, Want] = {
    "gemini/text_basic.sse": Want(
        "w1peaMz6INOvnvgPgYfPiQY", "gemini-2.0-flash-exp", "The capital of France is Paris.\n", "stop", (13, 8, 21)
    ),
    "gemini/function_call_single.sse": Want(
        "1lpeaMTxIpW1nvgP-O3vwQY",
        "gemini-2.0-flash",
        None,
        "tool_calls",
        (52, 5, 57),
        tools=(("get_capital", {"country": "France"}),),
    ),
    "gemini/function_calls_parallel_2.sse": Want(
        "G5nyaJuGE-yrqtsPmJHUoAs",
        "gemini-2.5-flash",
        None,
        "tool_calls",
        (70, 101, 171),
        tools=(("secret_retrieval_tool", {"password": "mellon"}), ("secret_retrieval_tool", {"password": "radiance"})),
        reasoning_tokens=61,
    ),
    "gemini/gemini3_function_call_thought_signature.sse": Want(
        "QUVVadTSNJ6_qtsPvN7J8Q0",
        "gemini-3-pro-preview",
        None,
        "tool_calls",
        (29, 212, 241),
        tools=(("get_country", {}),),
        reasoning_tokens=202,
    ),
    "gemini/max_tokens.sse": Want(
        "Q5nyaIWZL_C1qtsPhY6D8A4",
        "gemini-2.5-flash",
        "Here are all 50 U.S.",
        "length",
        (9, 48, 57),
        reasoning_tokens=38,
    ),
    "gemini/thinking_thought_parts.sse": Want(
        "g6RgaZHQOv-_qtsP9sujiAw",
        "gemini-2.5-flash",
        "3",
        "stop",
        (30, 1947, 1977),
        reasoning=Long(
            "**Analyzing Prime Substrings**\n\nOkay, so I'm starting to list all the prime numbers below 400.",
            "Therefore, I can state with certainty the final answer.\n\n\n",
            1257,
        ),
        reasoning_tokens=1947,
    ),
}


class TestRecordedStreams:
    @pytest.mark.parametrize("mode", MODES)
    @pytest.mark.parametrize("name", list(EXPECTED))
    async def test_rebuilt_response_matches(self, server: ReplayServer, name: str, mode: str) -> None:
        """Each recorded Gemini body rebuilds to its text, thoughts, tool calls, finish reason and usage."""
        want = EXPECTED[name]
        server.replay(name, mode)

        response = await rebuild("gemini", server.url)

        assert (response.id, response.model) == (want.id, want.model)
        assert len(response.choices) == 1
        message = response.choices[0].message
        assert message.content == want.content
        assert message.reasoning_content == want.reasoning
        calls = message.tool_calls or ()
        assert [(c.function.name, c.function.parsed_arguments()) for c in calls] == list(want.tools)
        assert all(re.fullmatch(r"call_[0-9a-f]{24}", c.id) for c in calls)
        assert len({c.id for c in calls}) == len(calls)
        assert response.choices[0].finish_reason == want.finish
        usage = response.usage
        assert usage is not None
        assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == want.usage
        if want.reasoning_tokens is not None:
            assert usage.reasoning_tokens == want.reasoning_tokens

    async def test_usage_is_emitted_once_at_the_end(self, server: ReplayServer) -> None:
        """Running usage totals become one usage-only chunk after the finish chunk."""
        server.replay("gemini/text_basic.sse")

        chunks = await collect("gemini", server.url)

        assert [c.usage is not None for c in chunks] == [False, False, False, True]
        assert chunks[-1].choices == ()
        assert chunks[2].choices[0].finish_reason == "stop"

    async def test_thought_signature_is_kept_on_the_tool_call(self, server: ReplayServer) -> None:
        """A functionCall's thoughtSignature travels in the tool-call delta's extra."""
        server.replay("gemini/function_calls_parallel_2.sse")

        chunks = await collect("gemini", server.url)

        calls = chunks[0].choices[0].delta.tool_calls
        assert calls is not None
        assert [c.index for c in calls] == [0, 1]
        assert calls[0].extra["thought_signature"].startswith("CikB0e2Kbw5tJ9dwYB9m")
        assert "thought_signature" not in calls[1].extra


class TestStreamEnds:
    async def test_end_without_finish_reason_is_truncation(self, server: ReplayServer) -> None:
        """A body that ends before any finishReason raises APIConnectionError."""
        body = b'data: {"candidates": [{"content": {"parts": [{"text": "The"}],"role": "model"}}]}\r\n\r\n'
        server.reply(body)

        with pytest.raises(APIConnectionError, match="finishReason"):
            await collect("gemini", server.url)

    async def test_blocked_prompt_is_content_filter(self, server: ReplayServer) -> None:
        """promptFeedback.blockReason with no candidates finishes choice 0 with content_filter."""
        server.reply(b'data: {"promptFeedback": {"blockReason": "SAFETY"}, "responseId": "r1"}\r\n\r\n')

        response = await rebuild("gemini", server.url)

        assert response.choices[0].finish_reason == "content_filter"
        assert response.choices[0].message.content is None

    async def test_error_object_in_stream(self, server: ReplayServer) -> None:
        """A data event carrying Gemini's error object raises the class for its code."""
        body = (
            b'data: {"candidates": [{"content": {"parts": [{"text": "Hi"}],"role": "model"}}]}\r\n\r\n'
            b'data: {"error": {"code": 429, "message": "Resource has been exhausted", "status": "RESOURCE_EXHAUSTED"}}'
            b"\r\n\r\n"
        )
        server.reply(body)

        with pytest.raises(RateLimitError, match="Resource has been exhausted"):
            await collect("gemini", server.url)


class TestRequestShape:
    async def test_conversation_translation(self, server: ReplayServer) -> None:
        """System instruction, image, model function call, function response, tools and config are translated."""
        server.replay("gemini/text_basic.sse")
        request = ChatRequest(
            model="gemini-2.5-flash",
            provider="gemini",
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
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'},
            ),
            params={
                "tools": [
                    {
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "description": "Weather for a city",
                            "parameters": {
                                "type": "object",
                                "properties": {"city": {"type": "string"}},
                                "additionalProperties": False,
                            },
                        },
                    }
                ],
                "tool_choice": "auto",
                "temperature": 0.5,
                "max_tokens": 256,
                "stop": ["END"],
            },
            api_base=server.url,
            api_key=SECRET,
        )

        [c async for c in get_provider("gemini").stream(request)]

        seen = server.requests[0]
        assert seen.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
        assert seen.query == {"alt": "sse"}
        assert seen.headers["x-goog-api-key"] == SECRET
        assert "key" not in seen.query
        assert seen.json == {
            "contents": [
                {
                    "role": "user",
                    "parts": [
                        {"text": "What is this, and the weather in Paris?"},
                        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                    ],
                },
                {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
                {
                    "role": "user",
                    "parts": [{"functionResponse": {"name": "get_weather", "response": {"temp_c": 21}}}],
                },
            ],
            "systemInstruction": {"parts": [{"text": "You are terse."}]},
            "generationConfig": {"temperature": 0.5, "maxOutputTokens": 256, "stopSequences": ["END"]},
            "tools": [
                {
                    "functionDeclarations": [
                        {
                            "name": "get_weather",
                            "description": "Weather for a city",
                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                        }
                    ]
                }
            ],
            "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
        }


class TestThinkingAndKeys:
    @pytest.mark.parametrize(
        ("thinking", "config"),
        [
            ({"type": "enabled", "budget_tokens": 1024}, {"includeThoughts": True, "thinkingBudget": 1024}),
            ({"type": "enabled"}, {"includeThoughts": True}),
            ({"type": "disabled", "budget_tokens": 1024}, {"includeThoughts": False, "thinkingBudget": 0}),
        ],
    )
    async def test_thinking_becomes_a_thinking_config(
        self, server: ReplayServer, thinking: dict[str, Any], config: dict[str, Any]
    ) -> None:
        """Anthropic-style ``thinking`` maps to Gemini's thinkingConfig; a budget is sent only when given."""
        server.replay("gemini/text_basic.sse")

        await collect("gemini", server.url, thinking=thinking)

        assert server.requests[0].json["generationConfig"]["thinkingConfig"] == config

    async def test_no_key_at_the_default_endpoint_is_an_authentication_error(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without GEMINI_API_KEY/GOOGLE_API_KEY or a key, nothing is sent to Google: the error names the variable."""
        monkeypatch.delenv("GEMINI_API_KEY", raising=False)
        monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
        request = ChatRequest(model="gemini-2.5-flash", provider="gemini", messages=({"role": "user", "content": "x"},))

        with pytest.raises(AuthenticationError, match="GEMINI_API_KEY"):
            [c async for c in get_provider("gemini").stream(request)]
