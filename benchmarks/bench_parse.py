"""Chunk parsing cost beside the floor: ``orjson.loads`` of the same bytes.

Run: ``python benchmarks/bench_parse.py [--quick]``. Prints a markdown table: the median over
repeats of the time per parse, and the ratio of building rxllm's frozen chunk objects
(``ChatCompletionChunk.from_json``) to decoding the JSON alone.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import timeit

import orjson

from rxllm.types import ChatCompletionChunk

# Representative OpenAI wire chunks (synthetic, in the 2025 format with its extra fields).
SAMPLES: dict[str, bytes] = {
    "content delta": (
        b'{"id":"chatcmpl-BqZ3kP0s","object":"chat.completion.chunk","created":1727346143,'
        b'"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_5050236cbd","choices":[{"index":0,'
        b'"delta":{"content":" weather"},"logprobs":null,"finish_reason":null}]}'
    ),
    "content delta, 2025 fields": (
        b'{"id":"chatcmpl-CoDWpGC47","object":"chat.completion.chunk","created":1766084439,'
        b'"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_e413f45763",'
        b'"usage":null,"choices":[{"index":0,"delta":{"content":" the"},"logprobs":null,'
        b'"finish_reason":null}],"obfuscation":"V3a"}'
    ),
    "tool-call arguments delta": (
        b'{"id":"chatcmpl-CoDWpGC47","object":"chat.completion.chunk","created":1766084439,'
        b'"model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,'
        b'"function":{"arguments":"sswor"}}]},"logprobs":null,"finish_reason":null}]}'
    ),
    "usage chunk": (
        b'{"id":"chatcmpl-CoDWpGC47","object":"chat.completion.chunk","created":1766084439,'
        b'"model":"gpt-4o-2024-08-06","choices":[],"usage":{"prompt_tokens":18,"completion_tokens":31,'
        b'"total_tokens":49,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},'
        b'"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,'
        b'"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}'
    ),
}


def median_us(fn: object, number: int, repeat: int) -> float:
    """Median over ``repeat`` runs of the time per call, in microseconds."""
    runs = timeit.repeat(fn, number=number, repeat=repeat)  # type: ignore[arg-type]
    return statistics.median(runs) / number * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few seconds, for CI smoke runs")
    args = parser.parse_args(argv)
    number, repeat = (2_000, 3) if args.quick else (50_000, 9)

    print(f"Python {sys.version.split()[0]}; median of {repeat} runs x {number} parses\n")
    print("| chunk | bytes | orjson.loads µs | from_json µs | ratio |")
    print("|---|---:|---:|---:|---:|")
    for name, line in SAMPLES.items():
        floor = median_us(lambda line=line: orjson.loads(line), number, repeat)
        ours = median_us(lambda line=line: ChatCompletionChunk.from_json(line), number, repeat)
        print(f"| {name} | {len(line)} | {floor:.2f} | {ours:.2f} | {ours / floor:.1f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
