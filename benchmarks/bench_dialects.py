"""CPU cost per chunk of each dialect's event encoder, beside chat-completions SSE.

    python -m benchmarks.bench_dialects [--repeats 30] [--chunks 2000]

Every dialect's encoder turns the same pre-parsed chunks into complete SSE frames: chat
completions (what ``ops.to_sse`` and the proxy's chat dialect write), the OpenAI Responses
events, the Anthropic Messages events and the Vercel AI SDK UI message stream. Prints a
markdown table: median CPU microseconds per chunk, and the ratio to chat completions (the
aim: every dialect within 1.5x of chat). Workloads as in ``bench_operators``: synthetic
text, two parallel tool calls in small fragments, and the recorded DeepSeek reasoning stream
when ``$RXLLM_FIXTURES`` is there. Also wired into ``python -m benchmarks`` (section
``dialects``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from benchmarks.bench_operators import recorded_stream, text_stream, tool_stream
from rxllm.dialects import Encoder
from rxllm.dialects.chat import ChatEncoder
from rxllm.dialects.messages import MessagesEncoder
from rxllm.dialects.responses import ResponsesEncoder
from rxllm.dialects.ui_stream import UIMessageStreamEncoder
from rxllm.types import ChatCompletionChunk

#: (label, encoder factory); the first is the baseline the others are compared with.
ENCODERS: list[tuple[str, Callable[[], Encoder]]] = [
    ("chat completions SSE (`to_sse`)", lambda: ChatEncoder(model="m")),
    ("Responses events (`to_responses_sse`)", lambda: ResponsesEncoder(model="m")),
    ("Messages events (`to_messages_sse`)", lambda: MessagesEncoder(model="m")),
    ("UI message stream (`to_ui_message_stream`)", lambda: UIMessageStreamEncoder()),
]


def encode_stream(factory: Callable[[], Encoder], chunks: list[ChatCompletionChunk]) -> int:
    """One whole stream through a fresh encoder; returns the bytes written."""
    encoder = factory()
    encode = encoder.encode
    size = 0
    for chunk in chunks:
        size += len(encode(chunk))
    return size + len(encoder.close())


def measure(factory: Callable[[], Encoder], chunks: list[ChatCompletionChunk], repeats: int) -> float:
    """Median CPU µs per chunk over ``repeats`` streams (after one warm-up stream)."""
    encode_stream(factory, chunks)
    samples = []
    for _ in range(repeats):
        t0 = time.process_time_ns()
        encode_stream(factory, chunks)
        samples.append((time.process_time_ns() - t0) / 1000 / len(chunks))
    return statistics.median(samples)


def workloads(n: int) -> dict[str, list[ChatCompletionChunk]]:
    """The chunk streams measured, by name."""
    out = {"text": text_stream(n), "tool calls": tool_stream(n)}
    recorded = recorded_stream()
    if recorded is not None:
        out["deepseek reasoning (recorded)"] = recorded
    return out


def results(n: int, repeats: int) -> dict[str, dict[str, float]]:
    """µs per chunk by workload, then by encoder label (encoders alternate within a workload)."""
    out: dict[str, dict[str, float]] = {}
    for name, chunks in workloads(n).items():
        samples: dict[str, list[float]] = {label: [] for label, _ in ENCODERS}
        for _ in range(3):  # alternate the encoders, so drift hits them alike
            for label, factory in ENCODERS:
                samples[label].append(measure(factory, chunks, max(1, repeats // 3)))
        out[name] = {label: statistics.median(values) for label, values in samples.items()}
    return out


def table(n: int, repeats: int) -> str:
    """The markdown table of :func:`results`, with the ratio to chat completions."""
    data = results(n, repeats)
    names = list(data)
    sizes = {name: len(chunks) for name, chunks in workloads(n).items()}
    header = "| encoder | " + " | ".join(f"{name} ({sizes[name]} chunks): µs/chunk | x chat" for name in names)
    lines = [header + " |", "|---|" + "---:|---:|" * len(names)]
    base = ENCODERS[0][0]
    for label, _ in ENCODERS:
        cells: list[Any] = []
        for name in names:
            value = data[name][label]
            cells += [f"{value:.2f}", f"{value / data[name][base]:.2f}x"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--chunks", type=int, default=2000)
    args = parser.parse_args()
    print(table(args.chunks, args.repeats))


if __name__ == "__main__":
    main()
