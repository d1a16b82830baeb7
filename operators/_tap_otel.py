"""``tap_otel``: one OpenTelemetry span and the GenAI client metrics per subscription.

``opentelemetry-api`` is an optional dependency (``pip install "rxllm[otel]"``), imported when
the operator is first subscribed. Without an SDK configured the API's no-op providers make the
operator nearly free; with one, each stream becomes a CLIENT span following the GenAI semantic
conventions, and four histograms are recorded.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson
from reactivex import Observable, abc
from reactivex.disposable import Disposable, SingleAssignmentDisposable

from rxllm._log import get_logger
from rxllm.pricing import lookup_model_price
from rxllm.types import ChatCompletionChunk

from ._scheduling import clock
from ._tap_cost import CostReport, tap_cost

__all__ = ["CAPTURE_CONTENT_ENV", "tap_otel"]

_log = get_logger("rxllm.otel")

#: The environment variable the OpenTelemetry GenAI instrumentations read for opting in to content.
CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"

# Bucket boundaries the GenAI semantic conventions advise.
_SECONDS_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
_CHUNK_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56)
_TOKEN_BUCKETS = tuple(float(4**i) for i in range(14))


def _import_otel() -> tuple[Any, Any, Any]:
    try:
        from opentelemetry import metrics, trace
        from opentelemetry.trace import Status, StatusCode  # noqa: F401
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "tap_otel needs the OpenTelemetry API: pip install 'rxllm[otel]' (opentelemetry-api)"
        ) from None
    return trace, metrics, StatusCode


class _Instruments:
    """The four GenAI client histograms, created once per operator (they are thread-safe)."""

    def __init__(self, meter: Any) -> None:
        def histogram(name: str, unit: str, description: str, buckets: tuple[float, ...]) -> Any:
            try:
                return meter.create_histogram(
                    name, unit=unit, description=description, explicit_bucket_boundaries_advisory=list(buckets)
                )
            except TypeError:  # an API older than the advisory parameter
                return meter.create_histogram(name, unit=unit, description=description)

        self.duration = histogram("gen_ai.client.operation.duration", "s", "GenAI operation duration", _SECONDS_BUCKETS)
        self.tokens = histogram(
            "gen_ai.client.token.usage", "{token}", "Number of input and output tokens used", _TOKEN_BUCKETS
        )
        self.first_chunk = histogram(
            "gen_ai.client.operation.time_to_first_chunk",
            "s",
            "Time to receive the first chunk of a streamed response",
            _SECONDS_BUCKETS,
        )
        self.per_chunk = histogram(
            "gen_ai.client.operation.time_per_output_chunk",
            "s",
            "Time between consecutive chunks of a streamed response, after the first",
            _CHUNK_BUCKETS,
        )


def _wants_content(capture_content: bool | None) -> bool:
    if capture_content is not None:
        return capture_content
    return os.environ.get(CAPTURE_CONTENT_ENV, "").strip().lower() in ("1", "true", "yes")


def tap_otel(
    tracer_provider: Any = None,
    meter_provider: Any = None,
    *,
    model: str | None = None,
    provider: str | None = None,
    operation: str = "chat",
    messages: Iterable[Mapping[str, Any]] | None = None,
    capture_content: bool | None = None,
    attributes: Mapping[str, Any] | None = None,
    chunk_timing: bool = True,
    scheduler: abc.SchedulerBase | None = None,
) -> Callable[[Observable[ChatCompletionChunk]], Observable[ChatCompletionChunk]]:
    """Trace each subscription as one OpenTelemetry span and record the GenAI client metrics.

    ::

        source:  --a--b--c--|         --a--b--#          --a--b--  (disposed)
        output:  --a--b--c--|         --a--b--#          --a--b--
        span:    [---- chat m ----]   [-- error --]      [-- cancelled --]

    The span (kind CLIENT) starts at subscription and is named
    ``"{gen_ai.operation.name} {gen_ai.request.model}"`` (``"chat gpt-4o"``; when no ``model``
    is given, the first chunk's model names it). It carries ``gen_ai.operation.name``,
    ``gen_ai.provider.name``, ``gen_ai.request.model``, ``gen_ai.request.stream`` (true),
    ``gen_ai.response.id``, ``gen_ai.response.model``, ``gen_ai.response.finish_reasons``,
    ``gen_ai.usage.input_tokens``, ``gen_ai.usage.output_tokens``,
    ``gen_ai.response.time_to_first_chunk`` (seconds) and, on failure, ``error.type`` (the
    exception's class name) with an ERROR status. Where the provider reported no usage it is
    estimated (as :func:`tap_cost` does), and ``rxllm.usage.estimated`` says so;
    ``rxllm.outcome`` is ``completed``, ``error`` or ``cancelled``. A disposed stream (a
    consumer that stopped, a client that left) ends its span at once with the usage so far.

    Metrics, with the span's operation, provider and model attributes (and ``error.type`` on
    failure): ``gen_ai.client.operation.duration`` (s), ``gen_ai.client.token.usage``
    (``{token}``, one record per ``gen_ai.token.type``: ``input`` and ``output``),
    ``gen_ai.client.operation.time_to_first_chunk`` (s) and
    ``gen_ai.client.operation.time_per_output_chunk`` (s, one record per chunk after the first).

    Message content is recorded only when opted in (``capture_content=True``, or the
    environment variable ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``): then
    ``gen_ai.input.messages`` (the ``messages`` given) and ``gen_ai.output.messages`` are set
    as JSON strings. Telemetry never breaks the stream: a failing exporter is logged
    (``rxllm.otel.failed``) and ignored.

    Args:
        tracer_provider: An OpenTelemetry ``TracerProvider`` (default: the global one).
        meter_provider: An OpenTelemetry ``MeterProvider`` (default: the global one).
        model: The requested model (``gen_ai.request.model``); default the chunks' model.
        provider: ``gen_ai.provider.name``; default the model's ``prefix/``, else ``"unknown"``.
        operation: ``gen_ai.operation.name`` (default ``"chat"``).
        messages: The prompt: estimates prompt tokens when none are reported, and is the
            recorded input when content capture is on.
        capture_content: Record message content (default: the environment variable above).
        attributes: Extra span attributes (a tenant, a feature name, a request id).
        chunk_timing: Record ``time_per_output_chunk`` (one histogram record per chunk, made
            when the stream ends; the SDK's record costs tens of microseconds).
        scheduler: Where durations are read (a ``TestScheduler`` gives exact virtual times).

    Returns:
        An operator ``Observable[ChatCompletionChunk] -> Observable[ChatCompletionChunk]``.

    Raises:
        ImportError: At subscription, when ``opentelemetry-api`` is not installed.
    """
    prompt = list(messages) if messages is not None else None
    extra = dict(attributes or {})
    shared: dict[str, Any] = {}
    shared_lock = threading.Lock()

    def instruments() -> tuple[Any, _Instruments, Any]:
        with shared_lock:
            if not shared:
                trace, metrics, status_code = _import_otel()
                shared["tracer"] = trace.get_tracer("rxllm", tracer_provider=tracer_provider)
                shared["instruments"] = _Instruments(metrics.get_meter("rxllm", meter_provider=meter_provider))
                shared["status"] = status_code
            return shared["tracer"], shared["instruments"], shared["status"]

    def _tap_otel(source: Observable[ChatCompletionChunk]) -> Observable[ChatCompletionChunk]:
        def subscribe(
            observer: abc.ObserverBase[ChatCompletionChunk], scheduler_: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            from opentelemetry.trace import SpanKind

            tracer, inst, status_code = instruments()
            now = clock(scheduler or scheduler_)
            content = _wants_content(capture_content)
            provider_name = provider or (model.split("/", 1)[0] if model and "/" in model else None)
            base: dict[str, Any] = {"gen_ai.operation.name": operation}
            if model:
                base["gen_ai.request.model"] = model
            span = tracer.start_span(
                f"{operation} {model}" if model else operation,
                kind=SpanKind.CLIENT,
                attributes={**extra, **base, "gen_ai.request.stream": True},
            )
            state: dict[str, Any] = {"id": None, "model": None, "finish": {}, "last": None, "text": {}}
            lock = threading.Lock()

            gaps: list[float] = []  # recorded when the stream ends: off the per-chunk path

            def on_chunk(chunk: ChatCompletionChunk) -> None:
                try:
                    t = now()
                    last = state["last"]
                    state["last"] = t
                    if last is not None:
                        if chunk_timing:
                            gaps.append(t - last)
                    elif chunk.id:
                        state["id"] = chunk.id
                    if state["model"] is None and chunk.model:
                        state["model"] = chunk.model
                        if not model:
                            span.update_name(f"{operation} {chunk.model}")
                    for choice in chunk.choices:
                        if choice.finish_reason:
                            state["finish"][choice.index] = choice.finish_reason
                        if content and choice.delta.content:
                            state["text"].setdefault(choice.index, []).append(choice.delta.content)
                except Exception as exc:  # telemetry must never break the stream
                    _log.warning("rxllm.otel.failed", error=repr(exc))

            def _metric_attributes(error: BaseException | None = None) -> dict[str, Any]:
                attributes = dict(base)
                if not model and state["model"]:
                    attributes["gen_ai.request.model"] = state["model"]
                attributes["gen_ai.provider.name"] = _provider()
                if state["model"]:
                    attributes["gen_ai.response.model"] = state["model"]
                if error is not None:
                    attributes["error.type"] = type(error).__name__
                return attributes

            def _provider() -> str:
                name = provider_name or state.get("provider")
                if name:
                    return str(name)
                found = lookup_model_price(model or state["model"] or "")
                name = found[1].get("litellm_provider") if found is not None else None
                if name or state["model"]:
                    state["provider"] = name or "unknown"
                return str(name or "unknown")

            ended = False

            def on_report(report: CostReport) -> None:
                nonlocal ended
                with lock:
                    if ended:
                        return
                    ended = True
                try:
                    _end(report)
                except Exception as exc:
                    _log.warning("rxllm.otel.failed", error=repr(exc))

            def _end(report: CostReport) -> None:
                attributes = _metric_attributes(report.error)
                if not model and state["model"]:
                    span.set_attribute("gen_ai.request.model", state["model"])
                span.set_attribute("gen_ai.provider.name", attributes["gen_ai.provider.name"])
                if state["id"]:
                    span.set_attribute("gen_ai.response.id", state["id"])
                if state["model"]:
                    span.set_attribute("gen_ai.response.model", state["model"])
                finish = [state["finish"][i] for i in sorted(state["finish"])]
                if finish:
                    span.set_attribute("gen_ai.response.finish_reasons", finish)
                span.set_attribute("gen_ai.usage.input_tokens", report.prompt_tokens)
                span.set_attribute("gen_ai.usage.output_tokens", report.completion_tokens)
                span.set_attribute("rxllm.usage.estimated", report.usage_estimated)
                span.set_attribute("rxllm.outcome", report.outcome)
                if report.cost is not None:
                    span.set_attribute("rxllm.cost_usd", report.cost)
                if report.time_to_first_chunk is not None:
                    span.set_attribute("gen_ai.response.time_to_first_chunk", report.time_to_first_chunk)
                if content:
                    if prompt is not None:
                        span.set_attribute("gen_ai.input.messages", orjson.dumps(prompt, default=str).decode())
                    output = [
                        {"role": "assistant", "content": "".join(state["text"].get(i, ())), "index": i}
                        for i in sorted(set(state["text"]) | set(state["finish"]))
                    ]
                    span.set_attribute("gen_ai.output.messages", orjson.dumps(output).decode())
                if report.error is not None:
                    span.set_attribute("error.type", type(report.error).__name__)
                    span.set_status(status_code.ERROR, str(report.error)[:300])
                inst.duration.record(report.duration, attributes=attributes)
                inst.tokens.record(report.prompt_tokens, attributes={**attributes, "gen_ai.token.type": "input"})
                inst.tokens.record(report.completion_tokens, attributes={**attributes, "gen_ai.token.type": "output"})
                if report.time_to_first_chunk is not None:
                    inst.first_chunk.record(report.time_to_first_chunk, attributes=attributes)
                record_gap = inst.per_chunk.record
                for gap in gaps:
                    record_gap(gap, attributes=attributes)
                span.end()

            metered = source.pipe(
                tap_cost(on_report, model=model, llm_provider=provider, messages=prompt, scheduler=scheduler)
            )

            def on_next(chunk: ChatCompletionChunk) -> None:
                if isinstance(chunk, ChatCompletionChunk):
                    on_chunk(chunk)
                observer.on_next(chunk)

            upstream = SingleAssignmentDisposable()
            upstream.disposable = metered.subscribe(
                on_next, observer.on_error, observer.on_completed, scheduler=scheduler_
            )
            return Disposable(upstream.dispose)

        return Observable(subscribe)

    return _tap_otel
