"""CPU per chunk of ``events()``, and the partial-JSON parser beside jiter re-parsing.

Run: ``python benchmarks/bench_events.py [--quick]``. Prints two markdown tables (medians over
repeats, CPU time from ``time.process_time``):

1. **events() per chunk**: :class:`rxllm.events.EventBuilder` folding a stream, beside
   :class:`rxllm.builder.ResponseBuilder` (what ``to_response`` does) on the same chunks, for
   a text stream and a tool-call stream (arguments in 8-character fragments), the latter also
   with every ``ToolCallArgumentsDelta.partial`` read (partial values are parsed lazily).
2. **Partial JSON over a whole tool call**: the arguments fed in 8-character fragments with a
   partial value available after each one. rxllm's incremental parser (feed + snapshot, what
   ``events()`` does per fragment; and feed + reading the partial value every fragment)
   beside re-parsing the accumulated text with ``jiter.from_json(partial_mode=
   "trailing-strings")`` after every fragment (what the OpenAI SDK does), for small (~200 B),
   23 KB and 117 KB arguments. jiter comes with the ``openai`` package; its rows say so when
   it is missing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

from rxllm.builder import ResponseBuilder
from rxllm.events import EventBuilder, ToolCallArgumentsDelta
from rxllm.partial_json import PartialJSONParser
from rxllm.types import ChatCompletionChunk

FRAGMENT = 8


def _arguments(size: int) -> str:
    """Tool arguments of about ``size`` bytes: a file write with a long string and some records."""
    rows = [{"id": i, "name": f"row {i}", "ok": i % 3 == 0, "score": i * 0.25} for i in range(max(1, size // 400))]
    line = 'print("hello, world")  # a line of code\n'
    body = line * max(1, (size - len(orjson.dumps(rows))) // (len(line) + 2))
    text = orjson.dumps({"path": "src/app.py", "content": body, "rows": rows}).decode()
    return text


def _text_chunks(n: int) -> list[ChatCompletionChunk]:
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o"}
    out = [ChatCompletionChunk.from_dict({**base, "choices": [{"index": 0, "delta": {"role": "assistant"}}]})]
    out += [
        ChatCompletionChunk.from_dict({**base, "choices": [{"index": 0, "delta": {"content": f" word{i}"}}]})
        for i in range(n)
    ]
    out.append(ChatCompletionChunk.from_dict({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    return out


def _tool_chunks(arguments: str) -> list[ChatCompletionChunk]:
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o"}
    first = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "write_file", "arguments": ""}}
    out = [ChatCompletionChunk.from_dict({**base, "choices": [{"index": 0, "delta": {"tool_calls": [first]}}]})]
    for i in range(0, len(arguments), FRAGMENT):
        frag = {"index": 0, "function": {"arguments": arguments[i : i + FRAGMENT]}}
        out.append(ChatCompletionChunk.from_dict({**base, "choices": [{"index": 0, "delta": {"tool_calls": [frag]}}]}))
    done = {"index": 0, "delta": {}, "finish_reason": "tool_calls"}
    out.append(ChatCompletionChunk.from_dict({**base, "choices": [done]}))
    return out


def _cpu(fn: Callable[[], Any], repeat: int) -> float:
    """Median CPU seconds of ``fn()`` over ``repeat`` runs."""
    runs = []
    for _ in range(repeat):
        start = time.process_time()
        fn()
        runs.append(time.process_time() - start)
    return statistics.median(runs)


def _events(chunks: list[ChatCompletionChunk]) -> None:
    builder = EventBuilder()
    for chunk in chunks:
        builder.add(chunk)
    builder.close()


def _events_read(chunks: list[ChatCompletionChunk]) -> None:
    builder = EventBuilder()
    for chunk in chunks:
        for event in builder.add(chunk):
            if isinstance(event, ToolCallArgumentsDelta):
                event.partial  # noqa: B018 - reading the partial value is the point
    builder.close()


def _response(chunks: list[ChatCompletionChunk]) -> None:
    builder = ResponseBuilder()
    for chunk in chunks:
        builder.add(chunk)
    builder.build()


def _feed(arguments: str, read: bool) -> None:
    parser = PartialJSONParser()
    for i in range(0, len(arguments), FRAGMENT):
        parser.feed(arguments[i : i + FRAGMENT])
        mark = parser.snapshot()
        if read:
            mark.value()
    parser.finish()


def _jiter(arguments: str) -> None:
    import jiter

    data = arguments.encode()
    for i in range(FRAGMENT, len(data) + FRAGMENT, FRAGMENT):
        jiter.from_json(data[:i], partial_mode="trailing-strings")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few seconds")
    args = parser.parse_args(argv)
    repeat = 3 if args.quick else 7
    print(f"Python {sys.version.split()[0]}; CPU time (process_time), median of {repeat} runs\n")

    print("#### events() per chunk\n")
    print("| stream | chunks | events() µs/chunk | to_response's builder µs/chunk | ratio |")
    print("|---|---:|---:|---:|---:|")
    streams = {
        "text, 2,000 content deltas": _text_chunks(2_000),
        "tool call, 23 KB arguments in 8 B fragments": _tool_chunks(_arguments(23_000)),
    }
    for name, chunks in streams.items():
        ours = _cpu(lambda chunks=chunks: _events(chunks), repeat) / len(chunks) * 1e6
        floor = _cpu(lambda chunks=chunks: _response(chunks), repeat) / len(chunks) * 1e6
        print(f"| {name} | {len(chunks):,} | {ours:.2f} | {floor:.2f} | {ours / floor:.1f}x |")
        if name.startswith("tool call"):
            read = _cpu(lambda chunks=chunks: _events_read(chunks), repeat) / len(chunks) * 1e6
            print(
                f"| the same, reading every partial value | {len(chunks):,} | {read:.2f} | {floor:.2f} "
                f"| {read / floor:.1f}x |"
            )

    try:
        import jiter  # noqa: F401

        have_jiter = True
    except ImportError:
        have_jiter = False
    print("\n#### Partial JSON over one tool call (8 B fragments, a partial value after each)\n")
    print(
        "| arguments | fragments | rxllm feed+snapshot ms | rxllm feed+read value ms "
        "| jiter re-parse ms | jiter / rxllm feed+snapshot |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for size in (200, 23_000, 117_000):
        arguments = _arguments(size)
        n = (len(arguments) + FRAGMENT - 1) // FRAGMENT
        snap = _cpu(lambda a=arguments: _feed(a, False), repeat) * 1e3
        read = _cpu(lambda a=arguments: _feed(a, True), repeat) * 1e3
        if have_jiter:
            jr = _cpu(lambda a=arguments: _jiter(a), 1 if size > 50_000 else repeat) * 1e3
            jcell, ratio = f"{jr:.2f}", f"{jr / snap:.1f}x"
        else:
            jcell, ratio = "jiter not installed", "-"
        label = f"{len(arguments) / 1000:.1f} KB"
        print(f"| {label} | {n:,} | {snap:.2f} | {read:.2f} | {jcell} | {ratio} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
