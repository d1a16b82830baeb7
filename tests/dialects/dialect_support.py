"""Helpers for the dialect tests: encode chunks, decode SSE, and serve bytes to the official SDKs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import anthropic
import openai
import orjson
from aiohttp import web

from rxllm.dialects import Encoder
from rxllm.sse import SSEDecoder
from rxllm.types import ChatCompletionChunk


def encode_all(encoder: Encoder, chunks: Iterable[ChatCompletionChunk], error: BaseException | None = None) -> bytes:
    """Every frame an encoder writes for ``chunks``, ended by ``close()`` (or ``fail(error)``)."""
    out = [encoder.encode(c) for c in chunks]
    out.append(encoder.fail(error) if error is not None else encoder.close())
    return b"".join(out)


def events(body: bytes) -> list[tuple[str, Any]]:
    """``(event name, decoded data)`` for each event of an SSE body (``[DONE]`` kept as a string)."""
    decoder = SSEDecoder()
    out = []
    for event in decoder.feed(body):
        data = event.data if event.data == "[DONE]" else orjson.loads(event.data)
        out.append((event.event, data))
    assert not decoder.close(), "the body ends inside an event"
    return out


class BodyServer:
    """A local aiohttp server answering every POST with the next queued body (for SDK parsers)."""

    def __init__(self) -> None:
        self.bodies: list[tuple[bytes, str]] = []
        self.requests: list[Any] = []
        self.url = ""
        #: SDK clients made here, closed by the fixture
        self.clients: list[Any] = []

    def queue(self, body: bytes, content_type: str = "text/event-stream") -> None:
        """Answer the next request with ``body``."""
        self.bodies.append((body, content_type))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        self.requests.append(orjson.loads(raw) if raw else None)
        body, content_type = self.bodies.pop(0)
        return web.Response(body=body, content_type=content_type)

    def openai(self) -> openai.AsyncOpenAI:
        """The official OpenAI client pointed here."""
        made = openai.AsyncOpenAI(base_url=self.url + "/v1", api_key="unused", max_retries=0, timeout=10)
        self.clients.append(made)
        return made

    def anthropic(self) -> anthropic.AsyncAnthropic:
        """The official Anthropic client pointed here."""
        made = anthropic.AsyncAnthropic(base_url=self.url, api_key="unused", max_retries=0, timeout=10)
        self.clients.append(made)
        return made
