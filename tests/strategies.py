"""Hypothesis strategies and small builders of chunks, shared by the test suite.

- ``chunk_dicts()`` / ``response_dicts()``: wire dicts, unknown keys included, for round trips.
- ``stream_specs()`` + ``chunkings(spec)``: what a stream should rebuild to, and one of the many
  ways a provider could have split and interleaved it into chunks.
- ``make_chunk`` / ``content_chunk`` / ``tool_chunk``: readable one-line chunks for marble tests.
- ``load_fixture_chunks``: the OpenAI-format recorded streams in ``$RXLLM_FIXTURES``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import attrs
import orjson
from hypothesis import strategies as st
from support import fixture_path

from rxllm.types import ChatCompletionChunk, Usage

# --------------------------------------------------------------------------- plain builders


def make_chunk(
    *choices: dict[str, Any],
    id: str = "chatcmpl-1",
    model: str = "gpt-test",
    created: int = 1700000000,
    usage: dict[str, Any] | None = None,
    **extra: Any,
) -> ChatCompletionChunk:
    """A chunk from choice dicts (``{"index": 0, "delta": {...}, "finish_reason": None}``)."""
    d: dict[str, Any] = {"id": id, "object": "chat.completion.chunk", "created": created, "model": model}
    d["choices"] = list(choices)
    if usage is not None:
        d["usage"] = usage
    d.update(extra)
    return ChatCompletionChunk.from_dict(d)


def content_chunk(
    content: str | None, index: int = 0, finish_reason: str | None = None, **kw: Any
) -> ChatCompletionChunk:
    """A chunk carrying ``content`` for one choice."""
    delta = {} if content is None else {"content": content}
    return make_chunk({"index": index, "delta": delta, "finish_reason": finish_reason}, **kw)


def tool_fragment(
    index: int | None = 0,
    id: str | None = None,
    name: str | None = None,
    arguments: Any = None,
    type: str | None = None,
) -> dict[str, Any]:
    """One ``delta.tool_calls`` entry (keys left out when ``None``)."""
    d: dict[str, Any] = {}
    if index is not None:
        d["index"] = index
    if id is not None:
        d["id"] = id
    if type is not None:
        d["type"] = type
    fn: dict[str, Any] = {}
    if name is not None:
        fn["name"] = name
    if arguments is not None:
        fn["arguments"] = arguments
    if fn:
        d["function"] = fn
    return d


def tool_chunk(
    *fragments: dict[str, Any], choice: int = 0, finish_reason: str | None = None, **kw: Any
) -> ChatCompletionChunk:
    """A chunk whose choice ``choice`` carries the given tool-call fragments."""
    delta = {"tool_calls": list(fragments)} if fragments else {}
    return make_chunk({"index": choice, "delta": delta, "finish_reason": finish_reason}, **kw)


def finish_chunk(finish_reason: str = "stop", index: int = 0, **kw: Any) -> ChatCompletionChunk:
    """An empty-delta chunk that finishes one choice."""
    return make_chunk({"index": index, "delta": {}, "finish_reason": finish_reason}, **kw)


# --------------------------------------------------------------------------- recorded messages


def kinds(messages: Sequence[Any]) -> list[tuple[int, str]]:
    """``(time, "N" | "E" | "C")`` of each message a TestScheduler recorded."""
    return [(m.time, m.value.kind) for m in messages]


def values(messages: Sequence[Any]) -> list[Any]:
    """The on_next values among recorded messages."""
    return [m.value.value for m in messages if m.value.kind == "N"]


def exception_of(messages: Sequence[Any]) -> Any:
    """The exception of the recorded on_error (the last message), failing if there is none."""
    last = messages[-1].value
    assert last.kind == "E", f"expected an error, got {messages!r}"
    return last.exception


# --------------------------------------------------------------------------- recorded fixtures


def load_fixture_chunks(name: str) -> list[ChatCompletionChunk]:
    """Parse the ``data:`` lines of an OpenAI-format recorded stream (skips the test if absent).

    Only for OpenAI-compatible files; the real SSE decoder and provider normalizers have
    their own tests. The files are licensed test data: read in place, never copied.
    """
    path = fixture_path(name)
    chunks = []
    for line in path.read_bytes().splitlines():
        if line.startswith(b"data:"):
            data = line[5:].strip()
            if data and data != b"[DONE]":
                chunks.append(ChatCompletionChunk.from_json(data))
    return chunks


# --------------------------------------------------------------------------- wire dicts

_KNOWN_KEYS = frozenset(
    {
        "id", "object", "created", "model", "choices", "system_fingerprint", "usage", "service_tier",
        "index", "delta", "finish_reason", "logprobs", "message", "role", "content", "tool_calls",
        "function_call", "reasoning_content", "refusal", "annotations", "type", "function", "name",
        "arguments", "token", "logprob", "bytes", "top_logprobs", "prompt_tokens", "completion_tokens",
        "total_tokens", "prompt_tokens_details", "completion_tokens_details", "estimated",
        "cached_tokens", "audio_tokens", "cache_creation_tokens", "reasoning_tokens",
        "accepted_prediction_tokens", "rejected_prediction_tokens", "choice_index",
    }
)  # fmt: skip

texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
small_ints = st.integers(min_value=0, max_value=10_000)
json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | texts
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=6,
)
unknown_keys = st.dictionaries(
    st.from_regex(r"x_[a-z]{1,8}", fullmatch=True).filter(lambda k: k not in _KNOWN_KEYS),
    json_values,
    max_size=2,
)


def _with_extra(base: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(lambda d, x: {**d, **x}, base, unknown_keys)


def _optional(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


def function_delta_dicts() -> st.SearchStrategy[dict[str, Any]]:
    """``delta.tool_calls[].function`` wire dicts."""
    return _with_extra(_optional(name=texts, arguments=texts))


def tool_call_delta_dicts() -> st.SearchStrategy[dict[str, Any]]:
    """``delta.tool_calls[]`` wire dicts (index, id, type and function all optional)."""
    return _with_extra(_optional(index=small_ints, id=texts, type=st.just("function"), function=function_delta_dicts()))


def top_logprob_dicts() -> st.SearchStrategy[dict[str, Any]]:
    """``top_logprobs[]`` entries."""
    floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
    return st.fixed_dictionaries(
        {"token": texts, "logprob": floats, "bytes": st.none() | st.lists(st.integers(0, 255), max_size=4)}
    )


def token_logprob_dicts() -> st.SearchStrategy[dict[str, Any]]:
    """``logprobs.content[]`` entries."""
    return st.builds(
        lambda d, tops: {**d, "top_logprobs": tops}, top_logprob_dicts(), st.lists(top_logprob_dicts(), max_size=2)
    )


def logprobs_dicts() -> st.SearchStrategy[dict[str, Any]]:
    """``choices[].logprobs`` wire dicts."""
    entries = st.none() | st.lists(token_logprob_dicts(), max_size=2)
    return st.fixed_dictionaries({"content": entries, "refusal": entries})


def delta_dicts() -> st.SearchStrategy[dict[str, Any]]:
    """``choices[].delta`` wire dicts."""
    return _with_extra(
        _optional(
            role=st.sampled_from(["assistant", "tool"]),
            content=texts,
            tool_calls=st.lists(tool_call_delta_dicts(), max_size=2),
            function_call=function_delta_dicts(),
            reasoning_content=texts,
            refusal=texts,
            annotations=st.lists(st.dictionaries(texts, json_scalars, max_size=2), max_size=2),
        )
    )


def usage_dicts() -> st.SearchStrategy[dict[str, Any]]:
    """``usage`` wire dicts with optional details."""
    details_p = _with_extra(_optional(cached_tokens=small_ints, audio_tokens=small_ints))
    details_c = _with_extra(_optional(reasoning_tokens=small_ints, accepted_prediction_tokens=small_ints))
    return _with_extra(
        st.fixed_dictionaries(
            {"prompt_tokens": small_ints, "completion_tokens": small_ints, "total_tokens": small_ints},
            optional={"prompt_tokens_details": details_p, "completion_tokens_details": details_c},
        )
    )


def stream_choice_dicts() -> st.SearchStrategy[dict[str, Any]]:
    """``choices[]`` entries of a chunk."""
    return _with_extra(
        st.fixed_dictionaries(
            {
                "index": st.integers(0, 3),
                "delta": delta_dicts(),
                "finish_reason": st.none() | st.sampled_from(["stop", "length", "tool_calls"]),
            },
            optional={"logprobs": logprobs_dicts()},
        )
    )


def chunk_dicts() -> st.SearchStrategy[dict[str, Any]]:
    """Whole ``chat.completion.chunk`` wire dicts, provider-specific keys included."""
    return _with_extra(
        st.fixed_dictionaries(
            {
                "id": texts,
                "object": st.just("chat.completion.chunk"),
                "created": small_ints,
                "model": texts,
                "choices": st.lists(stream_choice_dicts(), max_size=3),
            },
            optional={
                "system_fingerprint": texts,
                "usage": usage_dicts(),
                "service_tier": st.sampled_from(["default", "flex"]),
            },
        )
    )


def tool_call_dicts() -> st.SearchStrategy[dict[str, Any]]:
    """Complete ``message.tool_calls[]`` entries."""
    return _with_extra(
        st.fixed_dictionaries(
            {
                "id": texts,
                "type": st.just("function"),
                "function": _with_extra(st.fixed_dictionaries({"name": texts, "arguments": texts})),
            },
            optional={"index": small_ints, "choice_index": small_ints},
        )
    )


def response_dicts() -> st.SearchStrategy[dict[str, Any]]:
    """Whole ``chat.completion`` wire dicts, unknown keys included at every level."""
    message = _with_extra(
        st.fixed_dictionaries(
            {"role": st.just("assistant"), "content": st.none() | texts},
            optional={
                "tool_calls": st.lists(tool_call_dicts(), max_size=2),
                "reasoning_content": texts,
                "refusal": texts,
            },
        )
    )
    choice = _with_extra(
        st.fixed_dictionaries(
            {
                "index": small_ints,
                "message": message,
                "finish_reason": st.none() | st.sampled_from(["stop", "length", "tool_calls"]),
                "logprobs": st.none() | logprobs_dicts(),
            }
        )
    )
    return _with_extra(
        st.fixed_dictionaries(
            {
                "id": texts,
                "object": st.just("chat.completion"),
                "created": small_ints,
                "model": texts,
                "choices": st.lists(choice, max_size=3),
            },
            optional={"system_fingerprint": texts, "usage": usage_dicts()},
        )
    )


# --------------------------------------------------------------------------- streams to rebuild


@attrs.frozen
class ToolSpec:
    """A complete tool call a stream should rebuild to."""

    id: str
    name: str
    arguments: str


@attrs.frozen
class ChoiceSpec:
    """What one choice should rebuild to."""

    index: int
    content: str | None
    reasoning: str
    tool_calls: tuple[ToolSpec, ...]
    finish_reason: str | None


@attrs.frozen
class StreamSpec:
    """What a whole stream should rebuild to."""

    id: str
    model: str
    created: int
    choices: tuple[ChoiceSpec, ...]
    usage: Usage | None


_words = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=40)
_names = st.from_regex(r"[a-z][a-z_]{0,11}", fullmatch=True)
_args = st.dictionaries(
    st.text(max_size=6), st.integers(-1000, 1000) | st.text(max_size=10) | st.booleans(), max_size=4
).map(lambda d: orjson.dumps(d).decode())


@st.composite
def tool_specs(draw: st.DrawFn, n: int) -> tuple[ToolSpec, ...]:
    """``n`` tool calls with distinct ids."""
    ids = draw(st.lists(st.from_regex(r"call_[A-Za-z0-9]{4,10}", fullmatch=True), min_size=n, max_size=n, unique=True))
    return tuple(ToolSpec(i, draw(_names), draw(_args)) for i in ids)


@st.composite
def choice_specs(draw: st.DrawFn, index: int) -> ChoiceSpec:
    """One choice: text, reasoning and/or tool calls, and a finish reason."""
    n_tools = draw(st.integers(0, 3))
    content = draw(st.none() | _words)
    return ChoiceSpec(
        index,
        content,
        draw(st.just("") | _words),
        draw(tool_specs(n_tools)),
        draw(st.none() | st.sampled_from(["stop", "length", "tool_calls"])),
    )


@st.composite
def stream_specs(draw: st.DrawFn, max_choices: int = 3) -> StreamSpec:
    """A whole stream's target: 1..max_choices choices, usage reported or not."""
    n = draw(st.integers(1, max_choices))
    usage = draw(st.none() | st.builds(lambda p, c: Usage(p, c, p + c), st.integers(1, 5000), st.integers(1, 5000)))
    return StreamSpec(
        draw(st.from_regex(r"chatcmpl-[a-z0-9]{6}", fullmatch=True)),
        draw(st.sampled_from(["gpt-4o", "claude-x", "gemini-y"])),
        draw(st.integers(1, 2**31)),
        tuple(draw(choice_specs(i)) for i in range(n)),
        usage,
    )


@st.composite
def pieces(draw: st.DrawFn, s: str) -> list[str]:
    """``s`` cut into non-empty pieces at random places (``[s]`` or ``[]`` for short strings)."""
    if not s:
        return []
    cuts = draw(st.sets(st.integers(1, len(s) - 1), max_size=min(8, len(s) - 1))) if len(s) > 1 else set()
    bounds = [0, *sorted(cuts), len(s)]
    return [s[a:b] for a, b in itertools.pairwise(bounds)]


@st.composite
def _choice_events(draw: st.DrawFn, c: ChoiceSpec) -> list[dict[str, Any]]:
    """One choice's deltas in order: role, content and reasoning interleaved, tool calls, finish."""
    events: list[dict[str, Any]] = [{"delta": {"role": "assistant"}}]
    text_events = [{"delta": {"content": p}} for p in draw(pieces(c.content or ""))]
    reasoning_events = [{"delta": {"reasoning_content": p}} for p in draw(pieces(c.reasoning))]
    events.extend(draw(interleavings([text_events, reasoning_events])))
    for i, tc in enumerate(c.tool_calls):
        if draw(st.booleans()):  # whole call in one fragment
            events.append({"delta": {"tool_calls": [tool_fragment(i, tc.id, tc.name, tc.arguments, "function")]}})
            continue
        events.append({"delta": {"tool_calls": [tool_fragment(i, tc.id, tc.name, "", "function")]}})
        events.extend({"delta": {"tool_calls": [tool_fragment(i, arguments=p)]}} for p in draw(pieces(tc.arguments)))
    if c.finish_reason is not None:
        events.append({"delta": {}, "finish_reason": c.finish_reason})
    return [{"index": c.index, "finish_reason": None, **e} for e in events]


@st.composite
def interleavings(draw: st.DrawFn, sequences: Sequence[Sequence[Any]]) -> list[Any]:
    """A random merge of several sequences, each keeping its own order."""
    queues = [list(s) for s in sequences if s]
    out: list[Any] = []
    while queues:
        q = queues[draw(st.integers(0, len(queues) - 1))]
        out.append(q.pop(0))
        queues = [q for q in queues if q]
    return out


@st.composite
def chunkings(draw: st.DrawFn, spec: StreamSpec) -> list[ChatCompletionChunk]:
    """One way a provider could stream ``spec``: split anywhere, choices interleaved anyhow."""
    per_choice = [draw(_choice_events(c)) for c in spec.choices]
    merged = draw(interleavings(per_choice))
    chunks = [make_chunk(e, id=spec.id, model=spec.model, created=spec.created) for e in merged]
    if spec.usage is not None:
        chunks.append(make_chunk(id=spec.id, model=spec.model, created=spec.created, usage=spec.usage.to_dict()))
    return chunks
