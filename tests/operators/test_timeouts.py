"""first_chunk_timeout, stall_timeout and deadline, in virtual time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import reactivex
from _chunks import chunk, keepalive, usage_chunk
from reactivex.scheduler.eventloop import AsyncIOScheduler
from reactivex.testing import ReactiveTest, TestScheduler

from rxllm import operators as ops
from rxllm.errors import APIError, Timeout
from rxllm.operators._scheduling import resolve_scheduler
from rxllm.types import carries_data

on_next, on_completed, on_error = ReactiveTest.on_next, ReactiveTest.on_completed, ReactiveTest.on_error
subscribe = ReactiveTest.subscribe


def run(op: Any, *messages: Any) -> tuple[Any, Any]:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(*messages)
    results = scheduler.start(lambda: xs.pipe(op))
    return xs, results


def error_of(results: Any) -> Any:
    last = results.messages[-1]
    assert last.value.kind == "E"
    return last.value.exception


class TestFirstChunkTimeout:
    def test_times_out_and_disposes_upstream(self) -> None:
        """No chunk within the limit: Timeout at exactly subscribe + seconds, upstream disposed."""
        xs, results = run(ops.first_chunk_timeout(5), on_next(210, chunk("late")), on_completed(220))

        assert [m.time for m in results.messages] == [205]
        err = error_of(results)
        assert isinstance(err, Timeout) and isinstance(err, APIError)
        assert err.status_code == 408
        assert "5 s" in err.message and "first_chunk_timeout" in err.message
        assert err.partial_response is None
        assert xs.subscriptions == [subscribe(200, 205)]

    def test_first_chunk_disarms_it(self) -> None:
        """Once a chunk arrived, later long gaps are fine."""
        a, b = chunk(role="assistant"), chunk("x")
        xs, results = run(ops.first_chunk_timeout(5), on_next(204, a), on_next(300, b), on_completed(310))

        assert results.messages == [on_next(204, a), on_next(300, b), on_completed(310)]
        assert xs.subscriptions == [subscribe(200, 310)]

    def test_upstream_error_passes_through(self) -> None:
        """An error before the limit is passed on unchanged and the timer never fires."""
        boom = RuntimeError("boom")
        _xs, results = run(ops.first_chunk_timeout(5), on_error(203, boom))

        assert results.messages == [on_error(203, boom)]

    def test_rejects_non_positive_seconds(self) -> None:
        """A zero or negative limit is a programming error, raised at once."""
        with pytest.raises(ValueError, match="first_chunk_timeout"):
            ops.first_chunk_timeout(0)


class TestStallTimeout:
    def test_keepalives_do_not_reset_it(self) -> None:
        """Empty deltas keep flowing but the Timeout fires seconds after the last data chunk."""
        a, b = chunk("Hel"), chunk("lo")
        xs, results = run(
            ops.stall_timeout(4),
            on_next(210, a),
            on_next(212, b),
            on_next(213, keepalive()),
            on_next(214, keepalive()),
            on_next(215, keepalive()),
            on_next(220, chunk("late")),
        )

        assert [m.time for m in results.messages] == [210, 212, 213, 214, 215, 216]
        err = error_of(results)
        assert isinstance(err, Timeout) and "stall_timeout" in err.message and "5 chunks" in err.message
        assert err.model == "gpt-4o"
        assert err.partial_response is not None
        assert err.partial_response.choices[0].message.content == "Hello"
        assert xs.subscriptions == [subscribe(200, 216)]

    def test_usage_and_role_chunks_are_not_data(self) -> None:
        """Role-only and usage-only chunks do not count as progress."""
        xs, results = run(
            ops.stall_timeout(3),
            on_next(210, chunk(role="assistant")),
            on_next(212, usage_chunk(1, 1)),
            on_next(220, chunk("x")),
        )

        assert [m.time for m in results.messages] == [210, 212, 213]
        assert xs.subscriptions == [subscribe(200, 213)]

    def test_data_resets_it(self) -> None:
        """Content, reasoning, refusal and tool-call data each reset the watch."""
        tool = [{"index": 0, "function": {"arguments": "{"}}]
        msgs = [
            on_next(210, chunk("a")),
            on_next(213, chunk(reasoning="r")),
            on_next(216, chunk(refusal="n")),
            on_next(219, chunk(tools=tool)),
            on_completed(222),
        ]
        xs, results = run(ops.stall_timeout(4), *msgs)

        assert results.messages == msgs
        assert xs.subscriptions == [subscribe(200, 222)]

    def test_data_in_any_choice_counts(self) -> None:
        """With n > 1, data in choice 1 resets the watch even when choice 0 is silent."""
        other = [{"index": 1, "delta": {"content": "b"}, "finish_reason": None}]
        msgs = [
            on_next(210, chunk("a")),
            on_next(213, chunk(more=other)),
            on_next(216, chunk(more=other)),
            on_completed(219),
        ]
        _xs, results = run(ops.stall_timeout(4), *msgs)

        assert results.messages == msgs

    def test_starts_with_the_first_chunk(self) -> None:
        """A long wait before the first chunk is first_chunk_timeout's job, not this one's."""
        msgs = [on_next(250, chunk("a")), on_completed(252)]
        _xs, results = run(ops.stall_timeout(4), *msgs)

        assert results.messages == msgs

    def test_composes_with_first_chunk_timeout(self) -> None:
        """Both limits together: the first chunk in time, then a stall."""
        op = reactivex.compose(ops.first_chunk_timeout(10), ops.stall_timeout(4))
        xs, results = run(op, on_next(208, chunk("a")), on_next(211, keepalive()))

        assert [m.time for m in results.messages] == [208, 211, 212]
        assert isinstance(error_of(results), Timeout)
        assert xs.subscriptions == [subscribe(200, 212)]

    def test_without_partial_response(self) -> None:
        """partial_response=False skips the builder: the Timeout carries none."""
        _xs, results = run(ops.stall_timeout(2, partial_response=False), on_next(210, chunk("a")))

        assert error_of(results).partial_response is None


class TestDeadline:
    def test_times_out_with_the_partial_response(self) -> None:
        """The whole stream is limited; the Timeout carries every choice received so far."""
        other = [{"index": 1, "delta": {"content": "B"}, "finish_reason": None}]
        xs, results = run(
            ops.deadline(10),
            on_next(203, chunk("a", more=other)),
            on_next(206, chunk("b")),
            on_next(209, chunk("c")),
            on_next(212, chunk("d")),
            on_completed(215),
        )

        assert [m.time for m in results.messages] == [203, 206, 209, 210]
        err = error_of(results)
        assert isinstance(err, Timeout) and "deadline" in err.message and "3 chunks" in err.message
        assert err.partial_response is not None
        assert [c.message.content for c in err.partial_response.choices] == ["abc", "B"]
        assert xs.subscriptions == [subscribe(200, 210)]

    def test_completion_in_time_cancels_the_timer(self) -> None:
        """A stream that finishes in time is passed on unchanged and nothing fires later."""
        msgs = [on_next(203, chunk("a")), on_completed(205)]
        xs, results = run(ops.deadline(10), *msgs)

        assert results.messages == msgs
        assert xs.subscriptions == [subscribe(200, 205)]

    def test_consumer_disposal_disposes_upstream(self) -> None:
        """Disposing before the deadline disposes upstream and the timer (no late error)."""
        scheduler = TestScheduler()
        xs = scheduler.create_hot_observable(on_next(203, chunk("a")))
        results = scheduler.start(lambda: xs.pipe(ops.deadline(500)), disposed=250)

        assert [m.time for m in results.messages] == [203]
        assert xs.subscriptions == [subscribe(200, 250)]


class TestSchedulers:
    def test_explicit_scheduler_is_used(self) -> None:
        """An explicit scheduler drives the timer even when subscribing without one."""
        scheduler = TestScheduler()
        errors: list[Exception] = []
        reactivex.never().pipe(ops.deadline(7, scheduler=scheduler)).subscribe(on_error=errors.append)
        scheduler.advance_to(6.9)
        assert errors == []
        scheduler.advance_to(7)

        assert len(errors) == 1 and isinstance(errors[0], Timeout)

    def test_no_scheduler_and_no_loop_is_an_error_not_a_thread(self) -> None:
        """Without a scheduler or running loop the operator refuses instead of using a thread."""
        errors: list[Exception] = []
        reactivex.never().pipe(ops.stall_timeout(1)).subscribe(on_error=errors.append)

        assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
        assert "scheduler" in str(errors[0])

    async def test_default_is_the_running_loops_asyncio_scheduler(self) -> None:
        """Inside a running loop the default is an AsyncIOScheduler on that loop."""
        chosen = resolve_scheduler(None, None, "test")

        assert isinstance(chosen, AsyncIOScheduler)
        assert chosen._loop is asyncio.get_running_loop()

    def test_subscription_scheduler_comes_before_the_loop(self) -> None:
        """RxPY's order: the operator's scheduler, then the subscription's."""
        a, b = TestScheduler(), TestScheduler()

        assert resolve_scheduler(a, b, "t") is a
        assert resolve_scheduler(None, b, "t") is b

    def test_carries_data(self) -> None:
        """The predicate behind stall_timeout, on each kind of chunk."""
        assert carries_data(chunk("x"))
        assert carries_data(chunk(reasoning="x"))
        assert not carries_data(chunk(role="assistant"))
        assert not carries_data(chunk(finish="stop"))
        assert not carries_data(usage_chunk(1, 1))
