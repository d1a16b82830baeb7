"""CPU cost per chunk of each dialect, beside chat completions: in the encoder, and in the proxy.

    python -m benchmarks.bench_dialects [--repeats 30] [--chunks 2000] [--no-proxy]

Every dialect's encoder turns the same pre-parsed chunks into complete SSE frames: chat
completions (what ``ops.to_sse`` and the proxy's chat dialect write), the OpenAI Responses
events, the Anthropic Messages events and the Vercel AI SDK UI message stream. Prints a
markdown table: median CPU microseconds per chunk, and the ratio to chat completions (the
aim: every dialect within 1.5x of chat). Workloads as in ``bench_operators``: synthetic
text, two parallel tool calls in small fragments, and the recorded DeepSeek reasoning stream
when ``$RXLLM_FIXTURES`` is there.

The proxy table runs ``rxllm serve`` as a subprocess in front of the benchmarks' local
upstream (:mod:`benchmarks._upstream`, a text stream written as fast as it can) and reads the
same streams through each dialect's route (raw bytes, checked for the dialect's success
terminator): the proxy process's CPU (user + system) per upstream chunk, median of a few
rounds with the dialects alternating. Also wired into ``python -m benchmarks`` (section
``dialects``).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

from benchmarks._common import cpu_seconds
from benchmarks._proxy import MASTER_KEY, Proxy
from benchmarks._upstream import Upstream, chunk_count
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


# --------------------------------------------------------------------------- through the proxy

_USER = [{"role": "user", "content": "hi"}]

#: dialect -> (path, request body for model M, bytes that end a successful stream)
ROUTES: dict[str, tuple[str, Callable[[str], dict[str, Any]], bytes]] = {
    "chat completions (`/v1/chat/completions`)": (
        "/v1/chat/completions",
        lambda m: {"model": m, "messages": _USER, "stream": True, "stream_options": {"include_usage": True}},
        b"data: [DONE]\n\n",
    ),
    "Responses (`/v1/responses`)": (
        "/v1/responses",
        lambda m: {"model": m, "input": "hi", "stream": True},
        b'"type":"response.completed"',
    ),
    "Messages (`/v1/messages`)": (
        "/v1/messages",
        lambda m: {"model": m, "max_tokens": 1000, "messages": _USER, "stream": True},
        b"event: message_stop",
    ),
    "UI message stream (`/api/chat`)": (
        "/api/chat",
        lambda m: {"model": m, "messages": [{"id": "1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}]},
        b'data: {"type":"finish"}',
    ),
}


async def _streams(url: str, body: dict[str, Any], done: bytes, count: int) -> None:
    import aiohttp
    import orjson

    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {MASTER_KEY}"}
    data = orjson.dumps(body)

    async def one(session: aiohttp.ClientSession) -> None:
        async with session.post(url, data=data, headers=headers) as resp:
            raw = await resp.read()
        if resp.status != 200 or done not in raw:
            raise RuntimeError(f"{url}: HTTP {resp.status}, no success terminator: {raw[-200:]!r}")

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True)) as session:
        await asyncio.gather(*(one(session) for _ in range(count)))


def proxy_results(upstream: Upstream, n: int, streams: int, rounds: int) -> dict[str, float]:
    """Proxy CPU µs per upstream chunk for each dialect route (median of ``rounds``)."""
    scenarios = {"bulk": ("text", "bulk", n)}
    chunks = chunk_count("text", n) * streams
    samples: dict[str, list[float]] = {label: [] for label in ROUTES}
    with Proxy("rxllm", upstream, scenarios) as proxy:
        base = f"http://127.0.0.1:{proxy.port}"
        for path, body, done in ROUTES.values():  # warm-up: imports, connections
            asyncio.run(_streams(base + path, body("bulk"), done, 1))
        for _ in range(rounds):
            for label, (path, body, done) in ROUTES.items():
                cpu0 = cpu_seconds(proxy.pid)
                asyncio.run(_streams(base + path, body("bulk"), done, streams))
                samples[label].append((cpu_seconds(proxy.pid) - cpu0) / chunks * 1e6)
    return {label: statistics.median(values) for label, values in samples.items()}


def proxy_table(upstream: Upstream, n: int, streams: int, rounds: int) -> str:
    """The markdown table of :func:`proxy_results`, with the ratio to chat completions."""
    data = proxy_results(upstream, n, streams, rounds)
    base = data[next(iter(ROUTES))]
    lines = [
        f"| proxy route ({streams} concurrent streams of {chunk_count('text', n):,} chunks) | µs CPU/chunk | x chat |",
        "|---|---:|---:|",
    ]
    for label, value in data.items():
        lines.append(f"| {label} | {value:.2f} | {value / base:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--no-proxy", action="store_true", help="only the encoder table")
    args = parser.parse_args()
    print(table(args.chunks, args.repeats))
    if not args.no_proxy:
        with Upstream() as upstream:
            print()
            print(proxy_table(upstream, args.chunks, 4, 5))


if __name__ == "__main__":
    main()
