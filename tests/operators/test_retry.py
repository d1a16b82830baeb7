"""retry_stream and fallback: never a chunk twice, in virtual time."""

from __future__ import annotations

from typing import Any

import pytest
from _chunks import chunk
from reactivex import defer
from reactivex.testing import ReactiveTest, TestScheduler

from rxllm import operators as ops
from rxllm.errors import BadRequestError, InternalServerError, RateLimitError, ServiceUnavailableError, Timeout
from rxllm.operators import StreamRestart
from rxllm.retry_policy import exponential_backoff

on_next, on_completed, on_error = ReactiveTest.on_next, ReactiveTest.on_completed, ReactiveTest.on_error
subscribe = ReactiveTest.subscribe

A, B, C = chunk("a"), chunk("b"), chunk("c")


class Flaky:
    """A cold source whose n-th subscription plays the n-th script (relative times)."""

    def __init__(self, scheduler: TestScheduler, *scripts: list[Any]) -> None:
        self.sources = [scheduler.create_cold_observable(*s) for s in scripts]
        self.count = 0

        def next_source(_: Any) -> Any:
            source = self.sources[min(self.count, len(self.sources) - 1)]
            self.count += 1
            return source

        self.observable = defer(next_source)


class TestRetryStream:
    def test_retry_before_the_first_chunk_is_transparent(self) -> None:
        """An error before any chunk resubscribes after the backoff; the consumer sees one stream."""
        s = TestScheduler()
        err = ServiceUnavailableError("overloaded")
        flaky = Flaky(s, [on_error(5, err)], [on_next(3, A), on_next(4, B), on_completed(6)])
        results = s.start(lambda: flaky.observable.pipe(ops.retry_stream(3, backoff=2)))

        assert results.messages == [on_next(210, A), on_next(211, B), on_completed(213)]
        assert flaky.sources[0].subscriptions == [subscribe(200, 205)]
        assert flaky.sources[1].subscriptions == [subscribe(207, 213)]

    def test_error_after_a_chunk_propagates(self) -> None:
        """Once a chunk was delivered, retrying would repeat it: the error passes through."""
        s = TestScheduler()
        err = InternalServerError("died mid-stream")
        flaky = Flaky(s, [on_next(2, A), on_error(5, err)], [on_next(1, A), on_completed(2)])
        results = s.start(lambda: flaky.observable.pipe(ops.retry_stream(3, backoff=0)))

        assert results.messages == [on_next(202, A), on_error(205, err)]
        assert flaky.count == 1

    def test_restart_announces_itself_in_band(self) -> None:
        """restart=True: a StreamRestart marker, then the new attempt's complete stream."""
        s = TestScheduler()
        err = Timeout("stalled")
        flaky = Flaky(s, [on_next(2, A), on_next(3, B), on_error(5, err)], [on_next(1, C), on_completed(2)])
        results = s.start(lambda: flaky.observable.pipe(ops.retry_stream(2, backoff=1, restart=True)))

        assert results.messages == [
            on_next(202, A),
            on_next(203, B),
            on_next(205, StreamRestart(attempt=2, error=err, discarded_chunks=2)),
            on_next(207, C),
            on_completed(208),
        ]
        assert flaky.sources[0].subscriptions == [subscribe(200, 205)]
        assert flaky.sources[1].subscriptions == [subscribe(206, 208)]

    def test_non_retryable_error_propagates_at_once(self) -> None:
        """A bad request is not retried."""
        s = TestScheduler()
        err = BadRequestError("bad")
        flaky = Flaky(s, [on_error(5, err)], [on_completed(1)])
        results = s.start(lambda: flaky.observable.pipe(ops.retry_stream(5, backoff=0)))

        assert results.messages == [on_error(205, err)]
        assert flaky.count == 1

    def test_gives_up_after_attempts_with_the_last_error(self) -> None:
        """attempts counts every attempt; the last error propagates."""
        s = TestScheduler()
        errors = [InternalServerError(f"e{i}") for i in range(3)]
        flaky = Flaky(s, *[[on_error(1, e)] for e in errors])
        results = s.start(lambda: flaky.observable.pipe(ops.retry_stream(3, backoff=lambda n: n * 10)))

        assert results.messages == [on_error(233, errors[2])]
        assert flaky.count == 3
        assert flaky.sources[1].subscriptions == [subscribe(211, 212)]
        assert flaky.sources[2].subscriptions == [subscribe(232, 233)]

    def test_rate_limit_retry_after_is_honoured(self) -> None:
        """A RateLimitError's retry_after lengthens a shorter backoff."""
        s = TestScheduler()
        flaky = Flaky(s, [on_error(1, RateLimitError("slow down", retry_after=30))], [on_next(1, A), on_completed(2)])
        results = s.start(lambda: flaky.observable.pipe(ops.retry_stream(2, backoff=1)))

        assert results.messages == [on_next(232, A), on_completed(233)]

    def test_backoff_that_raises_becomes_the_error(self) -> None:
        """A user backoff function that raises ends the stream with its exception."""
        s = TestScheduler()
        bug = ZeroDivisionError("backoff bug")

        def backoff(_: int) -> float:
            raise bug

        flaky = Flaky(s, [on_error(1, InternalServerError("x"))])
        results = s.start(lambda: flaky.observable.pipe(ops.retry_stream(2, backoff=backoff)))

        assert results.messages == [on_error(201, bug)]

    def test_disposal_during_backoff_cancels_the_retry(self) -> None:
        """A consumer leaving while waiting to retry: no new request is made."""
        s = TestScheduler()
        flaky = Flaky(s, [on_error(5, InternalServerError("x"))], [on_next(1, A)])
        results = s.start(lambda: flaky.observable.pipe(ops.retry_stream(2, backoff=100)), disposed=250)

        assert results.messages == []
        assert flaky.count == 1
        assert flaky.sources[1].subscriptions == []

    def test_disposal_disposes_the_current_attempt(self) -> None:
        """Disposal reaches the attempt that is running."""
        s = TestScheduler()
        flaky = Flaky(s, [on_error(5, InternalServerError("x"))], [on_next(1, A), on_next(200, B)])
        results = s.start(lambda: flaky.observable.pipe(ops.retry_stream(2, backoff=0)), disposed=300)

        assert results.messages == [on_next(206, A)]
        assert flaky.sources[1].subscriptions == [subscribe(205, 300)]

    def test_rejects_zero_attempts(self) -> None:
        """At least one attempt."""
        with pytest.raises(ValueError, match="attempts"):
            ops.retry_stream(0)

    def test_exponential_backoff(self) -> None:
        """The default schedule doubles from 0.5 s up to 8 s; jitter only shortens it."""
        backoff = exponential_backoff()
        jittered = exponential_backoff(initial=1, jitter=0.5)

        assert [backoff(n) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 8, 8]
        assert all(0.5 <= jittered(1) <= 1 for _ in range(50))


class TestFallback:
    def test_switches_before_the_first_chunk(self) -> None:
        """A failing primary is replaced by the first alternative, transparently."""
        s = TestScheduler()
        primary = s.create_cold_observable(on_error(5, RateLimitError("quota")))
        backup = s.create_cold_observable(on_next(2, B), on_completed(3))
        results = s.start(lambda: primary.pipe(ops.fallback(backup)))

        assert results.messages == [on_next(207, B), on_completed(208)]
        assert primary.subscriptions == [subscribe(200, 205)]
        assert backup.subscriptions == [subscribe(205, 208)]

    def test_alternatives_in_order_and_the_last_error(self) -> None:
        """Each alternative is tried once, in order; when all fail the last error propagates."""
        s = TestScheduler()
        errs = [InternalServerError("p"), InternalServerError("b1"), InternalServerError("b2")]
        primary, b1, b2 = (s.create_cold_observable(on_error(1, e)) for e in errs)
        results = s.start(lambda: primary.pipe(ops.fallback(b1, b2)))

        assert results.messages == [on_error(203, errs[2])]
        assert b1.subscriptions == [subscribe(201, 202)]
        assert b2.subscriptions == [subscribe(202, 203)]

    def test_after_a_chunk_the_error_propagates(self) -> None:
        """No fallback once the consumer has chunks, unless restart=True."""
        s = TestScheduler()
        err = InternalServerError("mid")
        primary = s.create_cold_observable(on_next(1, A), on_error(2, err))
        backup = s.create_cold_observable(on_next(1, B), on_completed(2))
        results = s.start(lambda: primary.pipe(ops.fallback(backup)))

        assert results.messages == [on_next(201, A), on_error(202, err)]
        assert backup.subscriptions == []

    def test_restart_switches_and_announces(self) -> None:
        """restart=True after chunks: a StreamRestart, then the alternative's stream."""
        s = TestScheduler()
        err = InternalServerError("mid")
        primary = s.create_cold_observable(on_next(1, A), on_error(2, err))
        backup = s.create_cold_observable(on_next(1, B), on_completed(2))
        results = s.start(lambda: primary.pipe(ops.fallback(backup, restart=True)))

        assert results.messages == [
            on_next(201, A),
            on_next(202, StreamRestart(attempt=2, error=err, discarded_chunks=1)),
            on_next(203, B),
            on_completed(204),
        ]

    def test_only_api_errors_by_default(self) -> None:
        """A bug (not an rxllm API error) is not hidden behind another model's answer."""
        s = TestScheduler()
        bug = KeyError("bug")
        primary = s.create_cold_observable(on_error(1, bug))
        backup = s.create_cold_observable(on_next(1, B), on_completed(2))
        results = s.start(lambda: primary.pipe(ops.fallback(backup)))

        assert results.messages == [on_error(201, bug)]
        assert backup.subscriptions == []


class TestRetryLimits:
    def test_no_retry_starts_past_the_deadline(self) -> None:
        """deadline=: retries run while their backoff ends within it; the one that would not is not made."""
        s = TestScheduler()
        err = ServiceUnavailableError("overloaded")
        flaky = Flaky(s, [on_error(1, err)])
        results = s.start(lambda: flaky.observable.pipe(ops.retry_stream(10, backoff=10, scheduler=s, deadline=25)))

        # attempts at 200, 211, 222; the next would start at 233, past 200 + 25
        assert results.messages == [on_error(223, err)]
        assert flaky.count == 3

    def test_a_zero_max_retry_after_is_allowed(self) -> None:
        """max_retry_after=0 (never wait for Retry-After) is a valid setting; negatives and inf are not."""
        ops.retry_stream(2, max_retry_after=0)
        for bad in (-1.0, float("inf"), float("nan")):
            with pytest.raises(ValueError, match="max_retry_after"):
                ops.retry_stream(2, max_retry_after=bad)
