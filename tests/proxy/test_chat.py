"""Chat completions through the proxy, as the official ``openai`` client sees them."""

from __future__ import annotations

import json

import openai
import pytest
import structlog
from openai.lib.streaming.chat import ChatCompletionStreamState

from rxllm.proxy import parse_config
from tests.proxy.proxy_support import (
    USER,
    client,
    config,
    mock_entry,
    request_logs,
    running,
)

TOOL_CALLS = [
    {"id": "call_1", "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}},
    {"id": "call_2", "function": {"name": "get_time", "arguments": {"tz": "Europe/Paris"}}},
]
TOOLS = [
    {"type": "function", "function": {"name": n, "parameters": {"type": "object", "properties": {}}}}
    for n in ("get_weather", "get_time")
]


class TestStreaming:
    async def test_text_streams_as_chunks_then_done(self, no_leaks: None) -> None:
        """A streamed completion arrives as chunks whose content joins to the answer."""
        async with running(config(mock_entry("m", mock_response="one two three four"))) as server:
            stream = await client(server).chat.completions.create(model="m", messages=USER, stream=True)
            chunks = [chunk async for chunk in stream]

        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "one two three four"
        assert chunks[0].choices[0].delta.role == "assistant"
        assert chunks[-1].choices[0].finish_reason == "stop"
        assert all(c.usage is None for c in chunks)

    async def test_include_usage_adds_a_final_usage_chunk(self) -> None:
        """stream_options.include_usage ends the stream with a choices=[] chunk carrying usage."""
        async with running(config(mock_entry("m", mock_response="a b c"))) as server:
            stream = await client(server).chat.completions.create(
                model="m", messages=USER, stream=True, stream_options={"include_usage": True}
            )
            chunks = [chunk async for chunk in stream]

        assert chunks[-1].choices == []
        assert chunks[-1].usage is not None
        assert chunks[-1].usage.completion_tokens > 0
        assert chunks[-1].usage.total_tokens == chunks[-1].usage.prompt_tokens + chunks[-1].usage.completion_tokens
        assert all(c.usage is None for c in chunks[:-1])

    async def test_stream_state_rebuilds_the_non_streamed_response(self) -> None:
        """openai's ChatCompletionStreamState rebuilds from rxllm's SSE what the JSON endpoint returns."""
        async with running(config(mock_entry("m", mock_response="the same words both ways"))) as server:
            api = client(server)
            state: ChatCompletionStreamState = ChatCompletionStreamState()
            stream = await api.chat.completions.create(
                model="m", messages=USER, stream=True, stream_options={"include_usage": True}
            )
            async for chunk in stream:
                state.handle_chunk(chunk)
            rebuilt = state.get_final_completion()
            whole = await api.chat.completions.create(model="m", messages=USER)

        assert rebuilt.choices[0].message.content == whole.choices[0].message.content == "the same words both ways"
        assert rebuilt.choices[0].finish_reason == whole.choices[0].finish_reason == "stop"
        assert rebuilt.usage is not None and whole.usage is not None
        assert rebuilt.usage.completion_tokens == whole.usage.completion_tokens
        assert whole.object == "chat.completion"

    async def test_streamed_tool_calls_rebuild_in_the_openai_accumulator(self) -> None:
        """Parallel tool calls from a config deployment stream as fragments openai reassembles."""
        async with running(config(mock_entry("tools", mock_response="", mock_tool_calls=TOOL_CALLS))) as server:
            stream = await client(server).chat.completions.create(
                model="tools", messages=USER, stream=True, tools=TOOLS
            )
            state: ChatCompletionStreamState = ChatCompletionStreamState(input_tools=TOOLS)
            fragments = 0
            async for chunk in stream:
                fragments += sum(len(c.delta.tool_calls or ()) for c in chunk.choices)
                state.handle_chunk(chunk)
            final = state.get_final_completion()

        calls = final.choices[0].message.tool_calls
        assert calls is not None
        assert [c.function.name for c in calls] == ["get_weather", "get_time"]
        assert json.loads(calls[0].function.arguments) == {"city": "Paris", "unit": "celsius"}
        assert json.loads(calls[1].function.arguments) == {"tz": "Europe/Paris"}
        assert final.choices[0].finish_reason == "tool_calls"
        assert fragments > len(calls)

    async def test_tool_calls_via_extra_body_on_a_mock_model(self) -> None:
        """mock_tool_calls sent in extra_body reach the mock provider; non-streamed calls come whole."""
        async with running() as server:
            response = await client(server).chat.completions.create(
                model="mock/echo", messages=USER, extra_body={"mock_tool_calls": TOOL_CALLS[:1]}
            )

        calls = response.choices[0].message.tool_calls
        assert calls is not None and len(calls) == 1
        assert calls[0].function.name == "get_weather"
        assert json.loads(calls[0].function.arguments)["city"] == "Paris"
        assert response.choices[0].finish_reason == "tool_calls"


class TestNonStreaming:
    async def test_one_json_completion_with_usage(self) -> None:
        """Without stream, the proxy answers one chat.completion with content and usage."""
        async with running() as server:
            response = await client(server).chat.completions.create(model="mock/echo", messages=USER)

        assert response.object == "chat.completion"
        assert response.choices[0].message.content == "hello proxy"
        assert response.choices[0].message.role == "assistant"
        assert response.usage is not None and response.usage.total_tokens > 0

    async def test_n_choices_are_all_returned(self) -> None:
        """n=2 gives two choices, each with the whole answer."""
        async with running(config(mock_entry("m", mock_response="twice"))) as server:
            response = await client(server).chat.completions.create(model="m", messages=USER, n=2)

        assert [c.index for c in response.choices] == [0, 1]
        assert [c.message.content for c in response.choices] == ["twice", "twice"]


class TestErrors:
    @pytest.mark.parametrize(
        ("mock_error", "exc_class", "status"),
        [
            ("rxllm.RateLimitError", openai.RateLimitError, 429),
            ("rxllm.AuthenticationError", openai.AuthenticationError, 401),
            ("rxllm.ServiceUnavailableError", openai.InternalServerError, 503),
            ("rxllm.ContextWindowExceededError", openai.BadRequestError, 400),
            ("rxllm.NotFoundError", openai.NotFoundError, 404),
        ],
    )
    async def test_upstream_errors_before_the_first_chunk_keep_their_status(
        self, mock_error: str, exc_class: type[openai.APIStatusError], status: int
    ) -> None:
        """An error before any chunk is an HTTP status the openai client maps to its own class."""
        async with running(config(mock_entry("m", mock_response=mock_error))) as server:
            with pytest.raises(exc_class) as info:
                await client(server).chat.completions.create(model="m", messages=USER, stream=True)

        assert info.value.status_code == status
        body = info.value.body
        assert isinstance(body, dict)
        assert set(body) >= {"message", "type", "param", "code"}

    async def test_error_after_streaming_started_is_an_sse_error_event(self) -> None:
        """A failure mid-stream arrives after the chunks already sent, as an openai APIError."""
        async with running(config(mock_entry("m", mock_response="a b c d e f", mock_fail_after=3))) as server:
            stream = await client(server).chat.completions.create(model="m", messages=USER, stream=True)
            received = []
            with pytest.raises(openai.APIError) as info:
                async for chunk in stream:
                    received.append(chunk.choices[0].delta.content)

        assert received == ["a", " b", " c"]
        assert "interrupted" in info.value.message
        assert isinstance(info.value.body, dict) and info.value.body["type"] == "server_error"

    async def test_looping_model_is_cut_off_with_an_error_event(self) -> None:
        """A model repeating one chunk past the limit gets an SSE error event, not an endless stream."""
        import rxllm

        rxllm.REPEATED_STREAMING_CHUNK_LIMIT = 3
        loop_chunk = {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": {"content": "again and again"}, "finish_reason": None}],
        }
        async with running(config(mock_entry("m", mock_response=[loop_chunk] * 10))) as server:
            stream = await client(server).chat.completions.create(model="m", messages=USER, stream=True)
            received = []
            with pytest.raises(openai.APIError) as info:
                async for chunk in stream:
                    received.append(chunk.choices[0].delta.content)

        assert received == ["again and again"] * 2  # LiteLLM's count: the 3rd identical chunk raises
        assert "repeating the same chunk" in info.value.message

    async def test_failed_requests_are_logged_once_with_their_status(self) -> None:
        """Each request, failed or not, leaves exactly one log line with status and outcome."""
        async with running(config(mock_entry("m", mock_response="rxllm.RateLimitError"))) as server:
            with structlog.testing.capture_logs() as logs:
                with pytest.raises(openai.RateLimitError):
                    await client(server).chat.completions.create(model="m", messages=USER)
                await client(server).chat.completions.create(model="mock/echo", messages=USER)

        lines = request_logs(logs)
        assert [(line["status"], line["outcome"]) for line in lines] == [(429, "error"), (200, "completed")]
        assert lines[0]["error"] == "RateLimitError"
        assert all("hello proxy" not in repr(line) for line in lines)


def _loop_chunk(content: str = "again and again") -> dict[str, object]:
    return {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
    }


class TestRepeatedChunkGuard:
    async def test_a_looping_non_streaming_answer_is_a_500(self) -> None:
        """Collected answers are guarded too: a looping model gives the SDK an InternalServerError."""
        import rxllm

        rxllm.REPEATED_STREAMING_CHUNK_LIMIT = 3
        async with running(config(mock_entry("m", mock_response=[_loop_chunk()] * 10))) as server:
            with pytest.raises(openai.InternalServerError) as info:
                await client(server).chat.completions.create(model="m", messages=USER)

        assert "repeating the same chunk" in info.value.message

    async def test_a_loop_before_any_chunk_passes_fails_over(self) -> None:
        """A deployment that loops from its first chunk (limit 1) is replaced by the model's fallback."""
        import rxllm

        rxllm.REPEATED_STREAMING_CHUNK_LIMIT = 1
        cfg = parse_config(
            {
                "model_list": [
                    mock_entry("m", mock_response=[_loop_chunk()] * 3),
                    mock_entry("m2", mock_response="ok"),
                ],
                "litellm_settings": {"fallbacks": [{"m": ["m2"]}]},
            },
            environ={},
        )
        async with running(cfg) as server:
            with structlog.testing.capture_logs() as logs:
                answer = await client(server).chat.completions.create(model="m", messages=USER)

        assert answer.choices[0].message.content == "ok"
        (line,) = request_logs(logs)
        assert line["attempts"] == 2

    async def test_a_cut_off_stream_is_logged_as_an_error(self) -> None:
        """The request's log line names the repeated-chunk error and still has its tokens."""
        import rxllm

        rxllm.REPEATED_STREAMING_CHUNK_LIMIT = 3
        async with running(config(mock_entry("m", mock_response=[_loop_chunk()] * 10))) as server:
            with structlog.testing.capture_logs() as logs:
                stream = await client(server).chat.completions.create(model="m", messages=USER, stream=True)
                with pytest.raises(openai.APIError):
                    async for _ in stream:
                        pass

        (line,) = request_logs(logs)
        assert (line["status"], line["outcome"], line["error"]) == (200, "error", "InternalServerError")
        assert line["completion_tokens"] > 0
