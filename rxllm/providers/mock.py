"""The mock provider: rxllm's offline default (no key, no network).

It streams like a real provider — role on the first chunk, text in small pieces, tool calls
as fragmented deltas, a finish chunk, a usage chunk when asked — so docs, notebooks and tests
exercise the same paths real streams take. Parameters (all optional):

- ``mock_response``: the text to stream; or a list of chunk dicts/objects replayed exactly
  (a looping model is a list of the same chunk); or an exception (instance, class, or a name
  like ``"rxllm.RateLimitError"``) raised at call time by the API.
- ``mock_delay``: seconds to wait before each chunk after the first.
- ``mock_tool_calls``: ``[{"id"?, "function": {"name", "arguments"}}]`` streamed as deltas.
- ``mock_fail_after`` / ``mock_fail_with``: raise (default ``APIConnectionError``) after N chunks.
- ``n``: several choices, interleaved chunk by chunk.

Models: ``mock/echo`` repeats the last user message; any other model says a fixed greeting.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

import orjson

from rxllm.errors import APIConnectionError, APIError, BadRequestError, resolve_error_class
from rxllm.providers import claimed_provider
from rxllm.providers.base import ChatRequest
from rxllm.types import (
    ChatCompletionChunk,
    Delta,
    FunctionDelta,
    StreamChoice,
    ToolCallDelta,
    Usage,
)
from rxllm.usage import estimate_prompt_tokens, estimate_tokens

__all__ = ["DEFAULT_TEXT", "MockProvider", "get_provider", "mock_error", "split_text"]

DEFAULT_TEXT = "Hello! I am rxllm's mock model: I stream offline, with no key and no network."

_PIECES = re.compile(r"\s*\S+|\s+$")


def split_text(text: str) -> list[str]:
    """Split text into word-sized pieces that join back to exactly ``text``."""
    pieces = _PIECES.findall(text)
    return pieces if "".join(pieces) == text else [text]


def mock_error(value: Any, *, llm_provider: str | None, model: str | None) -> BaseException | None:
    """The exception a ``mock_response``/``mock_fail_with`` value asks for, or ``None``.

    Accepts an exception instance, an exception class, or a dotted name of an rxllm error
    (``"rxllm.RateLimitError"``; ``"litellm.X"`` is read as ``"rxllm.X"``).
    """
    if isinstance(value, BaseException):
        return value
    if isinstance(value, type) and issubclass(value, BaseException):
        if issubclass(value, APIError):
            return value(f"mock {value.__name__}", llm_provider=llm_provider, model=model)
        return value(f"mock {value.__name__}")
    if isinstance(value, str) and value.startswith(("rxllm.", "litellm.")) and " " not in value:
        cls = resolve_error_class(value)
        return cls(f"mock {cls.__name__}", llm_provider=llm_provider, model=model)
    return None


#: Without ``mock_delay``, the mock still gives the event loop a turn every this many chunks.
_YIELD_EVERY = 64


class MockProvider:
    """Streams canned or echoed text as real-looking chunks."""

    name = "mock"

    def validate(self, request: ChatRequest) -> None:
        """Raise the error ``mock_response`` asks for now, as LiteLLM does at call time."""
        model = request.original_model or request.model
        error = mock_error(request.params.get("mock_response"), llm_provider=claimed_provider(model), model=model)
        if error is not None:
            raise error

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatCompletionChunk]:
        """Yield the mock chunks for ``request`` (see the module docstring)."""
        params = request.params
        delay = float(params.get("mock_delay") or 0.0)
        fail_after = params.get("mock_fail_after")
        model = request.original_model or request.model
        error = mock_error(params.get("mock_response"), llm_provider=request.provider, model=model)
        if error is not None:
            raise error
        for sent, chunk in enumerate(self._chunks(request, model)):
            if fail_after is not None and sent >= fail_after:
                failure = mock_error(params.get("mock_fail_with"), llm_provider=request.provider, model=model)
                raise failure or APIConnectionError(
                    f"mock stream interrupted after {sent} chunks",
                    llm_provider=request.provider,
                    model=model,
                )
            if delay and sent:
                await asyncio.sleep(delay)
            elif sent and not sent % _YIELD_EVERY:
                await asyncio.sleep(0)  # a long mock answer must not freeze the event loop
            yield chunk

    def _chunks(self, request: ChatRequest, model: str) -> Iterator[ChatCompletionChunk]:
        params = request.params
        response = params.get("mock_response")
        if isinstance(response, Sequence) and not isinstance(response, str):
            yield from _replay(response)
            return
        if response is None:
            text = _echo(request.messages) if request.model == "echo" else DEFAULT_TEXT
        else:
            text = str(response)
        tool_calls = params.get("mock_tool_calls") or ()
        n = int(params.get("n") or 1)
        if n < 1:
            raise BadRequestError(f"n must be at least 1, got {n}", llm_provider="mock", model=model)

        chunk_id = "chatcmpl-mock-" + uuid.uuid4().hex[:24]
        created = int(time.time())

        def chunk(choices: tuple[StreamChoice, ...], usage: Usage | None = None) -> ChatCompletionChunk:
            return ChatCompletionChunk(id=chunk_id, choices=choices, created=created, model=model, usage=usage)

        pieces = split_text(text) if text else []
        if not pieces and not tool_calls:
            pieces = [""]
        for i, piece in enumerate(pieces):
            role = "assistant" if i == 0 else None
            for index in range(n):
                yield chunk((StreamChoice(index, Delta(role=role, content=piece)),))
        for position, call in enumerate(tool_calls):
            for index in range(n):
                for fragment in _tool_call_fragments(position, call, first=not pieces and position == 0):
                    yield chunk((StreamChoice(index, fragment),))
        finish = "tool_calls" if tool_calls else "stop"
        for index in range(n):
            yield chunk((StreamChoice(index, Delta(), finish_reason=finish),))
        options = params.get("stream_options") or {}
        if isinstance(options, Mapping) and options.get("include_usage"):
            generated = text + "".join(_arguments(c) for c in tool_calls)
            prompt = estimate_prompt_tokens(request.messages)
            completion = estimate_tokens(generated) * n
            yield chunk((), Usage(prompt, completion, prompt + completion))


def _replay(items: Sequence[Any]) -> Iterator[ChatCompletionChunk]:
    for item in items:
        if isinstance(item, ChatCompletionChunk):
            yield item
        elif isinstance(item, Mapping):
            yield ChatCompletionChunk.from_dict(item)
        else:
            raise BadRequestError(
                f"mock_response list items must be chunk dicts or ChatCompletionChunk, got {type(item).__name__}",
                llm_provider="mock",
            )


def _echo(messages: Sequence[Mapping[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, Mapping))
    return DEFAULT_TEXT


def _arguments(call: Mapping[str, Any]) -> str:
    fn = call.get("function") or {}
    args = fn.get("arguments", "{}")
    return args if isinstance(args, str) else orjson.dumps(args).decode()


def _tool_call_fragments(position: int, call: Mapping[str, Any], *, first: bool) -> Iterator[Delta]:
    """A tool call as providers stream it: id and name with empty arguments, then argument pieces."""
    fn = call.get("function") or {}
    name = fn.get("name")
    if not name:
        raise BadRequestError("each mock_tool_calls entry needs function.name", llm_provider="mock")
    call_id = call.get("id") or f"call_mock_{position}_{uuid.uuid4().hex[:8]}"
    args = _arguments(call)
    yield Delta(
        role="assistant" if first else None,
        tool_calls=(ToolCallDelta(position, call_id, "function", FunctionDelta(name, "")),),
    )
    size = max(1, len(args) // 3)
    for start in range(0, len(args), size):
        yield Delta(tool_calls=(ToolCallDelta(position, function=FunctionDelta(arguments=args[start : start + size])),))


_PROVIDER = MockProvider()


def get_provider(prefix: str) -> MockProvider:
    """The registry hook: one stateless mock provider serves every ``mock/`` model."""
    return _PROVIDER
