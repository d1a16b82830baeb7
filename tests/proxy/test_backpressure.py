"""A client that stops reading stops the proxy reading its upstream: bounded memory per stream."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable

import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.proxy.proxy_support import config, running

#: What the upstream would send if nothing stopped it.
TOTAL = 64 * 1024 * 1024
#: The bounds this test proves. The upstream may write what the kernel buffers on both hops
#: (loopback socket buffers autotune to a few MB each) plus what the proxy holds; the proxy's
#: own memory grows by its bounded buffers (``stream_buffer_kb`` + aiohttp's read/write
#: buffers), not by the stream's size. Measured: about 10.5 MB written, about 3 MB of RSS
#: growth (without backpressure: all 64 MB read, and the RSS grows with it).
MAX_UPSTREAM_WRITTEN = 24 * 1024 * 1024
MAX_RSS_GROWTH = 24 * 1024 * 1024


def _rss() -> int:
    with open(f"/proc/{os.getpid()}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class FloodUpstream:
    """An OpenAI-compatible upstream streaming ``TOTAL`` bytes of chunks as fast as it can."""

    def __init__(self) -> None:
        self.written = 0
        self.ended = asyncio.Event()
        events = []
        for i in range(16):  # consecutive chunks differ: this is not a looping model
            chunk = {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "up",
                "choices": [{"index": 0, "delta": {"content": f"{i:x}" * 1000}, "finish_reason": None}],
            }
            events.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
        self.batch = b"".join(events)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        batch = self.batch
        try:
            while self.written < TOTAL:
                await response.write(batch)  # awaits the drain: counts what the socket took
                self.written += len(batch)
            await response.write(b"data: [DONE]\n\n")
        finally:
            self.ended.set()
        return response


@contextlib.asynccontextmanager
async def flood() -> AsyncIterator[tuple[FloodUpstream, str]]:
    up = FloodUpstream()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", up.handle)
    server = TestServer(app)
    await server.start_server()
    try:
        yield up, str(server.make_url("/v1"))
    finally:
        await server.close()


async def _settled(read: Callable[[], int], rounds: int = 200) -> int:
    """Wait until the byte counter ``read()`` stops growing (bounded); return its value."""
    last = -1
    still = 0
    for _ in range(rounds):
        await asyncio.sleep(0.05)
        now = read()
        still = still + 1 if now == last else 0
        if still >= 8:
            return now
        last = now
    return read()


class TestSlowReader:
    async def test_a_client_that_stops_reading_stops_the_upstream(self) -> None:
        """The upstream is read only as far as the buffers allow, and the proxy's RSS stays bounded."""
        async with flood() as (up, api_base):
            entry = {"model_name": "m", "litellm_params": {"model": "openai/up", "api_base": api_base, "api_key": "k"}}
            async with running(config(entry, stream_buffer_kb=256)) as server:
                before = _rss()
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "go"}], "stream": True})
                writer.write(
                    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
                )
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200")
                await reader.read(4096)  # then stop reading

                written = await _settled(lambda: up.written)
                grown = _rss() - before

                writer.close()
                await asyncio.wait_for(up.ended.wait(), 10)  # hang guard: leaving ends the upstream

        assert written < MAX_UPSTREAM_WRITTEN, f"upstream wrote {written / 1e6:.1f} MB"
        assert grown < MAX_RSS_GROWTH, f"proxy RSS grew {grown / 1e6:.1f} MB"
