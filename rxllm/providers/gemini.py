"""Google's Gemini API (``streamGenerateContent?alt=sse``): requests translated, responses as chunks.

Request: system messages become ``systemInstruction``, assistant turns role ``model`` with
``functionCall`` parts, tool results ``functionResponse`` parts (named after the call they
answer), image parts ``inlineData``/``fileData``; tools become ``functionDeclarations``;
sampling parameters go into ``generationConfig``; ``reasoning_effort`` becomes its
``thinkingConfig`` (:func:`thinking_config_for_effort`).

Stream: each event is a whole ``GenerateContentResponse``. Text parts → ``content``,
``thought: true`` parts → ``reasoning_content``, each ``functionCall`` → one complete tool-call
delta (generated id, arguments serialized from the object). ``finishReason`` is mapped
(``STOP`` becomes ``tool_calls`` when the candidate made calls). Gemini repeats running usage
totals on every event; the last one is emitted once, as a ``choices: []`` chunk at the end,
like OpenAI's ``include_usage``. Gemini has no terminator: the end of the body after a
``finishReason`` is normal, before any is a truncated stream.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any, Final
from urllib.parse import quote

import orjson

from rxllm.errors import APIConnectionError, APIError, AuthenticationError, BadRequestError
from rxllm.providers._http import (
    Shape,
    api_key_for,
    bad_json,
    checked_chunk,
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

__all__ = ["THINKING_BUDGETS", "GeminiProvider", "get_provider", "thinking_config_for_effort", "translate_request"]

DEFAULT_BASE: Final = "https://generativelanguage.googleapis.com"

_FINISH: Final = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "LANGUAGE": "content_filter",
}

_GENERATION: Final = {
    "temperature": "temperature",
    "top_p": "topP",
    "top_k": "topK",
    "n": "candidateCount",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
    "seed": "seed",
}

#: ``reasoning_effort`` as a Gemini 2.5 ``thinkingBudget`` (LiteLLM's defaults).
THINKING_BUDGETS: Final = {"minimal": 128, "low": 1024, "medium": 2048, "high": 4096}


def thinking_config_for_effort(effort: Any, model: str = "") -> dict[str, Any]:
    """The ``generationConfig.thinkingConfig`` for an OpenAI-style ``reasoning_effort``.

    Gemini 2.5 takes a token budget (:data:`THINKING_BUDGETS`; ``"none"`` → budget 0, thoughts
    off); Gemini 3 models take a ``thinkingLevel`` (``"low"`` for minimal/low, ``"high"`` for
    medium/high; ``"none"`` → ``"low"`` with thoughts hidden, as Gemini 3 always thinks).
    Thought summaries are requested whenever thinking is on.

    Raises:
        BadRequestError: For a value other than none/minimal/low/medium/high.
    """
    level = str(effort).lower()
    if level in ("none", "disable", "disabled"):
        if "gemini-3" in model:  # Gemini 3 cannot switch thinking off: the least of it, unshown
            return {"includeThoughts": False, "thinkingLevel": "low"}
        return {"includeThoughts": False, "thinkingBudget": 0}
    if level not in THINKING_BUDGETS:
        raise BadRequestError(f"reasoning_effort must be one of none/minimal/low/medium/high, got {effort!r}")
    if "gemini-3" in model:
        return {"includeThoughts": True, "thinkingLevel": "low" if level in ("minimal", "low") else "high"}
    return {"includeThoughts": True, "thinkingBudget": THINKING_BUDGETS[level]}


#: JSON-schema keys the Gemini ``parameters`` schema rejects.
_SCHEMA_DROP: Final = frozenset({"additionalProperties", "$schema", "strict"})


# --------------------------------------------------------------------------- request


def _parts(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for part in content:
        if not isinstance(part, Mapping):
            continue
        kind = part.get("type")
        if kind == "text":
            parts.append({"text": part.get("text", "")})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url", "") if isinstance(image, Mapping) else str(image or "")
            if url.startswith("data:"):
                header, _, data = url.partition(",")
                mime = header[5:].split(";", 1)[0] or "image/png"
                parts.append({"inlineData": {"mimeType": mime, "data": data}})
            else:
                mime = image.get("format", "image/jpeg") if isinstance(image, Mapping) else "image/jpeg"
                parts.append({"fileData": {"mimeType": mime, "fileUri": url}})
    return parts


def _clean_schema(schema: Any) -> Any:
    if isinstance(schema, Mapping):
        return {k: _clean_schema(v) for k, v in schema.items() if k not in _SCHEMA_DROP}
    if isinstance(schema, list):
        return [_clean_schema(v) for v in schema]
    return schema


def _response_object(content: Any) -> dict[str, Any]:
    """A tool result as the object ``functionResponse.response`` must be."""
    text = content if isinstance(content, str) else "".join(p.get("text", "") for p in _parts(content))
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {"content": text}
    return value if isinstance(value, dict) else {"content": value}


def translate_request(request: ChatRequest) -> dict[str, Any]:
    """The ``generateContent`` body for an OpenAI-format request (no I/O)."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}

    def add(role: str, parts: list[dict[str, Any]]) -> None:
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})

    for message in request.messages:
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            system.extend(_parts(content))
        elif role == "user":
            add("user", _parts(content))
        elif role == "assistant":
            parts = _parts(content)
            for call in message.get("tool_calls") or ():
                fn = call.get("function") or {}
                name = fn.get("name", "")
                call_names[call.get("id", "")] = name
                raw = fn.get("arguments")
                try:
                    args = orjson.loads(raw) if isinstance(raw, str) and raw.strip() else (raw or {})
                except orjson.JSONDecodeError:
                    args = {"_raw_arguments": raw}
                part: dict[str, Any] = {"functionCall": {"name": name, "args": args}}
                signature = (call.get("extra") or {}).get("thought_signature") or call.get("thought_signature")
                if signature:
                    part["thoughtSignature"] = signature
                parts.append(part)
            add("model", parts)
        elif role in ("tool", "function"):
            name = call_names.get(message.get("tool_call_id") or "", message.get("name") or "")
            response = {"functionResponse": {"name": name, "response": _response_object(content)}}
            add("user", [response])

    params = request.params
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    config: dict[str, Any] = {}
    for name, wire in _GENERATION.items():
        if params.get(name) is not None:
            config[wire] = params[name]
    max_tokens = params.get("max_tokens") or params.get("max_completion_tokens")
    if max_tokens:
        config["maxOutputTokens"] = max_tokens
    stop = params.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    fmt = params.get("response_format")
    if isinstance(fmt, Mapping) and fmt.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        schema = (fmt.get("json_schema") or {}).get("schema")
        if schema:
            config["responseJsonSchema"] = schema
    thinking = params.get("thinking")
    if isinstance(thinking, Mapping):
        budget = thinking.get("budget_tokens")
        enabled = thinking.get("type", "enabled") == "enabled"
        config["thinkingConfig"] = {"includeThoughts": enabled, "thinkingBudget": budget if enabled else 0}
        if enabled and budget is None:
            del config["thinkingConfig"]["thinkingBudget"]
    elif params.get("reasoning_effort") is not None:
        config["thinkingConfig"] = thinking_config_for_effort(params["reasoning_effort"], request.model)
    if config:
        body["generationConfig"] = config
    tools = params.get("tools")
    if tools:
        declarations = []
        for tool in tools:
            fn = tool.get("function") if isinstance(tool, Mapping) else None
            if not isinstance(fn, Mapping):
                continue
            decl: dict[str, Any] = {"name": fn.get("name", "")}
            if fn.get("description"):
                decl["description"] = fn["description"]
            if fn.get("parameters"):
                decl["parameters"] = _clean_schema(fn["parameters"])
            declarations.append(decl)
        body["tools"] = [{"functionDeclarations": declarations}]
    tool_config = _tool_config(params.get("tool_choice"))
    if tool_config is not None:
        body["toolConfig"] = tool_config
    return body


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, Mapping) and isinstance(choice.get("function"), Mapping):
        name = choice["function"].get("name", "")
        return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    mode = {"auto": "AUTO", "required": "ANY", "none": "NONE"}.get(str(choice))
    return {"functionCallingConfig": {"mode": mode}} if mode else None


# --------------------------------------------------------------------------- response


def _usage(meta: Mapping[str, Any]) -> Usage:
    prompt = meta.get("promptTokenCount") or 0
    thoughts = meta.get("thoughtsTokenCount") or 0
    completion = (meta.get("candidatesTokenCount") or 0) + thoughts
    cached = meta.get("cachedContentTokenCount")
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=cached) if cached else None,
        completion_tokens_details=CompletionTokensDetails(reasoning_tokens=thoughts) if thoughts else None,
    )


#: The fields of ``GenerateContentResponse`` events this provider reads, and their types.
_SHAPE: Final[Shape] = {
    "responseId": str,
    "modelVersion": str,
    "candidates": list,
    "candidates[]": dict,
    "candidates[].index": int,
    "candidates[].finishReason": str,
    "candidates[].content": dict,
    "candidates[].content.parts": list,
    "candidates[].content.parts[]": dict,
    "candidates[].content.parts[].text": str,
    "candidates[].content.parts[].thoughtSignature": str,
    "candidates[].content.parts[].functionCall": dict,
    "candidates[].content.parts[].functionCall.id": str,
    "candidates[].content.parts[].functionCall.name": str,
    "usageMetadata": dict,
    "usageMetadata.promptTokenCount": int,
    "usageMetadata.candidatesTokenCount": int,
    "usageMetadata.thoughtsTokenCount": int,
    "usageMetadata.cachedContentTokenCount": int,
    "promptFeedback": dict,
}


class GeminiProvider:
    """Streams ``POST {api_base}/v1beta/models/{model}:streamGenerateContent?alt=sse``."""

    #: Every chunk is checked as it is built (the provider boundary, without an extra hop).
    checks_chunks = True

    def __init__(self, name: str = "gemini") -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"GeminiProvider(name={self.name!r})"

    def prepare(self, request: ChatRequest) -> tuple[str, dict[str, str], dict[str, Any]]:
        """The URL, headers and JSON body for a request (no I/O).

        Raises:
            AuthenticationError: When no key is given or set and the default endpoint is used.
        """
        key = api_key_for(request.api_key, ("GEMINI_API_KEY", "GOOGLE_API_KEY"))
        if key is None and request.api_base is None:
            raise AuthenticationError(
                "no API key for gemini: pass api_key= or set GEMINI_API_KEY",
                llm_provider=self.name,
                model=request.original_model or request.model,
            )
        base = (request.api_base or api_key_for(None, ("GEMINI_API_BASE",)) or DEFAULT_BASE).rstrip("/")
        if ":streamGenerateContent" in base:
            url = base if "alt=sse" in base else base + ("&" if "?" in base else "?") + "alt=sse"
        else:
            if not base.endswith(("/v1beta", "/v1", "/v1alpha")):
                base += "/v1beta"
            url = f"{base}/models/{quote(request.model, safe='-._~')}:streamGenerateContent?alt=sse"
        headers: dict[str, str] = {}
        if key:
            headers["x-goog-api-key"] = key
        headers.update(request.extra_headers)
        return url, headers, translate_request(request)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatCompletionChunk]:
        """POST the request and yield chunks until the body ends.

        Raises:
            APIError: Typed errors for HTTP error statuses and error objects in the stream.
            APIConnectionError: When the body ends before any candidate finished.
            MalformedStreamError: For invalid JSON in a data field or a body that is not SSE.
        """
        url, headers, body = self.prepare(request)
        events, state, model_name = request_events(request, provider=self.name, url=url, headers=headers, body=body)
        chunk_id = ""
        model = request.model
        created = int(time.time())
        usage_meta: Mapping[str, Any] | None = None
        calls_made: dict[int, int] = {}  # candidate index -> tool calls emitted
        finished = False
        started: set[int] = set()
        seen: set[int] = set()  # candidate indexes that appeared
        done: set[int] = set()  # ... and those that sent a finishReason
        async with aclosing(events):
            async for batch in events:
                for event in batch:
                    try:
                        d = orjson.loads(event.data)
                    except orjson.JSONDecodeError:
                        raise bad_json(event.data, self.name, model_name) from None
                    if isinstance(d, list) and d and isinstance(d[0], dict):
                        d = d[0]
                    if not isinstance(d, dict):
                        raise bad_json(event.data, self.name, model_name)
                    try:
                        if d.get("error"):
                            raise error_from_payload(d, provider=self.name, model=model_name, context="error in stream")
                        chunk_id = d.get("responseId") or chunk_id
                        model = d.get("modelVersion") or model
                        if d.get("usageMetadata"):
                            usage_meta = d["usageMetadata"]
                        choices: list[StreamChoice] = []
                        for position, candidate in enumerate(d.get("candidates") or ()):
                            index = candidate.get("index", position)
                            delta = self._delta(candidate, index, calls_made, started)
                            reason = candidate.get("finishReason")
                            finish = None
                            seen.add(index)
                            if reason:
                                finished = True
                                done.add(index)
                                finish = _FINISH.get(reason, "stop")
                                if finish == "stop" and calls_made.get(index):
                                    finish = "tool_calls"
                            if delta is not None or finish is not None:
                                choices.append(StreamChoice(index=index, delta=delta or Delta(), finish_reason=finish))
                        feedback = d.get("promptFeedback")
                        if not d.get("candidates") and isinstance(feedback, Mapping) and feedback.get("blockReason"):
                            finished = True
                            choices.append(
                                StreamChoice(
                                    index=0,
                                    delta=Delta(extra={"prompt_feedback": dict(feedback)}),
                                    finish_reason="content_filter",
                                )
                            )
                        if choices:
                            built = ChatCompletionChunk(
                                id=chunk_id, choices=tuple(choices), created=created, model=model
                            )
                            yield checked_chunk(built, self.name, model_name)
                    except APIError:
                        raise
                    except Exception as exc:  # a payload field of the wrong type or shape: name it
                        raise shape_error(d, _SHAPE, exc, self.name, model_name) from None
        state.decoder.close()
        if not finished:
            if state.events == 0:
                raise state.not_sse_error(self.name, model_name)
            raise APIConnectionError(
                "the Gemini stream ended before any candidate had a finishReason: the body was cut",
                llm_provider=self.name,
                model=model_name,
            )
        unfinished = sorted(seen - done)
        if unfinished:
            # n > 1: one candidate finished, another was cut: the stream is cut, not a success
            raise APIConnectionError(
                f"the Gemini stream ended before candidate {unfinished[0]} had a finishReason: the body was cut",
                llm_provider=self.name,
                model=model_name,
            )
        if usage_meta is not None:
            try:
                usage = _usage(usage_meta)
            except Exception as exc:
                raise shape_error({"usageMetadata": usage_meta}, _SHAPE, exc, self.name, model_name) from None
            built = ChatCompletionChunk(id=chunk_id, choices=(), created=created, model=model, usage=usage)
            yield checked_chunk(built, self.name, model_name)

    @staticmethod
    def _delta(candidate: Mapping[str, Any], index: int, calls_made: dict[int, int], started: set[int]) -> Delta | None:
        content = candidate.get("content") or {}
        text: list[str] = []
        thought: list[str] = []
        calls: list[ToolCallDelta] = []
        for part in content.get("parts") or ():
            if "text" in part:
                (thought if part.get("thought") else text).append(part["text"] or "")
            elif "functionCall" in part:
                fn = part["functionCall"] or {}
                position = calls_made.get(index, 0)
                calls_made[index] = position + 1
                extra = {"thought_signature": part["thoughtSignature"]} if part.get("thoughtSignature") else {}
                calls.append(
                    ToolCallDelta(
                        index=position,
                        id=fn.get("id") or f"call_{uuid.uuid4().hex[:24]}",
                        type="function",
                        function=FunctionDelta(
                            name=fn.get("name", ""), arguments=orjson.dumps(fn.get("args") or {}).decode()
                        ),
                        extra=extra,
                    )
                )
        if not (text or thought or calls) and index in started:
            return None
        role = None
        if index not in started:
            started.add(index)
            role = "assistant"
        return Delta(
            role=role,
            content="".join(text) if text else None,
            reasoning_content="".join(thought) if thought else None,
            tool_calls=tuple(calls) if calls else None,
        )


def get_provider(prefix: str) -> GeminiProvider:
    """The Gemini provider (one instance per prefix)."""
    return GeminiProvider(prefix)
