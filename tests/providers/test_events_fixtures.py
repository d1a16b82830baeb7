"""events() over every recorded stream: it agrees with to_response and with the official SDKs' accumulators."""

from __future__ import annotations

from typing import Any

import attrs
import orjson
import pytest
from providers.provider_support import ReplayServer, fixture_bytes, request_for
from support import fixtures_root

from rxllm.builder import stream_chunk_builder
from rxllm.errors import APIError
from rxllm.events import (
    EventBuilder,
    Finish,
    ReasoningDelta,
    ReasoningDone,
    RedactedReasoning,
    RefusalDelta,
    RefusalDone,
    TextDelta,
    TextDone,
    ToolCallArgumentsDelta,
    ToolCallDone,
    ToolCallStart,
    UsageUpdate,
)
from rxllm.providers import get_provider
from rxllm.types import ChatCompletionChunk


def _fixture_names() -> list[str]:
    index = fixtures_root() / "index.json"
    if not index.is_file():
        return ["openai/text_basic.sse"]  # the test then skips (fails in CI) with a clear reason
    return sorted(entry["file"] for entry in orjson.loads(index.read_bytes()))


NAMES = _fixture_names()
#: OpenAI-wire bodies the OpenAI SDK cannot read: Mistral's content arrays and index-less tool calls.
SDK_UNREADABLE = frozenset({"mistral/magistral_thinking_content_array.sse", "mistral/tool_call_no_index.sse"})
SDK_NAMES = [n for n in NAMES if not n.startswith(("anthropic/", "gemini/")) and n not in SDK_UNREADABLE]
ANTHROPIC_NAMES = [n for n in NAMES if n.startswith("anthropic/")]


def _provider(name: str) -> str:
    folder = name.split("/", 1)[0]
    return folder if folder in ("anthropic", "gemini") else "openai"


async def _chunks(server: ReplayServer, name: str, mode: str = "whole") -> list[ChatCompletionChunk]:
    """The chunks a provider yields for a recorded body (up to a mid-stream error, if any)."""
    server.replay(name, mode)
    provider = _provider(name)
    out = []
    try:
        async for chunk in get_provider(provider).stream(request_for(provider, server.url)):
            out.append(chunk)
    except APIError:
        pass  # error fixtures: compare what arrived before the error
    return out


def _events(chunks: list[ChatCompletionChunk]) -> list[Any]:
    builder = EventBuilder()
    out = [e for c in chunks for e in builder.add(c)]
    return out + builder.close()


def _per_choice(events: list[Any], kind: type, attr: str) -> dict[int, str]:
    out: dict[int, str] = {}
    for e in events:
        if isinstance(e, kind):
            out[e.choice_index] = out.get(e.choice_index, "") + getattr(e, attr)
    return out


class TestAgreesWithToResponse:
    @pytest.mark.parametrize("name", NAMES)
    async def test_events_rebuild_the_same_message(self, server: ReplayServer, name: str) -> None:
        """Per choice, the Done events hold the rebuilt message's text, reasoning, refusal, tool calls and finish."""
        chunks = await _chunks(server, name)
        response = stream_chunk_builder(chunks)
        events = _events(chunks)
        assert response is not None

        text = _per_choice(events, TextDone, "text")
        reasoning = _per_choice(events, ReasoningDone, "text")
        refusal = _per_choice(events, RefusalDone, "refusal")
        for choice in response.choices:
            i = choice.index
            msg = choice.message
            assert (text.get(i) or None) == (msg.content or None)
            assert (reasoning.get(i) or None) == msg.reasoning_content
            assert (refusal.get(i) or None) == msg.refusal
            done = [e for e in events if isinstance(e, ToolCallDone) and e.choice_index == i]
            calls = msg.tool_calls or ()
            assert [(d.id, d.name, d.arguments or "{}") for d in done] == [
                (c.id, c.function.name, c.function.arguments) for c in calls
            ]
            for d in done:
                if d.error is None:
                    assert d.parsed == orjson.loads(d.arguments or "{}")
                else:
                    assert d.parsed is None
                    assert d.error.arguments == d.arguments
            finishes = [e.reason for e in events if isinstance(e, Finish) and e.choice_index == i]
            assert finishes == [choice.finish_reason]
            if msg.thinking_blocks is not None:  # the same blocks, in the same order
                blocks = [
                    ("redacted", e.data) if isinstance(e, RedactedReasoning) else ("thinking", e.text, e.signature)
                    for e in events
                    if isinstance(e, (ReasoningDone, RedactedReasoning)) and e.choice_index == i
                ]
                assert blocks == [
                    ("redacted", b["data"])
                    if b["type"] == "redacted_thinking"
                    else ("thinking", b["thinking"], b.get("signature"))
                    for b in msg.thinking_blocks
                ]
        usage = [e.usage for e in events if isinstance(e, UsageUpdate)]
        if usage:
            assert usage[-1] == response.usage

    @pytest.mark.parametrize("name", NAMES)
    async def test_deltas_concatenate_to_done_values(self, server: ReplayServer, name: str) -> None:
        """Every segment's deltas join to its Done value; tool fragments join to the Done arguments."""
        events = _events(await _chunks(server, name))

        run: dict[tuple[type, int], str] = {}
        pairs = {TextDone: TextDelta, ReasoningDone: ReasoningDelta, RefusalDone: RefusalDelta}
        args: dict[tuple[int, int], str] = {}
        for e in events:
            if isinstance(e, (TextDelta, ReasoningDelta, RefusalDelta)):
                key = (type(e), e.choice_index)
                run[key] = run.get(key, "") + e.delta
                assert e.snapshot == run[key]
            elif isinstance(e, (TextDone, ReasoningDone, RefusalDone)):
                value = e.refusal if isinstance(e, RefusalDone) else e.text
                assert run.pop((pairs[type(e)], e.choice_index), "") == value
            elif isinstance(e, ToolCallArgumentsDelta):
                key2 = (e.choice_index, e.index)
                args[key2] = args.get(key2, "") + e.fragment
                assert e.arguments == args[key2]
            elif isinstance(e, ToolCallDone):
                assert args.pop((e.choice_index, e.index), "") == e.arguments
                if e.error is None and e.arguments.strip():
                    last = [x for x in events if isinstance(x, ToolCallArgumentsDelta) and x.index == e.index]
                    assert last[-1].partial == e.parsed
        assert not run

    @pytest.mark.parametrize("name", NAMES)
    async def test_events_do_not_depend_on_how_bytes_arrive(self, server: ReplayServer, name: str) -> None:
        """Whole and randomly split bodies (bytewise for small ones) give equal events, snapshots and partials."""
        modes = ["whole", "random"] + (["bytes"] if len(fixture_bytes(name)) < 10_000 else [])
        runs = [_events(await _chunks(server, name, mode)) for mode in modes]

        def view(events: list[Any]) -> list[Any]:
            out: list[Any] = []
            ids: dict[str, str] = {}  # Gemini's call ids are generated per request: compare by order
            for e in events:
                if isinstance(e, (ToolCallStart, ToolCallDone)):
                    e = attrs.evolve(e, id=ids.setdefault(e.id, f"id{len(ids)}"))
                out.append(e)
                if isinstance(e, (TextDelta, ReasoningDelta, RefusalDelta)):
                    out.append(e.snapshot)
                elif isinstance(e, ToolCallArgumentsDelta):
                    out.append((e.arguments, e.partial))
            return out

        first = view(runs[0])
        for other in runs[1:]:
            assert view(other) == first


def _sdk_events(body: bytes) -> list[Any] | None:
    """The OpenAI SDK's ChatCompletionStreamState events for a recorded body (None if it rejects it)."""
    from openai.lib.streaming.chat._completions import ChatCompletionStreamState
    from openai.types.chat import ChatCompletionChunk as SDKChunk

    state: Any = ChatCompletionStreamState()
    out: list[Any] = []
    try:
        for line in body.splitlines():
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if not data or data == b"[DONE]":
                continue
            d = orjson.loads(data)
            if "error" in d or not isinstance(d.get("choices"), list):
                continue
            out.extend(state.handle_chunk(SDKChunk.construct(**d)))
    except Exception:
        return None
    if any(e.type == "content.delta" and not isinstance(e.delta, str) for e in out):
        return None  # content arrays (Mistral): the SDK does not read them as text
    return out


class TestAgreesWithOpenAISDK:
    @pytest.mark.parametrize("name", SDK_NAMES)
    async def test_text_refusal_and_tool_arguments_match_the_sdk(self, server: ReplayServer, name: str) -> None:
        """Content, refusal and tool-call argument deltas and done values equal ChatCompletionStreamState's."""
        sdk = _sdk_events(fixture_bytes(name))
        assert sdk is not None, f"the OpenAI SDK could not read {name}"
        ours = _events(await _chunks(server, name))

        sdk_text = "".join(e.delta for e in sdk if e.type == "content.delta")
        sdk_refusal = "".join(e.delta for e in sdk if e.type == "refusal.delta")
        assert sdk_text == "".join(e.delta for e in ours if isinstance(e, TextDelta))
        assert sdk_refusal == "".join(e.delta for e in ours if isinstance(e, RefusalDelta))
        sdk_done = [e.content for e in sdk if e.type == "content.done"]
        if sdk_done or any(e.type == "refusal.done" for e in sdk):  # the SDK closes only on a finish_reason
            assert sdk_done == [e.text for e in ours if isinstance(e, TextDone)]
            assert [e.refusal for e in sdk if e.type == "refusal.done"] == [
                e.refusal for e in ours if isinstance(e, RefusalDone)
            ]
        sdk_calls = sorted(
            (e.index, e.name, e.arguments) for e in sdk if e.type == "tool_calls.function.arguments.done"
        )
        our_calls = sorted((e.index, e.name, e.arguments) for e in ours if isinstance(e, ToolCallDone))
        if sdk_calls:
            assert our_calls == sdk_calls
        sdk_frags = "".join(e.arguments_delta for e in sdk if e.type == "tool_calls.function.arguments.delta")
        assert sdk_frags == "".join(e.fragment for e in ours if isinstance(e, ToolCallArgumentsDelta))


def _anthropic_message(body: bytes) -> Any:
    """The Anthropic SDK's accumulated message for a recorded body."""
    from anthropic.lib.streaming._messages import accumulate_event

    snapshot: Any = None
    bufs: dict[int, bytes] = {}
    for line in body.splitlines():
        if line.startswith(b"data:"):
            d = orjson.loads(line[5:].strip())
            if d.get("type") in ("ping", "error"):
                continue
            late = d.get("type") == "content_block_delta" and snapshot is not None
            if late and d["index"] >= len(snapshot.content):
                continue
            snapshot = accumulate_event(event=d, current_snapshot=snapshot, json_bufs=bufs)
    return snapshot


class TestAgreesWithAnthropicSDK:
    @pytest.mark.parametrize("name", ANTHROPIC_NAMES)
    async def test_blocks_match_the_sdk_accumulator(self, server: ReplayServer, name: str) -> None:
        """Thinking (with signature), redacted, text and tool_use blocks match the SDK accumulator, in order."""
        message = _anthropic_message(fixture_bytes(name))
        ours = _events(await _chunks(server, name))

        want: list[tuple[Any, ...]] = []
        for block in message.content:
            if block.type == "thinking":
                want.append(("thinking", block.thinking, block.signature or None))
            elif block.type == "redacted_thinking":
                want.append(("redacted", block.data))
            elif block.type == "text" and block.text:
                want.append(("text", block.text))
            elif block.type == "tool_use":
                want.append(("tool", block.id, block.name, block.input))
        got: list[tuple[Any, ...]] = []
        for e in ours:
            if isinstance(e, ReasoningDone):
                got.append(("thinking", e.text, e.signature))
            elif isinstance(e, RedactedReasoning):
                got.append(("redacted", e.data))
            elif isinstance(e, TextDone):
                if got and got[-1][0] == "text":  # Anthropic text blocks split by citations
                    got[-1] = ("text", got[-1][1] + e.text)
                else:
                    got.append(("text", e.text))
            elif isinstance(e, ToolCallDone) and e.error is None:
                got.append(("tool", e.id, e.name, e.parsed))
            elif isinstance(e, ToolCallDone):  # cut off (max_tokens): compare the partial parses
                import jiter

                last = [x for x in ours if isinstance(x, ToolCallArgumentsDelta) and x.index == e.index][-1]
                # rxllm shows an unfinished string (jiter's "trailing-strings"); the SDK drops it
                assert last.partial == jiter.from_json(e.arguments.encode(), partial_mode="trailing-strings")
                got.append(("tool", e.id, e.name, jiter.from_json(e.arguments.encode(), partial_mode=True)))
        merged: list[tuple[Any, ...]] = []
        for w in want:
            if merged and merged[-1][0] == "text" and w[0] == "text":
                merged[-1] = ("text", merged[-1][1] + w[1])
            else:
                merged.append(w)
        assert got == merged
        starts = [e for e in ours if isinstance(e, ToolCallStart)]
        assert [(s.id, s.name) for s in starts] == [(b.id, b.name) for b in message.content if b.type == "tool_use"]
