"""The proxies: rxllm's (``python -m rxllm serve``) and LiteLLM's (``litellm --config``, uvicorn, one worker).

Three processes: the upstream (:mod:`benchmarks._upstream`), the proxy, and this process as
the client (aiohttp reading raw bytes, which costs it little). Both proxies get the same
``model_list`` pointing at the same upstream scenarios. The proxy's CPU (user + system, with
psutil including any children) is read before and after each scenario, so the figures are the
proxy process's own:

- **bulk**: concurrent streams from an upstream writing as fast as it can (many chunks per
  read), batches repeated until a minimum wall time: CPU µs per chunk and chunks/s.
- **paced**: concurrent streams whose upstream writes one chunk per network write, 1 ms
  apart: each chunk costs the proxy a read and a write (the realistic per-chunk cost).
- **time to first chunk** with 1, 50 and 500 streams started at once (paced upstream): the
  median and 95th percentile from sending the request to receiving the first ``data:`` event.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from benchmarks._common import (
    child_env,
    cpu_seconds,
    free_port,
    installed,
    median,
    percentile,
    rss_mb,
    stop_process,
)
from benchmarks._upstream import Upstream, chunk_count

MASTER_KEY = "sk-bench-master-key"

#: The model name the benchmark upstream reports: a client asking for it gets rxllm's passthrough.
PASS_MODEL = "gpt-4o-2024-08-06"

#: model name -> (variant, mode, n) of the upstream scenario it forwards to.
Scenarios = dict[str, tuple[str, str, int]]


def litellm_cli() -> Path:
    """LiteLLM's CLI: ``$RXLLM_BENCH_LITELLM``, else the one beside this interpreter."""
    given = os.environ.get("RXLLM_BENCH_LITELLM")
    return Path(given) if given else Path(sys.executable).with_name("litellm")


#: model name -> the ``litellm_params`` of an in-process ``mock/`` deployment (``mock_delay``...).
MockModels = dict[str, dict[str, Any]]


def _config(
    upstream: Upstream,
    scenarios: Scenarios,
    litellm: bool,
    general: dict[str, Any] | None = None,
    mocks: MockModels | None = None,
) -> str:
    lines = ["model_list:"]
    for name, (variant, mode, n) in scenarios.items():
        base = upstream.base(variant, mode, n)
        lines += [
            f"  - model_name: {name}",
            "    litellm_params:",
            "      model: openai/gpt-4o-2024-08-06",
            f"      api_base: '{base}'",
            "      api_key: sk-bench-not-a-key",
        ]
    for name, params in (mocks or {}).items():
        lines += [f"  - model_name: {name}", "    litellm_params:", f"      model: mock/{name}"]
        lines += [f"      {key}: {orjson.dumps(value).decode()}" for key, value in params.items()]
    # both proxies check the same master key on every request (LiteLLM refuses to start without one)
    lines += ["general_settings:", f"  master_key: {MASTER_KEY}"]
    if litellm:
        lines += ["litellm_settings:", "  telemetry: false", "  drop_params: true"]
    else:
        lines += ["  global_max_parallel_requests: 100000"]
        lines += [f"  {key}: {orjson.dumps(value).decode()}" for key, value in (general or {}).items()]
    return "\n".join(lines) + "\n"


class Proxy:
    """A proxy subprocess (a context manager): ``kind`` is ``"rxllm"``, ``"floor"`` or ``"litellm"``.

    Args:
        general: Extra ``general_settings`` for rxllm's proxy.
        preexec: Run in the child before it starts (the burst sets its fd limits there).
        gc_probe: Run rxllm's proxy under :mod:`benchmarks._gcprobe`; :attr:`gc_stats` is its file.
        mocks: In-process ``mock/`` deployments added to rxllm's ``model_list`` (the paced
            upstream inside the proxy: one socket per stream).
    """

    def __init__(
        self,
        kind: str,
        upstream: Upstream,
        scenarios: Scenarios,
        profile: str | None = None,
        *,
        general: dict[str, Any] | None = None,
        preexec: Callable[[], None] | None = None,
        gc_probe: bool = False,
        mocks: MockModels | None = None,
    ) -> None:
        self.kind = kind
        self.upstream = upstream
        self.scenarios = scenarios
        self.profile = profile
        self.general = general
        self.preexec = preexec
        self.gc_probe = gc_probe
        self.mocks = mocks
        self.gc_stats: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> Proxy:
        self._tmp = tempfile.TemporaryDirectory(prefix=f"rxllm-bench-{self.kind}-")
        tmp = Path(self._tmp.name)
        config = tmp / "config.yaml"
        config.write_text(_config(self.upstream, self.scenarios, self.kind == "litellm", self.general, self.mocks))
        log = tmp / "proxy.log"
        prefix = ["-m", "cProfile", "-o", self.profile] if self.profile else []
        if self.gc_probe and not self.profile:
            self.gc_stats = tmp / "gc.json"
            prefix = ["-m", "benchmarks._gcprobe", str(self.gc_stats)]
        else:
            prefix += ["-m"]
        if self.kind == "rxllm":
            cmd = [sys.executable, *prefix, "rxllm", "serve", "--config", str(config), "--port", "0"]
        elif self.kind == "floor":
            cmd = [sys.executable, *prefix, "benchmarks._floor_proxy", "--config", str(config), "--port", "0"]
        else:
            self.port = free_port()
            cli = litellm_cli()
            cmd = [str(cli), "--config", str(config), "--host", "127.0.0.1", "--port", str(self.port)]
            cmd += ["--num_workers", "1"]
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=tmp,
                env=child_env(),
                preexec_fn=self.preexec,
            )
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                text = log.read_text(errors="replace")[-2000:]
                self.__exit__()
                raise RuntimeError(f"the {self.kind} proxy did not start:\n{text}")
            if self.kind != "litellm":
                found = re.search(r"http://127\.0\.0\.1:(\d+)", log.read_text(errors="replace"))
                if found:
                    self.port = int(found.group(1))
                    break
            elif _healthy(self.port):
                break
            time.sleep(0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        stop_process(self.proc, 30)  # SIGTERM first, so cProfile writes its file
        if self._tmp is not None:
            self._tmp.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/chat/completions"


#: The row of rxllm's proxy forwarding the upstream's events as they are.
PASS_NAME = "rxllm proxy, passthrough (client names the upstream's model)"
UVLOOP_NAME = "rxllm proxy on uvloop (`event_loop: uvloop`)"
UVLOOP_PASS_NAME = "rxllm proxy on uvloop, passthrough"

#: The floor proxy's row name (the ratios' denominator).
FLOOR_NAME = "floor proxy (aiohttp, parse + re-encode)"


def litellm_missing() -> str | None:
    """Why LiteLLM's proxy cannot run here (``None``: it can)."""
    if "RXLLM_BENCH_LITELLM" not in os.environ and not installed("litellm"):
        return "litellm not installed"
    if not litellm_cli().exists():
        return "the `litellm` CLI is not installed"
    return None


def _healthy(port: int) -> bool:
    import urllib.request

    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{port}/health/liveliness", timeout=1) as resp:
            return int(resp.status) == 200
    except OSError:
        return False


# --------------------------------------------------------------------------- the client side


_HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {MASTER_KEY}"}


async def _stream(session: Any, url: str, model: str) -> tuple[int, float]:
    """One streaming request through the proxy: (chunks received, seconds to the first one)."""
    body = orjson.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    start = time.perf_counter()
    first = float("nan")
    parts: list[bytes] = []
    async with session.post(url, data=body, headers=_HEADERS) as resp:
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {(await resp.read())[:300]!r}")
        async for piece in resp.content.iter_any():
            if first != first and b"data: " in piece:
                first = time.perf_counter() - start
            parts.append(piece)
    data = b"".join(parts)
    if not data.rstrip().endswith(b"data: [DONE]"):
        raise RuntimeError(f"stream did not end with [DONE]: {data[-200:]!r}")
    return data.count(b"data: {"), first


async def _batch(url: str, model: str, streams: int) -> tuple[list[tuple[int, float]], float]:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.perf_counter()
        results = await asyncio.gather(*(_stream(session, url, model) for _ in range(streams)))
        return results, time.perf_counter() - start


def _run(proxy: Proxy, model: str, streams: int, min_wall: float, max_batches: int) -> dict[str, float]:
    """Batches of ``streams`` concurrent streams until ``min_wall`` s: the proxy's CPU and throughput."""
    asyncio.run(_batch(proxy.url, model, 1))  # warm-up: imports, upstream connection, caches
    variant, _, n = proxy.scenarios[model]
    cpu0 = cpu_seconds(proxy.pid)
    wall = 0.0
    chunks = 0
    ttfc: list[float] = []
    batches = 0
    peak_rss = 0.0
    while batches < max_batches and (batches == 0 or wall < min_wall):
        results, elapsed = asyncio.run(_batch(proxy.url, model, streams))
        wall += elapsed
        batches += 1
        for count, first in results:
            want = chunk_count(variant, n)
            if count < n + 1 or count > want:
                raise RuntimeError(f"{proxy.kind}: a stream delivered {count} chunks, expected {want}")
            chunks += count
            ttfc.append(first)
        peak_rss = max(peak_rss, rss_mb(proxy.pid))
    cpu = cpu_seconds(proxy.pid) - cpu0
    return {
        "us_per_chunk": cpu / chunks * 1e6,
        "chunks_per_s": chunks / wall,
        "ttfc_median_ms": median(ttfc) * 1e3,
        "ttfc_p95_ms": percentile(ttfc, 0.95) * 1e3,
        "rss_mb": peak_rss,
        "chunks": chunks,
        "cpu_ms_per_stream": cpu / (streams * batches) * 1e3,
    }


def scenarios(size: str) -> Scenarios:
    bulk_n = {"smoke": 300, "quick": 1000, "full": 2000}[size]
    paced_n = 200 if size == "full" else 40
    return {
        "bulk": ("text", "bulk", bulk_n),
        "paced": ("text", "p1", paced_n),
        "ttfc": ("text", "p10", 10 if size == "full" else 4),
        # the upstream's own model name: rxllm forwards the events as they are (passthrough)
        PASS_MODEL: ("text", "bulk", bulk_n),
    }


def measure(
    upstream: Upstream, size: str, log: Callable[[str], None], profile: str | None = None
) -> dict[str, dict[str, Any] | str]:
    """Row name -> results (or the reason there are none)."""
    min_wall = {"smoke": 0.2, "quick": 1.0, "full": 3.0}[size]  # CPU is read in 10 ms ticks
    bulk_streams = 2 if size == "smoke" else 10
    paced_streams = 10 if size == "smoke" else 50
    levels = (1, 50) if size == "smoke" else (1, 50, 500)
    out: dict[str, dict[str, Any] | str] = {}
    uvloop = {"event_loop": "uvloop"}
    kinds: list[tuple[str, str, dict[str, Any] | None]] = [
        (FLOOR_NAME, "floor", None),
        ("rxllm proxy (aiohttp, `rxllm serve`)", "rxllm", None),
        (UVLOOP_NAME, "rxllm", uvloop),
        ("LiteLLM proxy (uvicorn, 1 worker)", "litellm", None),
    ]
    for name, kind, general in kinds:
        missing = litellm_missing() if kind == "litellm" else None
        if kind == "rxllm" and general is uvloop and importlib.util.find_spec("uvloop") is None:
            missing = "uvloop not installed (pip install 'rxllm[uvloop]')"
        if missing:
            out[name] = missing
            continue
        try:
            profiled = profile if kind == "rxllm" and general is None else None
            with Proxy(kind, upstream, scenarios(size), profiled, general=general) as proxy:
                row: dict[str, Any] = {}
                row["bulk"] = _run(proxy, "bulk", bulk_streams, min_wall, 10)
                row["paced"] = _run(proxy, "paced", paced_streams, min_wall / 2, 5)
                for level in levels if kind != "floor" else ():  # the floor is for CPU per chunk
                    row[f"ttfc{level}"] = _run(proxy, "ttfc", level, 0.0, 1)
                out[name] = row
                if kind == "rxllm":  # the same process, the client asking for the upstream's model name
                    passing = PASS_NAME if general is None else UVLOOP_PASS_NAME
                    out[passing] = {"bulk": _run(proxy, PASS_MODEL, bulk_streams, min_wall, 10)}
                log(f"  proxy {kind}: done")
        except Exception as exc:
            out[name] = f"failed: {type(exc).__name__}"
            log(f"  proxy {kind}: {type(exc).__name__}: {str(exc)[:1500]}")
    return out
