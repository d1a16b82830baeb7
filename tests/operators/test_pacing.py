"""smooth, limit and throttle_snapshots as marble tests in virtual time."""

from __future__ import annotations

from typing import Any

import pytest
import reactivex
from reactivex.testing import ReactiveTest, TestScheduler
from strategies import content_chunk, finish_chunk, make_chunk, tool_chunk, tool_fragment

from rxllm import operators as ops
from rxllm.errors import APIError, BudgetExceededError
from rxllm.pricing import PriceNotFoundError, cost_per_token

on_next, on_completed, on_error = ReactiveTest.on_next, ReactiveTest.on_completed, ReactiveTest.on_error
subscribe = ReactiveTest.subscribe


def run(op: Any, *messages: Any) -> tuple[Any, Any]:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(*messages)
    results = scheduler.start(lambda: xs.pipe(op))
    return xs, results


def timeline(results: Any) -> list[tuple[int, Any]]:
    """(time, content or kind) per recorded message, for readable assertions."""
    out: list[tuple[int, Any]] = []
    for m in results.messages:
        if m.value.kind == "N":
            v = m.value.value
            c = v.choices[0].delta.content if getattr(v, "choices", None) else None
            out.append((m.time, c if c is not None else "chunk"))
        else:
            out.append((m.time, m.value.kind))
    return out


class TestSmooth:
    def test_words_are_paced_one_per_delay(self) -> None:
        """Words leave at most one per delay; the unfinished word waits for more text; the end flushes at once."""
        _xs, results = run(
            ops.smooth("word", delay=10),
            on_next(210, content_chunk("Hello wor")),
            on_next(212, content_chunk("ld, how are")),
            on_completed(250),
        )

        assert timeline(results) == [(210, "Hello "), (220, "world, "), (230, "how "), (250, "are"), (250, "C")]

    def test_tool_calls_and_finish_are_not_delayed(self) -> None:
        """A tool call flushes the queued words at once and passes immediately, as does the finish."""
        call = tool_chunk(tool_fragment(0, "c1", "f", "{}"))
        done = finish_chunk("tool_calls")
        _xs, results = run(
            ops.smooth("word", delay=10),
            on_next(210, content_chunk("one two three ")),
            on_next(213, call),
            on_next(214, done),
            on_completed(215),
        )

        assert timeline(results) == [
            (210, "one "),
            (213, "two "),
            (213, "three "),
            (213, "chunk"),
            (214, "chunk"),
            (215, "C"),
        ]
        assert results.messages[3].value.value is call

    def test_lines_and_regex(self) -> None:
        """by="line" cuts after newlines; a custom regex cuts after each of its matches; delay=None re-chunks only."""
        lines: list[Any] = []
        reactivex.from_iterable([content_chunk("a\nb"), content_chunk("c\n\nd")]).pipe(
            ops.smooth("line", delay=None)
        ).subscribe(lambda c: lines.append(c.choices[0].delta.content))
        commas: list[Any] = []
        reactivex.of(content_chunk("x,y,z")).pipe(ops.smooth(r",", delay=0)).subscribe(
            lambda c: commas.append(c.choices[0].delta.content)
        )

        assert lines == ["a\n", "bc\n\n", "d"]
        assert commas == ["x,", "y,", "z"]

    def test_error_flushes_then_errors(self) -> None:
        """An upstream error sends the waiting text at once, then the error; the timer is cancelled."""
        boom = RuntimeError("boom")
        _xs, results = run(
            ops.smooth("word", delay=10),
            on_next(210, content_chunk("a b c ")),
            on_error(211, boom),
        )

        assert timeline(results) == [(210, "a "), (211, "b "), (211, "c "), (211, "E")]


class TestLimit:
    def test_output_token_budget_cuts_and_disposes(self) -> None:
        """The chunk that crosses max_output_tokens is not passed on; the upstream is disposed right then."""
        xs, results = run(
            ops.limit(max_output_tokens=2),
            on_next(210, content_chunk("abcd")),
            on_next(220, content_chunk("efgh")),
            on_next(230, content_chunk("ijkl")),
            on_completed(300),
        )
        err = results.messages[-1].value.exception

        assert timeline(results) == [(210, "abcd"), (220, "efgh"), (230, "E")]
        assert xs.subscriptions == [subscribe(200, 230)]
        assert isinstance(err, BudgetExceededError) and isinstance(err, APIError)
        assert (err.budget, err.limit, err.used) == ("max_output_tokens", 2, 3)
        assert err.partial_response is not None
        assert err.partial_response.choices[0].message.content == "abcdefghijkl"
        assert err.partial_response.choices[0].finish_reason is None

    def test_cost_budget_carries_the_cost(self) -> None:
        """max_cost prices prompt and output with the price table; the error carries the partial cost."""
        model = "gpt-4o"
        per_output = cost_per_token(model, 0, 1)[1]
        budget = per_output * 2.5
        _xs, results = run(
            ops.limit(max_cost=budget, model=model),
            on_next(210, content_chunk("abcd")),
            on_next(220, content_chunk("efgh")),
            on_next(230, content_chunk("ijkl")),
            on_completed(300),
        )
        err = results.messages[-1].value.exception

        assert timeline(results) == [(210, "abcd"), (220, "efgh"), (230, "E")]
        assert err.budget == "max_cost"
        assert err.cost == pytest.approx(per_output * 3)
        assert err.current_cost == err.cost and err.max_budget == budget

    def test_reported_usage_counts_for_reasoning(self) -> None:
        """Reported reasoning tokens (hidden reasoning) cross max_reasoning_tokens when the usage chunk arrives."""
        usage = make_chunk(
            usage={
                "prompt_tokens": 5,
                "completion_tokens": 80,
                "total_tokens": 85,
                "completion_tokens_details": {"reasoning_tokens": 64},
            }
        )
        xs, results = run(
            ops.limit(max_reasoning_tokens=50),
            on_next(210, content_chunk("hi")),
            on_next(220, usage),
            on_completed(230),
        )

        assert timeline(results) == [(210, "hi"), (220, "E")]
        assert results.messages[-1].value.exception.used == 64
        assert xs.subscriptions == [subscribe(200, 220)]

    def test_within_budget_passes_everything(self) -> None:
        """A stream within every budget is passed through unchanged."""
        a, b = content_chunk("ab"), finish_chunk()
        op = ops.limit(max_output_tokens=100, max_reasoning_tokens=10)
        _xs, results = run(op, on_next(210, a), on_next(220, b), on_completed(230))

        assert results.messages == [on_next(210, a), on_next(220, b), on_completed(230)]

    def test_unknown_price_is_a_typed_error(self) -> None:
        """max_cost with a model that has no price fails with PriceNotFoundError, upstream disposed."""
        xs, results = run(
            ops.limit(max_cost=1.0, model="no-such-model-xyz"), on_next(210, content_chunk("a")), on_completed(300)
        )

        assert isinstance(results.messages[-1].value.exception, PriceNotFoundError)
        assert xs.subscriptions == [subscribe(200, 210)]


class TestThrottleSnapshots:
    def test_first_at_once_then_latest_per_window_and_last_at_completion(self) -> None:
        """Leading value at once, the latest of each window at its end, the pending one at completion."""
        xs, results = run(
            ops.throttle_snapshots(5),
            on_next(210, "a"),
            on_next(211, "b"),
            on_next(212, "c"),
            on_next(230, "d"),
            on_next(231, "e"),
            on_completed(233),
        )

        assert results.messages == [
            on_next(210, "a"),
            on_next(215, "c"),
            on_next(230, "d"),
            on_next(233, "e"),
            on_completed(233),
        ]
        assert xs.subscriptions == [subscribe(200, 233)]

    def test_errors_pass_at_once(self) -> None:
        """An error is passed on immediately and no window fires afterwards."""
        boom = RuntimeError("boom")
        _xs, results = run(ops.throttle_snapshots(5), on_next(210, "a"), on_next(211, "b"), on_error(212, boom))

        assert results.messages == [on_next(210, "a"), on_error(212, boom)]
