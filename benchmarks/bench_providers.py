"""Client CPU per chunk of rxllm's provider path beside the floor, against a local server process.

Run: ``python benchmarks/bench_providers.py [--quick] [--chunks N] [--repeats R]``.

A separate process serves an OpenAI-style SSE body of N content chunks (plus the finish and
usage chunks and ``data: [DONE]``), written in large pieces so the server is never the
bottleneck. The client process measures ``time.process_time()`` (its own CPU, not the
server's) for one whole request and divides by N. Rows:

- **floor**: aiohttp ``iter_any()``, split the buffer into lines, ``orjson.loads`` each data
  line: the least any Python client must do.
- **rxllm provider**: ``get_provider("openai").stream(ChatRequest(...))`` — SSE decoding,
  parsing, normalization checks and building frozen chunk objects.
- **rxllm acompletion(stream=True)**: the public LiteLLM-compatible path on top (Observable
  bridge, repeated-chunk detection, callbacks), when ``rxllm.acompletion`` exists.

Prints a markdown table with the median over repeats and the ratio to the floor.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import socket
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp
import orjson

WORDS = [" the", " weather", " in", " San", " Francisco", " is", " mild", ",", " with", " fog", "."]


def make_body(n: int) -> bytes:
    """An OpenAI-style streamed body (2025 wire format) with ``n`` content chunks."""
    head = {
        "id": "chatcmpl-BENCH0000000000000000000000",
        "object": "chat.completion.chunk",
        "created": 1766084439,
        "model": "gpt-4o-2024-08-06",
        "service_tier": "default",
        "system_fingerprint": "fp_e413f45763",
        "usage": None,
    }
    out = [
        b"data: "
        + orjson.dumps(
            {
                **head,
                "choices": [
                    {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
                ],
            }
        )
        + b"\n\n"
    ]
    for i in range(n):
        chunk = {
            **head,
            "choices": [
                {"index": 0, "delta": {"content": WORDS[i % len(WORDS)]}, "logprobs": None, "finish_reason": None}
            ],
            "obfuscation": "V3a",
        }
        out.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
    out.append(
        b"data: "
        + orjson.dumps({**head, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]})
        + b"\n\n"
    )
    usage = {"prompt_tokens": 18, "completion_tokens": n, "total_tokens": 18 + n}
    out.append(b"data: " + orjson.dumps({**head, "choices": [], "usage": usage}) + b"\n\n")
    out.append(b"data: [DONE]\n\n")
    return b"".join(out)


def serve(port: int, n: int, ready: mp.Event) -> None:  # type: ignore[valid-type]
    """The server process: answer every POST with the same body, in 64 KB writes."""
    from aiohttp import web

    body = make_body(n)

    async def handle(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse()
        resp.content_type = "text/event-stream"
        await resp.prepare(request)
        for i in range(0, len(body), 65536):
            await resp.write(body[i : i + 65536])
        await resp.write_eof()
        return resp

    async def main() -> None:
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()  # type: ignore[attr-defined]
        await asyncio.Event().wait()

    asyncio.run(main())


async def floor(url: str, session: aiohttp.ClientSession) -> int:
    """The floor: iter_any, line split, orjson.loads per data line."""
    count = 0
    buf = b""
    async with session.post(url + "/chat/completions", data=b"{}") as resp:
        async for piece in resp.content.iter_any():
            buf += piece
            lines = buf.split(b"\n")
            buf = lines.pop()
            for line in lines:
                if line.startswith(b"data: ") and line != b"data: [DONE]":
                    orjson.loads(line[6:])
                    count += 1
    return count


async def provider(url: str, session: aiohttp.ClientSession) -> int:
    """rxllm's provider: SSE decode, parse, normalize check, frozen chunk objects."""
    from rxllm.providers import ChatRequest, get_provider

    request = ChatRequest(
        model="gpt-4o",
        provider="openai",
        messages=({"role": "user", "content": "hi"},),
        api_base=url,
        api_key="sk-bench",
    )
    count = 0
    async for _ in get_provider("openai").stream(request):
        count += 1
    return count


async def acompletion(url: str, session: aiohttp.ClientSession) -> int:
    """rxllm.acompletion(stream=True): the public path."""
    import rxllm

    count = 0
    stream = await rxllm.acompletion(
        "openai/gpt-4o", [{"role": "user", "content": "hi"}], stream=True, api_base=url, api_key="sk-bench"
    )
    async for _ in stream:
        count += 1
    return count


async def measure(fn: Callable[[str, aiohttp.ClientSession], Awaitable[int]], url: str, n: int, repeats: int) -> float:
    """Median client CPU µs per content chunk over ``repeats`` requests (after one warm-up)."""
    async with aiohttp.ClientSession() as session:
        await fn(url, session)
        samples = []
        for _ in range(repeats):
            start = time.process_time()
            count = await fn(url, session)
            samples.append((time.process_time() - start) / n * 1e6)
            if count < n:
                raise RuntimeError(f"{fn.__name__} saw {count} chunks, expected at least {n}")
    try:
        from rxllm.providers._http import aclose_sessions

        await aclose_sessions()
    except ImportError:
        pass
    return statistics.median(samples)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small run (a few seconds)")
    parser.add_argument("--chunks", type=int, default=None, help="content chunks per request")
    parser.add_argument("--repeats", type=int, default=None, help="requests per row (median)")
    args = parser.parse_args()
    n = args.chunks or (2000 if args.quick else 20000)
    repeats = args.repeats or (5 if args.quick else 9)

    port = free_port()
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    server = ctx.Process(target=serve, args=(port, n, ready), daemon=True)
    server.start()
    try:
        if not ready.wait(30):
            print("server did not start", file=sys.stderr)
            return 1
        url = f"http://127.0.0.1:{port}/v1"
        rows: list[tuple[str, float]] = []
        candidates: list[tuple[str, Callable[[str, aiohttp.ClientSession], Awaitable[int]]]] = [
            ("floor: aiohttp iter_any + split + orjson.loads", floor),
            ("rxllm provider (openai) stream", provider),
        ]
        try:
            import rxllm

            if hasattr(rxllm, "acompletion"):
                candidates.append(("rxllm.acompletion(stream=True)", acompletion))
        except ImportError:
            pass
        for name, fn in candidates:
            rows.append((name, asyncio.run(measure(fn, url, n, repeats))))
    finally:
        server.terminate()
        server.join(5)

    base = rows[0][1]
    print(f"\n{n} content chunks per request, median of {repeats} requests, client CPU (process_time)\n")
    print("| path | µs CPU / chunk | ratio to floor |")
    print("|---|---:|---:|")
    for name, value in rows:
        print(f"| {name} | {value:.2f} | {value / base:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
