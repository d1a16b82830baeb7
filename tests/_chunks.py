"""Small chunk builders for the cost, time, retry, logging and SSE operator tests."""

from __future__ import annotations

from typing import Any

from rxllm.types import ChatCompletionChunk


def chunk(
    content: str | None = None,
    *,
    index: int = 0,
    reasoning: str | None = None,
    refusal: str | None = None,
    role: str | None = None,
    tools: list[dict[str, Any]] | None = None,
    finish: str | None = None,
    model: str = "gpt-4o",
    usage: dict[str, Any] | None = None,
    more: list[dict[str, Any]] | None = None,
) -> ChatCompletionChunk:
    """One chunk with one choice (plus ``more`` raw choice dicts for n > 1)."""
    delta: dict[str, Any] = {}
    for key, value in (
        ("role", role),
        ("content", content),
        ("reasoning_content", reasoning),
        ("refusal", refusal),
        ("tool_calls", tools),
    ):
        if value is not None:
            delta[key] = value
    d: dict[str, Any] = {
        "id": "chatcmpl-t",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": model,
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}, *(more or [])],
    }
    if usage is not None:
        d["usage"] = usage
    return ChatCompletionChunk.from_dict(d)


def usage_chunk(
    prompt: int, completion: int, *, cached: int = 0, reasoning: int = 0, model: str = "gpt-4o"
) -> ChatCompletionChunk:
    """OpenAI's final ``choices: []`` chunk carrying usage."""
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cached:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    if reasoning:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return ChatCompletionChunk.from_dict(
        {
            "id": "chatcmpl-t",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": model,
            "choices": [],
            "usage": usage,
        }
    )


def keepalive(model: str = "gpt-4o") -> ChatCompletionChunk:
    """A chunk with an empty delta: proof of life, but no data."""
    return chunk(model=model)
