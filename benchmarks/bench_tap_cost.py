"""CPU cost per chunk of ``tap_cost`` alone (and, for scale, the other part-B operators).

    /work/venv/bin/python benchmarks/bench_tap_cost.py [--repeats 30] [--chunks 2000]

Each case pushes the same pre-parsed chunks through ``from_iterable -> operator -> sink``; the
"baseline" case has no operator, and the table reports each case's median CPU time per chunk
with the baseline subtracted, so the number is the operator's own cost. The workload is a text
stream (one ~4-character content delta per chunk) ending with OpenAI's usage chunk.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

import reactivex
from reactivex.scheduler.eventloop import AsyncIOScheduler

from rxllm import operators as ops
from rxllm.types import ChatCompletionChunk

Operator = Callable[[reactivex.Observable[ChatCompletionChunk]], reactivex.Observable[Any]]


def text_stream(n: int) -> list[ChatCompletionChunk]:
    """``n`` chunks: a role chunk, content deltas, a finish chunk and a usage chunk."""

    def make(delta: dict[str, Any], finish: str | None = None, usage: Any = None) -> ChatCompletionChunk:
        d: dict[str, Any] = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if usage is None else [],
        }
        if usage is not None:
            d["usage"] = usage
        return ChatCompletionChunk.from_dict(d)

    chunks = [make({"role": "assistant", "content": ""})]
    chunks += [make({"content": f" w{i % 97:02d}"}) for i in range(n - 3)]
    chunks.append(make({}, "stop"))
    chunks.append(make({}, usage={"prompt_tokens": 50, "completion_tokens": n, "total_tokens": 50 + n}))
    return chunks


def measure(chunks: list[ChatCompletionChunk], op: Operator | None, repeats: int) -> float:
    """Median CPU seconds to push ``chunks`` through ``op`` once."""
    times = []
    sink: list[Any] = []
    for _ in range(repeats):
        source = reactivex.from_iterable(chunks)
        pipeline = source if op is None else source.pipe(op)
        sink.clear()
        start = time.process_time()
        pipeline.subscribe(sink.append, scheduler=None)
        times.append(time.process_time() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--chunks", type=int, default=2000)
    args = parser.parse_args()
    chunks = text_stream(args.chunks)
    reports: list[Any] = []
    loop = asyncio.new_event_loop()  # never run: the timers are armed but do not fire
    timers = AsyncIOScheduler(loop)
    cases: list[tuple[str, Operator | None]] = [
        ("baseline (from_iterable -> sink)", None),
        ("tap_cost", ops.tap_cost(reports.append)),
        ("tap_cost(messages=..., model=...)", ops.tap_cost(reports.append, model="gpt-4o", messages=[])),
        ("stall_timeout (with partial response)", ops.stall_timeout(30, scheduler=timers)),
        ("stall_timeout(partial_response=False)", ops.stall_timeout(30, timers, partial_response=False)),
        ("deadline(partial_response=False)", ops.deadline(300, timers, partial_response=False)),
        ("retry_stream(3)", ops.retry_stream(3, scheduler=timers)),
        ("to_sse", ops.to_sse()),
    ]
    base = measure(chunks, None, args.repeats)
    print(f"{len(chunks)} chunks, median of {args.repeats} runs, CPU time, baseline subtracted\n")
    print("| case | µs per chunk |")
    print("|---|---:|")
    for name, op in cases:
        t = measure(chunks, op, args.repeats)
        per = (t if op is None else t - base) / len(chunks) * 1e6
        print(f"| {name} | {per:.2f} |")
    loop.close()
    assert reports and reports[-1].cost is not None


if __name__ == "__main__":
    main()
