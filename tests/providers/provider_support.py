"""A real local HTTP server that replays recorded provider bodies, and helpers to drive providers.

The recorded bodies are licensed test data kept outside the repository: they are read from
``$RXLLM_FIXTURES`` (default ``<repo>/../shared/fixtures``) and tests skip when absent.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import orjson
from aiohttp import web
from support import fixture_path, fixtures_root

from rxllm.builder import stream_chunk_builder
from rxllm.providers import ChatRequest, _http, get_provider
from rxllm.types import ChatCompletionChunk, ModelResponse

REPO = Path(__file__).resolve().parents[2]
FIXTURES = fixtures_root()

#: The key the tests send: it must never show up in an error, a log line or a repr.
SECRET = "sk-test-SECRET-do-not-leak-1234"

MODES = ("whole", "random", "bytes")


class Long:
    """A long expected text, written out as its start, its end and its length."""

    def __init__(self, start: str, end: str, length: int) -> None:
        self.start, self.end, self.length = start, end, length

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, str)
            and other.startswith(self.start)
            and other.endswith(self.end)
            and len(other) == self.length
        )

    def __repr__(self) -> str:
        return f"Long({self.start!r}...{self.end!r}, {self.length})"


def fixture_bytes(name: str) -> bytes:
    """The recorded body ``name`` (``"openai/text_basic.sse"``); skips (fails in CI) when absent."""
    return fixture_path(name).read_bytes()


def pieces(body: bytes, mode: str, seed: int = 0) -> Iterator[bytes]:
    """Split a body the way a server might write it: whole, random sizes, or one byte a write."""
    if mode == "whole":
        yield body
    elif mode == "bytes":
        for i in range(len(body)):
            yield body[i : i + 1]
    else:
        rng = random.Random(seed)
        i = 0
        while i < len(body):
            n = rng.randint(1, 97)
            yield body[i : i + n]
            i += n


@attrs.define
class Reply:
    """What the server answers to the next request."""

    body: bytes = b""
    status: int = 200
    mode: str = "whole"
    headers: dict[str, str] = attrs.field(factory=dict)
    content_type: str = "text/event-stream"
    #: after this many body bytes, stop writing and hold the connection open
    stall_after: int | None = None
    #: after this many body bytes, drop the connection without ending the body
    reset_after: int | None = None


@attrs.define
class Recorded:
    """One request the server received."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any


class ReplayServer:
    """The handler state: queued replies, recorded requests, and disconnect observation."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.requests: list[Recorded] = []
        #: the client address of each request (equal addresses mean a reused connection)
        self.peers: list[Any] = []
        self.disconnected = asyncio.Event()
        self.release = asyncio.Event()
        self.url = ""

    def reply(self, body: bytes = b"", **kwargs: Any) -> Reply:
        """Queue the answer to the next request."""
        reply = Reply(body, **kwargs)
        self.replies.append(reply)
        return reply

    def replay(self, name: str, mode: str = "whole") -> None:
        """Queue a recorded fixture body."""
        self.reply(fixture_bytes(name), mode=mode)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        self.requests.append(
            Recorded(
                request.method,
                request.path,
                dict(request.query),
                dict(request.headers),
                orjson.loads(raw) if raw else None,
            )
        )
        if not self.replies:
            return web.Response(status=500, text="no reply queued")
        reply = self.replies.pop(0)
        if reply.status != 200:
            return web.Response(
                status=reply.status, body=reply.body, headers=reply.headers, content_type="application/json"
            )
        resp = web.StreamResponse(status=200, headers=reply.headers)
        resp.content_type = reply.content_type
        await resp.prepare(request)
        limit = reply.stall_after if reply.stall_after is not None else reply.reset_after
        body = reply.body if limit is None else reply.body[:limit]
        try:
            for piece in pieces(body, reply.mode):
                await resp.write(piece)
                if reply.mode != "whole":
                    await asyncio.sleep(0)
        except (ConnectionError, RuntimeError):
            self.disconnected.set()
            return resp
        except asyncio.CancelledError:
            # aiohttp cancels the handler when the client goes away
            self.disconnected.set()
            raise
        if reply.reset_after is not None:
            assert request.transport is not None
            request.transport.abort()
            return resp
        if reply.stall_after is not None:
            try:
                await self._hold(request)
            except asyncio.CancelledError:
                self.disconnected.set()
                raise
            return resp
        await resp.write_eof()
        return resp

    async def _hold(self, request: web.Request) -> None:
        """Send nothing until the client goes away (polling the socket) or the test ends."""
        while not self.release.is_set():
            transport = request.transport
            if transport is None or transport.is_closing():
                self.disconnected.set()
                return
            await asyncio.sleep(0.005)


def connections_in_use() -> int:
    """Connections the current loop's shared session has checked out (0 once streams are closed)."""
    loop = asyncio.get_running_loop()
    session = _http._sessions.get(loop)
    if session is None or session.connector is None:
        return 0
    return len(getattr(session.connector, "_acquired", ()))


def request_for(provider: str, url: str, model: str = "test-model", **params: Any) -> ChatRequest:
    """A small request aimed at the local server."""
    messages = params.pop("messages", ({"role": "user", "content": "hi"},))
    return ChatRequest(
        model=model,
        provider=provider,
        messages=tuple(messages),
        params=params,
        api_base=url,
        api_key=SECRET,
        original_model=f"{provider}/{model}",
        stream_timeout=params.pop("stream_timeout", 5.0),
    )


async def collect(provider: str, url: str, **params: Any) -> list[ChatCompletionChunk]:
    """Every chunk the provider yields for one request."""
    stream = get_provider(provider).stream(request_for(provider, url, **params))
    return [chunk async for chunk in stream]


async def rebuild(provider: str, url: str, **params: Any) -> ModelResponse:
    """The response rebuilt from the provider's chunks."""
    response = stream_chunk_builder(await collect(provider, url, **params))
    assert response is not None
    return response


def tool_calls(response: ModelResponse, choice: int = 0) -> list[tuple[str, str, Any]]:
    """(id, name, parsed arguments) of each tool call of a choice."""
    calls = response.choices[choice].message.tool_calls or ()
    return [(c.id, c.function.name, c.function.parsed_arguments()) for c in calls]


async def first_chunks(stream: AsyncIterator[ChatCompletionChunk], n: int) -> list[ChatCompletionChunk]:
    """Read ``n`` chunks from a stream (leaving it open)."""
    out = []
    async for chunk in stream:
        out.append(chunk)
        if len(out) == n:
            break
    return out


def as_dict(obj: Mapping[str, Any] | None) -> dict[str, Any]:
    """A mapping as a plain dict (``extra`` fields are read-only mappings)."""
    return dict(obj or {})
