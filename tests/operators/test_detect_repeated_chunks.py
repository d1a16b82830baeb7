"""detect_repeated_chunks in virtual time: LiteLLM's boundaries, per choice, disposal."""

from __future__ import annotations

from typing import Any

import pytest
import reactivex
from hypothesis import given, settings
from hypothesis import strategies as st
from reactivex.testing import ReactiveTest, TestScheduler

import rxllm
from rxllm import operators as ops
from rxllm.errors import InternalServerError
from rxllm.types import ChatCompletionChunk
from tests.strategies import (
    content_chunk,
    exception_of,
    finish_chunk,
    kinds,
    make_chunk,
    tool_chunk,
    tool_fragment,
)

on_next = ReactiveTest.on_next
on_completed = ReactiveTest.on_completed
subscribe = ReactiveTest.subscribe

LOOP = "How are you?"


def hot(scheduler: TestScheduler, chunks: list[ChatCompletionChunk], end: int | None = None) -> Any:
    """Chunks at 201, 202, ... then completion (by default right after the last)."""
    msgs = [on_next(201 + i, c) for i, c in enumerate(chunks)]
    return scheduler.create_hot_observable(*msgs, on_completed(end or 201 + len(chunks)))


def outcome(chunks: list[ChatCompletionChunk], limit: int | None = None, **kw: Any) -> tuple[int, Exception | None]:
    """How many chunks passed, and the error if any (synchronous run)."""
    passed: list[ChatCompletionChunk] = []
    errors: list[Exception] = []
    reactivex.from_iterable(chunks).pipe(ops.detect_repeated_chunks(limit, **kw)).subscribe(
        passed.append, errors.append
    )
    return len(passed), (errors[0] if errors else None)


class TestBoundaries:
    @settings(max_examples=60, deadline=None)
    @given(limit=st.integers(2, 6), before=st.integers(0, 3), run=st.integers(1, 9))
    def test_a_run_fails_exactly_at_its_limit_th_chunk(self, limit: int, before: int, run: int) -> None:
        """After any distinct chunks, a run of identical ones fails at its limit-th chunk, never earlier."""
        chunks = [content_chunk(f"distinct {i}") for i in range(before)] + [content_chunk(LOOP)] * run

        passed, err = outcome(chunks, limit=limit)

        if run >= limit:
            assert (passed, type(err)) == (before + limit - 1, InternalServerError)
            assert err is not None and err.partial_response is not None  # type: ignore[attr-defined]
            assert err.partial_response.choices[0].finish_reason is None  # type: ignore[attr-defined]
        else:
            assert (passed, err) == (before + run, None)

    def test_limit_one_stops_at_the_first_content_chunk(self) -> None:
        """With limit 1 every content chunk longer than 2 characters is already a run at its limit."""
        passed, err = outcome([content_chunk("ab"), content_chunk(LOOP), content_chunk("other")], limit=1)

        assert (passed, type(err)) == (1, InternalServerError)

    def test_the_limit_th_identical_chunk_fails(self) -> None:
        """100 identical chunks, limit 100: 99 pass, the 100th raises InternalServerError (LiteLLM's count)."""
        scheduler = TestScheduler()
        chunks = [content_chunk(LOOP, model="gpt-4o-mini") for _ in range(101)]
        xs = hot(scheduler, chunks, end=400)

        results = scheduler.start(lambda: xs.pipe(ops.detect_repeated_chunks(100, llm_provider="openai")))

        assert [m.time for m in results.messages] == list(range(201, 301))
        assert [k for _, k in kinds(results.messages)] == ["N"] * 99 + ["E"]
        err = exception_of(results.messages)
        assert type(err) is InternalServerError
        assert err.status_code == 500
        assert err.message == "The model is repeating the same chunk = How are you?."
        assert (err.llm_provider, err.model) == ("openai", "gpt-4o-mini")
        assert err.partial_response is not None
        assert err.partial_response.choices[0].message.content == LOOP * 99
        assert xs.subscriptions == [subscribe(200, 300)]

    def test_limit_minus_one_identical_chunks_pass(self) -> None:
        """``limit - 1`` identical chunks are fine; the stream completes."""
        scheduler = TestScheduler()
        xs = hot(scheduler, [content_chunk(LOOP) for _ in range(99)])

        results = scheduler.start(lambda: xs.pipe(ops.detect_repeated_chunks(100)))

        assert [k for _, k in kinds(results.messages)] == ["N"] * 99 + ["C"]
        assert xs.subscriptions == [subscribe(200, 300)]

    def test_two_characters_never_count_and_reset(self) -> None:
        """Content of 2 chars or fewer never trips the limit, and breaks a run of longer content."""
        assert outcome([content_chunk("ab") for _ in range(50)], limit=4) == (50, None)
        broken = [content_chunk(LOOP)] * 3 + [content_chunk("\n\n")] + [content_chunk(LOOP)] * 3
        assert outcome(broken, limit=4) == (7, None)

    def test_three_characters_count(self) -> None:
        """Content of 3 characters is counted."""
        n, err = outcome([content_chunk("abc")] * 4, limit=4)

        assert n == 3
        assert isinstance(err, InternalServerError)

    def test_empty_and_none_content_are_transparent(self) -> None:
        """Chunks with "" or no content neither count nor break the run."""
        chunks = [content_chunk(LOOP), content_chunk(""), content_chunk(None), finish_chunk("stop")]
        chunks += [content_chunk(LOOP), content_chunk(LOOP)]
        n, err = outcome(chunks, limit=3)

        assert n == 5
        assert isinstance(err, InternalServerError)

    def test_a_different_chunk_restarts_the_count(self) -> None:
        """Only consecutive identical content counts."""
        chunks = [content_chunk(LOOP)] * 2 + [content_chunk("Something else")] + [content_chunk(LOOP)] * 2

        assert outcome(chunks, limit=3) == (5, None)

    def test_tool_call_chunk_resets(self) -> None:
        """A chunk carrying tool calls resets its choice's run."""
        tool = make_chunk({"index": 0, "delta": {"content": LOOP, "tool_calls": [tool_fragment(0, "a", "f", "{}")]}})
        chunks = [content_chunk(LOOP)] * 2 + [tool] + [content_chunk(LOOP)] * 2

        assert outcome(chunks, limit=3) == (5, None)
        assert outcome([*chunks, content_chunk(LOOP)], limit=3)[0] == 5

    def test_tool_argument_chunks_do_not_count(self) -> None:
        """Identical argument fragments are tool data, not repeated content."""
        chunks = [tool_chunk(tool_fragment(0, arguments='"aaa"')) for _ in range(10)]

        assert outcome(chunks, limit=3) == (10, None)


class TestPerChoice:
    def test_runs_are_counted_per_choice(self) -> None:
        """Interleaved choices repeating the same text each keep their own count."""
        chunks = [content_chunk(LOOP, index=i % 2) for i in range(4)]  # 2 per choice

        assert outcome(chunks, limit=3) == (4, None)

    def test_partial_response_can_be_left_to_a_downstream_operator(self) -> None:
        """partial_response=False builds nothing; to_response downstream attaches the partial."""
        scheduler = TestScheduler()
        xs = hot(scheduler, [content_chunk(LOOP) for _ in range(4)], end=400)

        results = scheduler.start(
            lambda: xs.pipe(ops.detect_repeated_chunks(3, partial_response=False), ops.to_response())
        )

        err = exception_of(results.messages)
        assert isinstance(err, InternalServerError)
        assert err.partial_response is not None
        assert err.partial_response.choices[0].message.content == LOOP * 2
        assert err.partial_response.choices[0].finish_reason is None

    def test_without_partial_response_the_error_has_none(self) -> None:
        """partial_response=False alone: the error carries no partial response."""
        n, err = outcome([content_chunk(LOOP) for _ in range(3)], limit=3, partial_response=False)

        assert n == 2
        assert isinstance(err, InternalServerError) and err.partial_response is None

    def test_one_looping_choice_fails_the_stream(self) -> None:
        """A third repeat in choice 1 fails even though choice 0 keeps changing."""
        chunks = []
        for i in range(3):
            chunks.append(content_chunk(f"choice zero {i}", index=0))
            chunks.append(content_chunk(LOOP, index=1))
        n, err = outcome(chunks, limit=3)

        assert n == 5
        assert isinstance(err, InternalServerError)
        assert err.partial_response is not None
        assert [c.message.content for c in err.partial_response.choices] == [
            "choice zero 0choice zero 1choice zero 2",
            LOOP * 2,
        ]

    def test_tool_call_resets_only_its_choice(self) -> None:
        """A tool call in choice 0 does not reset choice 1's run."""
        chunks = [content_chunk(LOOP, index=1)] * 2
        chunks += [tool_chunk(tool_fragment(0, "a", "f", "{}"), choice=0), content_chunk(LOOP, index=1)]
        n, err = outcome(chunks, limit=3)

        assert n == 3
        assert isinstance(err, InternalServerError)


class TestLimitSetting:
    def test_none_reads_the_module_attribute_at_subscribe_time(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """limit=None uses rxllm.REPEATED_STREAMING_CHUNK_LIMIT as it is when subscribed."""
        op = ops.detect_repeated_chunks()
        chunks = [content_chunk(LOOP)] * 5
        monkeypatch.setattr(rxllm, "REPEATED_STREAMING_CHUNK_LIMIT", 3, raising=False)

        passed: list[Any] = []
        reactivex.from_iterable(chunks).pipe(op).subscribe(passed.append, lambda e: None)
        assert len(passed) == 2
        monkeypatch.setattr(rxllm, "REPEATED_STREAMING_CHUNK_LIMIT", 10, raising=False)
        passed.clear()
        reactivex.from_iterable(chunks).pipe(op).subscribe(passed.append)
        assert len(passed) == 5

    def test_environment_variable_sets_the_default(self) -> None:
        """REPEATED_STREAMING_CHUNK_LIMIT in the environment is the setting's starting value."""
        from rxllm.settings import Settings

        assert Settings({"REPEATED_STREAMING_CHUNK_LIMIT": "2"}).repeated_chunk_limit == 2
        assert Settings({"REPEATED_STREAMING_CHUNK_LIMIT": " 7 "}).repeated_chunk_limit == 7

    def test_default_is_100(self) -> None:
        """Without the environment variable: 100."""
        from rxllm.settings import Settings

        assert Settings({}).repeated_chunk_limit == 100

    @pytest.mark.parametrize("raw", ["many", "0", "-3", "1.5", "true"])
    def test_bad_environment_value_warns_and_uses_the_default(self, raw: str) -> None:
        """A bad environment value is a warning naming it, and the default: import never fails."""
        from rxllm.settings import Settings

        with pytest.warns(RuntimeWarning, match="REPEATED_STREAMING_CHUNK_LIMIT"):
            settings = Settings({"REPEATED_STREAMING_CHUNK_LIMIT": raw})

        assert settings.repeated_chunk_limit == 100

    def test_import_with_a_bad_environment_value_succeeds(self) -> None:
        """``import rxllm`` with a garbage limit in the environment works and warns once."""
        import os
        import subprocess
        import sys

        env = {**os.environ, "REPEATED_STREAMING_CHUNK_LIMIT": "lots"}
        done = subprocess.run(
            [sys.executable, "-c", "import rxllm; print(rxllm.REPEATED_STREAMING_CHUNK_LIMIT)"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

        assert (done.returncode, done.stdout.strip()) == (0, "100")
        assert "REPEATED_STREAMING_CHUNK_LIMIT" in done.stderr

    def test_module_attribute_is_the_operators_setting(self) -> None:
        """Assigning rxllm.REPEATED_STREAMING_CHUNK_LIMIT is what rxllm.settings holds."""
        from rxllm.settings import settings

        rxllm.REPEATED_STREAMING_CHUNK_LIMIT = 4

        assert settings.repeated_chunk_limit == 4

    def test_explicit_limit_wins(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An explicit limit ignores the module attribute."""
        monkeypatch.setattr(rxllm, "REPEATED_STREAMING_CHUNK_LIMIT", 1, raising=False)

        assert outcome([content_chunk(LOOP)] * 3, limit=6) == (3, None)

    def test_bad_limits(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """limit < 1 is refused at once; a bad module value fails the subscription."""
        with pytest.raises(ValueError, match="at least 1"):
            ops.detect_repeated_chunks(0)
        monkeypatch.setattr(rxllm, "REPEATED_STREAMING_CHUNK_LIMIT", "many", raising=False)
        n, err = outcome([content_chunk(LOOP)])
        assert (n, type(err)) == (0, ValueError)


class TestStream:
    def test_seed_infinite_loop_example(self) -> None:
        """The seed document's example: 101 copies of one chunk raise rxllm.InternalServerError."""
        chunk = ChatCompletionChunk.from_dict(
            {"id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1694268190,
             "model": "gpt-4o-mini-0125", "system_fingerprint": "fp_44709d6fcb",
             "choices": [{"index": 0, "delta": {"content": "How are you?"}, "finish_reason": "stop"}]}
        )  # fmt: skip
        rxllm.REPEATED_STREAMING_CHUNK_LIMIT = 100
        stream = reactivex.from_iterable([chunk] * (rxllm.REPEATED_STREAMING_CHUNK_LIMIT + 1))

        with pytest.raises(rxllm.InternalServerError, match="repeating the same chunk"):
            stream.pipe(ops.detect_repeated_chunks(llm_provider="test_provider")).run()

    def test_dispose_releases_upstream(self) -> None:
        """Disposing mid-stream unsubscribes from the source."""
        scheduler = TestScheduler()
        xs = scheduler.create_hot_observable(on_next(210, content_chunk(LOOP)), on_completed(400))

        results = scheduler.start(lambda: xs.pipe(ops.detect_repeated_chunks(5)), disposed=300)

        assert results.messages == [on_next(210, content_chunk(LOOP))]
        assert xs.subscriptions == [subscribe(200, 300)]

    def test_error_inside_is_forwarded(self) -> None:
        """A malformed item fails the stream and releases the source."""
        scheduler = TestScheduler()
        xs = scheduler.create_hot_observable(on_next(210, content_chunk(LOOP)), on_next(220, 1), on_completed(300))

        results = scheduler.start(lambda: xs.pipe(ops.detect_repeated_chunks(5)))

        assert kinds(results.messages) == [(210, "N"), (220, "E")]
        assert xs.subscriptions == [subscribe(200, 220)]

    def test_state_is_per_subscription(self) -> None:
        """Re-subscribing starts every count from zero."""
        scheduler = TestScheduler()
        xs = scheduler.create_cold_observable(
            on_next(1, content_chunk(LOOP)), on_next(2, content_chunk(LOOP)), on_completed(3)
        )
        pipeline = xs.pipe(ops.detect_repeated_chunks(4))

        results = scheduler.start(lambda: reactivex.concat(pipeline, pipeline))

        assert [k for _, k in kinds(results.messages)] == ["N"] * 4 + ["C"]
