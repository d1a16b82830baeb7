"""ONE local OpenAI-compatible upstream, in its own process, that every benchmark streams from.

The scenario is in the URL, so any client (aiohttp, the OpenAI SDK, LiteLLM, rxllm, both
proxies) reaches it with nothing but a base URL::

    http://127.0.0.1:PORT/{variant}/{mode}/{n}/v1/chat/completions

- ``variant``: ``text`` (a role chunk, ``n`` content chunks, a finish chunk, a ``choices: []``
  usage chunk) or ``tools`` (two parallel tool calls whose JSON arguments arrive in ``n``
  fragments, a ``tool_calls`` finish chunk and a usage chunk). OpenAI's 2025 wire format,
  extra fields included (``service_tier``, ``obfuscation``, ``usage: null``).
- ``mode``: ``bulk`` writes the prebuilt body in 64 KB pieces, as fast as the socket takes
  it (many chunks per client read); ``p<ms>`` (``p0.5``, ``p10``) writes each chunk in its own
  network write and sleeps that many milliseconds before the next, so each chunk costs the
  client one read, as with a real LLM.
- ``n``: content (or argument) chunks; :func:`chunk_count` is what the client receives.

Run as a script (``python benchmarks/_upstream.py --port-file F``) or use :class:`Upstream`,
which starts it as a subprocess, bound to 127.0.0.1 only, and stops it on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

WORDS = (" the", " weather", " in", " San", " Francisco", " is", " mild", ",", " with", " fog", ".")
VARIANTS = ("text", "tools")
_HEAD: dict[str, Any] = {
    "id": "chatcmpl-BENCH0000000000000000000000",
    "object": "chat.completion.chunk",
    "created": 1766084439,
    "model": "gpt-4o-2024-08-06",
    "service_tier": "default",
    "system_fingerprint": "fp_e413f45763",
    "usage": None,
}


def _event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
    return b"data: " + orjson.dumps({**_HEAD, "choices": choices, **extra}) + b"\n\n"


def _delta(delta: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
    return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]


def expected_text(n: int) -> str:
    """The content the ``text`` variant streams."""
    return "".join(WORDS[i % len(WORDS)] for i in range(n))


def _fragments(n: int) -> list[str]:
    """``n`` argument fragments that join into one JSON object (``n >= 2``)."""
    inner = [f"w{i % 97:02d} " for i in range(max(0, n - 2))]
    return ['{"query": "', *inner, '"}']


def expected_arguments(n: int) -> tuple[str, str]:
    """The arguments of the ``tools`` variant's two calls."""
    half = max(2, n // 2)
    return "".join(_fragments(half)), "".join(_fragments(max(2, n - half)))


def chunk_count(variant: str, n: int) -> int:
    """How many chunks (data events before ``[DONE]``) a client receives."""
    if variant == "text":
        return n + 3
    half = max(2, n // 2)
    return half + max(2, n - half) + 2


@functools.lru_cache(maxsize=64)
def events(variant: str, n: int) -> tuple[bytes, ...]:
    """The stream's SSE events, ``data: [DONE]`` last."""
    out: list[bytes] = []
    if variant == "text":
        out.append(_event(_delta({"role": "assistant", "content": ""})))
        for i in range(n):
            out.append(_event(_delta({"content": WORDS[i % len(WORDS)]}), obfuscation="V3a"))
        out.append(_event(_delta({}, "stop")))
        completion = n
    elif variant == "tools":
        half = max(2, n // 2)
        for index, count in ((0, half), (1, max(2, n - half))):
            for j, fragment in enumerate(_fragments(count)):
                call: dict[str, Any] = {"index": index, "function": {"arguments": fragment}}
                delta: dict[str, Any] = {"tool_calls": [call]}
                if j == 0:
                    call.update(id=f"call_bench{index}", type="function")
                    call["function"] = {"name": "search" if index == 0 else "lookup", "arguments": fragment}
                    if index == 0:
                        delta = {"role": "assistant", "content": None, **delta}
                out.append(_event(_delta(delta), obfuscation="x"))
        out.append(_event(_delta({}, "tool_calls")))
        completion = n
    else:
        raise ValueError(f"unknown variant {variant!r}")
    usage = {"prompt_tokens": 18, "completion_tokens": completion, "total_tokens": 18 + completion}
    out.append(_event([], usage=usage))
    out.append(b"data: [DONE]\n\n")
    return tuple(out)


@functools.lru_cache(maxsize=64)
def body(variant: str, n: int) -> bytes:
    return b"".join(events(variant, n))


def _parse_mode(mode: str) -> float | None:
    """``bulk`` -> None; ``p<ms>`` -> the pause in seconds."""
    if mode == "bulk":
        return None
    if mode.startswith("p"):
        return float(mode[1:]) / 1000
    raise ValueError(f"unknown mode {mode!r}")


# --------------------------------------------------------------------------- the server


async def _handle(request: Any) -> Any:
    from aiohttp import web

    variant = request.match_info["variant"]
    try:
        n = int(request.match_info["n"])
        pause = _parse_mode(request.match_info["mode"])
        evs = events(variant, n)
    except ValueError as exc:
        return web.json_response({"error": {"message": str(exc), "type": "invalid_request_error"}}, status=400)
    await request.read()
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    try:
        if pause is None:
            data = body(variant, n)
            for i in range(0, len(data), 65536):
                await resp.write(data[i : i + 65536])
        else:
            for i, event in enumerate(evs):
                if i and pause:
                    await asyncio.sleep(pause)
                await resp.write(event)
        await resp.write_eof()
    except (ConnectionError, asyncio.CancelledError):
        pass  # the client went away (cancelled streams, memory runs)
    return resp


async def _serve(port_file: Path) -> None:
    from aiohttp import web

    app = web.Application()
    app.router.add_post("/{variant}/{mode}/{n}/{tail:.*}", _handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    port = runner.addresses[0][1]
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(str(port))
    tmp.replace(port_file)
    await asyncio.Event().wait()


class Upstream:
    """The upstream server as a subprocess (a context manager)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> Upstream:
        self._tmp = tempfile.TemporaryDirectory(prefix="rxllm-bench-up-")
        port_file = Path(self._tmp.name) / "port"
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--port-file", str(port_file)],
            cwd=self._tmp.name,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while not port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError("the benchmark upstream did not start")
            time.sleep(0.02)
        self.port = int(port_file.read_text())
        return self

    def __exit__(self, *exc: object) -> None:
        from benchmarks._common import stop_process  # here: the server side runs as a plain script

        stop_process(self.proc, 10)
        if self._tmp is not None:
            self._tmp.cleanup()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def base(self, variant: str, mode: str, n: int) -> str:
        """The SDK-style base URL (``.../v1``) for one scenario."""
        return f"http://127.0.0.1:{self.port}/{variant}/{mode}/{n}/v1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port-file", required=True, type=Path)
    args = parser.parse_args()
    try:
        asyncio.run(_serve(args.port_file))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    os.environ.pop("PYTHONASYNCIODEBUG", None)
    main()
