"""A client that stops reading: how much the proxy buffers, and how far it reads its upstream.

Run: ``python benchmarks/bench_slow_reader.py [--pause 10] [--mb 64] [--litellm PATH]``.
Three processes: a local OpenAI-compatible upstream (this script with ``--upstream``) that
streams ``--mb`` MB of chunks as fast as its socket takes them and counts the bytes it wrote;
the proxy (``python -m rxllm serve``, and LiteLLM's ``litellm --config`` when ``--litellm``
names its executable, installed in another virtual environment); and this process as a
client that reads the response headers and 64 KB, then stops reading for ``--pause`` seconds,
then reads the rest.

Reported per proxy: its RSS before the request and at its peak during the pause (from
``/proc``), and how many bytes the upstream had written when the pause ended. An unbounded
proxy reads the whole upstream into memory; a bounded one stops reading it once its buffers
and the kernel's socket buffers are full.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from benchmarks._common import child_env, free_port, rss_mb, stop_process

_BATCH_EVENTS = 16
#: After the pause the client reads the rest for at most this long ("completed" says if it ended).
_REST_SECONDS = 60.0


def _batch() -> bytes:
    events = []
    for i in range(_BATCH_EVENTS):  # consecutive chunks differ: not a looping model
        chunk = {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "up",
            "choices": [{"index": 0, "delta": {"content": f"{i:x}" * 1000}, "finish_reason": None}],
        }
        events.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
    return b"".join(events)


# --------------------------------------------------------------------------- the upstream process


def _upstream(port: int, total: int) -> None:
    from aiohttp import web

    state = {"written": 0}
    batch = _batch()

    async def chat(request: web.Request) -> web.StreamResponse:
        await request.read()
        state["written"] = 0
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        while state["written"] < total:
            await response.write(batch)  # waits for the socket to take it
            state["written"] += len(batch)
        finish = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "up"}
        finish["choices"] = [{"index": 0, "delta": {}, "finish_reason": "stop"}]
        await response.write(b"data: " + orjson.dumps(finish) + b"\n\ndata: [DONE]\n\n")
        return response

    async def written(request: web.Request) -> web.Response:
        return web.json_response(state)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/written", written)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# --------------------------------------------------------------------------- the proxies


def _start_proxy(kind: str, upstream_port: int, litellm: str | None, tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    config = tmp / f"{kind}.yaml"
    lines = [
        "model_list:",
        "  - model_name: m",
        "    litellm_params:",
        "      model: openai/gpt-4o-2024-08-06",
        f"      api_base: http://127.0.0.1:{upstream_port}/v1",
        "      api_key: sk-bench-not-a-key",
        "general_settings:",
        "  master_key: sk-bench-master-key",
    ]
    if kind == "litellm":
        lines += ["litellm_settings:", "  telemetry: false"]
    config.write_text("\n".join(lines) + "\n")
    log = tmp / f"{kind}.log"
    port = free_port()
    if kind == "rxllm":
        cmd = [sys.executable, "-m", "rxllm", "serve", "--config", str(config), "--port", str(port)]
    else:
        assert litellm is not None
        cmd = [litellm, "--config", str(config), "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=child_env())
    deadline = time.monotonic() + 180
    while not _answers(port, "/health/liveliness"):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc, 5)
            raise RuntimeError(f"the {kind} proxy did not start:\n{log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.2)
    return proc, port


def _answers(port: int, path: str) -> bool:
    import urllib.request

    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{port}{path}", timeout=1) as resp:
            return int(resp.status) == 200
    except OSError:
        return False


def _upstream_written(port: int) -> int:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{port}/written", timeout=5) as resp:
        return int(orjson.loads(resp.read())["written"])


# --------------------------------------------------------------------------- the slow client


async def _slow_client(proxy_port: int, proxy_pid: int, upstream_port: int, pause: float) -> dict[str, Any]:
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "go"}], "stream": True})
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port, limit=1 << 16)
    before = rss_mb(proxy_pid)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer sk-bench-master-key\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"proxy answered {head[:200]!r}")
    received = len(await reader.read(65536))
    peak = before
    end = time.monotonic() + pause
    while time.monotonic() < end:  # not reading: sample the proxy's memory
        await asyncio.sleep(0.25)
        peak = max(peak, rss_mb(proxy_pid))
    written = await asyncio.to_thread(_upstream_written, upstream_port)
    tail = b""
    done = False
    stop = time.monotonic() + _REST_SECONDS
    while time.monotonic() < stop:  # now read the rest: does the stream still complete?
        try:
            piece = await asyncio.wait_for(reader.read(1 << 20), max(0.1, stop - time.monotonic()))
        except TimeoutError:
            break
        if not piece:
            break
        received += len(piece)
        tail = (tail + piece)[-256:]
        if b"data: [DONE]" in tail:
            done = True
            break
    writer.close()
    return {"rss_before": before, "rss_peak": peak, "upstream_written": written, "received": received, "done": done}


def run(pause: float, total_mb: int, litellm: str | None) -> list[tuple[str, dict[str, Any] | str]]:
    """Each proxy's figures (or why it did not run)."""
    total = total_mb * 1024 * 1024
    upstream_port = free_port()
    up = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_slow_reader", "--upstream", str(upstream_port), "--mb", str(total_mb)],
        env=child_env(),
        stdin=subprocess.DEVNULL,
    )
    results: list[tuple[str, dict[str, Any] | str]] = []
    try:
        deadline = time.monotonic() + 60
        while not _answers(upstream_port, "/written"):
            if up.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the upstream did not start")
            time.sleep(0.1)
        kinds = [("rxllm proxy (`rxllm serve`)", "rxllm")]
        if litellm:
            kinds.append(("LiteLLM proxy (uvicorn, 1 worker)", "litellm"))
        with tempfile.TemporaryDirectory(prefix="rxllm-slow-reader-") as tmp:
            for title, kind in kinds:
                print(f"{title}: starting", file=sys.stderr, flush=True)
                try:
                    proc, port = _start_proxy(kind, upstream_port, litellm, Path(tmp))
                except RuntimeError as exc:
                    results.append((title, f"did not start: {str(exc).splitlines()[0]}"))
                    continue
                try:
                    figures = asyncio.run(_slow_client(port, proc.pid, upstream_port, pause))
                    figures["total"] = total
                    results.append((title, figures))
                    print(f"{title}: {figures}", file=sys.stderr, flush=True)
                finally:
                    stop_process(proc, 10)
    finally:
        stop_process(up, 5)
    return results


def _report(results: list[tuple[str, dict[str, Any] | str]], pause: float, total_mb: int) -> str:
    rows = [
        f"### Slow reader: a client stops reading for {pause:g} s while the upstream streams {total_mb} MB\n",
        "| proxy | RSS before MB | RSS peak MB | RSS growth MB | upstream written during the pause MB "
        "| completed within 60 s after |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for title, figures in results:
        if isinstance(figures, str):
            rows.append(f"| {title} | {figures} | | | | |")
            continue
        growth = figures["rss_peak"] - figures["rss_before"]
        rows.append(
            f"| {title} | {figures['rss_before']:.0f} | {figures['rss_peak']:.0f} | {growth:.1f} | "
            f"{figures['upstream_written'] / 1048576:.1f} of {total_mb} | {'yes' if figures['done'] else 'no'} |"
        )
    return "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--upstream", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mb", type=int, default=64, help="megabytes the upstream streams (default 64)")
    parser.add_argument("--pause", type=float, default=10.0, help="seconds the client stops reading (default 10)")
    parser.add_argument("--litellm", help="the `litellm` executable of a venv with litellm[proxy], to compare")
    args = parser.parse_args()
    if args.upstream:
        _upstream(args.upstream, args.mb * 1024 * 1024)
        return
    # a SIGTERM (``timeout``) still runs the cleanup that stops the child processes
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(_report(run(args.pause, args.mb, args.litellm), args.pause, args.mb))


if __name__ == "__main__":
    main()
