"""to_response and snapshots in virtual time."""

from __future__ import annotations

import reactivex
from reactivex.testing import ReactiveTest, TestScheduler

from rxllm import operators as ops
from rxllm.builder import ResponseSnapshot, stream_chunk_builder
from rxllm.errors import APIError, InternalServerError
from rxllm.types import ModelResponse
from tests.strategies import (
    content_chunk,
    exception_of,
    finish_chunk,
    kinds,
    make_chunk,
    tool_chunk,
    tool_fragment,
    values,
)

on_next = ReactiveTest.on_next
on_error = ReactiveTest.on_error
on_completed = ReactiveTest.on_completed
subscribe = ReactiveTest.subscribe

CHUNKS = [
    make_chunk({"index": 0, "delta": {"role": "assistant", "content": ""}}),
    content_chunk("Hello"),
    content_chunk(" there", index=1),
    content_chunk(" world"),
    tool_chunk(tool_fragment(0, "c1", "f", ""), choice=1),
    tool_chunk(tool_fragment(0, arguments='{"a": 1}'), choice=1),
    finish_chunk("tool_calls", index=1),
    finish_chunk("stop"),
]


class TestToResponse:
    def test_emits_the_response_at_completion(self) -> None:
        """One ModelResponse when the source completes, equal to stream_chunk_builder's; upstream released."""
        scheduler = TestScheduler()
        xs = scheduler.create_hot_observable(
            *[on_next(210 + 10 * i, c) for i, c in enumerate(CHUNKS)], on_completed(300)
        )

        results = scheduler.start(lambda: xs.pipe(ops.to_response()))

        expected = stream_chunk_builder(CHUNKS)
        assert results.messages == [on_next(300, expected), on_completed(300)]
        assert xs.subscriptions == [subscribe(200, 300)]
        assert expected is not None
        assert expected.choices[0].message.content == "Hello world"
        assert expected.choices[1].message.content == " there"
        tcs = expected.choices[1].message.tool_calls
        assert tcs is not None
        assert tcs[0].function.arguments == '{"a": 1}'

    def test_empty_stream_completes_without_a_value(self) -> None:
        """No chunks: no response, just completion."""
        scheduler = TestScheduler()
        xs = scheduler.create_hot_observable(on_completed(250))

        results = scheduler.start(lambda: xs.pipe(ops.to_response()))

        assert results.messages == [on_completed(250)]
        assert xs.subscriptions == [subscribe(200, 250)]

    def test_dispose_releases_upstream(self) -> None:
        """Disposing before completion emits nothing and unsubscribes from the source."""
        scheduler = TestScheduler()
        xs = scheduler.create_hot_observable(on_next(210, content_chunk("a")), on_completed(400))

        results = scheduler.start(lambda: xs.pipe(ops.to_response()), disposed=300)

        assert results.messages == []
        assert xs.subscriptions == [subscribe(200, 300)]

    def test_api_error_gets_the_partial_response(self) -> None:
        """An upstream APIError passes through as a copy carrying the response so far; the original is untouched."""
        scheduler = TestScheduler()
        err = InternalServerError("boom", llm_provider="openai")
        xs = scheduler.create_hot_observable(
            on_next(210, content_chunk("Hel")), on_next(220, content_chunk("lo")), on_error(230, err)
        )

        results = scheduler.start(lambda: xs.pipe(ops.to_response()))

        assert kinds(results.messages) == [(230, "E")]
        got = exception_of(results.messages)
        assert type(got) is InternalServerError and got.message == "boom"
        assert got.partial_response is not None
        assert got.partial_response.choices[0].message.content == "Hello"
        assert err.partial_response is None
        assert xs.subscriptions == [subscribe(200, 230)]

    def test_existing_partial_response_is_kept(self) -> None:
        """An error that already carries a partial response keeps it."""
        scheduler = TestScheduler()
        mine = ModelResponse(id="mine")
        err = APIError("x", partial_response=mine)
        xs = scheduler.create_hot_observable(on_next(210, content_chunk("a")), on_error(220, err))

        results = scheduler.start(lambda: xs.pipe(ops.to_response()))

        assert kinds(results.messages) == [(220, "E")]
        assert err.partial_response is mine

    def test_other_errors_pass_unchanged(self) -> None:
        """An error that is not an rxllm APIError passes through as it is."""
        scheduler = TestScheduler()
        err = KeyError("k")
        xs = scheduler.create_hot_observable(on_next(210, content_chunk("a")), on_error(220, err))

        results = scheduler.start(lambda: xs.pipe(ops.to_response()))

        assert kinds(results.messages) == [(220, "E")]
        assert exception_of(results.messages) is err
        assert xs.subscriptions == [subscribe(200, 220)]

    def test_error_inside_is_forwarded_and_disposes(self) -> None:
        """Something that is not a chunk fails the stream at once and releases the source."""
        scheduler = TestScheduler()
        xs = scheduler.create_hot_observable(
            on_next(210, content_chunk("a")), on_next(220, object()), on_next(230, content_chunk("b")),
            on_completed(300),
        )  # fmt: skip

        results = scheduler.start(lambda: xs.pipe(ops.to_response()))

        assert kinds(results.messages) == [(220, "E")]
        assert isinstance(exception_of(results.messages), AttributeError)
        assert xs.subscriptions == [subscribe(200, 220)]

    def test_state_is_per_subscription(self) -> None:
        """Two subscriptions to the same pipeline each rebuild their own response."""
        scheduler = TestScheduler()
        xs = scheduler.create_cold_observable(
            on_next(10, content_chunk("ab")), on_next(20, content_chunk("cd")), on_completed(30)
        )
        pipeline = xs.pipe(ops.to_response())

        results = scheduler.start(lambda: reactivex.concat(pipeline, pipeline))

        assert [r.choices[0].message.content for r in values(results.messages)] == ["abcd", "abcd"]
        assert xs.subscriptions == [subscribe(200, 230), subscribe(230, 260)]

    def test_messages_feed_the_usage_estimate(self) -> None:
        """to_response(messages) estimates prompt tokens when the provider sent no usage."""
        scheduler = TestScheduler()
        xs = scheduler.create_hot_observable(on_next(210, content_chunk("abcd")), on_completed(220))

        results = scheduler.start(lambda: xs.pipe(ops.to_response([{"role": "user", "content": "x" * 8}])))

        usage = values(results.messages)[0].usage
        assert (usage.prompt_tokens, usage.completion_tokens, usage.estimated) == (6, 1, True)


class TestSnapshots:
    def test_one_snapshot_per_chunk(self) -> None:
        """Each chunk yields the running response as it stood after that chunk."""
        scheduler = TestScheduler()
        chunks = [content_chunk("Hel"), content_chunk("lo"), finish_chunk("stop")]
        xs = scheduler.create_hot_observable(
            *[on_next(210 + 10 * i, c) for i, c in enumerate(chunks)], on_completed(250)
        )

        results = scheduler.start(lambda: xs.pipe(ops.snapshots()))

        snaps: list[ResponseSnapshot] = values(results.messages)
        assert kinds(results.messages) == [(210, "N"), (220, "N"), (230, "N"), (250, "C")]
        assert [s.chunk for s in snaps] == chunks
        assert [s.response.choices[0].message.content for s in snaps] == ["Hel", "Hello", "Hello"]
        assert [s.content() for s in snaps] == ["Hel", "Hello", "Hello"]
        assert snaps[-1].response == stream_chunk_builder(chunks)
        assert xs.subscriptions == [subscribe(200, 250)]

    def test_snapshots_show_partial_tool_arguments(self) -> None:
        """Tool-call arguments in a snapshot are those received up to it."""
        scheduler = TestScheduler()
        xs = scheduler.create_hot_observable(
            on_next(210, tool_chunk(tool_fragment(0, "c", "f", '{"a"'))),
            on_next(220, tool_chunk(tool_fragment(0, arguments=": 1}"))),
            on_completed(230),
        )

        results = scheduler.start(lambda: xs.pipe(ops.snapshots()))

        args = [s.response.choices[0].message.tool_calls[0].function.arguments for s in values(results.messages)]
        assert args == ['{"a"', '{"a": 1}']

    def test_error_passes_with_partial_response_and_disposes(self) -> None:
        """An upstream APIError arrives with the partial response; dispose releases the source."""
        scheduler = TestScheduler()
        err = APIError("cut")
        xs = scheduler.create_hot_observable(on_next(210, content_chunk("abc")), on_error(220, err))

        results = scheduler.start(lambda: xs.pipe(ops.snapshots()))

        assert kinds(results.messages) == [(210, "N"), (220, "E")]
        got = exception_of(results.messages)
        assert got.partial_response is not None
        assert got.partial_response.choices[0].message.content == "abc"
        assert err.partial_response is None
        assert xs.subscriptions == [subscribe(200, 220)]

    def test_error_inside_is_forwarded(self) -> None:
        """A malformed item fails the stream and releases the source."""
        scheduler = TestScheduler()
        xs = scheduler.create_hot_observable(on_next(210, None), on_completed(300))

        results = scheduler.start(lambda: xs.pipe(ops.snapshots()))

        assert kinds(results.messages) == [(210, "E")]
        assert xs.subscriptions == [subscribe(200, 210)]
