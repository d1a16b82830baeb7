"""Import time (fresh interpreters) and memory per open stream (a fresh process per client).

Memory: a child process imports the client, makes one warm-up request, reads its RSS, then
opens ``N`` concurrent streams against a slow paced upstream, waits until every stream has
delivered its first chunk, reads its RSS again, and cancels them all. The difference over
``N`` is the memory per open stream (response objects, buffers, sockets, tasks).

Run as ``python -m benchmarks._startup memory IMPL BASE N`` for one child.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from benchmarks._common import OFFLINE_ENV, installed, median, run_python

IMPORTS = ("rxllm", "openai", "litellm")


def import_times(runs: int, log: Callable[[str], None]) -> dict[str, float | str]:
    """Module -> median ms to import it in a fresh interpreter (interpreter start excluded).

    One untimed import of each module first, allowed to write bytecode: pip compiles an
    installed package's bytecode, but an editable checkout (or a run under
    ``PYTHONDONTWRITEBYTECODE``) would otherwise compile rxllm's source on every import while
    the peers, installed by pip, load theirs from ``__pycache__``.
    """
    code = "import time; t = time.perf_counter(); import {m}; print(time.perf_counter() - t)"
    samples: dict[str, list[float]] = {m: [] for m in IMPORTS if installed(m)}
    out: dict[str, float | str] = {m: f"{m} not installed" for m in IMPORTS if m not in samples}
    with tempfile.TemporaryDirectory(prefix="rxllm-bench-import-") as cwd:
        for module in samples:
            try:
                run_python(code.format(m=module), cwd, write_bytecode=True)
            except Exception as exc:
                out[module] = f"failed: {exc}"[:80]
        for _ in range(runs):
            for module in samples:  # alternate, so drift hits all alike
                try:
                    samples[module].append(float(run_python(code.format(m=module), cwd).split()[-1]) * 1e3)
                except Exception as exc:
                    out[module] = f"failed: {exc}"[:80]
    for module, values in samples.items():
        if values and module not in out:
            out[module] = median(values)
    log("  import times: done")
    return {m: out[m] for m in IMPORTS if m in out}


# --------------------------------------------------------------------------- memory (child side)


async def _open_rxllm(base: str) -> tuple[Any, Callable[[], Any]]:
    import rxllm

    stream = await rxllm.acompletion("openai/gpt-4o", [{"role": "user", "content": "hi"}], stream=True,
                                     api_base=base, api_key="sk-bench-not-a-key")  # fmt: skip
    first = await stream.__anext__()
    return first, stream.aclose


async def _open_aiohttp(base: str, session: Any) -> tuple[Any, Callable[[], Any]]:
    resp = await session.post(base + "/chat/completions", data=b'{"model":"m","messages":[],"stream":true}')
    first = await resp.content.readany()
    return first, _async(resp.close)


async def _open_openai(base: str, client: Any) -> tuple[Any, Callable[[], Any]]:
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    first = await stream.__anext__()
    return first, stream.close


def _async(fn: Callable[[], Any]) -> Callable[[], Any]:
    async def run() -> None:
        fn()

    return run


async def _memory_child(impl: str, base: str, n: int) -> dict[str, float]:
    import gc

    from benchmarks._common import raise_fd_limit, rss_mb

    raise_fd_limit()
    extra: Any = None
    if impl == "aiohttp":
        import aiohttp

        extra = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        opener: Callable[[], Any] = lambda: _open_aiohttp(base, extra)  # noqa: E731
    elif impl == "openai":
        import openai

        # the SDK's default pool allows 1,000 connections
        extra = openai.AsyncOpenAI(base_url=base, api_key="sk-bench-not-a-key", max_retries=0)
        opener = lambda: _open_openai(base, extra)  # noqa: E731
    else:
        opener = lambda: _open_rxllm(base)  # noqa: E731
    _, close = await opener()  # warm-up: imports, session, caches
    await close()
    gc.collect()
    before = rss_mb()
    opened = await asyncio.gather(*(opener() for _ in range(n)))
    gc.collect()
    during = rss_mb()
    await asyncio.gather(*(close() for _, close in opened), return_exceptions=True)
    if impl == "aiohttp" or impl == "openai":
        await extra.close()
    return {"before_mb": before, "during_mb": during, "kb_per_stream": (during - before) * 1024 / n}


def memory(base: str, n: int, log: Callable[[str], None]) -> dict[str, dict[str, float] | str]:
    """Client -> memory per open stream, measured in a fresh process each."""
    import subprocess

    from benchmarks._common import child_env

    out: dict[str, dict[str, float] | str] = {}
    for impl, module in (("aiohttp", "aiohttp"), ("openai", "openai"), ("rxllm", "rxllm")):
        if not installed(module):
            out[impl] = f"{module} not installed"
            continue
        with tempfile.TemporaryDirectory(prefix="rxllm-bench-mem-") as cwd:
            proc = subprocess.run(
                [sys.executable, "-m", "benchmarks._startup", "memory", impl, base, str(n)],
                cwd=cwd,
                env=child_env(),
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            )
        if proc.returncode != 0:
            out[impl] = "failed"
            log(f"  memory {impl}: {proc.stderr.strip()[-1500:]}")
            continue
        out[impl] = json.loads(proc.stdout.strip().splitlines()[-1])
    log("  memory: done")
    return out


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "memory":
        import os

        os.environ.update(OFFLINE_ENV)
        result = asyncio.run(_memory_child(sys.argv[2], sys.argv[3], int(sys.argv[4])))
        print(json.dumps(result))
    else:
        raise SystemExit("usage: python -m benchmarks._startup memory IMPL BASE N")
