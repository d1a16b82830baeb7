"""text() in virtual time."""

from __future__ import annotations

import reactivex
from reactivex.testing import ReactiveTest, TestScheduler

from rxllm import operators as ops
from tests.strategies import content_chunk, finish_chunk, kinds, load_fixture_chunks, make_chunk

on_next = ReactiveTest.on_next
on_completed = ReactiveTest.on_completed
subscribe = ReactiveTest.subscribe


class TestText:
    def test_emits_content_and_skips_the_rest(self) -> None:
        """Non-empty content of choice 0 only; role, reasoning, empty and finish chunks emit nothing."""
        scheduler = TestScheduler()
        xs = scheduler.create_hot_observable(
            on_next(210, make_chunk({"index": 0, "delta": {"role": "assistant", "content": ""}})),
            on_next(220, content_chunk("Hel")),
            on_next(230, make_chunk({"index": 0, "delta": {"reasoning_content": "hmm"}})),
            on_next(240, content_chunk("other", index=1)),
            on_next(250, content_chunk("lo")),
            on_next(260, finish_chunk("stop")),
            on_completed(270),
        )

        results = scheduler.start(lambda: xs.pipe(ops.text()))

        assert results.messages == [on_next(220, "Hel"), on_next(250, "lo"), on_completed(270)]
        assert xs.subscriptions == [subscribe(200, 270)]

    def test_choice_filter_and_all_choices(self) -> None:
        """text(1) follows choice 1; text(None) gives every choice's content in arrival order."""
        chunks = [
            content_chunk("a", index=0),
            content_chunk("b", index=1),
            make_chunk({"index": 1, "delta": {"content": "c"}}, {"index": 0, "delta": {"content": "d"}}),
        ]
        one: list[str] = []
        every: list[str] = []
        reactivex.from_iterable(chunks).pipe(ops.text(1)).subscribe(one.append)
        reactivex.from_iterable(chunks).pipe(ops.text(None)).subscribe(every.append)

        assert one == ["b", "c"]
        assert every == ["a", "b", "c", "d"]

    def test_dispose_releases_upstream(self) -> None:
        """Disposing unsubscribes from the source."""
        scheduler = TestScheduler()
        xs = scheduler.create_hot_observable(on_next(210, content_chunk("x")), on_completed(400))

        results = scheduler.start(lambda: xs.pipe(ops.text()), disposed=300)

        assert results.messages == [on_next(210, "x")]
        assert xs.subscriptions == [subscribe(200, 300)]

    def test_error_inside_is_forwarded(self) -> None:
        """A malformed item fails the stream and releases the source."""
        scheduler = TestScheduler()
        xs = scheduler.create_hot_observable(on_next(210, object()), on_completed(300))

        results = scheduler.start(lambda: xs.pipe(ops.text()))

        assert kinds(results.messages) == [(210, "E")]
        assert xs.subscriptions == [subscribe(200, 210)]

    def test_recorded_stream_text(self) -> None:
        """openai/text_basic.sse's content deltas join to the recorded answer."""
        out: list[str] = []
        reactivex.from_iterable(load_fixture_chunks("openai/text_basic.sse")).pipe(ops.text()).subscribe(out.append)

        assert len(out) == 30
        assert "".join(out) == (
            "I'm unable to provide real-time weather updates. To get the current weather in San Francisco, "
            "I recommend checking a reliable weather website or a weather app."
        )
