"""OpenAI's Responses API: requests translated into rxllm calls, chunks encoded as its events.

Request (``POST /v1/responses``): ``input`` as a string or a list of items (messages with
``input_text``/``input_image``/``input_file`` parts, ``function_call`` and
``function_call_output`` items, ``reasoning`` items), ``instructions`` (a leading system
message), function ``tools`` in the Responses shape, ``tool_choice``, ``max_output_tokens``,
``reasoning.effort``, ``text.format``, ``temperature``/``top_p``/``parallel_tool_calls``/
``user``, ``stream``. ``previous_response_id`` and ``item_reference`` items need a store of
earlier responses (:class:`ResponseStore`): without one they are refused with a clear 400.

Stream: ``response.created`` and ``response.in_progress``; one output item per reasoning run
(``response.reasoning_summary_text.delta``), per message (``response.output_text.delta``,
``response.refusal.delta``) and per tool call (``response.function_call_arguments.delta``),
each opened with ``response.output_item.added`` (and ``content_part.added``) and closed with
the matching ``.done`` events; then ``response.completed`` (``response.incomplete`` when the
model hit its token limit or a content filter) with usage. A failure ends the stream with an
``error`` event and ``response.failed``, never a success terminator. Every event carries a
``sequence_number`` that increases by one. Only choice 0 is encoded (the API has no ``n``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Protocol

import orjson

from rxllm.errors import error_body, error_status
from rxllm.sse import encode_json
from rxllm.types import ChatCompletionChunk, ModelResponse, Usage
from rxllm.usage import UsageAccumulator

from ._common import (
    SSE_HEADERS,
    RequestFieldError,
    TranslatedRequest,
    as_sequence,
    check_types,
    chunks_of_response,
    json_type,
    new_id,
    now,
    require_model,
    require_object,
    require_stream,
)

__all__ = [
    "HEADERS",
    "KEEPALIVE",
    "ResponseHistory",
    "ResponseStore",
    "ResponsesEncoder",
    "error_body",
    "error_status",
    "response_object",
    "translate_request",
]

#: The response headers of a Responses stream.
HEADERS: Final = SSE_HEADERS

#: An SSE comment for idle periods (OpenAI's clients skip comments).
KEEPALIVE: Final = b": ping\n\n"


class ResponseHistory(Protocol):
    """Where earlier responses are found: what ``previous_response_id`` and ``item_reference`` need."""

    def conversation(self, response_id: str) -> Sequence[Mapping[str, Any]] | None:
        """The chat-format messages of an earlier response (its input and its answer), or None."""
        ...

    def item(self, item_id: str) -> Mapping[str, Any] | None:
        """An earlier output item (``msg_…``, ``fc_…``, ``rs_…``) as the API showed it, or None."""
        ...


class ResponseStore:
    """A bounded in-memory :class:`ResponseHistory`: the last ``max_responses`` responses saved.

    One process only (a restart forgets everything); the oldest response goes first.

    Args:
        max_responses: How many responses to keep (at least 1).
    """

    def __init__(self, max_responses: int = 1000) -> None:
        self.max_responses = max(1, max_responses)
        self._responses: OrderedDict[str, tuple[dict[str, Any], tuple[Mapping[str, Any], ...]]] = OrderedDict()
        self._items: dict[str, tuple[str, Mapping[str, Any]]] = {}

    def __len__(self) -> int:
        return len(self._responses)

    def save(self, response: Mapping[str, Any], messages: Sequence[Mapping[str, Any]]) -> None:
        """Keep a finished response object and the chat-format ``messages`` of its request."""
        response_id = str(response["id"])
        output = [item for item in response.get("output") or () if isinstance(item, Mapping)]
        conversation = (*messages, *_input_messages(list(output)))
        self._responses[response_id] = (dict(response), conversation)
        self._responses.move_to_end(response_id)
        for item in output:
            if isinstance(item.get("id"), str):
                self._items[item["id"]] = (response_id, item)
        while len(self._responses) > self.max_responses:
            old_id, (old, _) = self._responses.popitem(last=False)
            for item in old.get("output") or ():
                if isinstance(item, Mapping) and self._items.get(str(item.get("id")), ("",))[0] == old_id:
                    del self._items[str(item["id"])]

    def get(self, response_id: str) -> dict[str, Any] | None:
        """The saved response object, or None."""
        found = self._responses.get(response_id)
        return found[0] if found is not None else None

    def conversation(self, response_id: str) -> Sequence[Mapping[str, Any]] | None:
        """The request's messages followed by the response's answer, or None."""
        found = self._responses.get(response_id)
        return found[1] if found is not None else None

    def item(self, item_id: str) -> Mapping[str, Any] | None:
        """A saved output item, or None."""
        found = self._items.get(item_id)
        return found[1] if found is not None else None


# --------------------------------------------------------------------------- request

_TYPES: Final = {
    "instructions": "string",
    "max_output_tokens": "integer",
    "temperature": "number",
    "top_p": "number",
    "tools": "array",
    "tool_choice": "string|object",
    "parallel_tool_calls": "boolean",
    "reasoning": "object",
    "text": "object",
    "user": "string",
    "metadata": "object",
    "previous_response_id": "string",
    "store": "boolean",
    "background": "boolean",
    "service_tier": "string",
    "top_logprobs": "integer",
}

#: Fields echoed into the response object.
_ECHOED: Final = (
    "instructions",
    "max_output_tokens",
    "temperature",
    "top_p",
    "tool_choice",
    "parallel_tool_calls",
    "reasoning",
    "text",
    "user",
    "metadata",
    "previous_response_id",
    "store",
)


def translate_request(body: Any, *, store: ResponseHistory | None = None) -> TranslatedRequest:
    """Translate a Responses API request body into an rxllm call (no I/O).

    Args:
        body: The decoded JSON body.
        store: Where earlier responses are kept, for ``previous_response_id`` and
            ``item_reference`` items; ``None`` refuses such requests.

    Returns:
        The call: chat-format messages and parameters; ``options`` holds the fields the
        response object echoes (and the original ``tools``).

    Raises:
        RequestFieldError: A 400 naming the field that is missing, of the wrong type or not
            supported.
    """
    body = require_object(body, "the request body")
    model = require_model(body)
    stream = require_stream(body)
    check_types(body, _TYPES)
    if body.get("background"):
        raise RequestFieldError("background responses are not supported by this server", param="background")
    if body.get("conversation") is not None:
        raise RequestFieldError(
            "conversation is not supported by this server: send the items in input", param="conversation"
        )
    messages: list[dict[str, Any]] = []
    previous = body.get("previous_response_id")
    if previous is not None:
        if store is None:
            raise RequestFieldError(
                "previous_response_id is not supported: this server stores no responses "
                "(send the whole conversation in input, or configure a response store)",
                param="previous_response_id",
            )
        history = store.conversation(previous)
        if history is None:
            raise RequestFieldError(
                f"previous response {previous!r} not found", param="previous_response_id", code="not_found"
            )
        messages.extend(dict(m) for m in history)
    instructions = body.get("instructions")
    if instructions:
        messages.insert(0, {"role": "system", "content": instructions})
    raw_input = body.get("input")
    if raw_input is None:
        raise RequestFieldError("you must provide an input parameter", param="input")
    if isinstance(raw_input, str):
        messages.append({"role": "user", "content": raw_input})
    elif isinstance(raw_input, list):
        messages.extend(_input_messages(raw_input, store))
    else:
        raise RequestFieldError(
            f"input must be a string or an array of items, got {json_type(raw_input)}", param="input"
        )
    if not any(m.get("role") != "system" for m in messages):
        raise RequestFieldError("input must contain at least one item", param="input")

    params: dict[str, Any] = {"stream_options": {"include_usage": True}}
    for name in ("temperature", "top_p", "parallel_tool_calls", "user", "service_tier"):
        if body.get(name) is not None:
            params[name] = body[name]
    if body.get("max_output_tokens") is not None:
        if body["max_output_tokens"] < 1:
            raise RequestFieldError("max_output_tokens must be at least 1", param="max_output_tokens")
        params["max_tokens"] = body["max_output_tokens"]
    tools = body.get("tools")
    if tools:
        params["tools"] = [_tool(t, i) for i, t in enumerate(tools)]
    if body.get("tool_choice") is not None:
        params["tool_choice"] = _tool_choice(body["tool_choice"])
    reasoning = body.get("reasoning")
    if reasoning:
        check_types(reasoning, {"effort": "string", "summary": "string"}, "reasoning.")
        if reasoning.get("effort") is not None:
            params["reasoning_effort"] = reasoning["effort"]
    text = body.get("text")
    if text:
        fmt = _response_format(text)
        if fmt is not None:
            params["response_format"] = fmt
    options: dict[str, Any] = {name: body[name] for name in _ECHOED if body.get(name) is not None}
    options["tools"] = list(tools or ())
    return TranslatedRequest(model, tuple(messages), params, stream, options)


def _text_parts(content: Any, where: str, *, assistant: bool) -> str | list[dict[str, Any]]:
    """Responses content (a string or parts) in chat format."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise RequestFieldError(
            f"{where}.content must be a string or an array of parts, got {json_type(content)}", param=f"{where}.content"
        )
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        if not isinstance(part, dict):
            raise RequestFieldError(f"{at} must be an object, got {json_type(part)}", param=at)
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            value = part.get("text")
            if not isinstance(value, str):
                raise RequestFieldError(f"{at}.text must be a string, got {json_type(value)}", param=f"{at}.text")
            parts.append({"type": "text", "text": value})
        elif kind == "refusal" and assistant:
            continue
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str) or not url:
                raise RequestFieldError(
                    f"{at}: only images given by image_url (a URL or a data: URL) are supported, not file_id",
                    param=f"{at}.image_url",
                )
            image: dict[str, Any] = {"url": url}
            if part.get("detail") and part["detail"] != "auto":
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        elif kind == "input_file":
            data = part.get("file_data")
            if not isinstance(data, str) or not data:
                raise RequestFieldError(
                    f"{at}: only files given inline as file_data are supported", param=f"{at}.file_data"
                )
            file: dict[str, Any] = {"file_data": data}
            if part.get("filename"):
                file["filename"] = part["filename"]
            parts.append({"type": "file", "file": file})
        else:
            raise RequestFieldError(f"{at}.type {kind!r} is not a supported content part", param=f"{at}.type")
    if assistant:
        return "".join(p["text"] for p in parts if p["type"] == "text")
    return parts


def _input_messages(items: list[Any], store: ResponseHistory | None = None) -> list[dict[str, Any]]:
    """The chat-format messages for a list of Responses input items (references resolved in ``store``)."""
    items = [_resolve(item, f"input[{i}]", store) for i, item in enumerate(items)]
    messages: list[dict[str, Any]] = []
    # signed reasoning (from an Anthropic upstream, its signature in encrypted_content) goes
    # back as thinking_blocks on the next assistant message; unsigned reasoning is not sent
    # upstream again (providers need none, and some refuse it)
    blocks: list[dict[str, Any]] = []

    def assistant() -> dict[str, Any]:
        """The assistant message to extend: the last one, if nothing came after it."""
        last = messages[-1] if messages else None
        if last is None or last.get("role") != "assistant":
            last = {"role": "assistant", "content": None}
            messages.append(last)
        if blocks:
            last.setdefault("thinking_blocks", []).extend(blocks)
            blocks.clear()
        return last

    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise RequestFieldError(f"{where} must be an object, got {json_type(item)}", param=where)
        kind = item.get("type")
        if kind is None or kind == "message":
            role = item.get("role")
            if role not in ("user", "system", "developer", "assistant"):
                raise RequestFieldError(
                    f"{where}.role must be one of 'user', 'system', 'developer', 'assistant', got {role!r}",
                    param=f"{where}.role",
                )
            if "content" not in item:
                raise RequestFieldError(f"{where}.content is required", param=f"{where}.content")
            content = _text_parts(item["content"], where, assistant=role == "assistant")
            if role == "assistant":
                message = assistant()
                if message.get("tool_calls") or message.get("content"):
                    message = {"role": "assistant", "content": content}
                    messages.append(message)
                else:
                    message["content"] = content
            else:
                messages.append({"role": role, "content": content})
        elif kind == "function_call":
            call_id = item.get("call_id")
            name = item.get("name")
            if not isinstance(call_id, str) or not call_id:
                raise RequestFieldError(f"{where}.call_id must be a non-empty string", param=f"{where}.call_id")
            if not isinstance(name, str) or not name:
                raise RequestFieldError(f"{where}.name must be a non-empty string", param=f"{where}.name")
            args = item.get("arguments", "{}")
            if not isinstance(args, str):
                args = orjson.dumps(args).decode()
            message = assistant()
            calls = message.setdefault("tool_calls", [])
            calls.append({"id": call_id, "type": "function", "function": {"name": name, "arguments": args}})
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or not call_id:
                raise RequestFieldError(f"{where}.call_id must be a non-empty string", param=f"{where}.call_id")
            output = item.get("output")
            if output is None:
                raise RequestFieldError(f"{where}.output is required", param=f"{where}.output")
            if not isinstance(output, str):
                if isinstance(output, list):
                    output = _text_parts(output, where, assistant=False)
                else:
                    output = orjson.dumps(output).decode()
            messages.append({"role": "tool", "tool_call_id": call_id, "content": output})
        elif kind == "reasoning":
            encrypted = item.get("encrypted_content")
            if isinstance(encrypted, str) and encrypted:
                texts = [p["text"] for p in as_sequence(item.get("summary")) if isinstance(p, dict)]
                texts = texts or [p["text"] for p in as_sequence(item.get("content")) if isinstance(p, dict)]
                text = "".join(t for t in texts if isinstance(t, str))
                blocks.append({"type": "thinking", "thinking": text, "signature": encrypted})
        else:
            raise RequestFieldError(f"{where}.type {kind!r} is not a supported input item", param=f"{where}.type")
    return messages


def _resolve(item: Any, where: str, store: ResponseHistory | None) -> Any:
    """An ``item_reference`` replaced by the stored item it names (other items as they are)."""
    if not isinstance(item, dict) or item.get("type") != "item_reference":
        return item
    ref = item.get("id")
    found = store.item(ref) if store is not None and isinstance(ref, str) else None
    if found is None:
        why = (
            "was not found"
            if store is not None
            else "needs stored responses, which this server does not keep: send the item itself "
            "(the AI SDK: providerOptions.openai.store = false) or configure a response store"
        )
        raise RequestFieldError(f"{where}: item_reference {ref!r} {why}", param=f"{where}.id")
    return dict(found)


def _tool(tool: Any, i: int) -> dict[str, Any]:
    where = f"tools[{i}]"
    if not isinstance(tool, dict):
        raise RequestFieldError(f"{where} must be an object, got {json_type(tool)}", param=where)
    kind = tool.get("type")
    if kind != "function":
        raise RequestFieldError(
            f"{where}.type {kind!r} is not supported: this server runs function tools only", param=f"{where}.type"
        )
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise RequestFieldError(f"{where}.name must be a non-empty string", param=f"{where}.name")
    fn: dict[str, Any] = {"name": name}
    if tool.get("description"):
        fn["description"] = tool["description"]
    parameters = tool.get("parameters")
    if parameters is not None:
        if not isinstance(parameters, dict):
            raise RequestFieldError(f"{where}.parameters must be an object", param=f"{where}.parameters")
        fn["parameters"] = parameters
    if tool.get("strict") is not None:
        fn["strict"] = tool["strict"]
    return {"type": "function", "function": fn}


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise RequestFieldError(
                f"tool_choice must be 'auto', 'none', 'required' or a function, got {choice!r}", param="tool_choice"
            )
        return choice
    if choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise RequestFieldError(
        f"tool_choice of type {choice.get('type')!r} is not supported: "
        "use a string or {'type': 'function', 'name': ...}",
        param="tool_choice",
    )


def _response_format(text: Mapping[str, Any]) -> dict[str, Any] | None:
    fmt = text.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise RequestFieldError(f"text.format must be an object, got {json_type(fmt)}", param="text.format")
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if fmt.get(k) is not None}
        return {"type": "json_schema", "json_schema": schema}
    raise RequestFieldError(f"text.format.type {kind!r} is not supported", param="text.format.type")


# --------------------------------------------------------------------------- events

_MESSAGE, _REASONING, _FUNCTION = 0, 1, 2

_H_TEXT_DELTA: Final = b"event: response.output_text.delta\ndata: "
_H_ARGS_DELTA: Final = b"event: response.function_call_arguments.delta\ndata: "
_H_REASONING_DELTA: Final = b"event: response.reasoning_summary_text.delta\ndata: "
_END: Final = b"\n\n"

_INCOMPLETE: Final = {"length": "max_output_tokens", "content_filter": "content_filter"}


class _Item:
    """One output item being built: a message, a reasoning run or a function call."""

    __slots__ = ("args", "call_id", "done", "id", "index", "kind", "name", "part", "parts", "signature", "texts")

    def __init__(self, kind: int, item_id: str, index: int) -> None:
        self.kind = kind
        self.id = item_id
        self.index = index
        self.done = False
        #: message: content parts as [type, list of text pieces]; the open one is ``part``
        self.parts: list[tuple[str, list[str]]] = []
        self.part: tuple[str, list[str]] | None = None
        #: reasoning: the summary text pieces
        self.texts: list[str] = []
        self.signature: str | None = None
        self.call_id = ""
        self.name = ""
        self.args: list[str] = []

    def render(self, status: str) -> dict[str, Any]:
        """The item as the API shows it."""
        if self.kind == _MESSAGE:
            return {
                "id": self.id,
                "type": "message",
                "status": status,
                "role": "assistant",
                "content": [_part(kind, "".join(texts)) for kind, texts in self.parts],
            }
        if self.kind == _REASONING:
            item: dict[str, Any] = {
                "id": self.id,
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": "".join(self.texts)}] if self.texts else [],
            }
            if self.signature:
                item["encrypted_content"] = self.signature
            return item
        return {
            "id": self.id,
            "type": "function_call",
            "status": status,
            "call_id": self.call_id,
            "name": self.name,
            "arguments": "".join(self.args),
        }


def _part(kind: str, text: str) -> dict[str, Any]:
    if kind == "refusal":
        return {"type": "refusal", "refusal": text}
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _usage(usage: Usage) -> dict[str, Any]:
    ptd = usage.prompt_tokens_details
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": (ptd.cached_tokens or 0) if ptd else 0,
            "cache_write_tokens": (ptd.cache_creation_tokens or 0) if ptd else 0,
        },
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens or usage.prompt_tokens + usage.completion_tokens,
    }


def _error_code(status: int) -> str:
    if status == 429:
        return "rate_limit_exceeded"
    if 400 <= status < 500:
        return "invalid_prompt"
    return "server_error"


class ResponsesEncoder:
    """Encodes one stream of chunks as Responses API streaming events.

    Args:
        model: The model name the response reports (the name the client asked for);
            ``None`` takes the first chunk's.
        response_id: The response id (default: a fresh ``resp_…``).
        options: Request fields the response object echoes (``TranslatedRequest.options``:
            ``instructions``, ``tools``, ``temperature``...).
        secrets: Strings scrubbed from error messages.
        emit: ``False`` only folds chunks (for :meth:`response`), writing no events.
        sequence_start: The ``sequence_number`` of the first event written. Above 0, the
            stream is taken as already started elsewhere (``response.created`` was sent):
            what a resumed stream's reader uses to end a stream whose earlier events it
            relayed from a log, numbering on from the last one.
    """

    __slots__ = (
        "_calls",
        "_emit",
        "_finish",
        "_items",
        "_open",
        "_options",
        "_out",
        "_secrets",
        "_seq",
        "_started",
        "_usage",
        "created_at",
        "finished",
        "id",
        "model",
    )

    def __init__(
        self,
        *,
        model: str | None = None,
        response_id: str | None = None,
        options: Mapping[str, Any] | None = None,
        secrets: Iterable[str] = (),
        emit: bool = True,
        sequence_start: int = 0,
    ) -> None:
        if sequence_start < 0:
            raise ValueError(f"sequence_start must be at least 0, got {sequence_start}")
        self.id = response_id or new_id("resp_")
        self.model = model or ""
        self.created_at = now()
        self._options = options or {}
        self._secrets = tuple(secrets)
        self._emit = emit
        self._seq = sequence_start
        self._out: list[bytes] = []
        self._items: list[_Item] = []
        self._open: list[_Item] = []
        self._calls: dict[int, _Item] = {}
        self._usage = UsageAccumulator()
        self._finish: str | None = None
        self._started = sequence_start > 0
        #: Whether :meth:`close` or :meth:`fail` has run.
        self.finished = False

    # -- framing

    def _event(self, kind: str, payload: dict[str, Any]) -> None:
        if not self._emit:
            return
        payload["sequence_number"] = self._seq
        self._seq += 1
        self._out.append(encode_json(payload, event=kind))

    def _flush(self) -> bytes:
        out = self._out
        if not out:
            return b""
        self._out = []
        return out[0] if len(out) == 1 else b"".join(out)

    # -- the response object

    def response(self, status: str | None = None) -> dict[str, Any]:
        """The response object as it stands (``completed``/``incomplete`` once the stream ended)."""
        if status is None:
            status = self._final_status()
        reasoning = self._options.get("reasoning") or {}
        item_status = status if status in ("completed", "in_progress") else "incomplete"
        out: dict[str, Any] = {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": False,
            "error": None,
            "incomplete_details": None,
            "instructions": self._options.get("instructions"),
            "max_output_tokens": self._options.get("max_output_tokens"),
            "metadata": self._options.get("metadata") or {},
            "model": self.model,
            "output": [item.render("completed" if item.done else item_status) for item in self._items],
            "parallel_tool_calls": self._options.get("parallel_tool_calls", True),
            "previous_response_id": self._options.get("previous_response_id"),
            "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
            "service_tier": "default",
            "store": bool(self._options.get("store", False)),
            "temperature": self._options.get("temperature"),
            "text": self._options.get("text") or {"format": {"type": "text"}},
            "tool_choice": self._options.get("tool_choice") or "auto",
            "tools": list(self._options.get("tools") or ()),
            "top_p": self._options.get("top_p"),
            "truncation": "disabled",
            "usage": None,
            "user": self._options.get("user"),
        }
        if status in ("completed", "incomplete"):
            out["usage"] = _usage(self._usage_result())
        if status == "incomplete":
            out["incomplete_details"] = {"reason": _INCOMPLETE.get(self._finish or "", "max_output_tokens")}
        return out

    def _final_status(self) -> str:
        if not self.finished:
            return "in_progress"
        return "incomplete" if self._finish in _INCOMPLETE else "completed"

    def _usage_result(self) -> Usage:
        text = []
        if not self._usage.reported:
            for item in self._items:
                text.extend(item.texts)
                text.extend(item.args)
                for _, pieces in item.parts:
                    text.extend(pieces)
        return self._usage.result(completion_text="".join(text))

    def _start(self, chunk: ChatCompletionChunk | None) -> None:
        self._started = True
        if not self.model and chunk is not None:
            self.model = chunk.model
        self._event("response.created", {"type": "response.created", "response": self.response("in_progress")})
        self._event("response.in_progress", {"type": "response.in_progress", "response": self.response("in_progress")})

    # -- items

    def _add(self, kind: int, prefix: str) -> _Item:
        if kind != _FUNCTION or any(item.kind != _FUNCTION for item in self._open):
            self._close_open()
        item = _Item(kind, new_id(prefix), len(self._items))
        self._items.append(item)
        self._open.append(item)
        return item

    def _close_open(self) -> None:
        for item in self._open:
            self._close(item)
        self._open = []

    def _open_message(self, part_kind: str) -> _Item:
        item = self._open[-1] if self._open else None
        if item is None or item.kind != _MESSAGE:
            item = self._add(_MESSAGE, "msg_")
            self._event(
                "response.output_item.added",
                {"type": "response.output_item.added", "output_index": item.index, "item": item.render("in_progress")},
            )
        part = item.part
        if part is None or part[0] != part_kind:
            if part is not None:
                self._close_part(item)
            part = item.part = (part_kind, [])
            item.parts.append(part)
            self._event(
                "response.content_part.added",
                {
                    "type": "response.content_part.added",
                    "item_id": item.id,
                    "output_index": item.index,
                    "content_index": len(item.parts) - 1,
                    "part": _part(part_kind, ""),
                },
            )
        return item

    def _close_part(self, item: _Item) -> None:
        part = item.part
        if part is None:
            return
        item.part = None
        index = len(item.parts) - 1
        text = "".join(part[1])
        if part[0] == "refusal":
            self._event(
                "response.refusal.done",
                {
                    "type": "response.refusal.done",
                    "item_id": item.id,
                    "output_index": item.index,
                    "content_index": index,
                    "refusal": text,
                },
            )
        else:
            self._event(
                "response.output_text.done",
                {
                    "type": "response.output_text.done",
                    "item_id": item.id,
                    "output_index": item.index,
                    "content_index": index,
                    "text": text,
                    "logprobs": [],
                },
            )
        self._event(
            "response.content_part.done",
            {
                "type": "response.content_part.done",
                "item_id": item.id,
                "output_index": item.index,
                "content_index": index,
                "part": _part(part[0], text),
            },
        )

    def _close(self, item: _Item) -> None:
        if item.done:
            return
        if item.kind == _MESSAGE:
            self._close_part(item)
        elif item.kind == _REASONING:
            text = "".join(item.texts)
            self._event(
                "response.reasoning_summary_text.done",
                {
                    "type": "response.reasoning_summary_text.done",
                    "item_id": item.id,
                    "output_index": item.index,
                    "summary_index": 0,
                    "text": text,
                },
            )
            self._event(
                "response.reasoning_summary_part.done",
                {
                    "type": "response.reasoning_summary_part.done",
                    "item_id": item.id,
                    "output_index": item.index,
                    "summary_index": 0,
                    "part": {"type": "summary_text", "text": text},
                },
            )
        else:
            if not item.args:
                self._args(item, "{}")
            self._event(
                "response.function_call_arguments.done",
                {
                    "type": "response.function_call_arguments.done",
                    "item_id": item.id,
                    "output_index": item.index,
                    "name": item.name,
                    "arguments": "".join(item.args),
                },
            )
        item.done = True
        self._event(
            "response.output_item.done",
            {"type": "response.output_item.done", "output_index": item.index, "item": item.render("completed")},
        )

    def _args(self, item: _Item, piece: str) -> None:
        item.args.append(piece)
        if self._emit:
            payload = {
                "type": "response.function_call_arguments.delta",
                "item_id": item.id,
                "output_index": item.index,
                "delta": piece,
                "sequence_number": self._seq,
            }
            self._seq += 1
            self._out.append(_H_ARGS_DELTA + orjson.dumps(payload) + _END)

    # -- the encoder interface

    def encode(self, chunk: ChatCompletionChunk) -> bytes:
        """The events one chunk adds (``response.created`` comes with the first)."""
        if not self._started:
            self._start(chunk)
        if chunk.usage is not None:
            self._usage.add(chunk.usage)
        emit = self._emit
        for sc in chunk.choices:
            if sc.index:
                continue
            d = sc.delta
            text = d.reasoning_content
            if text:
                item = self._open[-1] if self._open else None
                if item is None or item.kind != _REASONING or item.signature:
                    item = self._reasoning_item()
                item.texts.append(text)
                if emit:
                    payload = {
                        "type": "response.reasoning_summary_text.delta",
                        "item_id": item.id,
                        "output_index": item.index,
                        "summary_index": 0,
                        "delta": text,
                        "sequence_number": self._seq,
                    }
                    self._seq += 1
                    self._out.append(_H_REASONING_DELTA + orjson.dumps(payload) + _END)
            if d.extra:
                self._thinking(d.extra)
            text = d.content
            if text:
                item = self._open[-1] if self._open else None
                part = item.part if item is not None else None
                if part is None or part[0] != "output_text" or item is None:
                    item = self._open_message("output_text")
                    part = item.part
                    assert part is not None
                part[1].append(text)
                if emit:
                    payload = {
                        "type": "response.output_text.delta",
                        "item_id": item.id,
                        "output_index": item.index,
                        "content_index": len(item.parts) - 1,
                        "delta": text,
                        "logprobs": [],
                        "sequence_number": self._seq,
                    }
                    self._seq += 1
                    self._out.append(_H_TEXT_DELTA + orjson.dumps(payload) + _END)
            text = d.refusal
            if text:
                item = self._open_message("refusal")
                assert item.part is not None
                item.part[1].append(text)
                self._event(
                    "response.refusal.delta",
                    {
                        "type": "response.refusal.delta",
                        "item_id": item.id,
                        "output_index": item.index,
                        "content_index": len(item.parts) - 1,
                        "delta": text,
                    },
                )
            if d.tool_calls:
                for pos, tcd in enumerate(d.tool_calls):
                    key = pos if tcd.index is None else tcd.index
                    item = self._calls.get(key)
                    if item is None or (tcd.id and item.call_id and tcd.id != item.call_id) or item.done:
                        item = self._add(_FUNCTION, "fc_")
                        self._calls[key] = item
                        item.call_id = tcd.id or new_id("call_")
                        item.name = (tcd.function.name if tcd.function else None) or ""
                        self._event(
                            "response.output_item.added",
                            {
                                "type": "response.output_item.added",
                                "output_index": item.index,
                                "item": item.render("in_progress"),
                            },
                        )
                    fn = tcd.function
                    if fn is not None:
                        if fn.name and not item.name:
                            item.name = fn.name
                        args = fn.arguments
                        if args:
                            self._args(item, args if isinstance(args, str) else orjson.dumps(args).decode())
            if sc.finish_reason is not None:
                self._finish = sc.finish_reason
        return self._flush()

    def _reasoning_item(self) -> _Item:
        item = self._add(_REASONING, "rs_")
        self._event(
            "response.output_item.added",
            {"type": "response.output_item.added", "output_index": item.index, "item": item.render("in_progress")},
        )
        self._event(
            "response.reasoning_summary_part.added",
            {
                "type": "response.reasoning_summary_part.added",
                "item_id": item.id,
                "output_index": item.index,
                "summary_index": 0,
                "part": {"type": "summary_text", "text": ""},
            },
        )
        return item

    def _thinking(self, extra: Mapping[str, Any]) -> None:
        """A thinking block's signature (as the Anthropic provider emits it) goes on the reasoning item."""
        blocks = extra.get("thinking_blocks")
        if not isinstance(blocks, list):
            return
        for block in blocks:
            if isinstance(block, Mapping) and block.get("signature"):
                for item in reversed(self._items):
                    if item.kind == _REASONING:
                        item.signature = str(block["signature"])
                        break

    def close(self, usage: Usage | None = None) -> bytes:
        """Close every open item, then ``response.completed`` (or ``response.incomplete``).

        Args:
            usage: The usage to report when no chunk carried any (an estimate, say).
        """
        if self.finished:
            return b""
        if usage is not None and not self._usage.reported:
            self._usage.add(usage)
        if not self._started:
            self._start(None)
        self._close_open()
        self.finished = True
        status = self._final_status()
        kind = "response.completed" if status == "completed" else "response.incomplete"
        self._event(kind, {"type": kind, "response": self.response(status)})
        return self._flush()

    def fail(self, error: BaseException) -> bytes:
        """An ``error`` event, then ``response.failed`` carrying the error (no completion)."""
        body = error_body(error, self._secrets)["error"]
        return self.fail_with(error_status(error), body["message"], code=body.get("code"), param=body.get("param"))

    def fail_with(self, status: int, message: str, *, code: str | None = None, param: str | None = None) -> bytes:
        """:meth:`fail` for an error already described (its HTTP status and a safe message)."""
        if self.finished:
            return b""
        if not self._started:
            self._start(None)
        self.finished = True
        kind = _error_code(status)
        self._event("error", {"type": "error", "code": code or kind, "message": message, "param": param})
        response = self.response("failed")
        response["error"] = {"code": kind, "message": message}
        self._event("response.failed", {"type": "response.failed", "response": response})
        return self._flush()

    def keepalive(self) -> bytes:
        """An SSE comment."""
        return KEEPALIVE


def response_object(
    source: ModelResponse | Iterable[ChatCompletionChunk],
    *,
    model: str | None = None,
    response_id: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The non-streaming Responses API object for a finished answer.

    Args:
        source: The chunks of the stream (which keeps thinking signatures), or the
            ``ModelResponse`` rebuilt from them.
        model: The model name to report (default: the response's).
        response_id: The response id (default: a fresh ``resp_…``).
        options: Echoed request fields (``TranslatedRequest.options``).

    Returns:
        The ``response`` object (``status`` ``completed``, or ``incomplete`` at a token limit).
    """
    encoder = ResponsesEncoder(model=model, response_id=response_id, options=options, emit=False)
    chunks = chunks_of_response(source) if isinstance(source, ModelResponse) else source
    for chunk in chunks:
        encoder.encode(chunk)
    encoder.close()
    return encoder.response()
