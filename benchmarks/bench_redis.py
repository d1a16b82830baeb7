"""Redis-shared router state and resumable streams: what they cost the proxy.

    python -m benchmarks.bench_redis            # a minute or two
    python -m benchmarks.bench_redis --smoke    # seconds

Starts its own ``redis-server`` (no persistence, a free loopback port) and, per mode, one
``python -m rxllm serve`` process serving a mock deployment (``rpm`` set, so every request
passes the limit check; the mock streams ``WORDS`` chunks). This process is the client:
``CONCURRENCY`` streams at a time, ``REQUESTS`` in all. The proxy's CPU (user + system) is
read before and after, so the figures are the proxy process's own:

- **in-process limits**: the default (limits per worker);
- **Redis-shared limits**: ``router_settings.redis_url`` (one Lua admission per request);
- **resumable (memory)** / **resumable (Redis)**: ``resumable_streams: true``, events kept in
  memory only, or also appended to Redis Streams.

The four proxies run side by side and the load visits them in turn (the order reversed every
other round), 8 rounds, so a change in the machine's load (the figures are CPU time, but a
busy machine still moves them) falls on every mode alike; each figure is the median over the
rounds, and each extra cost the median of the rounds' ratios.

Reported: proxy CPU µs per request and per chunk, and the median / p95 time from sending the
request to the first ``data:`` event; then each mode's extra CPU per chunk against its plain
counterpart: the resumable modes against the plain stream with the same Redis setting
(resumable (memory) vs in-process limits, resumable (Redis) vs Redis-shared limits). The mock
upstream runs inside the proxy, so its cost is in every row alike; compare the rows with each
other.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks._common import child_env, cpu_seconds, fmt, free_port, median, percentile, stop_process, table

WORDS = 50


def _start_redis(directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    executable = shutil.which("redis-server")
    if executable is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    args = [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen([*args, "--dir", str(directory)], stdout=subprocess.DEVNULL)
    return proc, port


async def _wait_http(url: str, deadline: float) -> None:
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise SystemExit(f"the proxy did not answer at {url}")


def _config(directory: Path, redis_port: int, *, shared: bool, resumable: bool) -> Path:
    text = " ".join(f"w{i}" for i in range(WORDS))
    lines = [
        "model_list:",
        "  - model_name: m",
        "    litellm_params:",
        "      model: mock/x",
        f"      mock_response: '{text}'",
        "      rpm: 100000000",
        "general_settings:",
        f"  resumable_streams: {'true' if resumable else 'false'}",
    ]
    if shared:
        lines += ["router_settings:", f"  redis_url: redis://127.0.0.1:{redis_port}/0"]
    path = directory / f"config-{int(shared)}{int(resumable)}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def _one(session: aiohttp.ClientSession, url: str) -> tuple[float, int]:
    start = time.perf_counter()
    first: float | None = None
    chunks = 0
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with session.post(url, json=body) as response:
        buffer = b""
        async for data in response.content.iter_any():
            if first is None:
                first = time.perf_counter() - start
            buffer += data
        chunks = buffer.count(b"data: ")
    return (first if first is not None else float("nan")), chunks


async def _load(port: int, requests: int, concurrency: int) -> tuple[list[float], int]:
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    firsts: list[float] = []
    total = 0
    limit = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def run() -> None:
            nonlocal total
            async with limit:
                first, chunks = await _one(session, url)
                firsts.append(first)
                total += chunks

        await asyncio.gather(*(run() for _ in range(requests)))
    return firsts, total


MODES: list[tuple[str, bool, bool]] = [
    ("in-process limits", False, False),
    ("Redis-shared limits", True, False),
    ("resumable (memory)", False, True),
    ("resumable (Redis)", True, True),
]

#: What each mode's extra cost is measured against (the same Redis setting, not resumable).
BASELINE: dict[str, str] = {
    "Redis-shared limits": "in-process limits",
    "resumable (memory)": "in-process limits",
    "resumable (Redis)": "Redis-shared limits",
}


def _start_proxy(
    directory: Path, redis_port: int, shared: bool, resumable: bool
) -> tuple[subprocess.Popen[bytes], int]:
    config = _config(directory, redis_port, shared=shared, resumable=resumable)
    port = free_port()
    cmd = [sys.executable, "-m", "rxllm", "serve", "--config", str(config), "--port", str(port)]
    proc = subprocess.Popen(cmd, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, port


def _measure(
    directory: Path, redis_port: int, size: dict[str, int]
) -> dict[str, tuple[list[float], list[float], list[float]]]:
    """Per mode: CPU µs per request and per chunk of each round, and every first-chunk latency."""
    procs: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    out: dict[str, tuple[list[float], list[float], list[float]]] = {name: ([], [], []) for name, _, _ in MODES}
    try:
        for name, shared, resumable in MODES:
            procs[name] = _start_proxy(directory, redis_port, shared, resumable)
        for _, port in procs.values():
            asyncio.run(_wait_http(f"http://127.0.0.1:{port}/health/liveliness", time.monotonic() + 30))
            asyncio.run(_load(port, size["warmup"], size["concurrency"]))
        names = list(procs)
        for round_ in range(size["rounds"]):
            print(f"-- round {round_ + 1}/{size['rounds']}", file=sys.stderr)
            order = names if round_ % 2 == 0 else names[::-1]  # no mode always first or last
            for name in order:
                proc, port = procs[name]
                before = cpu_seconds(proc.pid)
                firsts, chunks = asyncio.run(_load(port, size["requests"], size["concurrency"]))
                used = cpu_seconds(proc.pid) - before
                per_request, per_chunk, latencies = out[name]
                per_request.append(used / size["requests"] * 1e6)
                per_chunk.append(used / max(1, chunks) * 1e6)
                latencies.extend(firsts)
    finally:
        for proc, _ in procs.values():
            stop_process(proc, 5.0)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run every mode, interleaved, and print one markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a seconds-long run")
    args = parser.parse_args(argv)
    size = (
        {"requests": 20, "warmup": 10, "concurrency": 4, "rounds": 2}
        if args.smoke
        else {"requests": 150, "warmup": 100, "concurrency": 10, "rounds": 8}
    )
    directory = Path(tempfile.mkdtemp(prefix="rxllm-bench-redis-"))
    redis, redis_port = _start_redis(directory)
    try:
        results = _measure(directory, redis_port, size)
    finally:
        stop_process(redis, 5.0)
        shutil.rmtree(directory, ignore_errors=True)
    rows: list[list[str]] = []
    chunk_cost: dict[str, float] = {}
    for name, _, _ in MODES:
        per_request, per_chunk, firsts = results[name]
        chunk_cost[name] = median(per_chunk)
        rows.append(
            [
                name,
                fmt(median(per_request), 0),
                fmt(chunk_cost[name], 1),
                fmt(median(firsts) * 1e3, 2),
                fmt(percentile(firsts, 0.95) * 1e3, 2),
            ]
        )
    header = ["mode", "proxy CPU µs/request", "proxy CPU µs/chunk", "first chunk ms (median)", "p95"]
    print(table(header, rows))
    print()
    # the ratio of each round's two figures (measured next to each other), median over rounds:
    # steadier on a shared machine than the ratio of the two medians
    extra: dict[str, Any] = {
        name: median(a / b for a, b in zip(results[name][1], results[base][1], strict=True)) - 1
        for name, base in BASELINE.items()
    }
    print(
        ", ".join(f"{name}: {value:+.0%} CPU per chunk vs {BASELINE[name]}" for name, value in extra.items())
        + " (median of the rounds' ratios)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
