"""The proxy burst: thousands of short streams started at once, and what each one costs the proxy.

Four kinds of process: the upstream (:mod:`benchmarks._upstream`, paced: one chunk every
``pace`` ms, so every stream stays open while the burst is still arriving), the proxy, and
one or more *client processes* (this module run with ``--client``; each holds at most
:data:`PER_CLIENT` sockets, so no process needs more file descriptors than a default hard
limit allows). The clients start their streams at the same instant; the parent reads:

- **first chunk p50 / p99**: from sending the request to the first ``data:`` event;
- **CPU per stream**: the proxy process's CPU (user + system) over the whole burst, divided
  by the streams (setup, every chunk relayed, teardown, the log line);
- **RSS per open stream**: (proxy RSS once every stream has its first chunk - RSS before) / streams;
- **open at once**: the proxy's own count (``/health/readiness`` ``active_requests``) at that moment;
- **GC share**: the proxy's time in garbage collection over the burst / its CPU (the proxy
  runs under :mod:`benchmarks._gcprobe`, which times collections with ``gc.callbacks``);
- **errors**: streams that did not end with ``data: [DONE]`` and every chunk.

``header_timeout`` is raised for the burst: on two shared cores, a client process with
thousands of streams may send a request's headers long after its connection was accepted.

The proxy is given a soft ``RLIMIT_NOFILE`` of 1,024 (a typical default) and a hard limit
large enough for the burst, so ``rxllm serve`` has to raise its own soft limit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from benchmarks._common import child_env, cpu_seconds, median, percentile, rss_mb

#: Streams per client process (each holds one socket per stream).
PER_CLIENT = 2500

_HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench-master-key"}


# --------------------------------------------------------------------------- one client process


async def _one(session: Any, url: str, body: bytes, want: int, firsts: list[float], ready: Callable[[], None]) -> str:
    start = time.perf_counter()
    got_first = False
    try:
        parts: list[bytes] = []
        async with session.post(url, data=body, headers=_HEADERS) as resp:
            if resp.status != 200:
                return f"HTTP {resp.status}"
            async for piece in resp.content.iter_any():
                if not got_first and b"data: " in piece:
                    got_first = True
                    firsts.append(time.perf_counter() - start)
                    ready()
                parts.append(piece)
        data = b"".join(parts)
        if not data.rstrip().endswith(b"data: [DONE]"):
            return "no [DONE]"
        count = data.count(b"data: {")
        return "" if count == want else f"{count} chunks, expected {want}"
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc)[:120]}"
    finally:
        if not got_first:
            ready()


async def _client(url: str, model: str, streams: int, want: int, start_at: float, ready_file: Path) -> dict[str, Any]:
    import aiohttp

    body = orjson.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    firsts: list[float] = []
    left = [streams]

    def ready() -> None:
        left[0] -= 1
        if left[0] == 0:
            ready_file.write_text("ready")

    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=600, sock_connect=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        delay = start_at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        errors = await asyncio.gather(*(_one(session, url, body, want, firsts, ready) for _ in range(streams)))
    failed = [e for e in errors if e]
    return {"firsts": firsts, "errors": len(failed), "first_error": failed[0] if failed else ""}


def _raise_own_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))


def client_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--streams", type=int, required=True)
    parser.add_argument("--want", type=int, required=True)
    parser.add_argument("--start-at", type=float, required=True)
    parser.add_argument("--ready", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    _raise_own_limit(args.streams + 256)
    result = asyncio.run(_client(args.url, args.model, args.streams, args.want, args.start_at, args.ready))
    args.out.write_bytes(orjson.dumps(result))


# --------------------------------------------------------------------------- the parent


def fd_limits_for(streams: int, sockets: int = 2) -> tuple[int, int]:
    """(soft, hard) ``RLIMIT_NOFILE`` for the proxy: a default soft limit, a hard one the burst fits in.

    ``sockets``: the proxy's sockets per stream (2 through an HTTP upstream, 1 from an
    in-process mock). The hard limit is raised where this process may (with
    ``CAP_SYS_RESOURCE``, up to ``fs.nr_open``); elsewhere it stays what it is, and the burst
    is capped to fit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = sockets * streams + 1024
    if hard != resource.RLIM_INFINITY and hard < need:
        try:
            nr_open = int(Path("/proc/sys/fs/nr_open").read_text())
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, min(need, nr_open)))
        except (OSError, ValueError):
            pass  # not privileged: the hard limit stays
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return min(1024, hard), hard


def max_streams(streams: int, sockets: int = 2) -> int:
    """``streams``, or fewer when the proxy's hard fd limit cannot hold ``sockets`` sockets per stream."""
    _, hard = fd_limits_for(streams, sockets)
    if hard == resource.RLIM_INFINITY:
        return streams
    return min(streams, (hard - 64) // sockets)


def proxy_preexec(streams: int, *, default_soft: bool = True, sockets: int = 2) -> Callable[[], None]:
    """Set the proxy's fd limits: a default soft limit (``default_soft``), else soft = hard."""
    soft, hard = fd_limits_for(streams, sockets)
    if not default_soft:
        soft = hard

    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return preexec


def _active(port: int) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://127.0.0.1:{port}/health/readiness", timeout=60) as resp:
            return int(json.loads(resp.read()).get("active_requests", -1))
    except (OSError, ValueError):
        return -1


def gc_seconds(pid: int, stats_file: Path) -> float | None:
    """The proxy's seconds in GC so far (its :mod:`benchmarks._gcprobe` dumps them on SIGUSR1)."""
    try:
        stats_file.unlink(missing_ok=True)
        os.kill(pid, signal.SIGUSR1)
    except OSError:
        return None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if stats_file.exists():
            try:
                return float(orjson.loads(stats_file.read_bytes())["seconds"])
            except (ValueError, KeyError):
                pass
        time.sleep(0.02)
    return None


def run_burst(
    url: str,
    pid: int,
    port: int,
    model: str,
    streams: int,
    want: int,
    *,
    gc_stats: Path | None = None,
    settle: float = 1.0,
    timeout: float = 600.0,
) -> dict[str, Any]:
    """``streams`` streams of ``want`` chunks started at once through the proxy at ``url``."""
    tmp = Path(tempfile.mkdtemp(prefix="rxllm-bench-burst-"))
    procs = max(1, -(-streams // PER_CLIENT))
    sizes = [streams // procs + (1 if i < streams % procs else 0) for i in range(procs)]
    time.sleep(settle)  # the warm-up's teardown is over
    rss0 = rss_mb(pid)
    gc0 = gc_seconds(pid, gc_stats) if gc_stats is not None else None
    cpu0 = cpu_seconds(pid)
    start_at = time.time() + 1.0 + 0.3 * procs  # every client is up and waiting by then
    clients = []
    for i, size in enumerate(sizes):
        cmd = [sys.executable, "-m", "benchmarks._burst", "--client", "--url", url, "--model", model]
        cmd += ["--streams", str(size), "--want", str(want), "--start-at", str(start_at)]
        cmd += ["--ready", str(tmp / f"ready{i}"), "--out", str(tmp / f"out{i}.json")]
        clients.append(subprocess.Popen(cmd, env=child_env(), stdin=subprocess.DEVNULL))
    deadline = time.monotonic() + timeout
    rss_open = float("nan")
    active = -1
    while time.monotonic() < deadline:
        if all((tmp / f"ready{i}").exists() for i in range(procs)):
            rss_open = rss_mb(pid)
            active = _active(port)
            break
        if any(c.poll() not in (None, 0) for c in clients):
            break
        time.sleep(0.05)
    peak = rss_open
    for c in clients:
        try:
            c.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            c.kill()
            c.wait(5)
    cpu = cpu_seconds(pid) - cpu0
    gc1 = gc_seconds(pid, gc_stats) if gc_stats is not None else None
    firsts: list[float] = []
    errors = 0
    first_error = ""
    for i, size in enumerate(sizes):
        out = tmp / f"out{i}.json"
        if not out.exists():
            errors += size
            first_error = first_error or f"client {i} exited {clients[i].returncode}"
            continue
        result = orjson.loads(out.read_bytes())
        firsts += result["firsts"]
        errors += result["errors"]
        first_error = first_error or result["first_error"]
    for path in tmp.iterdir():
        path.unlink()
    tmp.rmdir()
    gc_share = (gc1 - gc0) / cpu if gc0 is not None and gc1 is not None and cpu > 0 else float("nan")
    return {
        "streams": streams,
        "errors": errors,
        "first_error": first_error,
        "ttfc_p50_ms": median(firsts) * 1e3,
        "ttfc_p99_ms": percentile(firsts, 0.99) * 1e3,
        "cpu_ms_per_stream": cpu / streams * 1e3,
        "kb_per_open_stream": (peak - rss0) * 1024 / streams,
        "open_at_once": active,
        "rss_mb": peak,
        "gc_share": gc_share,
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["--client"]:
        client_main(sys.argv[2:])
    else:
        raise SystemExit("run through `python -m benchmarks --only burst`")
