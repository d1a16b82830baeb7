"""rxllm.acompletion(stream=True) and rxllm.completion over the real providers and a local server."""

from __future__ import annotations

import asyncio

import pytest
from providers.provider_support import SECRET, ReplayServer

import rxllm

MESSAGES = [{"role": "user", "content": "hi"}]


class TestAcompletion:
    async def test_anthropic_stream_through_acompletion(self, server: ReplayServer) -> None:
        """acompletion(stream=True) with api_base streams Anthropic chunks that rebuild the reply."""
        server.replay("anthropic/text_then_tool_use_parallel_2.sse", "random")

        stream = await rxllm.acompletion(
            "anthropic/claude-sonnet-4-20250514", MESSAGES, stream=True, api_base=server.url, api_key=SECRET
        )
        chunks = [chunk async for chunk in stream]
        response = rxllm.stream_chunk_builder(chunks)

        assert response is not None
        assert response.choices[0].message.content == "I'll retrieve the secrets for both passwords you provided."
        assert [c.function.parsed_arguments() for c in response.choices[0].message.tool_calls or ()] == [
            {"password": "mellon"},
            {"password": "radiance"},
        ]
        assert server.requests[0].path == "/v1/messages"
        assert server.requests[0].headers["x-api-key"] == SECRET

    async def test_error_mid_stream_carries_partial_response(self, server: ReplayServer) -> None:
        """Groq's error event reaches the caller as BadRequestError with the reasoning received so far."""
        server.replay("groq/error_event_mid_stream.sse")

        stream = await rxllm.acompletion("groq/openai/gpt-oss-120b", MESSAGES, stream=True, api_base=server.url)
        with pytest.raises(rxllm.BadRequestError, match="Tool call validation failed") as info:
            async for _ in stream:
                pass

        partial = info.value.partial_response
        assert partial is not None
        assert (partial.choices[0].message.reasoning_content or "").startswith(
            "We need to call the tool with invalid parameters first"
        )

    async def test_http_error_raised_at_await(self, server: ReplayServer) -> None:
        """An HTTP 429 before the first chunk is raised by the await, with retry_after."""
        server.reply(b'{"error": {"message": "slow down"}}', status=429, headers={"Retry-After": "3"})

        with pytest.raises(rxllm.RateLimitError, match="slow down") as info:
            await rxllm.acompletion("openai/gpt-4o", MESSAGES, stream=True, api_base=server.url, api_key=SECRET)

        assert info.value.retry_after == 3.0


class TestSyncCompletion:
    async def test_completion_from_a_sync_thread(self, server: ReplayServer) -> None:
        """The blocking API (rxllm's own loop thread) streams Gemini through the same transport."""
        server.replay("gemini/text_basic.sse")

        def blocking() -> str | None:
            response = rxllm.completion("gemini/gemini-2.0-flash", MESSAGES, api_base=server.url, api_key=SECRET)
            return response.choices[0].message.content  # type: ignore[no-any-return]

        content = await asyncio.to_thread(blocking)

        assert content == "The capital of France is Paris.\n"
