"""The mock provider streams like a real one: roles, pieces, tool-call fragments, usage, errors."""

from __future__ import annotations

import asyncio

import pytest

import rxllm
from rxllm.providers.mock import DEFAULT_TEXT, split_text


def chunks_of(**params):  # type: ignore[no-untyped-def]
    model = params.pop("model", "mock/echo")
    messages = params.pop("messages", [{"role": "user", "content": "Hello there, mock"}])
    return list(rxllm.to_iterator(rxllm.stream(model, messages, **params)))


class TestText:
    def test_echo_streams_the_last_user_message(self) -> None:
        """mock/echo repeats the user's words in pieces, role on the first chunk only."""
        chunks = chunks_of()
        contents = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]

        assert "".join(contents) == "Hello there, mock"
        assert len(contents) == 3
        assert chunks[0].choices[0].delta.role == "assistant"
        assert all(c.choices[0].delta.role is None for c in chunks[1:])
        assert chunks[-1].choices[0].finish_reason == "stop"

    def test_other_models_say_the_greeting(self) -> None:
        """Any other mock model streams the fixed offline greeting."""
        text = "".join(c.choices[0].delta.content or "" for c in chunks_of(model="mock/anything"))

        assert text == DEFAULT_TEXT

    def test_mock_response_on_any_model(self) -> None:
        """mock_response makes any model stream that text offline, keeping the model name."""
        chunks = chunks_of(model="gpt-4o-mini", mock_response="Mock response content")

        assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Mock response content"
        assert chunks[0].choices[0].delta.content == "Mock"
        assert {c.model for c in chunks} == {"gpt-4o-mini"}
        assert len({c.id for c in chunks}) == 1

    def test_usage_chunk_when_asked(self) -> None:
        """include_usage adds a final choices-less chunk with token counts."""
        chunks = chunks_of(stream_options={"include_usage": True})

        assert chunks[-1].choices == ()
        usage = chunks[-1].usage
        assert usage is not None and usage.completion_tokens > 0 and usage.prompt_tokens > 0
        assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
        assert all(c.usage is None for c in chunks[:-1])

    def test_n_choices_are_interleaved(self) -> None:
        """n=2 streams both choices, interleaved, each with its own finish chunk."""
        chunks = chunks_of(n=2)
        indices = [c.choices[0].index for c in chunks]
        finishes = [c.choices[0].index for c in chunks if c.choices[0].finish_reason]

        assert indices[:2] == [0, 1]
        assert sorted(finishes) == [0, 1]

    @pytest.mark.parametrize("text", ["a b  c", "  lead", "trail  ", "x", "", "multi\nline\n"])
    def test_split_text_joins_back(self, text: str) -> None:
        """The pieces always join back to exactly the text."""
        assert "".join(split_text(text)) == text


class TestToolCalls:
    def test_tool_calls_stream_as_fragments(self) -> None:
        """A mock tool call arrives as id+name with empty arguments, then argument pieces."""
        calls = [{"id": "call_1", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]
        chunks = chunks_of(mock_response="", mock_tool_calls=calls)
        deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or ())]

        assert deltas[0].id == "call_1" and deltas[0].function is not None
        assert (deltas[0].function.name, deltas[0].function.arguments) == ("get_weather", "")
        assert len(deltas) > 2
        assert all(d.id is None and d.index == 0 for d in deltas[1:])
        assert "".join(d.function.arguments or "" for d in deltas if d.function) == '{"city":"Paris"}'
        assert chunks[-1].choices[0].finish_reason == "tool_calls"


class TestReplayAndErrors:
    def test_replays_chunk_dicts_exactly(self) -> None:
        """A list of chunk dicts is replayed as given."""
        chunk = {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}],
        }
        chunks = chunks_of(mock_response=[chunk, chunk])

        assert [c.to_dict() for c in chunks] == [chunk, chunk]

    @pytest.mark.parametrize(
        "value",
        [
            rxllm.RateLimitError,
            "rxllm.RateLimitError",
            "litellm.RateLimitError",
            rxllm.RateLimitError(message="custom"),
        ],
    )
    def test_error_mock_raises_at_call_time(self, value: object) -> None:
        """mock_response naming an error raises it when the stream is requested, before any I/O."""
        with pytest.raises(rxllm.RateLimitError):
            rxllm.stream("gpt-4o-mini", [{"role": "user", "content": "x"}], mock_response=value)

    def test_fail_mid_stream(self) -> None:
        """mock_fail_after=N delivers N chunks, then the error."""
        it = rxllm.to_iterator(rxllm.stream("mock/echo", [{"role": "user", "content": "a b c d"}], mock_fail_after=2))
        got = [next(it), next(it)]

        with pytest.raises(rxllm.APIConnectionError, match="after 2 chunks"):
            next(it)
        assert len(got) == 2

    def test_failure_params_alone_select_the_mock(self) -> None:
        """mock_fail_after on a real model name runs offline, like mock_response does."""
        source = rxllm.stream(
            "gpt-4o", [{"role": "user", "content": "a b"}], mock_fail_after=0, mock_fail_with="rxllm.RateLimitError"
        )

        with pytest.raises(rxllm.RateLimitError):
            list(rxllm.to_iterator(source))

    def test_fail_with_a_chosen_error(self) -> None:
        """mock_fail_with chooses the mid-stream error."""
        source = rxllm.stream(
            "mock/echo",
            [{"role": "user", "content": "a b"}],
            mock_fail_after=1,
            mock_fail_with="rxllm.ServiceUnavailableError",
        )

        with pytest.raises(rxllm.ServiceUnavailableError):
            list(rxllm.to_iterator(source))

    async def test_delay_is_applied_between_chunks(self) -> None:
        """mock_delay spaces the chunks out on the event loop."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        chunks = [
            c
            async for c in rxllm.to_async_iterator(
                rxllm.stream("mock/echo", [{"role": "user", "content": "a b c"}], mock_delay=0.02)
            )
        ]

        assert len(chunks) == 4
        assert loop.time() - started >= 0.06
