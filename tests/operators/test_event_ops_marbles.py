"""events, reasoning, split_think_tags and structured_output as marble tests: timing and disposal."""

from __future__ import annotations

from typing import Any

from reactivex.testing import ReactiveTest, TestScheduler
from strategies import content_chunk, finish_chunk, make_chunk

from rxllm import operators as ops
from rxllm.errors import JSONSchemaValidationError
from rxllm.events import Finish, TextDelta, TextDone
from rxllm.structured import StructuredFinal, StructuredPartial

on_next, on_completed, on_error = ReactiveTest.on_next, ReactiveTest.on_completed, ReactiveTest.on_error
subscribe = ReactiveTest.subscribe


def run(op: Any, *messages: Any) -> tuple[Any, Any]:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(*messages)
    results = scheduler.start(lambda: xs.pipe(op))
    return xs, results


class TestEventOperatorsInVirtualTime:
    def test_events_follow_their_chunks_and_close_at_completion(self) -> None:
        """Each chunk's events come at its time; the closing events come with the completion."""
        xs, results = run(
            ops.events(), on_next(210, content_chunk("a")), on_next(220, content_chunk("b")), on_completed(230)
        )

        assert results.messages == [
            on_next(210, TextDelta(0, "a")),
            on_next(220, TextDelta(0, "b")),
            on_next(230, TextDone(0, "ab")),
            on_next(230, Finish(0, "stop")),
            on_completed(230),
        ]
        assert xs.subscriptions == [subscribe(200, 230)]

    def test_reasoning_and_split_think_tags(self) -> None:
        """split_think_tags passes chunks one for one at their times; reasoning() then emits the thought."""
        xs, results = run(
            lambda s: s.pipe(ops.split_think_tags(), ops.reasoning()),
            on_next(210, content_chunk("<think>hm")),
            on_next(220, content_chunk("</think>ok")),
            on_next(230, make_chunk({"index": 0, "delta": {"reasoning_content": "!"}})),
            on_completed(240),
        )

        assert results.messages == [on_next(210, "hm"), on_next(230, "!"), on_completed(240)]
        assert xs.subscriptions == [subscribe(200, 240)]

    def test_structured_output_error_disposes_the_upstream(self) -> None:
        """An invalid final object errors at the finish chunk and the upstream is disposed right then."""
        schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
        xs, results = run(
            ops.structured_output(schema),
            on_next(210, content_chunk('{"n": "x"')),
            on_next(220, content_chunk("}")),
            on_next(230, finish_chunk()),
            on_next(240, content_chunk("late")),
            on_completed(250),
        )

        assert [m.time for m in results.messages] == [210, 230]
        assert results.messages[0].value.value == StructuredPartial({"n": "x"})
        assert isinstance(results.messages[-1].value.exception, JSONSchemaValidationError)
        assert xs.subscriptions == [subscribe(200, 230)]

    def test_structured_output_final_comes_at_the_finish(self) -> None:
        """The validated object is emitted with the finish chunk, before the stream completes."""
        _xs, results = run(
            ops.structured_output({"type": "object"}),
            on_next(210, content_chunk('{"a": 1')),
            on_next(220, content_chunk("}")),
            on_next(230, finish_chunk()),
            on_completed(250),
        )

        assert results.messages == [
            on_next(210, StructuredPartial({})),
            on_next(220, StructuredPartial({"a": 1})),
            on_next(230, StructuredFinal({"a": 1}, '{"a": 1}')),
            on_completed(250),
        ]
