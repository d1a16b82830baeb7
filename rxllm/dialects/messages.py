"""Anthropic's Messages API: requests translated into rxllm calls, chunks encoded as its events.

Request (``POST /v1/messages``): ``model``, ``max_tokens`` (required, as Anthropic requires
it), ``messages`` with string or block content (``text``, ``image``, ``document``,
``tool_use``, ``tool_result``, ``thinking``, ``redacted_thinking``), ``system`` as a string or
text blocks, ``tools`` with ``input_schema``, ``tool_choice``, ``thinking``,
``stop_sequences``, ``metadata.user_id``, ``temperature``/``top_p``/``top_k``, ``stream``.
Thinking blocks sent back keep their signatures (``thinking_blocks`` on the assistant
message, which the Anthropic provider forwards).

Stream: ``message_start`` and a ``ping``; one content block at a time —
``thinking`` (``thinking_delta``, then ``signature_delta`` when the upstream signed it),
``redacted_thinking``, ``text`` (``text_delta``), ``tool_use`` (``input_json_delta``) — each
opened by ``content_block_start`` and closed by ``content_block_stop``; then
``message_delta`` with the ``stop_reason`` and usage, and ``message_stop``. A failure is one
``error`` event (``{"type": "error", "error": {"type", "message"}}``) and the stream ends.
Keepalives are ``ping`` events. Only choice 0 is encoded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

import orjson

from rxllm.errors import error_body as openai_error_body
from rxllm.errors import error_status
from rxllm.sse import encode_json
from rxllm.types import ChatCompletionChunk, ModelResponse, Usage
from rxllm.usage import UsageAccumulator

from ._common import (
    SSE_HEADERS,
    RequestFieldError,
    TranslatedRequest,
    check_types,
    chunks_of_response,
    json_type,
    new_id,
    require_model,
    require_object,
    require_stream,
)

__all__ = [
    "HEADERS",
    "KEEPALIVE",
    "MessagesEncoder",
    "error_body",
    "error_status",
    "error_type",
    "message_object",
    "translate_request",
]

#: The response headers of a Messages stream.
HEADERS: Final = SSE_HEADERS

#: Anthropic's keepalive: a ``ping`` event (its SDKs skip it).
KEEPALIVE: Final = b'event: ping\ndata: {"type":"ping"}\n\n'

# --------------------------------------------------------------------------- errors

_ERROR_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_type(status: int) -> str:
    """Anthropic's error ``type`` for an HTTP status (``api_error`` for other 5xx)."""
    return _ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")


def error_body(exc: BaseException, secrets: Iterable[str] = ()) -> dict[str, Any]:
    """Anthropic's error shape for ``exc``: ``{"type": "error", "error": {"type", "message"}}``.

    The message is the one :func:`rxllm.errors.error_body` gives (scrubbed of ``secrets``);
    the HTTP status to send it with is :func:`rxllm.errors.error_status`.
    """
    message = openai_error_body(exc, secrets)["error"]["message"]
    return {"type": "error", "error": {"type": error_type(error_status(exc)), "message": message}}


# --------------------------------------------------------------------------- request

_TYPES: Final = {
    "max_tokens": "integer",
    "temperature": "number",
    "top_p": "number",
    "top_k": "integer",
    "stop_sequences": "array",
    "tools": "array",
    "tool_choice": "object",
    "thinking": "object",
    "metadata": "object",
    "system": "string|array",
}


def translate_request(body: Any) -> TranslatedRequest:
    """Translate a Messages API request body into an rxllm call (no I/O).

    Args:
        body: The decoded JSON body.

    Returns:
        The call: chat-format messages and parameters (``thinking`` is passed on as is).

    Raises:
        RequestFieldError: A 400 naming the field that is missing, of the wrong type or not
            supported.
    """
    body = require_object(body, "the request body")
    model = require_model(body)
    stream = require_stream(body)
    check_types(body, _TYPES)
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise RequestFieldError("max_tokens: field required", param="max_tokens")
    if max_tokens < 1:
        raise RequestFieldError(f"max_tokens: must be at least 1, got {max_tokens}", param="max_tokens")
    raw = body.get("messages")
    if raw is None:
        raise RequestFieldError("messages: field required", param="messages")
    if not isinstance(raw, list):
        raise RequestFieldError(f"messages: must be an array, got {json_type(raw)}", param="messages")
    if not raw:
        raise RequestFieldError("messages: at least one message is required", param="messages")

    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if system:
        messages.append({"role": "system", "content": _system(system)})
    for i, message in enumerate(raw):
        messages.extend(_message(message, f"messages.{i}"))

    params: dict[str, Any] = {"max_tokens": max_tokens, "stream_options": {"include_usage": True}}
    for name in ("temperature", "top_p", "top_k"):
        if body.get(name) is not None:
            params[name] = body[name]
    stops = body.get("stop_sequences")
    if stops:
        if not all(isinstance(s, str) for s in stops):
            raise RequestFieldError("stop_sequences: must be an array of strings", param="stop_sequences")
        params["stop"] = list(stops)
    tools = body.get("tools")
    if tools:
        params["tools"] = [_tool(t, f"tools.{i}") for i, t in enumerate(tools)]
    choice = body.get("tool_choice")
    if choice is not None:
        params.update(_tool_choice(choice))
    thinking = body.get("thinking")
    if thinking is not None:
        kind = thinking.get("type")
        if kind == "enabled":
            budget = thinking.get("budget_tokens")
            if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
                raise RequestFieldError(
                    "thinking.budget_tokens: a positive integer is required when thinking is enabled",
                    param="thinking.budget_tokens",
                )
            params["thinking"] = dict(thinking)
        elif kind in ("adaptive",):
            params["thinking"] = dict(thinking)
        elif kind != "disabled":
            raise RequestFieldError(
                f"thinking.type: must be 'enabled' or 'disabled', got {kind!r}", param="thinking.type"
            )
    metadata = body.get("metadata")
    if metadata and isinstance(metadata.get("user_id"), str):
        params["user"] = metadata["user_id"]
    options = {"stop_sequences": list(stops or ())}
    return TranslatedRequest(model, tuple(messages), params, stream, options)


def _system(system: Any) -> str | list[dict[str, Any]]:
    if isinstance(system, str):
        return system
    parts: list[dict[str, Any]] = []
    for i, block in enumerate(system):
        where = f"system.{i}"
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            raise RequestFieldError(f"{where}: system blocks must be text blocks", param=where)
        part: dict[str, Any] = {"type": "text", "text": block["text"]}
        if "cache_control" in block:
            part["cache_control"] = block["cache_control"]
        parts.append(part)
    if len(parts) == 1 and "cache_control" not in parts[0]:
        return str(parts[0]["text"])
    return parts


def _image(block: Mapping[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source")
    if not isinstance(source, dict):
        raise RequestFieldError(f"{where}.source: field required", param=f"{where}.source")
    kind = source.get("type")
    if kind == "base64":
        url = f"data:{source.get('media_type') or 'image/png'};base64,{source.get('data', '')}"
    elif kind == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        raise RequestFieldError(
            f"{where}.source.type: only base64 and url images are supported, got {kind!r}", param=f"{where}.source.type"
        )
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_result_content(content: Any, where: str) -> str | list[dict[str, Any]]:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise RequestFieldError(f"{where}.content: must be a string or an array of blocks", param=f"{where}.content")
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        at = f"{where}.content.{j}"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": str(block.get("text", ""))})
        elif kind == "image":
            parts.append(_image(block, at))
        else:
            raise RequestFieldError(f"{at}.type: {kind!r} is not supported in a tool_result", param=f"{at}.type")
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _message(message: Any, where: str) -> list[dict[str, Any]]:
    """One Anthropic message as chat-format messages (tool results become ``tool`` messages)."""
    if not isinstance(message, dict):
        raise RequestFieldError(f"{where}: must be an object, got {json_type(message)}", param=where)
    role = message.get("role")
    if role not in ("user", "assistant"):
        raise RequestFieldError(f"{where}.role: must be 'user' or 'assistant', got {role!r}", param=f"{where}.role")
    content = message.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise RequestFieldError(
            f"{where}.content: must be a string or an array of blocks, got {json_type(content)}",
            param=f"{where}.content",
        )
    if role == "assistant":
        return [_assistant(content, where)]
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        at = f"{where}.content.{j}"
        if not isinstance(block, dict):
            raise RequestFieldError(f"{at}: must be an object, got {json_type(block)}", param=at)
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            if not isinstance(text, str):
                raise RequestFieldError(f"{at}.text: must be a string", param=f"{at}.text")
            part: dict[str, Any] = {"type": "text", "text": text}
            if "cache_control" in block:
                part["cache_control"] = block["cache_control"]
            parts.append(part)
        elif kind == "image":
            parts.append(_image(block, at))
        elif kind == "document":
            parts.append(dict(block))
        elif kind == "tool_result":
            tool_use_id = block.get("tool_use_id")
            if not isinstance(tool_use_id, str) or not tool_use_id:
                raise RequestFieldError(f"{at}.tool_use_id: field required", param=f"{at}.tool_use_id")
            result = _tool_result_content(block.get("content"), at)
            if block.get("is_error") and isinstance(result, str):
                result = f"Error: {result}"
            out.append({"role": "tool", "tool_call_id": tool_use_id, "content": result})
        else:
            raise RequestFieldError(f"{at}.type: {kind!r} is not supported in a user message", param=f"{at}.type")
    if parts:
        out.append({"role": "user", "content": parts})
    return out


def _assistant(content: list[Any], where: str) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    blocks: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        at = f"{where}.content.{j}"
        if not isinstance(block, dict):
            raise RequestFieldError(f"{at}: must be an object, got {json_type(block)}", param=at)
        kind = block.get("type")
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "tool_use":
            call_id = block.get("id")
            name = block.get("name")
            if not isinstance(call_id, str) or not call_id:
                raise RequestFieldError(f"{at}.id: field required", param=f"{at}.id")
            if not isinstance(name, str) or not name:
                raise RequestFieldError(f"{at}.name: field required", param=f"{at}.name")
            args = orjson.dumps(block.get("input") or {}).decode()
            calls.append({"id": call_id, "type": "function", "function": {"name": name, "arguments": args}})
        elif kind == "thinking":
            text = str(block.get("thinking", ""))
            blocks.append({"type": "thinking", "thinking": text, "signature": str(block.get("signature", ""))})
        elif kind == "redacted_thinking":
            blocks.append({"type": "redacted_thinking", "data": str(block.get("data", ""))})
        else:
            raise RequestFieldError(f"{at}.type: {kind!r} is not supported in an assistant message", param=f"{at}.type")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    if blocks:
        message["thinking_blocks"] = blocks
    return message


def _tool(tool: Any, where: str) -> dict[str, Any]:
    if not isinstance(tool, dict):
        raise RequestFieldError(f"{where}: must be an object, got {json_type(tool)}", param=where)
    kind = tool.get("type")
    if kind not in (None, "custom"):
        return dict(tool)  # a server tool (web search, ...): only an Anthropic upstream runs it
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise RequestFieldError(f"{where}.name: field required", param=f"{where}.name")
    schema = tool.get("input_schema")
    if not isinstance(schema, dict):
        raise RequestFieldError(f"{where}.input_schema: field required (an object)", param=f"{where}.input_schema")
    fn: dict[str, Any] = {"name": name, "parameters": schema}
    if tool.get("description"):
        fn["description"] = tool["description"]
    out: dict[str, Any] = {"type": "function", "function": fn}
    if "cache_control" in tool:
        out["cache_control"] = tool["cache_control"]
    return out


def _tool_choice(choice: Mapping[str, Any]) -> dict[str, Any]:
    kind = choice.get("type")
    out: dict[str, Any]
    if kind == "auto":
        out = {"tool_choice": "auto"}
    elif kind == "any":
        out = {"tool_choice": "required"}
    elif kind == "none":
        out = {"tool_choice": "none"}
    elif kind == "tool" and isinstance(choice.get("name"), str):
        out = {"tool_choice": {"type": "function", "function": {"name": choice["name"]}}}
    else:
        raise RequestFieldError(
            f"tool_choice.type: must be 'auto', 'any', 'tool' or 'none', got {kind!r}", param="tool_choice.type"
        )
    if choice.get("disable_parallel_tool_use"):
        out["parallel_tool_calls"] = False
    return out


# --------------------------------------------------------------------------- events

_STOP: Final = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

_TEXT, _THINKING, _TOOL, _REDACTED = 0, 1, 2, 3

_H_DELTA: Final = b"event: content_block_delta\ndata: "
_END: Final = b"\n\n"


class _Block:
    __slots__ = ("data", "id", "index", "kind", "name", "pieces", "signature")

    def __init__(self, kind: int, index: int) -> None:
        self.kind = kind
        self.index = index
        self.pieces: list[str] = []
        self.signature = ""
        self.id = ""
        self.name = ""
        self.data = ""

    def render(self) -> dict[str, Any]:
        text = "".join(self.pieces)
        if self.kind == _TEXT:
            return {"type": "text", "text": text}
        if self.kind == _THINKING:
            return {"type": "thinking", "thinking": text, "signature": self.signature}
        if self.kind == _REDACTED:
            return {"type": "redacted_thinking", "data": self.data}
        try:
            value = orjson.loads(text) if text.strip() else {}
        except orjson.JSONDecodeError:
            value = {}
        return {"type": "tool_use", "id": self.id, "name": self.name, "input": value if isinstance(value, dict) else {}}

    def start(self) -> dict[str, Any]:
        if self.kind == _TEXT:
            return {"type": "text", "text": ""}
        if self.kind == _THINKING:
            return {"type": "thinking", "thinking": "", "signature": ""}
        if self.kind == _REDACTED:
            return {"type": "redacted_thinking", "data": self.data}
        return {"type": "tool_use", "id": self.id, "name": self.name, "input": {}}


def _usage(usage: Usage) -> dict[str, Any]:
    ptd = usage.prompt_tokens_details
    cached = (ptd.cached_tokens or 0) if ptd else 0
    written = (ptd.cache_creation_tokens or 0) if ptd else 0
    return {
        "input_tokens": max(0, usage.prompt_tokens - cached - written),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": cached,
        "output_tokens": usage.completion_tokens,
    }


class MessagesEncoder:
    """Encodes one stream of chunks as Anthropic Messages streaming events.

    Args:
        model: The model name the message reports (the name the client asked for);
            ``None`` takes the first chunk's.
        message_id: The message id (default: a fresh ``msg_…``).
        secrets: Strings scrubbed from error messages.
        emit: ``False`` only folds chunks (for :meth:`message`), writing no events.
    """

    __slots__ = (
        "_blocks",
        "_emit",
        "_finish",
        "_open",
        "_out",
        "_secrets",
        "_started",
        "_tools",
        "_usage",
        "finished",
        "id",
        "model",
    )

    def __init__(
        self,
        *,
        model: str | None = None,
        message_id: str | None = None,
        secrets: Iterable[str] = (),
        emit: bool = True,
    ) -> None:
        self.id = message_id or new_id("msg_")
        self.model = model or ""
        self._secrets = tuple(secrets)
        self._emit = emit
        self._out: list[bytes] = []
        self._blocks: list[_Block] = []
        self._open: _Block | None = None
        self._tools: dict[int, _Block] = {}
        self._usage = UsageAccumulator()
        self._finish: str | None = None
        self._started = False
        #: Whether :meth:`close` or :meth:`fail` has run.
        self.finished = False

    def _event(self, kind: str, payload: dict[str, Any]) -> None:
        if self._emit:
            self._out.append(encode_json(payload, event=kind))

    def _flush(self) -> bytes:
        out = self._out
        if not out:
            return b""
        self._out = []
        return out[0] if len(out) == 1 else b"".join(out)

    def _start(self, chunk: ChatCompletionChunk | None) -> None:
        self._started = True
        if not self.model and chunk is not None:
            self.model = chunk.model
        message: dict[str, Any] = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        self._event("message_start", {"type": "message_start", "message": message})
        if self._emit:
            self._out.append(KEEPALIVE)

    def _begin(self, kind: int) -> _Block:
        self._end()
        block = _Block(kind, len(self._blocks))
        self._blocks.append(block)
        self._open = block
        return block

    def _announce(self, block: _Block) -> None:
        self._event(
            "content_block_start", {"type": "content_block_start", "index": block.index, "content_block": block.start()}
        )

    def _end(self) -> None:
        block = self._open
        if block is None:
            return
        self._open = None
        if block.kind == _TOOL and not block.pieces:
            self._delta(block, {"type": "input_json_delta", "partial_json": ""})
        self._event("content_block_stop", {"type": "content_block_stop", "index": block.index})

    def _delta(self, block: _Block, delta: dict[str, Any]) -> None:
        if self._emit:
            payload = {"type": "content_block_delta", "index": block.index, "delta": delta}
            self._out.append(_H_DELTA + orjson.dumps(payload) + _END)

    def encode(self, chunk: ChatCompletionChunk) -> bytes:
        """The events one chunk adds (``message_start`` comes with the first)."""
        if not self._started:
            self._start(chunk)
        if chunk.usage is not None:
            self._usage.add(chunk.usage)
        for sc in chunk.choices:
            if sc.index:
                continue
            d = sc.delta
            text = d.reasoning_content
            if text:
                block = self._open
                if block is None or block.kind != _THINKING or block.signature:
                    block = self._begin(_THINKING)
                    self._announce(block)
                block.pieces.append(text)
                self._delta(block, {"type": "thinking_delta", "thinking": text})
            if d.extra:
                self._thinking_blocks(d.extra)
            text = d.content
            if not text:
                text = d.refusal
            if text:
                block = self._open
                if block is None or block.kind != _TEXT:
                    block = self._begin(_TEXT)
                    self._announce(block)
                block.pieces.append(text)
                if self._emit:
                    payload = {
                        "type": "content_block_delta",
                        "index": block.index,
                        "delta": {"type": "text_delta", "text": text},
                    }
                    self._out.append(_H_DELTA + orjson.dumps(payload) + _END)
            if d.tool_calls:
                for pos, tcd in enumerate(d.tool_calls):
                    key = pos if tcd.index is None else tcd.index
                    block = self._tools.get(key)
                    if block is None or (tcd.id and block.id and tcd.id != block.id):
                        block = self._begin(_TOOL)
                        self._tools[key] = block
                        block.id = tcd.id or new_id("toolu_")
                        block.name = (tcd.function.name if tcd.function else None) or ""
                        self._announce(block)
                    fn = tcd.function
                    if fn is None:
                        continue
                    if fn.name and not block.name:
                        block.name = fn.name
                    args = fn.arguments
                    if args:
                        piece = args if isinstance(args, str) else orjson.dumps(args).decode()
                        block.pieces.append(piece)
                        if block is self._open:
                            self._delta(block, {"type": "input_json_delta", "partial_json": piece})
            if sc.finish_reason is not None:
                self._finish = sc.finish_reason
        return self._flush()

    def _thinking_blocks(self, extra: Mapping[str, Any]) -> None:
        """Signatures and redacted thinking, as the Anthropic provider emits them in ``delta.extra``."""
        blocks = extra.get("thinking_blocks")
        if not isinstance(blocks, list):
            return
        for item in blocks:
            if not isinstance(item, Mapping):
                continue
            if item.get("type") == "redacted_thinking":
                block = self._begin(_REDACTED)
                block.data = str(item.get("data", ""))
                self._announce(block)
                self._end()
            elif item.get("signature"):
                current = self._open
                if current is None or current.kind != _THINKING or current.signature:
                    current = self._begin(_THINKING)
                    self._announce(current)
                block = current
                block.signature = str(item["signature"])
                self._delta(block, {"type": "signature_delta", "signature": str(item["signature"])})

    def _stop_reason(self) -> str:
        finish = self._finish
        if finish is None:
            return "tool_use" if self._tools else "end_turn"
        return _STOP.get(finish, "end_turn")

    def _usage_result(self) -> Usage:
        if self._usage.reported:
            return self._usage.result()
        text = "".join("".join(b.pieces) for b in self._blocks)
        return self._usage.result(completion_text=text)

    def close(self, usage: Usage | None = None) -> bytes:
        """Close the open block, then ``message_delta`` (stop reason, usage) and ``message_stop``.

        Args:
            usage: The usage to report when no chunk carried any (an estimate, say).
        """
        if self.finished:
            return b""
        if usage is not None and not self._usage.reported:
            self._usage.add(usage)
        if not self._started:
            self._start(None)
        self._end()
        self.finished = True
        delta = {"stop_reason": self._stop_reason(), "stop_sequence": None}
        self._event("message_delta", {"type": "message_delta", "delta": delta, "usage": _usage(self._usage_result())})
        self._event("message_stop", {"type": "message_stop"})
        return self._flush()

    def fail(self, error: BaseException) -> bytes:
        """One ``error`` event in Anthropic's shape (no ``message_stop``)."""
        message = openai_error_body(error, self._secrets)["error"]["message"]
        return self.fail_with(error_status(error), message)

    def fail_with(self, status: int, message: str) -> bytes:
        """:meth:`fail` for an error already described (its HTTP status and a safe message)."""
        if self.finished:
            return b""
        self.finished = True
        self._out = []
        self._event("error", {"type": "error", "error": {"type": error_type(status), "message": message}})
        return self._flush()

    def keepalive(self) -> bytes:
        """A ``ping`` event."""
        return KEEPALIVE

    def message(self) -> dict[str, Any]:
        """The message object as it stands (complete once the stream has been closed)."""
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [block.render() for block in self._blocks],
            "stop_reason": self._stop_reason() if self.finished else None,
            "stop_sequence": None,
            "usage": _usage(self._usage_result()),
        }


def message_object(
    source: ModelResponse | Iterable[ChatCompletionChunk],
    *,
    model: str | None = None,
    message_id: str | None = None,
) -> dict[str, Any]:
    """The non-streaming Messages API object for a finished answer.

    Args:
        source: The chunks of the stream (which keep thinking signatures), or the
            ``ModelResponse`` rebuilt from them (whose message ``thinking_blocks``, if any,
            are read).
        model: The model name to report (default: the response's).
        message_id: The message id (default: a fresh ``msg_…``).

    Returns:
        The ``message`` object.
    """
    encoder = MessagesEncoder(model=model, message_id=message_id, emit=False)
    chunks = chunks_of_response(source) if isinstance(source, ModelResponse) else source
    for chunk in chunks:
        encoder.encode(chunk)
    encoder.close()
    return encoder.message()
