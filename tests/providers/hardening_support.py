"""A replay server on its own thread and loop, for tests that drive rxllm from several loops.

The hardening tests call ``completion`` (rxllm's loop), ``asyncio.run(acompletion(...))`` (a
new loop each time) and ``stream()`` in one test: a server bound to none of those loops keeps
answering. The handler serves whatever :attr:`ThreadedServer.body` holds, counts the
connections it has open, and can answer with any status and headers.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import attrs
import orjson
from aiohttp import web

from rxllm.sse import SSEDecoder


@attrs.define
class Answer:
    """What the server sends to every request until changed."""

    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = attrs.field(factory=dict)
    content_type: str = "text/event-stream"
    #: after this many body bytes, stop writing and hold the connection until the client leaves
    stall_after: int | None = None
    #: send no headers at all; hold the connection until the client leaves
    hold_headers: bool = False
    #: write the body in pieces of this size (to see how far a slow client lets it get)
    piece_size: int | None = None


class ThreadedServer:
    """An aiohttp server running on a daemon thread's own event loop (127.0.0.1, a free port)."""

    def __init__(self) -> None:
        self.answer = Answer()
        self.requests: list[dict[str, Any]] = []
        self.open_connections = 0
        #: body bytes written (and accepted by the transport) so far, and finished bodies
        self.bytes_written = 0
        self.bodies_done = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""
        self._thread = threading.Thread(target=self._run, name="hardening-server", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        # count connections the server holds open (server-side leak accounting)
        factory = self._runner.server
        assert factory is not None
        original = factory.connection_made

        def made(handler: Any, transport: Any) -> None:
            original(handler, transport)
            self.open_connections += 1

        lost = factory.connection_lost

        def gone(handler: Any, exc: BaseException | None) -> None:
            lost(handler, exc)
            self.open_connections -= 1

        factory.connection_made = made  # type: ignore[method-assign]
        factory.connection_lost = gone  # type: ignore[method-assign]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.requests.append(
            {"method": request.method, "path": request.path_qs, "headers": dict(request.headers), "raw": raw}
        )
        answer = self.answer
        if answer.hold_headers:
            while request.transport is not None and not request.transport.is_closing():
                await asyncio.sleep(0.01)
            return web.Response(status=204)
        if answer.status != 200:
            return web.Response(status=answer.status, body=answer.body, headers=answer.headers)
        resp = web.StreamResponse(status=200, headers=answer.headers)
        resp.content_type = answer.content_type
        await resp.prepare(request)
        body = answer.body if answer.stall_after is None else answer.body[: answer.stall_after]
        try:
            step = answer.piece_size or len(body) or 1
            for start in range(0, len(body), step):
                await resp.write(body[start : start + step])
                self.bytes_written += len(body[start : start + step])
            if answer.stall_after is not None:
                while request.transport is not None and not request.transport.is_closing():
                    await asyncio.sleep(0.01)
                return resp
            await resp.write_eof()
            self.bodies_done += 1
        except (ConnectionError, RuntimeError):
            pass
        return resp

    def connections(self) -> int:
        """Connections the server has open now (read on its own loop)."""
        return asyncio.run_coroutine_threadsafe(self._count(), self._loop).result(5)

    async def _count(self) -> int:
        await asyncio.sleep(0.05)  # let closes that are in flight arrive
        return self.open_connections

    def close(self) -> None:
        """Stop the server and its thread."""

        async def stop() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def split_events(body: bytes) -> list[tuple[str, Any]]:
    """A recorded SSE body as (event name, decoded JSON data) pairs (non-JSON data kept as text)."""
    decoder = SSEDecoder()
    events = decoder.feed(body)
    tail = decoder.flush()
    if tail is not None:
        events.append(tail)
    out: list[tuple[str, Any]] = []
    for event in events:
        try:
            data: Any = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            data = event.data
        out.append((event.event, data))
    return out


def join_events(events: list[tuple[str, Any]]) -> bytes:
    """The inverse of :func:`split_events`: an SSE body."""
    parts = []
    for name, data in events:
        text = data if isinstance(data, str) else orjson.dumps(data).decode()
        head = f"event: {name}\n" if name and name != "message" else ""
        parts.append(head + "".join(f"data: {line}\n" for line in text.split("\n")) + "\n")
    return "".join(parts).encode()


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value inside a JSON value (not the root itself)."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield (*prefix, key)
            yield from paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield (*prefix, i)
            yield from paths(inner, (*prefix, i))


def get_at(value: Any, path: tuple[Any, ...]) -> Any:
    """The value at ``path``."""
    for step in path:
        value = value[step]
    return value


def replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    """A deep copy of ``value`` with the value at ``path`` replaced by ``new``."""
    copy = orjson.loads(orjson.dumps(value))
    target = copy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = new
    return copy
