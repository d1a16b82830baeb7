"""tap_cost: one cost/usage/latency report per subscription, in virtual time."""

from __future__ import annotations

from typing import Any

import pytest
import reactivex
import structlog
from _chunks import chunk, usage_chunk
from reactivex.testing import ReactiveTest, TestScheduler

from rxllm import operators as ops
from rxllm.errors import InternalServerError
from rxllm.operators import CostReport
from rxllm.operators._tap_cost import _tokens_for_chars
from rxllm.usage import estimate_tokens

on_next, on_completed, on_error = ReactiveTest.on_next, ReactiveTest.on_completed, ReactiveTest.on_error
subscribe = ReactiveTest.subscribe


def run(*messages: Any, disposed: int = 1000, **kw: Any) -> tuple[Any, Any, list[CostReport]]:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(*messages)
    reports: list[CostReport] = []
    results = scheduler.start(lambda: xs.pipe(ops.tap_cost(reports.append, **kw)), disposed=disposed)
    return xs, results, reports


class TestTapCost:
    def test_chunks_pass_through_and_one_report_on_completion(self) -> None:
        """Chunks are untouched; the report has exact tokens, cost and virtual times."""
        a = chunk(role="assistant", model="gpt-4o-2024-08-06")
        b = chunk("Hello", model="gpt-4o-2024-08-06")
        c = chunk(" world", finish="stop", model="gpt-4o-2024-08-06")
        u = usage_chunk(100, 20, cached=40, model="gpt-4o-2024-08-06")
        xs, results, reports = run(
            on_next(205, a), on_next(210, b), on_next(220, c), on_next(225, u), on_completed(230)
        )

        assert results.messages == [
            on_next(205, a),
            on_next(210, b),
            on_next(220, c),
            on_next(225, u),
            on_completed(230),
        ]
        assert results.messages[1].value.value is b
        assert xs.subscriptions == [subscribe(200, 230)]
        [r] = reports
        assert r.outcome == "completed" and r.error is None
        assert r.model == "gpt-4o-2024-08-06" and r.provider == "openai"
        assert (r.prompt_tokens, r.completion_tokens, r.cached_tokens, r.total_tokens) == (100, 20, 40, 120)
        assert r.usage_estimated is False
        assert r.prompt_cost == pytest.approx(60 * 2.5e-6 + 40 * 1.25e-6)
        assert r.completion_cost == pytest.approx(20 * 1e-5)
        assert r.cost == pytest.approx(r.prompt_cost + r.completion_cost)
        assert r.cost_unavailable is None
        assert r.time_to_first_chunk == pytest.approx(5)
        assert r.time_to_first_content == pytest.approx(10)
        assert r.duration == pytest.approx(30)
        assert r.chunk_count == 4
        assert r.output_tokens_per_second == pytest.approx(20 / 25)

    def test_error_is_reported_with_the_exception(self) -> None:
        """An upstream error gives outcome "error" with that exception, then is passed on."""
        err = InternalServerError("boom", model="gpt-4o")
        xs, results, reports = run(on_next(210, chunk("Hi")), on_error(220, err))

        assert results.messages == [on_next(210, chunk("Hi")), on_error(220, err)]
        assert xs.subscriptions == [subscribe(200, 220)]
        [r] = reports
        assert r.outcome == "error" and r.error is err
        assert r.duration == pytest.approx(20)

    def test_cancelled_stream_is_costed_from_what_arrived(self) -> None:
        """Disposal reports "cancelled", with tokens estimated from the characters received."""
        xs, results, reports = run(
            on_next(210, chunk("abcdefgh")),
            on_next(220, chunk("ijkl")),
            on_next(400, chunk("late")),
            disposed=300,
            messages=[{"role": "user", "content": "abcd"}],
        )

        assert len(results.messages) == 2
        assert xs.subscriptions == [subscribe(200, 300)]
        [r] = reports
        assert r.outcome == "cancelled" and r.error is None
        assert r.usage_estimated is True
        assert r.completion_tokens == 3  # 12 characters
        assert r.prompt_tokens == 5  # 1 token of text + 4 of framing
        assert r.cost == pytest.approx(5 * 2.5e-6 + 3 * 1e-5)
        assert r.duration == pytest.approx(100)

    def test_cancelled_after_partial_usage_estimates_the_missing_part(self) -> None:
        """Anthropic-style: prompt usage came first; the output count never came, so it is estimated."""
        first = chunk(model="claude-sonnet-4-5", usage={"prompt_tokens": 50, "completion_tokens": 0})
        _xs, _, reports = run(
            on_next(210, first), on_next(220, chunk("abcdefgh", model="claude-sonnet-4-5")), disposed=230
        )

        [r] = reports
        assert (r.prompt_tokens, r.completion_tokens, r.usage_estimated) == (50, 2, True)
        assert r.cost == pytest.approx(50 * 3e-6 + 2 * 15e-6)
        assert r.provider == "anthropic"

    def test_split_usage_is_merged(self) -> None:
        """Usage split across chunks: the last positive value per field wins."""
        _xs, _, reports = run(
            on_next(210, chunk(usage={"prompt_tokens": 50, "completion_tokens": 1})),
            on_next(220, chunk("x", usage={"prompt_tokens": 0, "completion_tokens": 9})),
            on_completed(230),
        )

        [r] = reports
        assert (r.prompt_tokens, r.completion_tokens, r.usage_estimated) == (50, 9, False)

    def test_exactly_once_per_subscription(self) -> None:
        """Two subscriptions give two reports; completion followed by disposal gives one each."""
        scheduler = TestScheduler()
        xs = scheduler.create_cold_observable(on_next(10, chunk("a")), on_completed(20))
        reports: list[CostReport] = []
        tapped = xs.pipe(ops.tap_cost(reports.append))
        d1 = tapped.subscribe(scheduler=scheduler)
        d2 = tapped.subscribe(scheduler=scheduler)
        scheduler.advance_to(50)
        d1.dispose()
        d2.dispose()

        assert [r.outcome for r in reports] == ["completed", "completed"]
        assert [r.chunk_count for r in reports] == [1, 1]

    def test_reasoning_and_tool_calls_count_as_output(self) -> None:
        """Estimation counts reasoning, refusal and tool-call characters; reasoning is split out."""
        tool = [{"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
        _xs, _, reports = run(
            on_next(210, chunk(reasoning="abcdefgh")),
            on_next(215, chunk(tools=tool)),
            on_next(220, chunk(refusal="no")),
            on_completed(230),
        )

        [r] = reports
        assert r.reasoning_tokens == 2
        assert r.completion_tokens == _tokens_for_chars(8 + 4 + 2)
        assert r.time_to_first_content == pytest.approx(10)

    def test_every_choice_is_counted(self) -> None:
        """With n > 1, the text of every choice is metered, not only choices[0]."""
        more = [{"index": 1, "delta": {"content": "efghijkl"}, "finish_reason": None}]
        _xs, _, reports = run(on_next(210, chunk("abcd", more=more)), on_completed(220))

        [r] = reports
        assert r.completion_tokens == 3

    def test_role_only_chunk_is_not_first_content(self) -> None:
        """Time to first content skips role-only and empty chunks."""
        _xs, _, reports = run(on_next(205, chunk(role="assistant")), on_next(212, chunk("x")), on_completed(220))

        [r] = reports
        assert (r.time_to_first_chunk, r.time_to_first_content) == (pytest.approx(5), pytest.approx(12))

    def test_unknown_model_reports_no_cost_with_a_reason(self) -> None:
        """A model with no price gives cost None and says why, never an error."""
        _xs, results, reports = run(on_next(210, chunk("x", model="my-finetune")), on_completed(220))

        assert results.messages[-1] == on_completed(220)
        [r] = reports
        assert r.cost is None and r.prompt_cost is None and r.completion_cost is None
        assert r.cost_unavailable is not None and "my-finetune" in r.cost_unavailable

    def test_no_model_at_all(self) -> None:
        """No model name anywhere: cost None, and the reason says to pass model=."""
        _xs, _, reports = run(on_completed(220))

        [r] = reports
        assert r.cost is None and "model=" in (r.cost_unavailable or "")
        assert r.time_to_first_chunk is None and r.output_tokens_per_second is None

    def test_model_argument_wins_and_chunk_model_is_the_fallback(self) -> None:
        """model= is reported and priced; when it has no price, the chunks' model is tried."""
        _, _, reports = run(on_next(210, chunk("x", model="gpt-4o")), on_completed(220), model="mock/echo")
        _, _, fallback = run(on_next(210, chunk("x", model="gpt-4o")), on_completed(220), model="alias")

        assert reports[0].model == "mock/echo" and reports[0].cost == 0.0 and reports[0].provider == "mock"
        assert fallback[0].model == "alias" and fallback[0].cost is not None and fallback[0].cost > 0

    def test_pricing_table_and_single_entry(self) -> None:
        """pricing= may be a table to search or one entry applied to any model."""
        table = {"house-model": {"input_cost_per_token": 0.0, "output_cost_per_token": 1.0}}
        msgs = (
            on_next(210, chunk("x", model="house-model", usage={"prompt_tokens": 3, "completion_tokens": 2})),
            on_completed(220),
        )
        _, _, by_table = run(*msgs, pricing=table)
        _, _, by_entry = run(*msgs, pricing={"input_cost_per_token": 1.0, "output_cost_per_token": 0.0})

        assert by_table[0].cost == 2.0
        assert by_entry[0].cost == 3.0

    def test_on_report_that_raises_is_logged_and_ignored(self) -> None:
        """A failing report callback neither breaks the stream nor turns into an error."""

        def broken(_: CostReport) -> None:
            raise ValueError("callback bug")

        scheduler = TestScheduler()
        xs = scheduler.create_hot_observable(on_next(210, chunk("x")), on_completed(220))
        with structlog.testing.capture_logs() as logs:
            results = scheduler.start(lambda: xs.pipe(ops.tap_cost(broken)))

        assert results.messages == [on_next(210, chunk("x")), on_completed(220)]
        assert xs.subscriptions == [subscribe(200, 220)]
        [entry] = [e for e in logs if e["event"] == "rxllm.tap_cost.on_report_failed"]
        assert entry["log_level"] == "error"

    def test_non_chunk_items_pass_unmetered(self) -> None:
        """Items that are not chunks (a retry's restart marker) pass through and are not counted."""
        marker = ops.StreamRestart(attempt=2, error=InternalServerError("x"), discarded_chunks=1)
        _, results, reports = run(on_next(210, marker), on_next(215, chunk("abcd")), on_completed(220))

        assert results.messages[0] == on_next(210, marker)
        assert reports[0].chunk_count == 1

    def test_works_without_a_scheduler(self) -> None:
        """Outside virtual time the monotonic clock is used; a synchronous stream still reports."""
        reports: list[CostReport] = []
        reactivex.from_iterable([chunk("abcd"), usage_chunk(1, 1)]).pipe(ops.tap_cost(reports.append)).subscribe()

        [r] = reports
        assert r.outcome == "completed" and r.duration >= 0 and r.cost == pytest.approx(2.5e-6 + 1e-5)

    @pytest.mark.parametrize("text", ["", "a", "abcd", "abcde", "x" * 103])
    def test_char_estimate_matches_estimate_tokens(self, text: str) -> None:
        """Counting characters gives the same estimate as rxllm.usage on the joined text."""
        assert _tokens_for_chars(len(text)) == estimate_tokens(text)
