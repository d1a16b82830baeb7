"""CPU cost per chunk of the observability operators: ``tap_otel`` and the live-view operators.

    python benchmarks/bench_observability.py [--repeats 15] [--chunks 2000]

Same method as ``bench_tap_cost.py``: the same pre-parsed chunks go through
``from_iterable -> operator -> sink``; each case's median CPU time per chunk is reported with
the no-operator baseline subtracted. ``tap_otel`` runs against the API's no-op providers (what
an application without an SDK pays) and against the SDK with in-memory exporters (span and
metric processing included). The live-view cases draw to ``os.devnull``; their redraw timer is
armed on a loop that never runs, so they measure the per-chunk fold, not the drawing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from bench_tap_cost import Operator, measure, text_stream  # run as a script: benchmarks/ is on the path
from reactivex.scheduler.eventloop import AsyncIOScheduler

from rxllm import operators as ops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--chunks", type=int, default=2000)
    args = parser.parse_args()
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    chunks = text_stream(args.chunks)
    reports: list[Any] = []
    timers = AsyncIOScheduler(asyncio.new_event_loop())  # never run
    devnull = open(os.devnull, "w")  # noqa: SIM115
    cases: list[tuple[str, Operator | None]] = [
        ("baseline (from_iterable -> sink)", None),
        ("tap_cost (for scale)", ops.tap_cost(reports.append)),
        ("tap_otel, no SDK (no-op providers)", ops.tap_otel()),
        ("tap_otel, SDK in memory", ops.tap_otel(tracer_provider, meter_provider)),
        ("tap_otel, SDK, chunk_timing=False", ops.tap_otel(tracer_provider, meter_provider, chunk_timing=False)),
        ("display_frames(0.1)", ops.display_frames(0.1, scheduler=timers)),
        ("display(0.1) to devnull", ops.display(0.1, file=devnull, scheduler=timers)),
    ]
    base = measure(chunks, None, args.repeats)
    print(f"{args.chunks} chunks, median of {args.repeats} runs, CPU time per chunk minus the baseline\n")
    print("| case | µs per chunk |")
    print("|---|---:|")
    for name, op in cases:
        seconds = measure(chunks, op, args.repeats)
        cost = seconds if op is None else seconds - base
        print(f"| {name} | {cost / args.chunks * 1e6:.2f} |")
    devnull.close()


if __name__ == "__main__":
    main()
