"""The client path layer by layer: what each layer adds on top of the one below, and the GC's share.

Each row is a real streaming request to :mod:`benchmarks._upstream`, one more layer of rxllm's
client path than the row above, and rebuilds the text (or the tool calls' arguments), checked
against what was sent:

1. floor: aiohttp, split lines, ``orjson.loads`` each data line;
2. decode: the floor, plus ``ChatCompletionChunk.from_dict`` of every line;
3. parse: the provider boundary (the provider's stream: SSE decoding, decode, the chunk checks);
4. Observable: ``rxllm.stream()`` consumed through ``to_async_iterator`` (no operators);
5. operators: ``acompletion(stream=True)`` (repeated-chunk detection, the instrumentation);
6. builder: the same, keeping every chunk for ``stream_chunk_builder``;
7. the builder row with the garbage collector off, for the GC's share of row 6.
"""

from __future__ import annotations

import gc
from typing import Any

from benchmarks._client import KEY, MESSAGES, MODEL, Impl, Result, _Floor, _from_response, _result


class _Decode(_Floor):
    """The floor, building rxllm's chunk objects from the decoded lines (and reading them)."""

    async def __call__(self, base: str) -> Result:
        import aiohttp
        import orjson

        from rxllm.types import ChatCompletionChunk

        if self.session is None:
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        loads = orjson.loads
        decode = ChatCompletionChunk.from_dict
        text: list[str] = []
        args: dict[int, list[str]] = {}
        buf = b""
        body = orjson.dumps({"model": MODEL, "messages": MESSAGES, "stream": True})
        async with self.session.post(base + "/chat/completions", data=body) as resp:
            async for piece in resp.content.iter_any():
                buf += piece
                lines = buf.split(b"\n")
                buf = lines.pop()
                for line in lines:
                    if not line.startswith(b"data: ") or line == b"data: [DONE]":
                        continue
                    _collect(decode(loads(line[6:])), text, args)
        return _result(text, args)


def _collect(chunk: Any, text: list[str], args: dict[int, list[str]]) -> None:
    for choice in chunk.choices:
        delta = choice.delta
        if delta.content:
            text.append(delta.content)
        for call in delta.tool_calls or ():
            args.setdefault(call.index, []).append(call.function.arguments or "")


def _request(base: str) -> Any:
    from rxllm.providers import ChatRequest

    return ChatRequest(
        model=MODEL, provider="openai", messages=tuple(MESSAGES), api_base=base, api_key=KEY, original_model=MODEL
    )


async def _parse(base: str) -> Result:
    from rxllm.providers import CheckedStream, get_provider

    text: list[str] = []
    args: dict[int, list[str]] = {}
    provider = get_provider("openai")
    # as rxllm.stream() does: the built-in providers check each chunk as they build it, so
    # wrapping them in CheckedStream would check every chunk twice
    stream: Any = provider.stream(_request(base)) if provider.checks_chunks else CheckedStream(provider, _request(base))
    try:
        async for chunk in stream:
            _collect(chunk, text, args)
    finally:
        await stream.aclose()
    return _result(text, args)


async def _observable(base: str) -> Result:
    import rxllm
    from rxllm.adapters import to_async_iterator

    text: list[str] = []
    args: dict[int, list[str]] = {}
    async for chunk in to_async_iterator(rxllm.stream("openai/" + MODEL, MESSAGES, api_base=base, api_key=KEY)):
        _collect(chunk, text, args)
    return _result(text, args)


async def _operators(base: str) -> Result:
    import rxllm

    text: list[str] = []
    args: dict[int, list[str]] = {}
    response = await rxllm.acompletion("openai/" + MODEL, MESSAGES, stream=True, api_base=base, api_key=KEY)
    async for chunk in response:
        _collect(chunk, text, args)
    return _result(text, args)


async def _builder(base: str) -> Result:
    import rxllm

    chunks = []
    response = await rxllm.acompletion("openai/" + MODEL, MESSAGES, stream=True, api_base=base, api_key=KEY)
    async for chunk in response:
        chunks.append(chunk)
    return _from_response(rxllm.stream_chunk_builder(chunks, messages=MESSAGES))


async def _builder_no_gc(base: str) -> Result:
    enabled = gc.isenabled()
    gc.disable()
    try:
        return await _builder(base)
    finally:
        if enabled:
            gc.enable()


#: ``(row name, implementation)``, lowest layer first.
LAYERS: list[tuple[str, Impl]] = [
    ("1. floor: aiohttp + orjson.loads per data line", _Floor()),
    ("2. + decode: `ChatCompletionChunk.from_dict`", _Decode()),
    ("3. + parse: provider boundary (SSE, decode, checks)", _parse),
    ("4. + Observable: `stream()` via `to_async_iterator`", _observable),
    ("5. + operators: `acompletion(stream=True)`", _operators),
    ("6. + builder: keep chunks, `stream_chunk_builder`", _builder),
    ("6 with the GC off", _builder_no_gc),
]


def implementations() -> list[tuple[str, str, Impl | None]]:
    """The layers in :func:`benchmarks._client.measure`'s form."""
    return [(name, "rxllm", impl) for name, impl in LAYERS]
