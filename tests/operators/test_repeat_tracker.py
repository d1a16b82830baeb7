"""RepeatTracker (the per-chunk core of detect_repeated_chunks and completion()'s fused check) against a plain model."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rxllm
from rxllm.operators._detect_repeated_chunks import RepeatTracker
from tests.strategies import content_chunk, make_chunk, tool_fragment


def reference(events: list[tuple[int, str | None, bool]], limit: int) -> int | None:
    """LiteLLM's rules, spelled out per choice: the position of the chunk that fails, or None."""
    runs: dict[int, tuple[str, int]] = {}
    for pos, (index, content, tool) in enumerate(events):
        if tool:
            runs.pop(index, None)
            continue
        if not content:
            continue
        if len(content) <= 2:
            runs.pop(index, None)
            continue
        last = runs.get(index)
        count = last[1] + 1 if last is not None and last[0] == content else 1
        if count >= limit:
            return pos
        runs[index] = (content, count)
    return None


def as_chunk(index: int, content: str | None, tool: bool) -> Any:
    if tool:
        return make_chunk({"index": index, "delta": {"tool_calls": [tool_fragment(0, arguments="{}")]}})
    return content_chunk(content, index=index)


class TestRepeatTracker:
    @settings(max_examples=80, deadline=None)
    @given(
        events=st.lists(
            st.tuples(st.integers(0, 2), st.sampled_from([None, "", "ab", "again", "other text"]), st.booleans()),
            max_size=40,
        ),
        limit=st.integers(1, 4),
    )
    def test_fires_where_the_plain_model_does(self, events: list[tuple[int, str | None, bool]], limit: int) -> None:
        """Interleaved choices, short contents, tool calls: the same chunk fails as in the plain model."""
        tracker = RepeatTracker(limit)

        fired = next((pos for pos, e in enumerate(events) if tracker.check(as_chunk(*e)) is not None), None)

        assert fired == reference(events, limit)

    def test_returns_the_repeated_content(self) -> None:
        """The check names the content that repeated."""
        tracker = RepeatTracker(2)

        assert tracker.check(content_chunk("loop!")) is None
        assert tracker.check(content_chunk("loop!")) == "loop!"


class TestCompletionFusedCheck:
    def test_failure_callback_once_with_the_partial_response(self) -> None:
        """completion()'s fused detection fails the stream once, callbacks see it, the partial response is kept."""
        rxllm.REPEATED_STREAMING_CHUNK_LIMIT = 3
        failures: list[Any] = []
        rxllm.failure_callback = [lambda kwargs, *rest: failures.append(kwargs["exception"])]
        loop = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": {"content": "round again"}, "finish_reason": None}]}  # fmt: skip
        try:
            response = rxllm.completion(model="gpt-4o", messages=[{"role": "user", "content": "x"}], stream=True,
                                        mock_response=[loop] * 6)  # fmt: skip
            seen = []
            with pytest.raises(rxllm.InternalServerError) as info:
                for chunk in response:
                    seen.append(chunk.choices[0].delta.content)
        finally:
            rxllm.failure_callback = []
            rxllm.REPEATED_STREAMING_CHUNK_LIMIT = 100

        assert seen == ["round again"] * 2
        assert info.value.llm_provider == "openai" and info.value.model == "m"
        assert info.value.partial_response.choices[0].message.content == "round again" * 2
        assert len(failures) == 1 and isinstance(failures[0], rxllm.InternalServerError)
