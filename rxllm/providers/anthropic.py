"""Anthropic's Messages API: OpenAI-format requests translated, its events turned into chunks.

Request: system messages become ``system``, tool results become ``tool_result`` blocks in a
user turn, image parts become ``image`` blocks, tools get ``input_schema``, ``max_tokens``
(required by the API) defaults to :data:`DEFAULT_MAX_TOKENS`. An assistant message's
``thinking_blocks`` (as rebuilt from a stream) go back first, as signed ``thinking`` and
``redacted_thinking`` blocks, so a tool-use loop with extended thinking continues;
``reasoning_effort`` becomes a ``thinking`` budget (:data:`THINKING_BUDGETS`).

Stream: ``message_start`` gives id, model and input usage; ``text_delta`` → ``content``,
``thinking_delta`` → ``reasoning_content``; each ``tool_use`` block gets the next tool-call
index and its ``input_json_delta`` pieces become ``arguments``; ``message_delta`` gives the
finish reason and the combined usage (emitted once, on that chunk). Signatures, redacted
thinking and citations are kept in ``delta.extra``. Server-side tool blocks (web search)
are not the caller's to run, so they are not emitted as tool calls. ``ping`` and unknown
events or block types are skipped. ``message_stop`` ends the stream; a body that ends
without it raises :class:`~rxllm.errors.APIConnectionError`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from typing import Any, Final

import orjson

from rxllm.errors import APIConnectionError, APIError, AuthenticationError, BadRequestError
from rxllm.providers._http import (
    Shape,
    api_key_for,
    bad_json,
    checked_chunk,
    endpoint,
    error_from_payload,
    request_events,
    shape_error,
)
from rxllm.providers.base import ChatRequest
from rxllm.types import (
    ChatCompletionChunk,
    CompletionTokensDetails,
    Delta,
    FunctionDelta,
    PromptTokensDetails,
    StreamChoice,
    ToolCallDelta,
    Usage,
)

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "THINKING_BUDGETS",
    "AnthropicProvider",
    "get_provider",
    "thinking_for_effort",
    "translate_request",
]

#: ``max_tokens`` sent when the caller gives none (the API requires one).
DEFAULT_MAX_TOKENS: Final = 4096
DEFAULT_BASE: Final = "https://api.anthropic.com"
API_VERSION: Final = "2023-06-01"

_FINISH: Final = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "content_filter",
}

_PASSED: Final = ("temperature", "top_p", "top_k", "thinking", "service_tier")

#: ``reasoning_effort`` as an extended-thinking budget (LiteLLM's defaults; the API's minimum is 1024).
THINKING_BUDGETS: Final = {"minimal": 1024, "low": 1024, "medium": 2048, "high": 4096}


def thinking_for_effort(effort: Any) -> dict[str, Any] | None:
    """The ``thinking`` parameter for an OpenAI-style ``reasoning_effort`` (None: thinking off).

    ``"minimal"``/``"low"`` → 1024 budget tokens, ``"medium"`` → 2048, ``"high"`` → 4096;
    ``"none"``/``"disable"`` → no thinking.

    Raises:
        BadRequestError: For any other value.
    """
    if effort in (None, "none", "disable", "disabled"):
        return None
    budget = THINKING_BUDGETS.get(str(effort).lower())
    if budget is None:
        raise BadRequestError(f"reasoning_effort must be one of none/minimal/low/medium/high, got {effort!r}")
    return {"type": "enabled", "budget_tokens": budget}


# --------------------------------------------------------------------------- request


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "".join(p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type") == "text")
    return "" if content is None else str(content)


def _image_block(part: Mapping[str, Any]) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url", "") if isinstance(image, Mapping) else str(image or "")
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header[5:].split(";", 1)[0] or "image/png"
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _content_blocks(content: Any) -> list[dict[str, Any]]:
    """OpenAI content (a string or parts) as Anthropic content blocks."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content:
        if not isinstance(part, Mapping):
            continue
        kind = part.get("type")
        if kind == "text":
            block: dict[str, Any] = {"type": "text", "text": part.get("text", "")}
            if "cache_control" in part:
                block["cache_control"] = part["cache_control"]
            blocks.append(block)
        elif kind == "image_url":
            blocks.append(_image_block(part))
        else:
            blocks.append(dict(part))  # already an Anthropic block (document, image, ...)
    return blocks


def _arguments(raw: Any) -> Any:
    if isinstance(raw, str):
        if not raw.strip():
            return {}
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            return {"_raw_arguments": raw}
    return raw if raw is not None else {}


def _thinking_block(block: Mapping[str, Any]) -> dict[str, Any] | None:
    """A ``thinking_blocks`` entry (LiteLLM's shape) as the Anthropic block to send back.

    Signed thinking keeps its text and signature; redacted blocks keep their data; an
    unsigned thinking block is dropped (the API rejects thinking it cannot verify).
    """
    kind = block.get("type")
    if kind == "redacted_thinking":
        return {"type": "redacted_thinking", "data": block.get("data") or ""}
    if kind == "thinking":
        signature = block.get("signature") or block.get("signature_delta")
        if not signature:
            return None
        return {"type": "thinking", "thinking": block.get("thinking") or "", "signature": signature}
    return dict(block)


def _assistant_blocks(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for entry in message.get("thinking_blocks") or ():
        if isinstance(entry, Mapping) and (block := _thinking_block(entry)) is not None:
            blocks.append(block)
    blocks.extend(_content_blocks(message.get("content")))
    for call in message.get("tool_calls") or ():
        fn = call.get("function") or {}
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id", ""),
                "name": fn.get("name", ""),
                "input": _arguments(fn.get("arguments")),
            }
        )
    return blocks


def translate_request(request: ChatRequest) -> dict[str, Any]:
    """The Messages API body for an OpenAI-format request (no I/O)."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        # the API wants alternating turns: consecutive same-role messages merge into one
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for message in request.messages:
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            if isinstance(content, str):
                system.append({"type": "text", "text": content})
            else:
                system.extend(b for b in _content_blocks(content) if b.get("type") == "text")
        elif role == "user":
            add("user", _content_blocks(content))
        elif role == "assistant":
            add("assistant", _assistant_blocks(message))
        elif role in ("tool", "function"):
            result: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": message.get("tool_call_id") or message.get("name") or "",
                "content": content if isinstance(content, str) else _content_blocks(content),
            }
            add("user", [result])

    params = request.params
    body: dict[str, Any] = {"model": request.model, "messages": turns}
    if system:
        body["system"] = system[0]["text"] if len(system) == 1 and len(system[0]) == 2 else system
    max_tokens = params.get("max_tokens") or params.get("max_completion_tokens") or DEFAULT_MAX_TOKENS
    thinking = params.get("thinking")
    if thinking is None and params.get("reasoning_effort") is not None:
        thinking = thinking_for_effort(params["reasoning_effort"])
        if thinking is not None:
            body["thinking"] = thinking
    if isinstance(thinking, Mapping) and isinstance(thinking.get("budget_tokens"), int):
        max_tokens = max(max_tokens, thinking["budget_tokens"] + 1)
    body["max_tokens"] = max_tokens
    for name in _PASSED:
        if params.get(name) is not None:
            body[name] = params[name]
    stop = params.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    tools = params.get("tools")
    if tools:
        body["tools"] = [_tool(t) for t in tools]
    choice = _tool_choice(params.get("tool_choice"), params.get("parallel_tool_calls"))
    if choice is not None:
        body["tool_choice"] = choice
    if params.get("user"):
        body["metadata"] = {"user_id": params["user"]}
    body["stream"] = True
    return body


def _tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    fn = tool.get("function")
    if tool.get("type") != "function" or not isinstance(fn, Mapping):
        return dict(tool)  # already Anthropic-shaped (or a server tool such as web_search)
    out: dict[str, Any] = {
        "name": fn.get("name", ""),
        "input_schema": fn.get("parameters") or {"type": "object", "properties": {}},
    }
    if fn.get("description"):
        out["description"] = fn["description"]
    if "cache_control" in tool:
        out["cache_control"] = tool["cache_control"]
    return out


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    out: dict[str, Any] | None
    if choice is None:
        out = None
    elif choice == "auto":
        out = {"type": "auto"}
    elif choice == "required":
        out = {"type": "any"}
    elif choice == "none":
        out = {"type": "none"}
    elif isinstance(choice, Mapping) and isinstance(choice.get("function"), Mapping):
        out = {"type": "tool", "name": choice["function"].get("name", "")}
    elif isinstance(choice, Mapping):
        out = dict(choice)
    else:
        out = None
    if parallel is False:
        out = out or {"type": "auto"}
        out["disable_parallel_tool_use"] = True
    return out


# --------------------------------------------------------------------------- response


def _usage(start: Mapping[str, Any], end: Mapping[str, Any]) -> Usage:
    """Input usage from ``message_start`` and the final counts from ``message_delta``, combined."""
    merged = {**start, **{k: v for k, v in end.items() if v is not None}}
    cache_read = merged.get("cache_read_input_tokens") or 0
    cache_write = merged.get("cache_creation_input_tokens") or 0
    prompt = (merged.get("input_tokens") or 0) + cache_read + cache_write
    completion = merged.get("output_tokens") or 0
    details = merged.get("output_tokens_details")
    thinking = details.get("thinking_tokens") if isinstance(details, Mapping) else None
    known = {
        "input_tokens",
        "output_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
        "output_tokens_details",
    }
    extra = {k: v for k, v in merged.items() if k not in known}
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=cache_read, cache_creation_tokens=cache_write),
        completion_tokens_details=CompletionTokensDetails(reasoning_tokens=thinking) if thinking else None,
        extra=extra,
    )


#: The fields of Messages stream events this provider reads, and their types.
_SHAPE: Final[Shape] = {
    "type": str,
    "index": int,
    "message": dict,
    "message.id": str,
    "message.model": str,
    "message.usage": dict,
    "message.usage.input_tokens": int,
    "message.usage.output_tokens": int,
    "message.usage.cache_read_input_tokens": int,
    "message.usage.cache_creation_input_tokens": int,
    "delta": dict,
    "delta.type": str,
    "delta.text": str,
    "delta.partial_json": str,
    "delta.thinking": str,
    "delta.signature": str,
    "delta.stop_reason": str,
    "content_block": dict,
    "content_block.type": str,
    "content_block.id": str,
    "content_block.name": str,
    "content_block.text": str,
    "content_block.thinking": str,
    "usage": dict,
    "usage.input_tokens": int,
    "usage.output_tokens": int,
    "usage.cache_read_input_tokens": int,
    "usage.cache_creation_input_tokens": int,
    "usage.output_tokens_details": dict,
    "usage.output_tokens_details.thinking_tokens": int,
}


class AnthropicProvider:
    """Streams ``POST {api_base}/v1/messages`` and yields OpenAI-style chunks."""

    #: Every chunk is checked as it is built (the provider boundary, without an extra hop).
    checks_chunks = True

    def __init__(self, name: str = "anthropic") -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"AnthropicProvider(name={self.name!r})"

    def prepare(self, request: ChatRequest) -> tuple[str, dict[str, str], dict[str, Any]]:
        """The URL, headers and JSON body for a request (no I/O).

        Raises:
            AuthenticationError: When no key is given or set and the default endpoint is used.
        """
        key = api_key_for(request.api_key, ("ANTHROPIC_API_KEY",))
        if key is None and request.api_base is None:
            raise AuthenticationError(
                "no API key for anthropic: pass api_key= or set ANTHROPIC_API_KEY",
                llm_provider=self.name,
                model=request.original_model or request.model,
            )
        base = request.api_base or api_key_for(None, ("ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL")) or DEFAULT_BASE
        headers = {"anthropic-version": API_VERSION}
        if key:
            headers["x-api-key"] = key
        headers.update(request.extra_headers)
        return endpoint(base, DEFAULT_BASE, "/v1/messages"), headers, translate_request(request)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatCompletionChunk]:
        """POST the request and yield chunks until ``message_stop``.

        Raises:
            APIError: Typed errors for HTTP error statuses and ``error`` events
                (``overloaded_error`` → ``ServiceUnavailableError``).
            APIConnectionError: When the body ends before ``message_stop``.
            MalformedStreamError: For invalid JSON in a data field or a body that is not SSE.
        """
        url, headers, body = self.prepare(request)
        events, state, model_name = request_events(request, provider=self.name, url=url, headers=headers, body=body)
        chunk_id = ""
        model = request.model
        created = int(time.time())
        start_usage: Mapping[str, Any] = {}
        tool_index: dict[int, int] = {}  # content block index -> tool-call index

        def chunk(delta: Delta, finish: str | None = None, usage: Usage | None = None) -> ChatCompletionChunk:
            built = ChatCompletionChunk(
                id=chunk_id,
                choices=(StreamChoice(index=0, delta=delta, finish_reason=finish),),
                created=created,
                model=model,
                usage=usage,
            )
            return checked_chunk(built, self.name, model_name)

        async with aclosing(events):
            async for batch in events:
                for event in batch:
                    try:
                        d = orjson.loads(event.data)
                    except orjson.JSONDecodeError:
                        raise bad_json(event.data, self.name, model_name) from None
                    if not isinstance(d, dict):
                        raise bad_json(event.data, self.name, model_name)
                    try:
                        kind = d.get("type") or event.event
                        if kind == "content_block_delta":
                            delta = d.get("delta") or {}
                            dkind = delta.get("type")
                            if dkind == "text_delta":
                                yield chunk(Delta(content=delta.get("text", "")))
                            elif dkind == "input_json_delta":
                                position = tool_index.get(d.get("index", -1))
                                partial = delta.get("partial_json") or ""
                                if position is not None and partial:
                                    call = ToolCallDelta(index=position, function=FunctionDelta(arguments=partial))
                                    yield chunk(Delta(tool_calls=(call,)))
                            elif dkind == "thinking_delta":
                                yield chunk(Delta(reasoning_content=delta.get("thinking", "")))
                            elif dkind == "signature_delta":
                                block = {"type": "thinking", "signature": delta.get("signature", "")}
                                yield chunk(Delta(extra={"thinking_blocks": [block]}))
                            elif dkind == "citations_delta":
                                yield chunk(Delta(extra={"citations": [delta.get("citation")]}))
                        elif kind == "content_block_start":
                            block = d.get("content_block") or {}
                            bkind = block.get("type")
                            if bkind == "tool_use":
                                position = len(tool_index)
                                tool_index[d.get("index", position)] = position
                                call = ToolCallDelta(
                                    index=position,
                                    id=block.get("id", ""),
                                    type="function",
                                    function=FunctionDelta(name=block.get("name", ""), arguments=""),
                                )
                                yield chunk(Delta(role="assistant", tool_calls=(call,)))
                            elif bkind == "text" and block.get("text"):
                                yield chunk(Delta(content=block["text"]))
                            elif bkind == "thinking" and block.get("thinking"):
                                yield chunk(Delta(reasoning_content=block["thinking"]))
                            elif bkind == "redacted_thinking":
                                kept = {"type": "redacted_thinking", "data": block.get("data", "")}
                                yield chunk(Delta(extra={"thinking_blocks": [kept]}))
                        elif kind == "message_start":
                            message = d.get("message") or {}
                            chunk_id = message.get("id") or chunk_id
                            model = message.get("model") or model
                            start_usage = message.get("usage") or {}
                            yield chunk(Delta(role="assistant", content=""))
                        elif kind == "message_delta":
                            reason = (d.get("delta") or {}).get("stop_reason")
                            finish = _FINISH.get(reason, reason) if reason else None
                            usage = _usage(start_usage, d.get("usage") or {})
                            yield chunk(Delta(), finish, usage)
                        elif kind == "message_stop":
                            return
                        elif kind == "error" or event.event == "error":
                            raise error_from_payload(
                                d, provider=self.name, model=model_name, context="error event in stream"
                            )
                        # ping, content_block_stop and unknown events carry nothing for the caller
                    except APIError:
                        raise
                    except Exception as exc:  # a payload field of the wrong type or shape: name it
                        raise shape_error(d, _SHAPE, exc, self.name, model_name) from None
        tail = state.decoder.flush()
        if tail is not None and (tail.event == "message_stop" or '"message_stop"' in tail.data):
            return
        if state.events == 0:
            raise state.not_sse_error(self.name, model_name)
        raise APIConnectionError(
            "the Anthropic stream ended before message_stop: the connection closed early or the body was cut",
            llm_provider=self.name,
            model=model_name,
        )


def get_provider(prefix: str) -> AnthropicProvider:
    """The Anthropic provider (one instance per prefix)."""
    return AnthropicProvider(prefix)
