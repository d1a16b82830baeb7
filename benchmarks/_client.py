"""Client CPU per chunk: the floor, the OpenAI SDK, LiteLLM and rxllm, against one local upstream.

Every implementation makes one streaming request to :mod:`benchmarks._upstream`, rebuilds what
was streamed (the text, or the tool calls' arguments) and returns it, so a broken peer cannot
post a fast number: the result is checked against what the upstream sent. The client's CPU
(``time.process_time``: all of this process's threads, so background logging threads count)
is read around each whole stream, plus a short idle settle (no CPU of its own) so work a peer
defers to a thread is counted too. Implementations alternate within each repeat, and the
median over repeats is reported per chunk, with its ratio to the floor.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks import _upstream
from benchmarks._common import installed, median

MESSAGES = [{"role": "user", "content": "What is the weather in San Francisco?"}]
MODEL = "gpt-4o-2024-08-06"
KEY = "sk-bench-not-a-key"

#: Rebuilt output: the text, or (arguments of call 0, arguments of call 1).
Result = Any
Impl = Callable[[str], Awaitable[Result]]


def expected(variant: str, n: int) -> Result:
    if variant == "text":
        return _upstream.expected_text(n)
    return _upstream.expected_arguments(n)


# --------------------------------------------------------------------------- the floor


class _Floor:
    """Bare aiohttp: ``iter_any()``, split lines, ``orjson.loads`` each data line, rebuild the output."""

    def __init__(self) -> None:
        self.session: Any = None

    async def __call__(self, base: str) -> Result:
        import aiohttp
        import orjson

        if self.session is None:
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        loads = orjson.loads
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
                    chunk = loads(line[6:])
                    for choice in chunk["choices"]:
                        delta = choice["delta"]
                        content = delta.get("content")
                        if content:
                            text.append(content)
                        for call in delta.get("tool_calls") or ():
                            args.setdefault(call["index"], []).append(call["function"].get("arguments") or "")
        return _result(text, args)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


def _result(text: list[str], args: dict[int, list[str]]) -> Result:
    if args:
        return tuple("".join(args[i]) for i in sorted(args))
    return "".join(text)


# --------------------------------------------------------------------------- openai SDK


class _OpenAI:
    """``AsyncOpenAI().chat.completions.create(stream=True)``, or the ``.stream()`` helper."""

    def __init__(self, helper: bool) -> None:
        self.helper = helper
        self.clients: dict[str, Any] = {}

    def client(self, base: str) -> Any:
        client = self.clients.get(base)
        if client is None:
            import openai

            client = self.clients[base] = openai.AsyncOpenAI(base_url=base, api_key=KEY, max_retries=0)
        return client

    async def __call__(self, base: str) -> Result:
        client = self.client(base)
        if self.helper:
            async with client.chat.completions.stream(
                model=MODEL, messages=MESSAGES, stream_options={"include_usage": True}
            ) as stream:
                async for _event in stream:
                    pass
                final = await stream.get_final_completion()
            message = final.choices[0].message
            if message.tool_calls:
                return tuple(call.function.arguments for call in message.tool_calls)
            return message.content
        text: list[str] = []
        args: dict[int, list[str]] = {}
        response = await client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        async for chunk in response:
            for choice in chunk.choices:
                delta = choice.delta
                if delta.content:
                    text.append(delta.content)
                for call in delta.tool_calls or ():
                    args.setdefault(call.index, []).append(call.function.arguments or "")
        return _result(text, args)

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()


# --------------------------------------------------------------------------- litellm


async def _litellm(base: str) -> Result:
    import litellm

    chunks = []
    response = await litellm.acompletion(
        model="openai/" + MODEL,
        messages=MESSAGES,
        stream=True,
        api_base=base,
        api_key=KEY,
        stream_options={"include_usage": True},
    )
    async for chunk in response:
        chunks.append(chunk)
    return _from_response(litellm.stream_chunk_builder(chunks, messages=MESSAGES))


def _from_response(response: Any) -> Result:
    message = response.choices[0].message
    if message.tool_calls:
        return tuple(call.function.arguments for call in message.tool_calls)
    return message.content


# --------------------------------------------------------------------------- rxllm


async def _rxllm_provider(base: str) -> Result:
    """The provider's async generator alone: SSE decode, orjson, checks, frozen chunks."""
    from rxllm.builder import ResponseBuilder
    from rxllm.providers import ChatRequest, get_provider

    request = ChatRequest(
        model=MODEL, provider="openai", messages=tuple(MESSAGES), api_base=base, api_key=KEY, original_model=MODEL
    )
    builder = ResponseBuilder(messages=MESSAGES)
    add = builder.add
    async for chunk in get_provider("openai").stream(request):
        add(chunk)
    return _from_response(builder.build())


async def _rxllm_acompletion(base: str) -> Result:
    import rxllm

    chunks = []
    response = await rxllm.acompletion("openai/" + MODEL, MESSAGES, stream=True, api_base=base, api_key=KEY)
    async for chunk in response:
        chunks.append(chunk)
    return _from_response(rxllm.stream_chunk_builder(chunks, messages=MESSAGES))


async def _rxllm_reactive(base: str) -> Result:
    """``stream()`` + detect_repeated_chunks + tap_cost, shared by accumulate_tool_calls and to_response."""
    import reactivex
    from reactivex import operators as rx_ops

    import rxllm
    from rxllm import operators as ops

    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()
    reports: list[Any] = []
    calls: list[Any] = []
    responses: list[Any] = []

    def collect(shared: reactivex.Observable[Any]) -> reactivex.Observable[Any]:
        return reactivex.merge(
            shared.pipe(ops.accumulate_tool_calls(), rx_ops.do_action(calls.append), rx_ops.ignore_elements()),
            shared.pipe(ops.to_response(MESSAGES)),
        )

    pipeline = rxllm.stream("openai/" + MODEL, MESSAGES, api_base=base, api_key=KEY).pipe(
        ops.detect_repeated_chunks(),
        ops.tap_cost(reports.append, model=MODEL, messages=MESSAGES),
        rx_ops.publish(collect),
    )
    pipeline.subscribe(
        responses.append,
        lambda exc: done.done() or done.set_exception(exc),
        lambda: done.done() or done.set_result(None),
    )
    await done
    if not reports:
        raise RuntimeError("tap_cost did not report")
    result = _from_response(responses[-1])
    if isinstance(result, tuple) and tuple(c.function.arguments for c in calls) != result:
        raise RuntimeError("accumulate_tool_calls disagrees with to_response")
    return result


# --------------------------------------------------------------------------- the table


def implementations() -> list[tuple[str, str, Impl | None]]:
    """``(row name, peer module, implementation or None when the peer is not installed)``."""
    has_openai = installed("openai")
    has_litellm = installed("litellm")
    return [
        ("floor: aiohttp + orjson.loads per data line", "aiohttp", _Floor()),
        ("openai `AsyncOpenAI` stream", "openai", _OpenAI(helper=False) if has_openai else None),
        (
            "openai `chat.completions.stream()` + `get_final_completion()`",
            "openai",
            _OpenAI(helper=True) if has_openai else None,
        ),
        ("litellm `acompletion(stream=True)` + `stream_chunk_builder`", "litellm", _litellm if has_litellm else None),
        ("rxllm provider generator + `ResponseBuilder` (no Observable)", "rxllm", _rxllm_provider),
        ("rxllm `acompletion(stream=True)` + `stream_chunk_builder`", "rxllm", _rxllm_acompletion),
        ("rxllm `stream()` + detect + tool calls + `tap_cost` + `to_response`", "rxllm", _rxllm_reactive),
    ]


async def _one(impl: Impl, base: str, settle: float) -> tuple[float, Result]:
    gc.collect()
    start = time.process_time()
    result = await impl(base)
    if settle:
        await asyncio.sleep(settle)
    return time.process_time() - start, result


async def measure(
    upstream: _upstream.Upstream,
    cases: list[tuple[str, str, int]],
    repeats: int,
    settle: float,
    log: Callable[[str], None],
    impls: list[tuple[str, str, Impl | None]] | None = None,
    paced_repeats: int | None = None,
) -> dict[tuple[str, str, int], dict[str, float | str]]:
    """For each ``(variant, mode, n)``: row name -> median µs per chunk (or a reason string).

    ``impls``: the rows to measure (default: :func:`implementations`). ``paced_repeats``: the
    streams per cell for paced cases (default ``repeats``): a paced stream is cheap to run
    and noisier than a bulk one (every chunk is a wake-up), so its median wants more samples.
    """
    impls = implementations() if impls is None else impls
    out: dict[tuple[str, str, int], dict[str, float | str]] = {}
    if installed("litellm"):
        import litellm

        litellm.suppress_debug_info = True
        litellm.telemetry = False
    try:
        for case in cases:
            variant, mode, n = case
            base = upstream.base(variant, mode, n)
            chunks = _upstream.chunk_count(variant, n)
            want = expected(variant, n)
            results: dict[str, float | str] = {}
            live: list[tuple[str, Impl]] = []
            for name, peer, impl in impls:
                if impl is None:
                    results[name] = f"{peer} not installed"
                    continue
                try:
                    _, got = await _one(impl, base, 0)  # warm-up: imports, connections, caches
                except Exception as exc:
                    results[name] = f"failed: {type(exc).__name__}"
                    log(f"  {name}: {type(exc).__name__}: {str(exc)[:300]}")
                    continue
                if got != want:
                    results[name] = "wrong result"
                    log(f"  {name}: rebuilt {str(got)[:80]!r}..., expected {str(want)[:80]!r}...")
                    continue
                live.append((name, impl))
            samples: dict[str, list[float]] = {name: [] for name, _ in live}
            runs = paced_repeats if paced_repeats and mode != "bulk" else repeats
            for r in range(runs):
                order = live[r % len(live) :] + live[: r % len(live)] if live else []
                for name, impl in order:
                    cpu, _ = await _one(impl, base, settle)
                    samples[name].append(cpu / chunks * 1e6)
            for name, values in samples.items():
                results[name] = median(values)
            out[case] = results
            log(f"  client {variant}/{mode}/{n}: done")
    finally:
        for _, _, impl in impls:
            close = getattr(impl, "close", None)
            if close is not None:
                await close()
        try:
            from rxllm.providers._http import aclose_sessions

            await aclose_sessions()
        except ImportError:
            pass
    return out
