"""CPU cost per chunk of rxllm's operators, over pre-parsed chunks (parsing is measured elsewhere).

    /work/venv/bin/python benchmarks/bench_operators.py [--repeats 30] [--chunks 2000]

Prints a markdown table: median CPU microseconds per chunk for each case. A case is a name and
a function that consumes a list of chunks once; add a pipeline stage by adding a line to
``CASES`` (e.g. ``("+ tap_cost", pipeline(..., ops.tap_cost(print)))``).

The workloads: a synthetic text stream (one content delta per chunk, about 4 characters each,
like real token streams), a synthetic tool-call stream (two parallel calls streamed in small
argument fragments), and, when ``$RXLLM_FIXTURES`` (or ``../shared/fixtures``) is there, the
recorded DeepSeek reasoning stream.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import reactivex
from reactivex import operators as rx_ops

from rxllm import operators as ops
from rxllm.builder import ResponseBuilder
from rxllm.types import ChatCompletionChunk

Case = tuple[str, Callable[[list[ChatCompletionChunk]], Any]]


def _chunk(delta: dict[str, Any], finish: str | None = None) -> ChatCompletionChunk:
    return ChatCompletionChunk.from_dict(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "gpt-4o",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


def text_stream(n: int) -> list[ChatCompletionChunk]:
    """``n`` content chunks of ~4 characters (each different, so no loop is detected)."""
    chunks = [_chunk({"role": "assistant", "content": ""})]
    chunks += [_chunk({"content": f" w{i % 97:02d}"}) for i in range(n - 2)]
    chunks.append(_chunk({}, "stop"))
    return chunks


def tool_stream(n: int) -> list[ChatCompletionChunk]:
    """Two parallel tool calls whose arguments arrive in ``n`` small fragments."""
    half = n // 2
    chunks = []
    for index in (0, 1):
        chunks.append(
            _chunk({"tool_calls": [{"index": index, "id": f"call_{index}", "type": "function",
                                    "function": {"name": "lookup", "arguments": ""}}]})
        )  # fmt: skip
        chunks += [
            _chunk({"tool_calls": [{"index": index, "function": {"arguments": f'"k{i}":'}}]}) for i in range(half - 1)
        ]
    chunks.append(_chunk({}, "tool_calls"))
    return chunks


def recorded_stream() -> list[ChatCompletionChunk] | None:
    """The recorded deepseek-reasoner stream (~210 chunks), if the fixtures are present."""
    import os

    base = Path(os.environ.get("RXLLM_FIXTURES") or Path(__file__).resolve().parents[2] / "shared" / "fixtures")
    path = base / "deepseek" / "reasoner_reasoning_content.sse"
    if not path.is_file():
        return None
    out = []
    for line in path.read_bytes().splitlines():
        if line.startswith(b"data:") and line[5:].strip() != b"[DONE]":
            out.append(ChatCompletionChunk.from_dict(orjson.loads(line[5:])))
    return out


def builder_add(chunks: list[ChatCompletionChunk]) -> Any:
    """ResponseBuilder.add over every chunk, then one build()."""
    b = ResponseBuilder()
    add = b.add
    for c in chunks:
        add(c)
    return b.build()


def pipeline(*stages: Callable[[Any], Any]) -> Callable[[list[ChatCompletionChunk]], Any]:
    """A case that pushes the chunks through ``stages`` and drains the result."""

    def run(chunks: list[ChatCompletionChunk]) -> Any:
        sink: list[Any] = []
        reactivex.from_iterable(chunks).pipe(*stages).subscribe(sink.append)
        return sink

    return run


def _info() -> Any:
    from rxllm._instrument import CallInfo

    return CallInfo(model="gpt-4o", messages=[], params={}, stream=True, is_async=True, llm_provider="openai")


def completion_stages(fused: bool) -> Callable[[list[ChatCompletionChunk]], Any]:
    """``completion()``'s per-chunk work: repeated-chunk detection and the instrumentation.

    ``fused``: as ``completion`` runs it (one observer); else as two composed operators.
    """
    from rxllm._instrument import instrument

    def run(chunks: list[ChatCompletionChunk]) -> Any:
        if fused:
            return pipeline(instrument(_info(), detect_repeats=True))(chunks)
        return pipeline(ops.detect_repeated_chunks(partial_response=False), instrument(_info()))(chunks)

    return run


CASES: list[Case] = [
    ("baseline: from_iterable → subscribe", pipeline()),
    ("ResponseBuilder.add (+1 build)", builder_add),
    ("detect_repeated_chunks", pipeline(ops.detect_repeated_chunks(100))),
    ("accumulate_tool_calls", pipeline(ops.accumulate_tool_calls())),
    ("to_response", pipeline(ops.to_response())),
    ("snapshots (not read)", pipeline(ops.snapshots())),
    ("text", pipeline(ops.text())),
    ("completion's stages composed: detect → instrument", completion_stages(fused=False)),
    ("completion's stages fused: instrument(detect_repeats=True)", completion_stages(fused=True)),
    (
        "detect → publish(accumulate_tool_calls ∥ to_response)",
        pipeline(
            ops.detect_repeated_chunks(100),
            rx_ops.publish(
                lambda shared: reactivex.merge(shared.pipe(ops.accumulate_tool_calls()), shared.pipe(ops.to_response()))
            ),
        ),
    ),
]


def measure(fn: Callable[[list[ChatCompletionChunk]], Any], chunks: list[ChatCompletionChunk], repeats: int) -> float:
    """Median CPU µs per chunk over ``repeats`` runs (after one warm-up run)."""
    fn(chunks)
    samples = []
    for _ in range(repeats):
        t0 = time.process_time_ns()
        fn(chunks)
        samples.append((time.process_time_ns() - t0) / 1000 / len(chunks))
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--chunks", type=int, default=2000)
    args = parser.parse_args()

    workloads = {"text": text_stream(args.chunks), "tool calls": tool_stream(args.chunks)}
    recorded = recorded_stream()
    if recorded is not None:
        workloads["deepseek (recorded)"] = recorded

    names = list(workloads)
    print("| case | " + " | ".join(f"{n} ({len(workloads[n])} chunks) µs/chunk" for n in names) + " |")
    print("|---|" + "---:|" * len(names))
    for label, fn in CASES:
        cells = [f"{measure(fn, workloads[n], args.repeats):.2f}" for n in names]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
