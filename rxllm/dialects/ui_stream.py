"""The Vercel AI SDK's UI message stream protocol (v1), what ``useChat`` reads.

Stream (header ``x-vercel-ai-ui-message-stream: v1``): ``data: {json}`` parts — ``start``
(with ``messageId``) and ``start-step``; ``reasoning-start``/``-delta``/``-end``,
``text-start``/``-delta``/``-end`` (each run of reasoning or text has its own ``id``);
``tool-input-start``, ``tool-input-delta`` (``inputTextDelta``) and, once the call is
complete, ``tool-input-available`` with the parsed ``input`` (``tool-input-error`` when the
arguments are not valid JSON); then ``finish-step`` and ``finish``; ``data: [DONE]`` ends the
stream. A failure is one ``error`` part (``errorText``), then ``[DONE]``, without ``finish``.
Parts carry only the keys the protocol's schema allows (it rejects unknown keys).

Request: :func:`translate_request` reads the body ``useChat``'s default transport posts
(``{"id", "messages": [UIMessage...], "trigger", ...}``): text, reasoning, file and tool
parts (``tool-<name>`` and ``dynamic-tool``, with their outputs) become chat messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

import orjson

from rxllm.errors import error_body, error_status
from rxllm.sse import encode_json
from rxllm.types import ChatCompletionChunk, Usage

from ._common import RequestFieldError, TranslatedRequest, check_types, json_type, new_id, require_object

__all__ = [
    "HEADERS",
    "KEEPALIVE",
    "UIMessageStreamEncoder",
    "error_body",
    "error_status",
    "translate_request",
]

#: The response headers of a UI message stream (the last one tells ``useChat`` the protocol).
HEADERS: Final[Mapping[str, str]] = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    "x-vercel-ai-ui-message-stream": "v1",
}

#: An SSE comment for idle periods (the protocol's parser skips comments).
KEEPALIVE: Final = b": ping\n\n"

_DONE: Final = b"data: [DONE]\n\n"
_HEAD: Final = b"data: "
_END: Final = b"\n\n"

# --------------------------------------------------------------------------- request

_TYPES: Final = {
    "model": "string",
    "messages": "array",
    "temperature": "number",
    "top_p": "number",
    "max_tokens": "integer",
    "maxOutputTokens": "integer",
}


def translate_request(body: Any, *, model: str | None = None) -> TranslatedRequest:
    """Translate a ``useChat`` request body into an rxllm call (no I/O).

    Args:
        body: The decoded JSON body: ``messages`` (UIMessages with ``parts``), and optionally
            ``model`` and sampling settings sent through ``useChat``'s ``body`` option.
        model: The model to use when the body names none.

    Returns:
        The call (always streaming).

    Raises:
        RequestFieldError: A 400 naming the field that is missing or malformed.
    """
    body = require_object(body, "the request body")
    check_types(body, _TYPES)
    chosen = body.get("model") or model
    if not chosen:
        raise RequestFieldError("you must provide a model parameter (in the body, or on the endpoint)", param="model")
    raw = body.get("messages")
    if not raw:
        raise RequestFieldError("messages must be a non-empty array of UI messages", param="messages")
    messages: list[dict[str, Any]] = []
    for i, message in enumerate(raw):
        messages.extend(_ui_message(message, f"messages[{i}]"))
    params: dict[str, Any] = {"stream_options": {"include_usage": True}}
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            params[name] = body[name]
    limit = body.get("max_tokens") or body.get("maxOutputTokens")
    if limit:
        params["max_tokens"] = limit
    return TranslatedRequest(chosen, tuple(messages), params, True, {})


def _ui_message(message: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(message, dict):
        raise RequestFieldError(f"{where} must be an object, got {json_type(message)}", param=where)
    role = message.get("role")
    if role not in ("system", "user", "assistant"):
        raise RequestFieldError(
            f"{where}.role must be 'system', 'user' or 'assistant', got {role!r}", param=f"{where}.role"
        )
    parts = message.get("parts")
    if parts is None and isinstance(message.get("content"), str):
        return [{"role": role, "content": message["content"]}]
    if not isinstance(parts, list):
        raise RequestFieldError(f"{where}.parts must be an array, got {json_type(parts)}", param=f"{where}.parts")
    if role != "assistant":
        content: list[dict[str, Any]] = []
        for j, part in enumerate(parts):
            at = f"{where}.parts[{j}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                content.append({"type": "text", "text": str(part.get("text", ""))})
            elif kind == "file":
                content.append(_file(part, at))
        if role == "system":
            return [{"role": "system", "content": "".join(p.get("text", "") for p in content)}]
        if all(p["type"] == "text" for p in content):
            return [{"role": role, "content": "".join(p["text"] for p in content)}]
        return [{"role": role, "content": content}]
    # an assistant message may hold several steps: text, tool calls and their results, more text
    out: list[dict[str, Any]] = []
    current: dict[str, Any] = {"role": "assistant", "content": None}
    results: list[dict[str, Any]] = []

    def flush() -> None:
        nonlocal current, results
        if current.get("content") is not None or current.get("tool_calls"):
            out.append(current)
        out.extend(results)
        current = {"role": "assistant", "content": None}
        results = []

    for j, part in enumerate(parts):
        at = f"{where}.parts[{j}]"
        if not isinstance(part, dict):
            raise RequestFieldError(f"{at} must be an object, got {json_type(part)}", param=at)
        kind = part.get("type")
        if not isinstance(kind, str):
            raise RequestFieldError(f"{at}.type must be a string", param=f"{at}.type")
        if kind == "step-start" and (current.get("tool_calls") or current.get("content")):
            flush()
        elif kind == "text":
            if current.get("tool_calls"):
                flush()
            current["content"] = (current.get("content") or "") + str(part.get("text", ""))
        # reasoning parts are not sent upstream again: providers need none, and some refuse it
        elif kind.startswith("tool-") or kind == "dynamic-tool":
            name = part.get("toolName") if kind == "dynamic-tool" else kind[5:]
            call_id = part.get("toolCallId")
            if not isinstance(call_id, str) or not call_id:
                raise RequestFieldError(f"{at}.toolCallId must be a non-empty string", param=f"{at}.toolCallId")
            state = part.get("state")
            if state in ("input-streaming",):
                continue
            args = orjson.dumps(part.get("input") if part.get("input") is not None else {}).decode()
            current.setdefault("tool_calls", []).append(
                {"id": call_id, "type": "function", "function": {"name": name or "", "arguments": args}}
            )
            if state == "output-available":
                output = part.get("output")
                text = output if isinstance(output, str) else orjson.dumps(output).decode()
                results.append({"role": "tool", "tool_call_id": call_id, "content": text})
            elif state in ("output-error", "output-denied"):
                text = str(part.get("errorText") or "the tool call was denied")
                results.append({"role": "tool", "tool_call_id": call_id, "content": f"Error: {text}"})
    flush()
    return out


def _file(part: Mapping[str, Any], where: str) -> dict[str, Any]:
    url = part.get("url")
    if not isinstance(url, str) or not url:
        raise RequestFieldError(f"{where}.url must be a non-empty string", param=f"{where}.url")
    media = str(part.get("mediaType") or "")
    if media.startswith("image/"):
        return {"type": "image_url", "image_url": {"url": url}}
    file: dict[str, Any] = {"file_data": url}
    if part.get("filename"):
        file["filename"] = part["filename"]
    return {"type": "file", "file": file}


# --------------------------------------------------------------------------- stream

_NONE, _TEXT, _REASONING = 0, 1, 2


class _Tool:
    __slots__ = ("args", "done", "id", "name")

    def __init__(self, call_id: str, name: str) -> None:
        self.id = call_id
        self.name = name
        self.args: list[str] = []
        self.done = False


class UIMessageStreamEncoder:
    """Encodes one stream of chunks as the AI SDK's UI message stream.

    Args:
        message_id: The assistant message's id (default: a fresh ``msg-…``).
        secrets: Strings scrubbed from error messages.
        send_reasoning: Whether reasoning parts are sent (``sendReasoning`` in the AI SDK).
    """

    __slots__ = (
        "_count",
        "_kind",
        "_open_id",
        "_out",
        "_reasoning",
        "_secrets",
        "_started",
        "_tools",
        "finished",
        "id",
    )

    def __init__(
        self, *, message_id: str | None = None, secrets: Iterable[str] = (), send_reasoning: bool = True
    ) -> None:
        self.id = message_id or new_id("msg-")
        self._secrets = tuple(secrets)
        self._reasoning = send_reasoning
        self._out: list[bytes] = []
        self._kind = _NONE
        self._open_id = ""
        self._count = 0
        self._tools: dict[int, _Tool] = {}
        self._started = False
        #: Whether :meth:`close` or :meth:`fail` has run.
        self.finished = False

    def _part(self, payload: dict[str, Any]) -> None:
        self._out.append(encode_json(payload))

    def _flush(self) -> bytes:
        out = self._out
        if not out:
            return b""
        self._out = []
        return out[0] if len(out) == 1 else b"".join(out)

    def _start(self) -> None:
        self._started = True
        self._part({"type": "start", "messageId": self.id})
        self._part({"type": "start-step"})

    def _switch(self, kind: int) -> str:
        """Open a text or reasoning run (closing the open one); returns its id."""
        self._end_run()
        self._kind = kind
        self._count += 1
        part_id = f"{'text' if kind == _TEXT else 'reasoning'}-{self._count}"
        self._open_id = part_id
        self._part({"type": "text-start" if kind == _TEXT else "reasoning-start", "id": part_id})
        return part_id

    def _end_run(self) -> None:
        kind = self._kind
        if kind == _NONE:
            return
        self._kind = _NONE
        self._part({"type": "text-end" if kind == _TEXT else "reasoning-end", "id": self._open_id})

    def _end_tools(self) -> None:
        for tool in self._tools.values():
            if tool.done:
                continue
            tool.done = True
            text = "".join(tool.args)
            try:
                value = orjson.loads(text) if text.strip() else {}
            except orjson.JSONDecodeError as exc:
                self._part(
                    {
                        "type": "tool-input-error",
                        "toolCallId": tool.id,
                        "toolName": tool.name,
                        "input": text,
                        "errorText": f"the tool arguments are not valid JSON: {exc}",
                    }
                )
                continue
            self._part({"type": "tool-input-available", "toolCallId": tool.id, "toolName": tool.name, "input": value})

    def encode(self, chunk: ChatCompletionChunk) -> bytes:
        """The parts one chunk adds (``start`` comes with the first)."""
        if not self._started:
            self._start()
        for sc in chunk.choices:
            if sc.index:
                continue
            d = sc.delta
            text = d.reasoning_content
            if text and self._reasoning:
                part_id = self._open_id if self._kind == _REASONING else self._switch(_REASONING)
                self._out.append(_HEAD + orjson.dumps({"type": "reasoning-delta", "id": part_id, "delta": text}) + _END)
            text = d.content or d.refusal
            if text:
                part_id = self._open_id if self._kind == _TEXT else self._switch(_TEXT)
                self._out.append(_HEAD + orjson.dumps({"type": "text-delta", "id": part_id, "delta": text}) + _END)
            if d.tool_calls:
                self._end_run()
                for pos, tcd in enumerate(d.tool_calls):
                    key = pos if tcd.index is None else tcd.index
                    tool = self._tools.get(key)
                    if tool is None or (tcd.id and tcd.id != tool.id):
                        if tool is not None:
                            self._end_tools()
                            key = max(self._tools) + 1
                        name = (tcd.function.name if tcd.function else None) or ""
                        tool = self._tools[key] = _Tool(tcd.id or new_id("call_"), name)
                        self._part({"type": "tool-input-start", "toolCallId": tool.id, "toolName": tool.name})
                    fn = tcd.function
                    if fn is not None and fn.arguments:
                        args = fn.arguments if isinstance(fn.arguments, str) else orjson.dumps(fn.arguments).decode()
                        tool.args.append(args)
                        self._part({"type": "tool-input-delta", "toolCallId": tool.id, "inputTextDelta": args})
        return self._flush()

    def close(self, usage: Usage | None = None) -> bytes:
        """Close open parts, then ``finish-step``, ``finish`` and ``[DONE]`` (``usage`` is not sent)."""
        if self.finished:
            return b""
        if not self._started:
            self._start()
        self._end_run()
        self._end_tools()
        self.finished = True
        self._part({"type": "finish-step"})
        self._part({"type": "finish"})
        self._out.append(_DONE)
        return self._flush()

    def fail(self, error: BaseException) -> bytes:
        """An ``error`` part (scrubbed message), then ``[DONE]``; no ``finish``."""
        return self.fail_with(error_status(error), error_body(error, self._secrets)["error"]["message"])

    def fail_with(self, status: int, message: str) -> bytes:
        """:meth:`fail` for an error already described (its HTTP status and a safe message)."""
        if self.finished:
            return b""
        self.finished = True
        if not self._started:
            self._start()
        self._part({"type": "error", "errorText": message})
        self._out.append(_DONE)
        return self._flush()

    def keepalive(self) -> bytes:
        """An SSE comment."""
        return KEEPALIVE
