"""What the provider-boundary check costs per chunk (issue 11: "keep the hot path fast: measure").

Run: ``python -m benchmarks.bench_validate [--quick]``. Two tables:

1. per chunk shape: building the chunk (``ChatCompletionChunk.from_json``), the shape check
   (:func:`rxllm._validate.chunk_problem`) on the built chunk, and the check's share;
2. the whole boundary in an async pipeline: chunks from a provider that yields prebuilt
   chunks, unchecked, checked as built (``checked_chunk``, what the built-in providers do),
   and through :class:`rxllm.providers.CheckedStream` (the extra ``__anext__`` hop plus the
   check, for other providers), per chunk.
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
from rxllm.providers._http import checked_chunk
from rxllm.types import ChatCompletionChunk


def median_us(fn: object, number: int, repeat: int) -> float:
    """Median over ``repeat`` runs of the time per call, in microseconds."""
    runs = timeit.repeat(fn, number=number, repeat=repeat)  # type: ignore[arg-type]
    return statistics.median(runs) / number * 1e6


class _Prebuilt:
    """A provider that yields the same prebuilt chunk ``n`` times (no I/O, no parsing)."""

    name = "bench"

    def __init__(self, chunk: ChatCompletionChunk, n: int, check: bool = False) -> None:
        self.chunk = chunk
        self.n = n
        self.check = check

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatCompletionChunk]:
        chunk = self.chunk
        if self.check:  # what the built-in providers do: check each chunk as it is built
            for _ in range(self.n):
                yield checked_chunk(chunk, "bench", "m")
        else:
            for _ in range(self.n):
                yield chunk


async def _drain(iterator: AsyncIterator[ChatCompletionChunk]) -> None:
    async for _ in iterator:
        pass


def _boundary_us(chunk: ChatCompletionChunk, n: int, repeat: int) -> tuple[float, float, float]:
    provider = _Prebuilt(chunk, n)
    inline = _Prebuilt(chunk, n, check=True)
    request = ChatRequest(model="m", provider="bench", messages=({"role": "user", "content": "hi"},))
    direct: list[float] = []
    inlined: list[float] = []
    wrapped: list[float] = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        asyncio.run(_drain(provider.stream(request)))
        t1 = time.perf_counter()
        asyncio.run(_drain(inline.stream(request)))
        t2 = time.perf_counter()
        asyncio.run(_drain(CheckedStream(provider, request)))
        t3 = time.perf_counter()
        direct.append((t1 - t0) / n * 1e6)
        inlined.append((t2 - t1) / n * 1e6)
        wrapped.append((t3 - t2) / n * 1e6)
    return statistics.median(direct), statistics.median(inlined), statistics.median(wrapped)


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
    direct, inlined, wrapped = _boundary_us(chunk, stream_n, repeat)
    print(f"\n{stream_n} content chunks through an async generator, per chunk:\n")
    print("| path | µs per chunk | boundary cost µs |")
    print("|---|---:|---:|")
    print(f"| provider generator, no check | {direct:.3f} | |")
    print(f"| built-in providers: checked_chunk() as each chunk is built | {inlined:.3f} | {inlined - direct:.3f} |")
    print(f"| other providers: through CheckedStream (hop + check) | {wrapped:.3f} | {wrapped - direct:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
