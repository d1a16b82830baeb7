"""OpenAI and OpenAI-compatible servers: recorded bodies replayed over a real socket, requests checked."""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
import pytest
from providers.provider_support import (
    MODES,
    SECRET,
    Long,
    ReplayServer,
    collect,
    fixture_bytes,
    rebuild,
    request_for,
    tool_calls,
)

from rxllm.builder import stream_chunk_builder
from rxllm.errors import BadRequestError, MalformedStreamError
from rxllm.providers import ChatRequest, get_provider
from rxllm.types import ModelResponse


@attrs.frozen
class C:
    """What one rebuilt choice must hold."""

    content: Any = None
    reasoning: Any = None
    refusal: Any = None
    tools: tuple[tuple[str, str, Any], ...] = ()
    finish: str = "stop"


@attrs.frozen
class Want:
    """What a rebuilt response must hold (usage as prompt, completion, total)."""

    provider: str
    id: str
    model: str
    choices: tuple[C, ...]
    usage: tuple[int, int, int]
    reasoning_tokens: int | None = None
    cached_tokens: int | None = None


GPT4O = "gpt-4o-2024-08-06"

EXPECTED: dict[str, Want] = {
    "openai/text_basic.sse": Want(
        "openai",
        "chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL",
        GPT4O,
        (
            C(
                "I'm unable to provide real-time weather updates. To get the current weather in San Francisco, "
                "I recommend checking a reliable weather website or a weather app."
            ),
        ),
        (14, 30, 44),
        reasoning_tokens=0,
    ),
    "openai/tool_call_single.sse": Want(
        "openai",
        "chatcmpl-ABfwERreu9s99xXsVuOWtIB2UOx62",
        GPT4O,
        (
            C(
                tools=(("call_4XzlGBLtUe9dy3GVNV4jhq7h", "get_weather", {"city": "New York City"}),),
                finish="tool_calls",
            ),
        ),
        (44, 16, 60),
    ),
    "openai/tool_calls_parallel_2.sse": Want(
        "openai",
        "chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63",
        GPT4O,
        (
            C(
                tools=(
                    (
                        "call_JMW1whyEaYG438VE1OIflxA2",
                        "GetWeatherArgs",
                        {"city": "Edinburgh", "country": "GB", "units": "c"},
                    ),
                    ("call_DNYTawLBoN8fj3KN6qU9N1Ou", "get_stock_price", {"ticker": "AAPL", "exchange": "NASDAQ"}),
                ),
                finish="tool_calls",
            ),
        ),
        (149, 60, 209),
    ),
    "openai/n3_choices.sse": Want(
        "openai",
        "chatcmpl-ABfw2KKFuVXmEJgVwYfBvejMAdWtq",
        GPT4O,
        (
            C('{"city":"San Francisco","temperature":65,"units":"f"}'),
            C('{"city":"San Francisco","temperature":61,"units":"f"}'),
            C('{"city":"San Francisco","temperature":59,"units":"f"}'),
        ),
        (79, 42, 121),
    ),
    "openai/logprobs_content.sse": Want(
        "openai", "chatcmpl-ABfw5EzoqmfXjnnsXY7Yd8OC6tb3c", GPT4O, (C("Foo!"),), (9, 2, 11)
    ),
    "openai/refusal.sse": Want(
        "openai",
        "chatcmpl-ABfw4IfQfCCrcuybFm41wJyxjbkz7",
        GPT4O,
        (C(refusal="I'm sorry, I can't assist with that request."),),
        (79, 11, 90),
    ),
    "openai/refusal_logprobs.sse": Want(
        "openai",
        "chatcmpl-ABfw5GEVqPbLY576l46FZDQoNJ2KC",
        GPT4O,
        (C(refusal="I'm very sorry, but I can't assist with that."),),
        (79, 12, 91),
    ),
    "openai/finish_length_max_tokens_1.sse": Want(
        "openai", "chatcmpl-ABfw3Oqj8RD0z6aJiiX37oTjV2HFh", GPT4O, (C('{"', finish="length"),), (79, 1, 80)
    ),
    "openai/tool_calls_parallel_2_obfuscation.sse": Want(
        "openai",
        "chatcmpl-CoDWpGC47t2wtJ7PYJq9LCn0IZunc",
        GPT4O,
        (
            C(
                tools=(
                    ("call_M26z19sncd7b4LBgzKRRbaUE", "secret_retrieval_tool", {"password": "mellon"}),
                    ("call_KPXe5NX7IcKkaBUhc6dto2QV", "secret_retrieval_tool", {"password": "radiance"}),
                ),
                finish="tool_calls",
            ),
        ),
        (75, 53, 128),
        cached_tokens=0,
    ),
    "openai/reasoning_gpt5mini_text.sse": Want(
        "openai",
        "chatcmpl-D2NUMpqH5tTFPIpNYt5vo3b0yleOT",
        "gpt-5-mini-2025-08-07",
        (C("Hi \u2014 how can I help you today?"),),
        (7, 82, 89),
        reasoning_tokens=64,
    ),
    "openai/reasoning_gpt5mini_length_no_content.sse": Want(
        "openai",
        "chatcmpl-CpaLKsZmiiFPwrb0Ocw5FOVrMV89U",
        "gpt-5-mini-2025-08-07",
        (C("", finish="length"),),
        (13, 50, 63),
        reasoning_tokens=50,
    ),
    "openai/gpt5_trailing_moderation_chunk.sse": Want(
        "openai", "chatcmpl-E4Rjs6IxaJVge9Ntk5keJsaeDy6vS", "gpt-5-2025-08-07", (C("Paris."),), (13, 11, 24)
    ),
    "azure/model_router_content_filter.sse": Want(
        "azure_openai",
        "chatcmpl-CYPS1lijGoK8gd9lYzY3r9Sx50nbt",
        "gpt-5-nano-2025-08-07",
        (C("Capital of Denmark."),),
        (15, 78, 93),
        reasoning_tokens=64,
    ),
    "deepseek/reasoner_reasoning_content.sse": Want(
        "deepseek",
        "33be18fc-3842-486c-8c29-dd8e578f7f20",
        "deepseek-reasoner",
        (
            C(
                "Hello there! \U0001f60a How can I help you today?",
                reasoning=Long(
                    'Hmm, the user just said "Hello".',
                    "If they're just being polite, they might not reply further - and that's okay too.",
                    882,
                ),
            ),
        ),
        (6, 212, 218),
        reasoning_tokens=198,
    ),
    "deepseek/reasoner_tool_call.sse": Want(
        "deepseek",
        "cca85624-4056-401f-b220-d77601d1f70d",
        "deepseek-reasoner",
        (
            C(
                reasoning="The user is asking for the weather in San Francisco. I need to use the weather tool to get "
                'this information. Let me invoke the weather tool with the location parameter set to "San Francisco".',
                tools=(("call_00_ioIn7yN9p1ZOMNpDLwd4MgAF", "weather", {"location": "San Francisco"}),),
                finish="tool_calls",
            ),
        ),
        (339, 83, 422),
        reasoning_tokens=39,
        cached_tokens=320,
    ),
    "groq/gpt_oss_reasoning_tool_call.sse": Want(
        "groq",
        "chatcmpl-e35442a8-12c0-4fb4-8be4-0e51727ce7b7",
        "openai/gpt-oss-120b",
        (
            C(
                reasoning='We need to call the function with correct parameter "name". '
                'Provide a name, e.g., "example".',
                tools=(("fc_bfb39741-3748-4def-9886-a93fc9c64a90", "get_something_by_name", {"name": "example"}),),
                finish="tool_calls",
            ),
        ),
        (304, 49, 353),
        reasoning_tokens=23,
    ),
    "mistral/magistral_thinking_content_array.sse": Want(
        "mistral",
        "9f9d90210f194076abeee223863eaaf0",
        "magistral-medium-latest",
        (
            C(
                Long(
                    "To cross the street safely, follow these steps:\n\n1. Look both ways",
                    "By following these steps, you can ensure a safe crossing.",
                    607,
                ),
                reasoning=Long(
                    "Okay, the user is asking how to cross the street.",
                    "Let me compile this information into a clear and concise response.",
                    421,
                ),
            ),
        ),
        (10, 232, 242),
    ),
    "mistral/tool_call_no_index.sse": Want(
        "mistral",
        "b3999b8c93e04e11bcbff7bcab829667",
        "mistral-small-latest",
        (C(tools=(("gSIMJiOkT", "weather", {"location": "San Francisco"}),), finish="tool_calls"),),
        (124, 22, 146),
    ),
    "openrouter/claude_reasoning_keepalive_comments.sse": Want(
        "openrouter",
        "gen-1765226419-AGrwjunAftQIAgweibL8",
        "anthropic/claude-sonnet-4.5",
        (C("2 + 2 = 4", reasoning="This is a simple arithmetic question. 2+2 equals 4."),),
        (43, 36, 79),
        reasoning_tokens=13,
    ),
    "snowflake/cortex_claude_text_usage.sse": Want("openai", "", "claude-sonnet-4-6", (C("4"),), (22, 5, 27)),
    "together/deepseek_r1_think_tags.sse": Want(
        "together_ai",
        "oV1nHvx-28Eivz-9c4b16f37c27e605",
        "deepseek-ai/DeepSeek-R1",
        (
            C(
                Long(
                    '<think>\nOkay, the user asked "How do I cross the street?"',
                    "Practice these steps every time\u2014it could save your life! \U0001f31f",
                    4002,
                )
            ),
        ),
        (10, 955, 965),
    ),
    "vllm/crusoe_llama33_text.sse": Want(
        "hosted_vllm",
        "chatcmpl-bcfbe349402eb3d2",
        "meta-llama/Llama-3.3-70B-Instruct",
        (C("1, 2, 3, 4, 5"),),
        (46, 14, 60),
        cached_tokens=0,
    ),
    "zai/glm47_reasoning_content.sse": Want(
        "openai",
        "202607010739425543ff9439144b2c",
        "glm-4.7",
        (
            C(
                "4",
                reasoning=Long(
                    "\n1.  **Analyze the User's Request:**",
                    'No extra fluff is needed.\n\n7.  **Draft the final response:** "4".',
                    2173,
                ),
            ),
        ),
        (13, 564, 577),
        reasoning_tokens=561,
    ),
}

#: bodies over this size are replayed whole and in random pieces, but not one byte per write
_BYTEWISE_LIMIT = 30_000


def _cases() -> list[Any]:
    out = []
    for name in EXPECTED:
        for mode in MODES:
            out.append(pytest.param(name, mode, id=f"{name}-{mode}"))
    return out


def check(response: ModelResponse, want: Want) -> None:
    assert response.id == want.id
    assert response.model == want.model
    assert len(response.choices) == len(want.choices)
    for i, (choice, expected) in enumerate(zip(response.choices, want.choices, strict=True)):
        message = choice.message
        assert choice.index == i
        if expected.content == "":
            assert not message.content
        else:
            assert message.content == expected.content
        assert message.reasoning_content == expected.reasoning
        assert message.refusal == expected.refusal
        assert tool_calls(response, i) == list(expected.tools)
        assert choice.finish_reason == expected.finish
    usage = response.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == want.usage
    assert not usage.estimated
    if want.reasoning_tokens is not None:
        assert usage.reasoning_tokens == want.reasoning_tokens
    if want.cached_tokens is not None:
        assert usage.cached_tokens == want.cached_tokens


class TestRecordedStreams:
    @pytest.mark.parametrize(("name", "mode"), _cases())
    async def test_rebuilt_response_matches(self, server: ReplayServer, name: str, mode: str) -> None:
        """Each recorded body, replayed whole / in pieces / bytewise, rebuilds to the recorded answer."""
        want = EXPECTED[name]
        server.replay(name, mode)

        response = await rebuild(want.provider, server.url)

        check(response, want)
        assert server.requests[0].json["stream"] is True

    async def test_mistral_content_array_is_split_per_chunk(self, server: ReplayServer) -> None:
        """Thinking parts arrive as reasoning_content strings, never as lists in content."""
        server.replay("mistral/magistral_thinking_content_array.sse")

        chunks = await collect("mistral", server.url)

        deltas = [c.choices[0].delta for c in chunks if c.choices]
        assert all(d.content is None or isinstance(d.content, str) for d in deltas)
        assert deltas[2].reasoning_content == "Okay"
        assert deltas[2].content is None

    async def test_reasoning_key_moves_to_reasoning_content(self, server: ReplayServer) -> None:
        """Groq/OpenRouter `reasoning` lands in reasoning_content; other unknown delta keys stay in extra."""
        server.replay("groq/gpt_oss_reasoning_tool_call.sse")

        chunks = await collect("groq", server.url)

        second = chunks[1].choices[0].delta
        assert second.reasoning_content == "We"
        assert "reasoning" not in second.extra
        assert second.extra["channel"] == "analysis"
        assert "x_groq" in chunks[0].extra

    async def test_azure_filter_chunk_and_trailing_chunks_are_kept(self, server: ReplayServer) -> None:
        """Azure's prompt_filter_results chunk and OpenAI's trailing moderation chunk pass through as chunks."""
        server.replay("azure/model_router_content_filter.sse")
        server.replay("openai/gpt5_trailing_moderation_chunk.sse")

        azure = await collect("azure_openai", server.url)
        gpt5 = await collect("openai", server.url)

        assert azure[0].choices == ()
        assert azure[0].usage is None
        assert azure[0].extra["prompt_filter_results"][0]["prompt_index"] == 0
        assert gpt5[-1].choices == ()
        assert gpt5[-1].usage is None
        assert gpt5[-1].extra["moderation"]["input"]["type"] == "moderation_results"
        assert gpt5[-2].usage is not None
        assert gpt5[-2].usage.total_tokens == 24

    async def test_tool_call_without_index_gets_one(self, server: ReplayServer) -> None:
        """Mistral's tool-call delta without index/type is given index 0 and type function."""
        server.replay("mistral/tool_call_no_index.sse")

        chunks = await collect("mistral", server.url)

        call = chunks[1].choices[0].delta.tool_calls
        assert call is not None
        assert (call[0].index, call[0].type, call[0].id) == (0, "function", "gSIMJiOkT")

    async def test_calls_without_index_across_chunks_get_new_indices(self, server: ReplayServer) -> None:
        """Two complete calls in separate chunks, both without index, become calls 0 and 1."""
        head = '{"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":'
        body = (
            f'data: {head}{{"tool_calls":[{{"id":"a","function":{{"name":"f","arguments":"{{}}"}}}}]}}}}]}}\n\n'
            f'data: {head}{{"tool_calls":[{{"id":"b","function":{{"name":"g","arguments":"{{\\"k\\":1}}"}}}}]}}'
            ',"finish_reason":"tool_calls"}]}\n\n'
            "data: [DONE]\n\n"
        ).encode()
        server.reply(body)

        response = await rebuild("openai", server.url)

        assert tool_calls(response) == [("a", "f", {}), ("b", "g", {"k": 1})]

    async def test_done_without_a_closing_blank_line_ends_the_stream_cleanly(self, server: ReplayServer) -> None:
        """A body whose last line is ``data: [DONE]`` with no blank line after it is a complete stream."""
        head = '{"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":'
        server.reply(f'data: {head}{{"content":"hi"}},"finish_reason":"stop"}}]}}\n\ndata: [DONE]'.encode())

        chunks = await collect("openai", server.url)

        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "hi"


class TestRawDataEvents:
    HEAD = b'{"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":'

    async def test_invalid_utf8_in_a_data_line_is_replaced(self, server: ReplayServer) -> None:
        """Plain data lines are parsed from bytes; invalid UTF-8 still reads as U+FFFD, as from text."""
        server.reply(b"data: " + self.HEAD + b'{"content":"caf\xff"}}]}\n\ndata: [DONE]\n\n')

        chunks = await collect("openai", server.url)

        assert chunks[0].choices[0].delta.content == "caf\ufffd"

    async def test_a_data_line_that_is_not_json_names_its_text(self, server: ReplayServer) -> None:
        """A plain data line that is not JSON raises MalformedStreamError quoting the line as text."""
        server.reply(b"data: not json \xff\n\ndata: [DONE]\n\n")

        with pytest.raises(MalformedStreamError, match="not a JSON object: 'not json \ufffd'"):
            await collect("openai", server.url)

    async def test_a_json_value_that_is_not_an_object_is_refused(self, server: ReplayServer) -> None:
        """A plain data line holding a JSON list raises MalformedStreamError quoting it."""
        server.reply(b"data: [1, 2]\n\ndata: [DONE]\n\n")

        with pytest.raises(MalformedStreamError, match=r"not a JSON object: '\[1, 2\]'"):
            await collect("openai", server.url)

    async def test_multi_line_and_plain_events_mix(self, server: ReplayServer) -> None:
        """A data event split over two lines (the general path) and plain ones give the same chunks."""
        server.reply(
            b"data: " + self.HEAD + b'{"content":"a"}}]}\n\n'
            b"data: " + self.HEAD + b'\ndata: {"content":"b"}}]}\n\n'
            b"id: 7\ndata: " + self.HEAD + b'{"content":"c"}}]}\n\n'
            b"data: [DONE]\n\n"
        )

        chunks = await collect("openai", server.url)

        assert [c.choices[0].delta.content for c in chunks] == ["a", "b", "c"]


class TestErrorsInStream:
    @pytest.mark.parametrize("mode", MODES)
    async def test_groq_error_event_raises_bad_request(self, server: ReplayServer, mode: str) -> None:
        """Groq's `event: error` (status_code 400, no [DONE]) raises BadRequestError with its message."""
        server.replay("groq/error_event_mid_stream.sse", mode)
        seen = []

        with pytest.raises(BadRequestError) as info:
            async for chunk in get_provider("groq").stream(request_for("groq", server.url)):
                seen.append(chunk)

        err = info.value
        assert err.status_code == 400
        assert "Tool call validation failed" in err.message
        assert err.llm_provider == "groq"
        assert err.model == "groq/test-model"
        assert len(seen) > 10
        assert seen[1].choices[0].delta.reasoning_content == "We"

    async def test_openrouter_error_chunk_raises_after_partial_output(self, server: ReplayServer) -> None:
        """A chunk with a top-level `error` (code 400) raises BadRequestError, not a silent stop."""
        server.replay("openrouter/error_chunk_mid_stream.sse")
        seen = []

        with pytest.raises(BadRequestError, match="Token limit reached") as info:
            async for chunk in get_provider("openrouter").stream(request_for("openrouter", server.url)):
                seen.append(chunk)

        assert info.value.status_code == 400
        assert [c.choices[0].finish_reason for c in seen if c.choices][-2:] == ["length", "length"]


class TestRequestShape:
    CONVERSATION = (
        {"role": "system", "content": "You are terse."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this image, and what's the weather in Paris?"},
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
    )
    TOOLS = (
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        },
    )

    async def test_body_path_and_headers(self, server: ReplayServer) -> None:
        """The request is POST {api_base}/chat/completions with Bearer auth and the messages unchanged."""
        server.replay("openai/text_basic.sse")
        request = ChatRequest(
            model="gpt-4o",
            provider="openai",
            messages=self.CONVERSATION,
            params={"tools": self.TOOLS, "tool_choice": "auto", "temperature": 0.2, "max_tokens": 100},
            api_base=server.url + "/v1",
            api_key=SECRET,
            extra_headers={"X-Trace": "t-1"},
        )

        [c async for c in get_provider("openai").stream(request)]

        seen = server.requests[0]
        assert (seen.method, seen.path) == ("POST", "/v1/chat/completions")
        assert seen.headers["Authorization"] == f"Bearer {SECRET}"
        assert seen.headers["Content-Type"] == "application/json"
        assert seen.headers["X-Trace"] == "t-1"
        assert seen.json == {
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in this image, and what's the weather in Paris?"},
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
            ],
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "description": "Weather for a city",
                        "parameters": {
                            "type": "object",
                            "properties": {"city": {"type": "string"}},
                            "required": ["city"],
                        },
                    },
                }
            ],
            "tool_choice": "auto",
            "temperature": 0.2,
            "max_tokens": 100,
            "stream": True,
            "stream_options": {"include_usage": True},
        }

    async def test_full_endpoint_url_is_used_unchanged(self, server: ReplayServer) -> None:
        """An api_base that already ends in /chat/completions (LiteLLM style) is not extended."""
        server.replay("vllm/crusoe_llama33_text.sse")

        await collect("hosted_vllm", server.url + "/serve/v2/chat/completions")

        assert server.requests[0].path == "/serve/v2/chat/completions"

    async def test_caller_stream_options_win(self, server: ReplayServer) -> None:
        """stream_options set by the caller are sent as given."""
        server.replay("openai/text_basic.sse")

        await collect("openai", server.url, stream_options={"include_usage": False})

        assert server.requests[0].json["stream_options"] == {"include_usage": False}

    async def test_azure_uses_api_key_header_and_openai_v1_path(self, server: ReplayServer) -> None:
        """Azure sends its key as `api-key` and posts under /openai/v1 with api-version when given."""
        server.replay("azure/model_router_content_filter.sse")

        await collect("azure_openai", server.url, api_version="2025-04-01-preview")

        seen = server.requests[0]
        assert seen.path == "/openai/v1/chat/completions"
        assert seen.query == {"api-version": "2025-04-01-preview"}
        assert seen.headers["api-key"] == SECRET
        assert "Authorization" not in seen.headers
        assert "api_version" not in seen.json

    async def test_azure_without_api_version_sends_none(self, server: ReplayServer) -> None:
        """Without ``api_version`` the Azure URL carries no ``api-version`` query at all."""
        server.replay("azure/model_router_content_filter.sse")

        await collect("azure_openai", server.url)

        assert server.requests[0].path == "/openai/v1/chat/completions"
        assert server.requests[0].query == {}

    def test_default_endpoints_and_key_variables(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Each compatible prefix has its provider's endpoint and reads its own key variable."""
        expected = {
            "openai": ("https://api.openai.com/v1/chat/completions", "OPENAI_API_KEY"),
            "deepseek": ("https://api.deepseek.com/chat/completions", "DEEPSEEK_API_KEY"),
            "groq": ("https://api.groq.com/openai/v1/chat/completions", "GROQ_API_KEY"),
            "mistral": ("https://api.mistral.ai/v1/chat/completions", "MISTRAL_API_KEY"),
            "openrouter": ("https://openrouter.ai/api/v1/chat/completions", "OPENROUTER_API_KEY"),
            "together_ai": ("https://api.together.xyz/v1/chat/completions", "TOGETHER_API_KEY"),
            "fireworks_ai": ("https://api.fireworks.ai/inference/v1/chat/completions", "FIREWORKS_API_KEY"),
            "xai": ("https://api.x.ai/v1/chat/completions", "XAI_API_KEY"),
            "hosted_vllm": ("http://localhost:8000/v1/chat/completions", "HOSTED_VLLM_API_KEY"),
            "lm_studio": ("http://localhost:1234/v1/chat/completions", "LM_STUDIO_API_KEY"),
            "ollama_chat": ("http://localhost:11434/v1/chat/completions", "OLLAMA_API_KEY"),
        }
        for prefix, (url, env) in expected.items():
            monkeypatch.setenv(env, f"key-for-{prefix}")
            request = ChatRequest(model="m", provider=prefix, messages=({"role": "user", "content": "x"},))

            got_url, headers, _ = get_provider(prefix).prepare(request)  # type: ignore[attr-defined]

            assert got_url == url, prefix
            assert headers["Authorization"] == f"Bearer key-for-{prefix}", prefix

    def test_missing_key_is_an_authentication_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without api_key or OPENAI_API_KEY the request fails before any I/O, naming the variable."""
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
        monkeypatch.delenv("OPENAI_API_BASE", raising=False)
        from rxllm.errors import AuthenticationError

        request = ChatRequest(model="m", provider="openai", messages=({"role": "user", "content": "x"},))

        with pytest.raises(AuthenticationError, match="OPENAI_API_KEY"):
            get_provider("openai").prepare(request)  # type: ignore[attr-defined]

    def test_recorded_body_is_not_copied_into_the_repo(self) -> None:
        """The fixtures are read from outside the repository (licensed test data)."""
        from providers.provider_support import FIXTURES, REPO

        fixture_bytes("openai/text_basic.sse")
        assert not FIXTURES.resolve().is_relative_to(REPO)


#: every recorded OpenAI-compatible body (the provider name each is replayed with)
_OPENAI_COMPATIBLE = [
    ("openai", "openai/" + n)
    for n in (
        "finish_length_max_tokens_1.sse",
        "gpt5_trailing_moderation_chunk.sse",
        "logprobs_content.sse",
        "n3_choices.sse",
        "reasoning_gpt5mini_length_no_content.sse",
        "reasoning_gpt5mini_text.sse",
        "refusal.sse",
        "refusal_logprobs.sse",
        "text_basic.sse",
        "tool_call_single.sse",
        "tool_calls_parallel_2.sse",
        "tool_calls_parallel_2_obfuscation.sse",
    )
] + [
    ("azure_openai", "azure/model_router_content_filter.sse"),
    ("deepseek", "deepseek/reasoner_reasoning_content.sse"),
    ("deepseek", "deepseek/reasoner_tool_call.sse"),
    ("groq", "groq/gpt_oss_reasoning_tool_call.sse"),
    ("mistral", "mistral/magistral_thinking_content_array.sse"),
    ("mistral", "mistral/tool_call_no_index.sse"),
    ("openrouter", "openrouter/claude_reasoning_keepalive_comments.sse"),
]


class TestIndexedToolCallsSkipTheNormalizer:
    @pytest.mark.parametrize(("provider", "name"), _OPENAI_COMPATIBLE, ids=[n for _, n in _OPENAI_COMPATIBLE])
    async def test_chunks_are_identical_with_and_without_the_fast_path(
        self, server: ReplayServer, monkeypatch: pytest.MonkeyPatch, provider: str, name: str
    ) -> None:
        """Each recorded body yields the same chunks with indexed tool calls skipping the normalizer as without."""
        from rxllm.providers import openai as openai_provider

        server.replay(name)
        server.replay(name)
        fast = await collect(provider, server.url)
        monkeypatch.setattr(openai_provider._Normalizer, "indexed", lambda self, choices: False)
        fixed = await collect(provider, server.url)

        assert fast == fixed
        assert [c.to_dict() for c in fast] == [c.to_dict() for c in fixed]

    async def test_a_call_without_index_after_indexed_calls_gets_the_next_index(self, server: ReplayServer) -> None:
        """Calls 0 and 1 sent with their index, then a new call without one: it becomes call 2."""
        head = '{"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":'
        call = '"type":"function","function":{{"name":"{}","arguments":"{{}}"}}'
        first = '{"index":0,"id":"a",' + call.format("f") + "}"
        second = '{"index":1,"id":"b",' + call.format("g") + "}"
        body = (
            f'data: {head}{{"tool_calls":[{first}]}}}}]}}\n\n'
            f'data: {head}{{"tool_calls":[{second}]}}}}]}}\n\n'
            f'data: {head}{{"tool_calls":[{{"id":"c","function":{{"name":"h","arguments":"{{\\"k\\":1}}"}}}}]}}'
            ',"finish_reason":"tool_calls"}]}\n\n'
            "data: [DONE]\n\n"
        ).encode()
        server.reply(body)

        chunks = await collect("openai", server.url)
        response = stream_chunk_builder(chunks)

        last = chunks[2].choices[0].delta.tool_calls
        assert last is not None
        assert (last[0].index, last[0].type) == (2, "function")
        assert response is not None
        assert tool_calls(response) == [("a", "f", {}), ("b", "g", {}), ("c", "h", {"k": 1})]

    async def test_a_string_index_is_still_refused(self, server: ReplayServer) -> None:
        """A tool call whose index is not an integer still fails as a malformed stream."""
        head = '{"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":'
        server.reply(f'data: {head}{{"tool_calls":[{{"index":"0","id":"a"}}]}}}}]}}\n\ndata: [DONE]\n\n'.encode())

        with pytest.raises(MalformedStreamError):
            await collect("openai", server.url)


_HEAD = '{"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":['

#: Event payloads for the one-pass path: sound ones it takes, and ones it must hand to the general path.
_ONE_PASS_PAYLOADS = [
    _HEAD + '{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}',
    _HEAD + '{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}',
    _HEAD + '{"index":0,"delta":{"reasoning":"hm"},"finish_reason":null}]}',
    _HEAD + '{"index":0,"delta":{"content":[{"type":"text","text":"a"}]},"finish_reason":null}]}',
    _HEAD + '{"index":0,"delta":{"content":"a","annotations":null},"finish_reason":null}]}',
    _HEAD + '{"index":0,"delta":{"content":"a","tool_calls":null},"finish_reason":null}]}',
    _HEAD + '{"index":0,"delta":{"tool_calls":[{"index":0,"id":"a","function":{"name":"f","arguments":"{}"}}]}}]}',
    _HEAD + '{"index":0,"delta":{"tool_calls":[{"id":"a","function":{"name":"f","arguments":"{}"}}]}}]}',
    _HEAD + '{"index":0,"delta":{"content":"a"}},{"index":1,"delta":{"content":"b"}}]}',
    _HEAD + '],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}',
    _HEAD + '{"index":0,"delta":{"content":"a"}}],"error":null}',
    _HEAD + '{"index":0,"delta":{"content":7}}]}',
    _HEAD + '{"index":0,"delta":{"content":"a","role":5}}]}',
    _HEAD + '{"index":-1,"delta":{"content":"a"}}]}',
    _HEAD + '{"index":0,"delta":{"tool_calls":[{"index":0,"id":3}]}}]}',
    _HEAD + '{"index":0,"delta":{"tool_calls":[{"index":0},{"index":1,"function":{"name":[]}}]}}]}',
    _HEAD + '{"index":0,"delta":["not a delta"]}]}',
    _HEAD + '"not a choice"]}',
    _HEAD + '],"usage":{"prompt_tokens":-1}}',
    _HEAD + '],"usage":{"prompt_tokens":1,"prompt_tokens_details":{"cached_tokens":"1"}}}',
    '{"id":5,"choices":[]}',
]


class TestOnePassDecoding:
    """The OpenAI provider's one-pass path (decode and check together) changes nothing but the cost."""

    async def _both(
        self,
        server: ReplayServer,
        monkeypatch: pytest.MonkeyPatch,
        body: bytes,
        provider: str = "openai",
        *,
        relay: bool = False,
    ) -> tuple[Any, Any]:
        """Both paths' outcomes; ``relay``: as the proxy's passthrough reads them, with each chunk's raw data."""
        from rxllm.types import ChatCompletionChunk

        outcomes = []
        for one_pass in (True, False):
            if not one_pass:  # the checked decoder always giving up: every chunk takes the general path
                monkeypatch.setattr(ChatCompletionChunk, "_wire_checked", staticmethod(lambda d: None))
            server.reply(body)
            try:
                if relay:
                    chunks, data = await asyncio.create_task(self._relayed(provider, server.url))
                else:
                    chunks, data = await collect(provider, server.url), []
            except MalformedStreamError as exc:
                outcomes.append(("error", str(exc), exc.llm_provider))
            else:
                outcomes.append(
                    ("chunks", chunks, [c.to_dict() for c in chunks], [dict(c.extra) for c in chunks], data)
                )
        return outcomes[0], outcomes[1]

    @staticmethod
    async def _relayed(provider: str, url: str) -> tuple[list[Any], list[Any]]:
        """The chunks and, for each, the raw event data the provider hands a relay (in this task's context)."""
        from rxllm.providers.openai import RAW_EVENTS, RawEvent

        raw = RawEvent()
        RAW_EVENTS.set(raw)
        chunks, data = [], []
        async for chunk in get_provider(provider).stream(request_for(provider, url)):
            assert raw.chunk is chunk
            chunks.append(chunk)
            data.append(raw.data)
        return chunks, data

    @pytest.mark.parametrize("payload", _ONE_PASS_PAYLOADS)
    async def test_same_chunks_and_errors_as_the_general_path(
        self, server: ReplayServer, monkeypatch: pytest.MonkeyPatch, payload: str
    ) -> None:
        """Each payload yields equal chunks (to_dict and extra included), or the same error message, either way."""
        one_pass, general = await self._both(server, monkeypatch, f"data: {payload}\n\ndata: [DONE]\n\n".encode())

        assert one_pass == general

    @pytest.mark.parametrize(("provider", "name"), _OPENAI_COMPATIBLE, ids=[n for _, n in _OPENAI_COMPATIBLE])
    async def test_recorded_bodies_are_identical(
        self, server: ReplayServer, monkeypatch: pytest.MonkeyPatch, provider: str, name: str
    ) -> None:
        """Every recorded OpenAI-compatible body yields the same chunks through the one-pass path as without it."""
        one_pass, general = await self._both(server, monkeypatch, fixture_bytes(name), provider)

        assert one_pass == general

    @pytest.mark.parametrize("payload", _ONE_PASS_PAYLOADS)
    async def test_a_relay_gets_the_same_raw_data(
        self, server: ReplayServer, monkeypatch: pytest.MonkeyPatch, payload: str
    ) -> None:
        """With a relay listening (the proxy's passthrough), each chunk's raw data is the same either way."""
        one_pass, general = await self._both(
            server, monkeypatch, f"data: {payload}\n\ndata: [DONE]\n\n".encode(), relay=True
        )

        assert one_pass == general

    @pytest.mark.parametrize(("provider", "name"), _OPENAI_COMPATIBLE, ids=[n for _, n in _OPENAI_COMPATIBLE])
    async def test_recorded_bodies_relay_the_same_raw_data(
        self, server: ReplayServer, monkeypatch: pytest.MonkeyPatch, provider: str, name: str
    ) -> None:
        """Every recorded body hands a relay the same chunks and raw data through the one-pass path as without it."""
        one_pass, general = await self._both(server, monkeypatch, fixture_bytes(name), provider, relay=True)

        assert one_pass == general
        assert one_pass[0] == "chunks"

    async def test_a_bad_field_is_named_with_its_path(self, server: ReplayServer) -> None:
        """A bad value the one-pass path meets is still reported by field path and provider."""
        payload = _HEAD + '{"index":0,"delta":{"content":7}}]}'
        server.reply(f"data: {payload}\n\ndata: [DONE]\n\n".encode())

        with pytest.raises(MalformedStreamError, match=r"malformed chunk from openai: choices\[0\]\.delta\.content"):
            await collect("openai", server.url)
