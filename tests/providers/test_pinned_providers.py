"""Provider behaviours a review found unpinned, checked on the chunks themselves (the builder repairs a lot)."""

from __future__ import annotations

import orjson
import pytest
from providers.provider_support import ReplayServer, collect, fixture_bytes

from rxllm.builder import stream_chunk_builder
from rxllm.providers import ChatRequest, get_provider


def sse(*events: tuple[str, dict[str, object]]) -> bytes:
    return b"".join(f"event: {name}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n" for name, data in events)


class TestAnthropicCacheTokens:
    async def test_cache_writes_and_reads_count_as_prompt_tokens(self, server: ReplayServer) -> None:
        """prompt_tokens = input + cache_read + cache_creation (leaving cache writes out under-bills)."""
        server.reply(
            sse(
                (
                    "message_start",
                    {
                        "type": "message_start",
                        "message": {
                            "id": "msg_1",
                            "model": "claude-x",
                            "usage": {
                                "input_tokens": 5,
                                "cache_read_input_tokens": 100,
                                "cache_creation_input_tokens": 1000,
                                "output_tokens": 1,
                            },
                        },
                    },
                ),
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                ),
                (
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}},
                ),
                ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                (
                    "message_delta",
                    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 7}},
                ),
                ("message_stop", {"type": "message_stop"}),
            )
        )

        chunks = await collect("anthropic", server.url)
        usage = [c.usage for c in chunks if c.usage is not None][-1]

        assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (1105, 7, 1112)
        assert usage.prompt_tokens_details is not None
        assert usage.prompt_tokens_details.cached_tokens == 100
        assert usage.prompt_tokens_details.cache_creation_tokens == 1000


class TestIndexLessToolCalls:
    async def test_each_index_less_call_gets_its_own_index_on_the_chunks(self, server: ReplayServer) -> None:
        """Mistral-style calls without 'index' are numbered 0, 1, ... on the emitted chunks."""
        head = '{"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":'
        body = (
            f'data: {head}{{"tool_calls":[{{"id":"a","function":{{"name":"f","arguments":"{{}}"}}}}]}}}}]}}\n\n'
            f'data: {head}{{"tool_calls":[{{"id":"b","function":{{"name":"g","arguments":"{{}}"}}}},'
            f'{{"id":"c","function":{{"name":"h","arguments":"{{}}"}}}}]}}'
            ',"finish_reason":"tool_calls"}]}\n\n'
            "data: [DONE]\n\n"
        ).encode()
        server.reply(body)

        chunks = await collect("openai", server.url)
        indexed = [(tc.id, tc.index) for c in chunks for sc in c.choices for tc in (sc.delta.tool_calls or ())]

        assert indexed == [("a", 0), ("b", 1), ("c", 2)]

    async def test_the_recorded_mistral_stream_has_index_zero_once(self, server: ReplayServer) -> None:
        """The recorded Mistral body (one call, no index) gives exactly one call, at index 0."""
        fixture_bytes("mistral/tool_call_no_index.sse")  # skips with the reason when fixtures are absent
        server.replay("mistral/tool_call_no_index.sse")

        chunks = await collect("mistral", server.url)
        indexes = [tc.index for c in chunks for sc in c.choices for tc in (sc.delta.tool_calls or ())]
        response = stream_chunk_builder(chunks)

        assert indexes == [0]
        assert response is not None
        assert len(response.choices[0].message.tool_calls or ()) == 1


class TestAnthropicWire:
    async def test_events_without_event_lines_decode(self, server: ReplayServer) -> None:
        """A relay that drops the 'event:' lines still works: the type inside the data decides."""
        body = b"".join(
            b"data: " + orjson.dumps(d) + b"\n\n"
            for d in [
                {"type": "message_start", "message": {"id": "m", "model": "claude-x", "usage": {"input_tokens": 3}}},
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "ok"}},
                {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 1}},
                {"type": "message_stop"},
            ]
        )
        server.reply(body)

        response = stream_chunk_builder(await collect("anthropic", server.url))

        assert response is not None
        assert response.choices[0].message.content == "ok"

    async def test_dict_tool_arguments_are_sent_as_input(self, server: ReplayServer) -> None:
        """An assistant tool call whose arguments are a dict (not JSON text) is sent as that input."""
        server.reply(sse(("message_stop", {"type": "message_stop"})))
        messages = (
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "toolu_1", "type": "function", "function": {"name": "w", "arguments": {"city": "Paris"}}}
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
        )

        await collect("anthropic", server.url, messages=messages)
        sent = server.requests[0].json["messages"][1]["content"]

        assert next(b for b in sent if b["type"] == "tool_use")["input"] == {"city": "Paris"}


class TestKeylessServers:
    @pytest.mark.parametrize(
        ("provider", "prefix"), [("hosted_vllm", "HOSTED_VLLM"), ("lm_studio", "LM_STUDIO"), ("ollama_chat", "OLLAMA")]
    )
    async def test_local_servers_at_their_configured_base_need_no_key(
        self, provider: str, prefix: str, server: ReplayServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A local server found through its ``*_API_BASE`` variable is called with no key configured."""
        monkeypatch.delenv(f"{prefix}_API_KEY", raising=False)
        monkeypatch.setenv(f"{prefix}_API_BASE", server.url)
        head = '{"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":'
        server.reply(f'data: {head}{{"content":"ok"}},"finish_reason":"stop"}}]}}\n\ndata: [DONE]\n\n'.encode())
        request = ChatRequest(model="m", provider=provider, messages=({"role": "user", "content": "x"},))

        chunks = [c async for c in get_provider(provider).stream(request)]

        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "ok"
        assert "Authorization" not in server.requests[0].headers

    async def test_hosted_vllm_needs_no_key(self, server: ReplayServer, monkeypatch: pytest.MonkeyPatch) -> None:
        """A local vLLM server is called without any key configured (and no Authorization header)."""
        monkeypatch.delenv("HOSTED_VLLM_API_KEY", raising=False)
        head = '{"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":'
        server.reply(f'data: {head}{{"content":"hi"}},"finish_reason":"stop"}}]}}\n\ndata: [DONE]\n\n'.encode())
        request = ChatRequest(
            model="m", provider="hosted_vllm", messages=({"role": "user", "content": "x"},), api_base=server.url
        )
        chunks = [c async for c in get_provider("hosted_vllm").stream(request)]

        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "hi"
        assert "Authorization" not in server.requests[0].headers
