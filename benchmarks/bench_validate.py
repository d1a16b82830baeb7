"""What the provider-boundary check costs per chunk (issue 11: "keep the hot path fast: measure").

Run: ``python -m benchmarks.bench_validate [--quick]``. Two tables:

1. per chunk shape: building the chunk (``ChatCompletionChunk.from_json``), the shape check
   (:func:`rxllm._validate.chunk_problem`) on the built chunk, and the check's share;
2. the whole boundary in an async pipeline: chunks from a provider that yields prebuilt
   chunks, read directly and through :class:`rxllm.providers.CheckedStream` (the extra
   ``__anext__`` hop plus the check), per chunk.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import timeit
from collections.abc import AsyncIterator

from benchmarks.bench_parse import SAMPLES
from rxllm._validate import chunk_problem
from rxllm.providers import ChatRequest, CheckedStream
from rxllm.types import ChatCompletionChunk


def median_us(fn: object, number: int, repeat: int) -> float:
    """Median over ``repeat`` runs of the time per call, in microseconds."""
    runs = timeit.repeat(fn, number=number, repeat=repeat)  # type: ignore[arg-type]
    return statistics.median(runs) / number * 1e6


class _Prebuilt:
    """A provider that yields the same prebuilt chunk ``n`` times (no I/O, no parsing)."""

    name = "bench"

    def __init__(self, chunk: ChatCompletionChunk, n: int) -> None:
        self.chunk = chunk
        self.n = n

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatCompletionChunk]:
        chunk = self.chunk
        for _ in range(self.n):
            yield chunk


async def _drain(iterator: AsyncIterator[ChatCompletionChunk]) -> None:
    async for _ in iterator:
        pass


def _boundary_us(chunk: ChatCompletionChunk, n: int, repeat: int) -> tuple[float, float]:
    provider = _Prebuilt(chunk, n)
    request = ChatRequest(model="m", provider="bench", messages=({"role": "user", "content": "hi"},))
    direct: list[float] = []
    checked: list[float] = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        asyncio.run(_drain(provider.stream(request)))
        t1 = time.perf_counter()
        asyncio.run(_drain(CheckedStream(provider, request)))
        t2 = time.perf_counter()
        direct.append((t1 - t0) / n * 1e6)
        checked.append((t2 - t1) / n * 1e6)
    return statistics.median(direct), statistics.median(checked)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few seconds, for CI smoke runs")
    args = parser.parse_args(argv)
    number, repeat, stream_n = (2_000, 3, 20_000) if args.quick else (50_000, 7, 200_000)

    print(f"Python {sys.version.split()[0]}; median of {repeat} runs\n")
    print("| chunk | from_json µs | chunk_problem µs | check / build |")
    print("|---|---:|---:|---:|")
    for name, raw in SAMPLES.items():
        chunk = ChatCompletionChunk.from_json(raw)
        assert chunk_problem(chunk) is None
        build = median_us(lambda raw=raw: ChatCompletionChunk.from_json(raw), number, repeat)
        check = median_us(lambda chunk=chunk: chunk_problem(chunk), number, repeat)
        print(f"| {name} | {build:.2f} | {check:.2f} | {check / build:.2f} |")

    chunk = ChatCompletionChunk.from_json(SAMPLES["content delta"])
    direct, checked = _boundary_us(chunk, stream_n, repeat)
    print(f"\n{stream_n} content chunks through an async generator, per chunk:\n")
    print("| path | µs per chunk |")
    print("|---|---:|")
    print(f"| provider generator, read directly | {direct:.3f} |")
    print(f"| through CheckedStream (hop + check) | {checked:.3f} |")
    print(f"| boundary cost | {checked - direct:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
