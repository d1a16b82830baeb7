"""accumulate_tool_calls and tool_call_snapshots in virtual time."""

from __future__ import annotations

import reactivex
from hypothesis import given, settings
from hypothesis import strategies as st
from reactivex.testing import ReactiveTest, TestScheduler

from rxllm import operators as ops
from rxllm.types import ChatCompletionChunk, ToolCall
from tests.strategies import (
    chunkings,
    content_chunk,
    finish_chunk,
    kinds,
    load_fixture_chunks,
    make_chunk,
    stream_specs,
    tool_chunk,
    tool_fragment,
)

on_next = ReactiveTest.on_next
on_error = ReactiveTest.on_error
on_completed = ReactiveTest.on_completed
subscribe = ReactiveTest.subscribe


def call(id: str, name: str, args: str, index: int = 0, choice: int = 0) -> ToolCall:
    return ToolCall.from_dict(
        {"id": id, "type": "function", "function": {"name": name, "arguments": args},
         "index": index, "choice_index": choice}
    )  # fmt: skip


def run(chunks: list[ChatCompletionChunk]) -> list[ToolCall]:
    """Every call the operator emits for a list of chunks (synchronously)."""
    out: list[ToolCall] = []
    reactivex.from_iterable(chunks).pipe(ops.accumulate_tool_calls()).subscribe(out.append)
    return out


class TestAccumulateToolCalls:
    def test_emits_each_call_as_soon_as_the_next_starts(self) -> None:
        """Call 0 is emitted when call 1 starts; call 1 when the choice finishes; upstream released."""
        scheduler = TestScheduler()
        xs = scheduler.create_hot_observable(
            on_next(210, tool_chunk(tool_fragment(0, "a", "get_weather", "", "function"))),
            on_next(220, tool_chunk(tool_fragment(0, arguments='{"city": '))),
            on_next(230, tool_chunk(tool_fragment(0, arguments='"Paris"}'))),
            on_next(240, tool_chunk(tool_fragment(1, "b", "get_time", "", "function"))),
            on_next(250, tool_chunk(tool_fragment(1, arguments="{}"))),
            on_next(260, finish_chunk("tool_calls")),
            on_next(270, make_chunk(usage={"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2})),
            on_completed(300),
        )

        results = scheduler.start(lambda: xs.pipe(ops.accumulate_tool_calls()))

        assert results.messages == [
            on_next(240, call("a", "get_weather", '{"city": "Paris"}', 0)),
            on_next(260, call("b", "get_time", "{}", 1)),
            on_completed(300),
        ]
        assert xs.subscriptions == [subscribe(200, 300)]

    def test_open_calls_are_emitted_at_completion(self) -> None:
        """A call with no finish_reason after it is emitted when the stream completes."""
        scheduler = TestScheduler()
        xs = scheduler.create_hot_observable(
            on_next(210, content_chunk("checking")),
            on_next(220, tool_chunk(tool_fragment(0, "a", "f", '{"x": 1}'))),
            on_completed(250),
        )

        results = scheduler.start(lambda: xs.pipe(ops.accumulate_tool_calls()))

        assert results.messages == [on_next(250, call("a", "f", '{"x": 1}')), on_completed(250)]
        assert xs.subscriptions == [subscribe(200, 250)]

    def test_choices_are_independent(self) -> None:
        """n > 1: a call starting in choice 1 does not close choice 0's call."""
        scheduler = TestScheduler()
        xs = scheduler.create_hot_observable(
            on_next(210, tool_chunk(tool_fragment(0, "a", "f", '{"n":'), choice=0)),
            on_next(220, tool_chunk(tool_fragment(0, "b", "f", '{"n":'), choice=1)),
            on_next(230, tool_chunk(tool_fragment(0, arguments="0}"), choice=0)),
            on_next(240, tool_chunk(tool_fragment(0, arguments="1}"), choice=1)),
            on_next(250, finish_chunk("tool_calls", index=1)),
            on_next(260, finish_chunk("tool_calls", index=0)),
            on_completed(300),
        )

        results = scheduler.start(lambda: xs.pipe(ops.accumulate_tool_calls()))

        assert results.messages == [
            on_next(250, call("b", "f", '{"n":1}', 0, choice=1)),
            on_next(260, call("a", "f", '{"n":0}', 0, choice=0)),
            on_completed(300),
        ]

    def test_several_whole_calls_in_one_delta(self) -> None:
        """Whole calls in one delta: all but the last at once, the last when the choice ends."""
        scheduler = TestScheduler()
        xs = scheduler.create_hot_observable(
            on_next(210, tool_chunk(tool_fragment(0, "a", "f", "{}"), tool_fragment(1, "b", "g", '{"y":2}'))),
            on_next(220, finish_chunk("tool_calls")),
            on_completed(230),
        )

        results = scheduler.start(lambda: xs.pipe(ops.accumulate_tool_calls()))

        assert results.messages == [
            on_next(210, call("a", "f", "{}", 0)),
            on_next(220, call("b", "g", '{"y":2}', 1)),
            on_completed(230),
        ]

    def test_new_id_at_used_index_and_missing_index(self) -> None:
        """No index: position decides; a new id at a used index is a new call, never glued on."""
        got = run(
            [
                tool_chunk(tool_fragment(None, "a", "f", '{"q": 1}')),
                tool_chunk(tool_fragment(None, "b", "f", '{"q": 2}')),
            ]
        )

        assert got == [call("a", "f", '{"q": 1}', 0), call("b", "f", '{"q": 2}', 1)]

    def test_object_and_missing_arguments(self) -> None:
        """Arguments given as an object become JSON text; no arguments become "{}"."""
        got = run(
            [
                tool_chunk(tool_fragment(0, "a", "get_capital", {"country": "France"})),
                tool_chunk(tool_fragment(1, "b", "no_args")),
            ]
        )

        assert got == [call("a", "get_capital", '{"country":"France"}', 0), call("b", "no_args", "{}", 1)]
        assert got[0].parsed_arguments() == {"country": "France"}

    def test_upstream_error_drops_open_calls(self) -> None:
        """On an upstream error, a call still open is not emitted (it may be cut short)."""
        scheduler = TestScheduler()
        err = RuntimeError("cut")
        xs = scheduler.create_hot_observable(
            on_next(210, tool_chunk(tool_fragment(0, "a", "f", '{"x": "tru'))), on_error(220, err)
        )

        results = scheduler.start(lambda: xs.pipe(ops.accumulate_tool_calls()))

        assert results.messages == [on_error(220, err)]
        assert xs.subscriptions == [subscribe(200, 220)]

    def test_error_inside_is_forwarded_and_disposes(self) -> None:
        """A malformed item fails the stream at once and releases the source."""
        scheduler = TestScheduler()
        xs = scheduler.create_hot_observable(
            on_next(210, tool_chunk(tool_fragment(0, "a", "f", "{}"))), on_next(220, 42), on_completed(300)
        )

        results = scheduler.start(lambda: xs.pipe(ops.accumulate_tool_calls()))

        assert kinds(results.messages) == [(220, "E")]
        assert xs.subscriptions == [subscribe(200, 220)]

    def test_dispose_releases_upstream(self) -> None:
        """Disposing mid-stream emits nothing more and unsubscribes."""
        scheduler = TestScheduler()
        xs = scheduler.create_hot_observable(
            on_next(210, tool_chunk(tool_fragment(0, "a", "f", "{}"))), on_completed(400)
        )

        results = scheduler.start(lambda: xs.pipe(ops.accumulate_tool_calls()), disposed=250)

        assert results.messages == []
        assert xs.subscriptions == [subscribe(200, 250)]

    def test_state_is_per_subscription(self) -> None:
        """Each subscription assembles its own calls."""
        chunks = [tool_chunk(tool_fragment(0, "a", "f", '{"k":')), tool_chunk(tool_fragment(0, arguments="1}"))]

        assert run(chunks) == run(chunks) == [call("a", "f", '{"k":1}')]

    def test_recorded_parallel_calls(self) -> None:
        """openai/tool_calls_parallel_2.sse yields its two calls with indexes 0 and 1."""
        got = run(load_fixture_chunks("openai/tool_calls_parallel_2.sse"))

        assert got == [
            call("call_JMW1whyEaYG438VE1OIflxA2", "GetWeatherArgs",
                 '{"city": "Edinburgh", "country": "GB", "units": "c"}', 0),
            call("call_DNYTawLBoN8fj3KN6qU9N1Ou", "get_stock_price", '{"ticker": "AAPL", "exchange": "NASDAQ"}', 1),
        ]  # fmt: skip

    def test_recorded_groq_whole_call(self) -> None:
        """groq/gpt_oss_reasoning_tool_call.sse: one whole call after reasoning chunks."""
        got = run(load_fixture_chunks("groq/gpt_oss_reasoning_tool_call.sse"))

        assert got == [call("fc_bfb39741-3748-4def-9886-a93fc9c64a90", "get_something_by_name", '{"name":"example"}')]

    @settings(max_examples=40, deadline=None)
    @given(st.data())
    def test_matches_the_rebuilt_response(self, data: st.DataObject) -> None:
        """Whatever the splitting, the operator emits exactly the calls of the rebuilt message."""
        spec = data.draw(stream_specs())
        got = run(data.draw(chunkings(spec)))

        expected = [
            call(t.id, t.name, t.arguments, i, c.index) for c in spec.choices for i, t in enumerate(c.tool_calls)
        ]
        assert sorted(got, key=lambda t: (t.choice_index or 0, t.index or 0)) == expected


class TestToolCallSnapshots:
    def test_running_view_after_each_fragment(self) -> None:
        """One tuple of all calls per chunk with fragments; chunks without fragments emit nothing."""
        scheduler = TestScheduler()
        xs = scheduler.create_hot_observable(
            on_next(210, tool_chunk(tool_fragment(0, "a", "f", ""))),
            on_next(220, tool_chunk(tool_fragment(0, arguments='{"x"'))),
            on_next(225, content_chunk("text")),
            on_next(230, tool_chunk(tool_fragment(0, arguments=": 1}"))),
            on_next(240, tool_chunk(tool_fragment(0, "b", "g", "{}"), choice=1)),
            on_completed(250),
        )

        results = scheduler.start(lambda: xs.pipe(ops.tool_call_snapshots()))

        assert results.messages == [
            on_next(210, (call("a", "f", "{}"),)),
            on_next(220, (call("a", "f", '{"x"'),)),
            on_next(230, (call("a", "f", '{"x": 1}'),)),
            on_next(240, (call("a", "f", '{"x": 1}'), call("b", "g", "{}", 0, choice=1))),
            on_completed(250),
        ]
        assert xs.subscriptions == [subscribe(200, 250)]

    def test_error_inside_and_dispose(self) -> None:
        """A malformed item fails the stream and releases the source."""
        scheduler = TestScheduler()
        xs = scheduler.create_hot_observable(on_next(210, "nope"), on_completed(300))

        results = scheduler.start(lambda: xs.pipe(ops.tool_call_snapshots()))

        assert kinds(results.messages) == [(210, "E")]
        assert xs.subscriptions == [subscribe(200, 210)]
