"""log_stream: one canonical line per stream, per-chunk lines only at debug."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from _chunks import chunk, usage_chunk
from reactivex.testing import ReactiveTest, TestScheduler

from rxllm import operators as ops
from rxllm.errors import RateLimitError

on_next, on_completed, on_error = ReactiveTest.on_next, ReactiveTest.on_completed, ReactiveTest.on_error
subscribe = ReactiveTest.subscribe

SECRET_TEXT = "my secret answer"


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


def run(*messages: Any, disposed: int = 1000, **kw: Any) -> tuple[Any, Any, list[Any]]:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(*messages)
    with structlog.testing.capture_logs() as logs:
        results = scheduler.start(lambda: xs.pipe(ops.log_stream(**kw)), disposed=disposed)
    return xs, results, logs


class TestLogStream:
    def test_one_canonical_line_at_the_end(self) -> None:
        """A completed stream logs exactly one info line with tokens, cost, timings and outcome."""
        a, b, u = chunk(SECRET_TEXT), chunk("!", finish="stop"), usage_chunk(10, 5)
        xs, results, logs = run(on_next(204, a), on_next(206, b), on_next(207, u), on_completed(210), log_chunks=False)

        assert results.messages == [on_next(204, a), on_next(206, b), on_next(207, u), on_completed(210)]
        assert xs.subscriptions == [subscribe(200, 210)]
        [line] = logs
        assert line["event"] == "rxllm.stream" and line["log_level"] == "info"
        assert line["model"] == "gpt-4o" and line["provider"] == "openai"
        assert line["outcome"] == "completed"
        assert (line["prompt_tokens"], line["completion_tokens"], line["total_tokens"]) == (10, 5, 15)
        assert line["cost_usd"] == pytest.approx(10 * 2.5e-6 + 5 * 1e-5)
        assert line["time_to_first_chunk_s"] == pytest.approx(4)
        assert line["duration_s"] == pytest.approx(10)
        assert line["chunks"] == 3
        assert line["usage_estimated"] is False

    def test_never_logs_text(self) -> None:
        """Neither generated text nor prompt text appears in any log line, debug included."""
        _, _, logs = run(on_next(204, chunk(SECRET_TEXT)), on_completed(210), log_chunks=True)

        assert len(logs) == 2
        assert SECRET_TEXT not in repr(logs)

    def test_error_outcome_with_type_and_safe_message(self) -> None:
        """An error is logged with its type, rxllm message and status; then passed on."""
        err = RateLimitError("quota exceeded", model="gpt-4o")
        _xs, results, logs = run(on_next(204, chunk("x")), on_error(205, err), log_chunks=False)

        assert results.messages[-1] == on_error(205, err)
        [line] = logs
        assert (line["outcome"], line["error_type"], line["error"], line["status_code"]) == (
            "error",
            "RateLimitError",
            "quota exceeded",
            429,
        )

    def test_foreign_exceptions_log_only_their_type(self) -> None:
        """Exceptions that are not rxllm's may carry anything: only the class is logged."""
        _, _, logs = run(on_error(205, ValueError(SECRET_TEXT)), log_chunks=False)

        [line] = logs
        assert line["error_type"] == "ValueError" and "error" not in line
        assert SECRET_TEXT not in repr(logs)

    def test_cancelled_stream_is_logged(self) -> None:
        """A consumer that leaves still produces the line, with outcome cancelled."""
        xs, _, logs = run(on_next(204, chunk("x")), on_next(400, chunk("y")), disposed=300, log_chunks=False)

        assert xs.subscriptions == [subscribe(200, 300)]
        [line] = logs
        assert line["outcome"] == "cancelled" and line["usage_estimated"] is True

    def test_unpriced_model_logs_the_reason(self) -> None:
        """No price: cost_usd is None and cost_unavailable explains."""
        _, _, logs = run(on_next(204, chunk("x", model="house")), on_completed(205), log_chunks=False)

        [line] = logs
        assert line["cost_usd"] is None and "house" in line["cost_unavailable"]

    def test_per_chunk_lines_at_debug_when_enabled(self) -> None:
        """With debug enabled (capture_logs configures structlog), each chunk gets a debug line."""
        two = [{"index": 1, "delta": {"content": "abc"}, "finish_reason": "stop"}]
        _, _, logs = run(on_next(204, chunk("x", more=two)), on_next(205, chunk("yz")), on_completed(206))

        debug = [e for e in logs if e["event"] == "rxllm.stream.chunk"]
        assert [e["log_level"] for e in debug] == ["debug", "debug"]
        assert [(e["seq"], e["choices"], e["chars"], e["finish_reasons"]) for e in debug] == [
            (1, 2, 4, ["stop"]),
            (2, 1, 2, None),
        ]
        assert logs[-1]["event"] == "rxllm.stream"

    def test_no_per_chunk_lines_when_debug_is_filtered(self) -> None:
        """A logger filtering at info gets only the canonical line."""
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
        logger = structlog.get_logger("rxllm")
        assert not logger.is_enabled_for(logging.DEBUG)
        _, _, logs = run(on_next(204, chunk("x")), on_completed(206), logger=logger)

        assert [e["event"] for e in logs] == ["rxllm.stream"]

    def test_unconfigured_structlog_gets_no_per_chunk_lines(self) -> None:
        """With structlog unconfigured (it would print everything), per-chunk lines stay off."""
        scheduler = TestScheduler()
        xs = scheduler.create_hot_observable(on_next(204, chunk("x")), on_completed(206))
        events: list[str] = []

        class Spy:
            def debug(self, event: str, **_: Any) -> None:
                events.append(event)

            def info(self, event: str, **_: Any) -> None:
                events.append(event)

            def is_enabled_for(self, _: int) -> bool:
                return True

        scheduler.start(lambda: xs.pipe(ops.log_stream(Spy())))

        assert events == ["rxllm.stream"]

    def test_custom_logger_and_model(self) -> None:
        """A given logger and model name are used."""
        lines: list[dict[str, Any]] = []

        class Spy:
            def info(self, event: str, **kw: Any) -> None:
                lines.append({"event": event, **kw})

        scheduler = TestScheduler()
        xs = scheduler.create_hot_observable(on_next(204, chunk("x")), on_completed(206))
        scheduler.start(lambda: xs.pipe(ops.log_stream(Spy(), model="mock/echo", log_chunks=False)))

        [line] = lines
        assert (line["model"], line["provider"], line["cost_usd"]) == ("mock/echo", "mock", 0.0)
