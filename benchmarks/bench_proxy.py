"""The proxy's own CPU per streamed chunk, and how many concurrent streams one process holds.

Run: ``python benchmarks/bench_proxy.py [--quick]``. Three processes: a local
OpenAI-compatible upstream (this script with ``--upstream``) that streams chunks as fast as
it can, the proxy (``python -m rxllm serve``), and this process as the client (aiohttp,
reading raw bytes). The proxy's CPU time (user + system, from psutil or ``/proc/<pid>/stat``)
is read before and after each scenario, so the numbers are the proxy process's alone:
decoding the upstream's SSE, building chunk objects, metering, re-encoding, writing.

Scenarios:

- ``openai upstream``: the real path, ``openai/...`` deployment, chunks from the upstream.
- ``mock provider``: ``mock/...`` deployment with zero delay (chunks made inside the proxy).
- ``paced``: many streams each sending a chunk every 10 ms, so chunks arrive one per network
  read and nothing is batched: the per-chunk cost without the fast path's coalescing.
- ``held streams``: many concurrent streams from a slow upstream (one chunk every
  ``--hold-interval`` s), all open at once: do they all finish, and at what memory.

For scale: LiteLLM's proxy (1.106, uvicorn, one worker) spent about 380 µs of CPU per chunk on
this kind of machine (about 2,600 chunks/s on one core).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

_TICKS = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- the upstream


def _event(i: int, text: str | None, finish: str | None) -> bytes:
    delta: dict[str, Any] = {"content": text} if text is not None else {}
    if i == 0:
        delta["role"] = "assistant"
    chunk = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "bench-model",
        "system_fingerprint": "fp_bench",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


async def _upstream_handler(request: web.Request) -> web.StreamResponse:
    """Streams ``max_tokens`` chunks, ``bench_interval`` s apart (0: as fast as it can)."""
    body = await request.json()
    count = int(body.get("max_tokens") or 100)
    interval = float(body.get("bench_interval") or 0.0)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    words = [_event(i, f" tok{i % 10}", None) for i in range(10)]
    for i in range(count):
        if interval:
            await asyncio.sleep(interval)
        await response.write(_event(0, " tok", None) if i == 0 else words[i % 10])
    usage = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "bench-model",
        "choices": [],
        "usage": {"prompt_tokens": 10, "completion_tokens": count, "total_tokens": 10 + count},
    }
    await response.write(_event(1, None, "stop") + b"data: " + orjson.dumps(usage) + b"\n\ndata: [DONE]\n\n")
    return response


def run_upstream(port_file: str) -> None:
    """The upstream process: an aiohttp server on a free port, written to ``port_file``."""

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", _upstream_handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        Path(port_file).write_text(str(runner.addresses[0][1]))
        await asyncio.Event().wait()

    asyncio.run(main())


# --------------------------------------------------------------------------- processes


def _cpu_seconds(pid: int) -> float:
    try:
        import psutil  # type: ignore[import-untyped]

        times = psutil.Process(pid).cpu_times()
        return float(times.user + times.system)
    except ImportError:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise SystemExit(f"bench_proxy: timed out waiting for {what}")


def _start_upstream(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    port_file = tmp / "upstream.port"
    proc = subprocess.Popen([sys.executable, __file__, "--upstream", str(port_file)])
    port = _wait_for(lambda: port_file.exists() and port_file.read_text(), 20, "the upstream")
    return proc, int(port)


def _start_proxy(tmp: Path, upstream_port: int, profile: str | None) -> tuple[subprocess.Popen[bytes], int]:
    config = tmp / "config.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: up\n"
        f"    litellm_params: {{model: openai/bench-model, api_base: 'http://127.0.0.1:{upstream_port}/v1',"
        " api_key: sk-bench}\n"
        "  - model_name: mock\n"
        "    litellm_params: {model: mock/bench}\n"
        "general_settings:\n"
        "  global_max_parallel_requests: 100000\n"
    )
    log = tmp / "proxy.log"
    with log.open("wb") as out:
        prefix = ["-m", "cProfile", "-o", profile] if profile else []
        proc = subprocess.Popen(
            [sys.executable, *prefix, "-m", "rxllm", "serve", "--config", str(config), "--port", "0"], stderr=out
        )
    line = _wait_for(
        lambda: re.search(rb"http://127\.0\.0\.1:(\d+)", log.read_bytes()) if log.exists() else None,
        30,
        "the proxy",
    )
    return proc, int(line.group(1))


# --------------------------------------------------------------------------- the client


async def _one(session: aiohttp.ClientSession, url: str, body: bytes) -> int:
    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {(await resp.read())[:200]!r}")
        data = await resp.read()
    if not data.endswith(b"data: [DONE]\n\n"):
        raise RuntimeError(f"stream did not end with [DONE]: {data[-200:]!r}")
    return data.count(b"data: {")


async def _scenario(port: int, pid: int, body: dict[str, Any], streams: int) -> dict[str, float]:
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    raw = orjson.dumps(body)
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await _one(session, url, orjson.dumps({**body, "max_tokens": 5}))  # warm-up: connections, imports
        cpu0 = _cpu_seconds(pid)
        start = time.perf_counter()
        results = await asyncio.gather(*(_one(session, url, raw) for _ in range(streams)), return_exceptions=True)
        wall = time.perf_counter() - start
        cpu = _cpu_seconds(pid) - cpu0
    ok = [r for r in results if isinstance(r, int)]
    failures = [r for r in results if not isinstance(r, int)]
    if failures:
        print(f"bench_proxy: {len(failures)} stream(s) failed, first: {failures[0]!r}", file=sys.stderr)
    chunks = sum(ok)
    return {
        "streams": streams,
        "ok": len(ok),
        "chunks": chunks,
        "wall": wall,
        "cpu": cpu,
        "us_per_chunk": cpu / chunks * 1e6 if chunks else float("nan"),
        "chunks_per_s": chunks / wall if wall else float("nan"),
        "rss": _rss_mb(pid),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds: smaller runs")
    parser.add_argument("--hold-interval", type=float, default=0.5, help="seconds between chunks for held streams")
    parser.add_argument("--held", type=int, help="concurrent held streams (default: 200 quick, 1000 full)")
    parser.add_argument("--only", help="run only the scenarios whose name contains this text")
    parser.add_argument("--profile", metavar="FILE", help="run the proxy under cProfile, writing FILE")
    parser.add_argument("--upstream", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upstream:
        run_upstream(args.upstream)
        return

    quick = args.quick
    chunks = 20000 if quick else 200000
    held = args.held or (200 if quick else 1000)
    held_chunks = 4 if quick else 10
    scenarios: list[tuple[str, dict[str, Any], int, int]] = [
        ("openai upstream, 1 stream", {"model": "up"}, 1, chunks),
        ("openai upstream, 10 streams", {"model": "up"}, 10, chunks // 10),
        ("mock provider, 1 stream", {"model": "mock", "mock_response": " tok" * chunks}, 1, chunks),
        (
            "paced: 1 chunk / 10 ms per stream (one chunk per read)",
            {"model": "up", "bench_interval": 0.01},
            50 if quick else 200,
            200 if quick else 500,
        ),
        (
            f"held streams (1 chunk / {args.hold_interval:g} s)",
            {"model": "up", "bench_interval": args.hold_interval},
            held,
            held_chunks,
        ),
    ]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        upstream, upstream_port = _start_upstream(tmp)
        proxy, port = _start_proxy(tmp, upstream_port, args.profile)
        if args.only:
            scenarios = [s for s in scenarios if args.only in s[0]]
        rows = []
        try:
            for name, extra, streams, count in scenarios:
                body = {
                    "messages": [{"role": "user", "content": "benchmark"}],
                    "stream": True,
                    "max_tokens": count,
                    **extra,
                }
                rows.append((name, asyncio.run(_scenario(port, proxy.pid, body, streams))))
        finally:
            proxy.terminate()
            upstream.terminate()
            proxy.wait(30)
            upstream.wait(30)

    run = "quick" if quick else "full"
    print(f"\n### rxllm proxy: CPU per streamed chunk ({run} run, python {sys.version.split()[0]})\n")
    print(
        "| scenario | streams ok | chunks | wall s | chunks/s | proxy CPU s | proxy CPU µs/chunk "
        "| proxy CPU ms/stream | proxy RSS MB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in rows:
        print(
            f"| {name} | {r['ok']}/{r['streams']} | {r['chunks']:,} | {r['wall']:.2f} | {r['chunks_per_s']:,.0f} "
            f"| {r['cpu']:.2f} | {r['us_per_chunk']:.1f} | {r['cpu'] / max(1, r['ok']) * 1e3:.2f} | {r['rss']:.0f} |"
        )
    print(
        "\nCPU is the proxy process's user + system time over the scenario (10 ms resolution). Held streams "
        "are dominated by per-request work (HTTP parsing, the upstream connection, the log line): see ms/stream."
    )
    print("\nFor scale: LiteLLM's proxy (1.106, uvicorn, one worker) ~380 µs CPU per chunk, ~2,600 chunks/s.")


if __name__ == "__main__":
    main()
