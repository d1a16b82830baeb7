"""tap_otel: one GenAI span and four histograms per stream, read from the SDK's in-memory exporters."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from _chunks import chunk, usage_chunk
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from reactivex.testing import ReactiveTest, TestScheduler

import rxllm
from rxllm import operators as ops
from rxllm.errors import RateLimitError

on_next, on_completed, on_error = ReactiveTest.on_next, ReactiveTest.on_completed, ReactiveTest.on_error
subscribe = ReactiveTest.subscribe


class Telemetry:
    """An SDK tracer provider and meter provider writing to memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def op(self, **kw: Any) -> Any:
        return ops.tap_otel(self.tracer_provider, self.meter_provider, **kw)

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def metrics(self) -> dict[str, list[Any]]:
        """Metric name -> its data points."""
        data = self.reader.get_metrics_data()
        out: dict[str, list[Any]] = {}
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    out.setdefault(metric.name, []).extend(metric.data.data_points)
        return out


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    telemetry = Telemetry()
    yield telemetry
    telemetry.tracer_provider.shutdown()
    telemetry.meter_provider.shutdown()


def run(otel: Telemetry, *messages: Any, disposed: int = 1000, **kw: Any) -> tuple[Any, Any]:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(*messages)
    results = scheduler.start(lambda: xs.pipe(otel.op(**kw)), disposed=disposed)
    return xs, results


class TestSpan:
    def test_completed_stream_is_one_span_with_the_genai_attributes(self, otel: Telemetry) -> None:
        """A stream is one CLIENT span 'chat gpt-4o' with request, response, usage and TTFT attributes."""
        a = chunk("Hel", role="assistant", model="gpt-4o-2024-08-06")
        b = chunk("lo", finish="stop", model="gpt-4o-2024-08-06")
        u = usage_chunk(12, 3, model="gpt-4o-2024-08-06")
        xs, results = run(
            otel, on_next(205, a), on_next(210, b), on_next(215, u), on_completed(220), model="openai/gpt-4o"
        )

        assert [m.value.kind for m in results.messages] == ["N", "N", "N", "C"]
        assert xs.subscriptions == [subscribe(200, 220)]
        [span] = otel.spans()
        assert span.name == "chat openai/gpt-4o"
        assert span.kind is SpanKind.CLIENT
        attrs = dict(span.attributes or {})
        assert attrs["gen_ai.operation.name"] == "chat"
        assert attrs["gen_ai.provider.name"] == "openai"
        assert attrs["gen_ai.request.model"] == "openai/gpt-4o"
        assert attrs["gen_ai.request.stream"] is True
        assert attrs["gen_ai.response.id"] == "chatcmpl-t"
        assert attrs["gen_ai.response.model"] == "gpt-4o-2024-08-06"
        assert tuple(attrs["gen_ai.response.finish_reasons"]) == ("stop",)
        assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (12, 3)
        assert attrs["gen_ai.response.time_to_first_chunk"] == pytest.approx(5.0)
        assert attrs["rxllm.outcome"] == "completed"
        assert "error.type" not in attrs
        assert span.status.status_code is StatusCode.UNSET

    def test_span_is_named_after_the_chunks_model_when_none_is_given(self, otel: Telemetry) -> None:
        """Without model=, the first chunk's model names the span and the request model."""
        run(otel, on_next(210, chunk("x", model="gpt-4o-mini")), on_completed(220))

        [span] = otel.spans()
        assert span.name == "chat gpt-4o-mini"
        assert span.attributes["gen_ai.request.model"] == "gpt-4o-mini"  # type: ignore[index]
        assert span.attributes["gen_ai.provider.name"] == "openai"  # type: ignore[index]

    def test_error_sets_error_type_and_status(self, otel: Telemetry) -> None:
        """A failed stream ends its span with error.type and an ERROR status; the error passes on."""
        error = RateLimitError("slow down", llm_provider="openai", model="gpt-4o")
        _, results = run(otel, on_next(210, chunk("x")), on_error(230, error), model="gpt-4o")

        assert results.messages[-1] == on_error(230, error)
        [span] = otel.spans()
        assert span.attributes["error.type"] == "RateLimitError"  # type: ignore[index]
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes["rxllm.outcome"] == "error"  # type: ignore[index]

    def test_cancelled_stream_ends_its_span_with_partial_usage(self, otel: Telemetry) -> None:
        """Disposing mid-stream ends the span at once, with estimated usage for what arrived."""
        xs, _ = run(
            otel, on_next(210, chunk("one two three four", model="gpt-4o")), on_next(400, chunk("more")), disposed=300
        )

        assert xs.subscriptions == [subscribe(200, 300)]
        [span] = otel.spans()
        attrs = dict(span.attributes or {})
        assert attrs["rxllm.outcome"] == "cancelled"
        assert attrs["gen_ai.usage.output_tokens"] == 5
        assert attrs["rxllm.usage.estimated"] is True
        assert "gen_ai.response.finish_reasons" not in attrs

    def test_extra_attributes(self, otel: Telemetry) -> None:
        """attributes= adds the caller's own span attributes."""
        run(otel, on_next(210, chunk("x")), on_completed(220), attributes={"app.tenant": "acme"})

        [span] = otel.spans()
        assert span.attributes["app.tenant"] == "acme"  # type: ignore[index]

    def test_each_subscription_is_its_own_span(self, otel: Telemetry) -> None:
        """Two subscriptions of one pipeline make two spans with their own usage."""
        source = rxllm.stream("mock/echo", [{"role": "user", "content": "a b"}]).pipe(otel.op(model="mock/echo"))
        assert "".join(rxllm.to_iterator(source.pipe(ops.text()))) == "a b"
        assert "".join(rxllm.to_iterator(source.pipe(ops.text()))) == "a b"

        spans = otel.spans()
        assert [s.name for s in spans] == ["chat mock/echo", "chat mock/echo"]
        assert spans[0].context.span_id != spans[1].context.span_id
        assert all(s.attributes["gen_ai.provider.name"] == "mock" for s in spans)  # type: ignore[index]


class TestContent:
    def test_content_is_not_recorded_by_default(self, otel: Telemetry, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without opting in, neither the prompt nor the answer reaches the span."""
        monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
        messages = [{"role": "user", "content": "secret prompt"}]
        run(otel, on_next(210, chunk("secret answer", finish="stop")), on_completed(220), messages=messages)

        [span] = otel.spans()
        text = json.dumps(dict(span.attributes or {}), default=str)
        assert "secret" not in text

    @pytest.mark.parametrize("how", ["argument", "environment"])
    def test_content_when_opted_in(self, otel: Telemetry, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
        """capture_content=True (or the OTel environment variable) records input and output messages."""
        kw: dict[str, Any] = {"messages": [{"role": "user", "content": "the prompt"}]}
        if how == "argument":
            kw["capture_content"] = True
        else:
            monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
        run(otel, on_next(210, chunk("the ")), on_next(211, chunk("answer", finish="stop")), on_completed(220), **kw)

        [span] = otel.spans()
        assert json.loads(span.attributes["gen_ai.input.messages"]) == kw["messages"]  # type: ignore[index,arg-type]
        output = json.loads(span.attributes["gen_ai.output.messages"])  # type: ignore[index,arg-type]
        assert output[0]["content"] == "the answer"


class TestMetrics:
    def test_the_four_histograms(self, otel: Telemetry) -> None:
        """Duration, token usage (input and output), TTFT and time per chunk are recorded in virtual time."""
        run(
            otel,
            on_next(205, chunk("a")),
            on_next(207, chunk("b")),
            on_next(211, chunk("c", finish="stop")),
            on_next(212, usage_chunk(10, 3)),
            on_completed(220),
            model="gpt-4o",
        )

        metrics = otel.metrics()
        [duration] = metrics["gen_ai.client.operation.duration"]
        assert duration.sum == pytest.approx(20.0) and duration.count == 1
        assert duration.attributes["gen_ai.request.model"] == "gpt-4o"
        assert duration.attributes["gen_ai.provider.name"] == "openai"
        tokens = {p.attributes["gen_ai.token.type"]: p.sum for p in metrics["gen_ai.client.token.usage"]}
        assert tokens == {"input": 10, "output": 3}
        [ttfc] = metrics["gen_ai.client.operation.time_to_first_chunk"]
        assert ttfc.sum == pytest.approx(5.0)
        [per_chunk] = metrics["gen_ai.client.operation.time_per_output_chunk"]
        assert per_chunk.count == 3 and per_chunk.sum == pytest.approx(7.0)

    def test_error_type_on_failed_durations(self, otel: Telemetry) -> None:
        """A failure's duration is recorded with error.type."""
        run(otel, on_next(205, chunk("a")), on_error(210, RateLimitError("x")), model="gpt-4o")

        [duration] = otel.metrics()["gen_ai.client.operation.duration"]
        assert duration.attributes["error.type"] == "RateLimitError"

    def test_a_failing_exporter_never_breaks_the_stream(self, otel: Telemetry) -> None:
        """An exception inside the SDK's span end is logged and the stream still completes."""

        class Broken(SimpleSpanProcessor):
            def on_end(self, span: ReadableSpan) -> None:
                raise RuntimeError("exporter down")

        otel.tracer_provider.add_span_processor(Broken(InMemorySpanExporter()))
        _, results = run(otel, on_next(205, chunk("a")), on_completed(210))

        assert results.messages[-1] == on_completed(210)
