"""What every dialect shares: the translated call, request-field errors, validation, ids.

Private: the public names are re-exported by :mod:`rxllm.dialects`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol

import attrs

from rxllm.errors import BadRequestError
from rxllm.types import (
    ChatCompletionChunk,
    Delta,
    FunctionDelta,
    ModelResponse,
    StreamChoice,
    ToolCallDelta,
    Usage,
)

__all__ = [
    "SSE_HEADERS",
    "Encoder",
    "RequestFieldError",
    "TranslatedRequest",
    "check_types",
    "chunks_of_response",
    "json_type",
    "new_id",
    "now",
]

#: Response headers for a server-sent-event stream that proxies must not buffer.
SSE_HEADERS: Final[Mapping[str, str]] = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


class RequestFieldError(BadRequestError):
    """A request a dialect's translator refuses, naming the field at fault (HTTP 400).

    A :class:`~rxllm.errors.BadRequestError`, so it is caught as one; ``param`` and ``code``
    fill the matching fields of OpenAI-style error bodies.

    Args:
        message: What is wrong, naming the field.
        param: The field at fault, as a path (``"input[2].call_id"``).
        code: A machine-readable code, if one applies.
        status_code: The HTTP status (default 400).
    """

    def __init__(
        self, message: str, *, param: str | None = None, code: str | None = None, status_code: int | None = None
    ) -> None:
        super().__init__(message, status_code=status_code)
        self.param = param
        self.code = code

    def __str__(self) -> str:
        return self.message

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "param": self.param, "code": self.code}


@attrs.frozen
class TranslatedRequest:
    """A dialect request translated into an rxllm call: ``rxllm.stream(model, messages, **params)``.

    Attributes:
        model: The model name the client asked for (resolved by the caller or the proxy).
        messages: OpenAI chat-format messages.
        params: OpenAI chat-format parameters (``tools``, ``max_tokens``, ``stream_options``...).
        stream: Whether the client asked for a stream.
        options: Dialect-specific settings the encoder needs (echoed request fields).
    """

    model: str
    messages: tuple[Mapping[str, Any], ...]
    params: Mapping[str, Any] = attrs.field(factory=dict)
    stream: bool = False
    options: Mapping[str, Any] = attrs.field(factory=dict)


class Encoder(Protocol):
    """What every dialect's event encoder does: chunks in, complete SSE frames out.

    One encoder serves one stream. ``encode`` may return ``b""`` (nothing to say yet);
    after ``close`` or ``fail`` the encoder is finished.
    """

    def encode(self, chunk: ChatCompletionChunk) -> bytes:
        """The frames one chunk adds."""
        ...

    def close(self, usage: Usage | None = None) -> bytes:
        """The frames that end a successful stream (``usage``: reported when chunks carried none)."""
        ...

    def fail(self, error: BaseException) -> bytes:
        """The frames that end a failed stream (never a success terminator)."""
        ...

    def keepalive(self) -> bytes:
        """A frame that keeps an idle connection open (a comment or a ping event)."""
        ...


def json_type(value: Any) -> str:
    """How a JSON value's type reads in an error message (``"an array"``, ``"null"``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


_KINDS: Final[Mapping[str, tuple[tuple[type, ...], str]]] = {
    "number": ((int, float), "a number"),
    "integer": ((int,), "an integer"),
    "string": ((str,), "a string"),
    "boolean": ((bool,), "a boolean"),
    "array": ((list,), "an array"),
    "object": ((dict,), "an object"),
    "string|array": ((str, list), "a string or an array"),
    "string|object": ((str, dict), "a string or an object"),
}


def check_types(body: Mapping[str, Any], spec: Mapping[str, str], prefix: str = "") -> None:
    """Check the JSON types of optional fields (``null`` means absent).

    Args:
        body: The request object.
        spec: Field name to kind (``"number"``, ``"integer"``, ``"string|array"``...).
        prefix: Path prefix for nested objects (``"reasoning."``).

    Raises:
        RequestFieldError: Naming the first field of the wrong type.
    """
    for name, kind in spec.items():
        value = body.get(name)
        if value is None:
            continue
        types, wanted = _KINDS[kind]
        is_bool = isinstance(value, bool)
        if (is_bool and kind != "boolean") or not isinstance(value, types):
            raise RequestFieldError(f"{prefix}{name} must be {wanted}, got {json_type(value)}", param=prefix + name)


def require_object(value: Any, what: str) -> dict[str, Any]:
    """``value`` as a JSON object, or a :class:`RequestFieldError` naming ``what``."""
    if not isinstance(value, dict):
        raise RequestFieldError(f"{what} must be an object, got {json_type(value)}", param=what)
    return value


def require_model(body: Mapping[str, Any]) -> str:
    """The ``model`` field: present and a non-empty string."""
    model = body.get("model")
    if model is None:
        raise RequestFieldError("you must provide a model parameter", param="model")
    if not isinstance(model, str) or not model:
        raise RequestFieldError(f"model must be a non-empty string, got {json_type(model)}", param="model")
    return model


def require_stream(body: Mapping[str, Any]) -> bool:
    """The ``stream`` field: absent, null or a boolean."""
    stream = body.get("stream")
    if stream is None:
        return False
    if not isinstance(stream, bool):
        raise RequestFieldError(f"stream must be a boolean, got {json_type(stream)}", param="stream")
    return stream


def new_id(prefix: str) -> str:
    """A fresh id in the dialect's style (``"resp_…"``, ``"msg_…"``)."""
    return prefix + uuid.uuid4().hex[:24]


def now() -> int:
    """The current Unix time in whole seconds."""
    return int(time.time())


def chunks_of_response(response: ModelResponse) -> list[ChatCompletionChunk]:
    """A complete ``chat.completion`` as chunks, so encoders can render non-streaming answers.

    Per choice: one chunk per reasoning block when the message has ``thinking_blocks`` (its
    text and signature, or a redacted block; otherwise one chunk with all the reasoning),
    then one chunk with the content, refusal and whole tool calls and the
    ``finish_reason``; the last chunk carries the response's usage.
    """
    chunks: list[ChatCompletionChunk] = []

    def add(index: int, delta: Delta, finish: str | None = None) -> None:
        chunks.append(
            ChatCompletionChunk(
                id=response.id,
                choices=(StreamChoice(index, delta, finish),),
                created=response.created,
                model=response.model,
            )
        )

    for choice in response.choices:
        message = choice.message
        blocks = getattr(message, "thinking_blocks", None) or message.extra.get("thinking_blocks")
        if isinstance(blocks, Sequence) and blocks and not isinstance(blocks, str):
            for block in blocks:
                if not isinstance(block, Mapping):
                    continue
                if block.get("type") == "redacted_thinking":
                    entry = {"type": "redacted_thinking", "data": block.get("data", "")}
                    add(choice.index, Delta(extra={"thinking_blocks": [entry]}))
                    continue
                text = block.get("thinking")
                add(choice.index, Delta(reasoning_content=text if isinstance(text, str) and text else None))
                if block.get("signature"):
                    entry = {"type": "thinking", "signature": block["signature"]}
                    add(choice.index, Delta(extra={"thinking_blocks": [entry]}))
        elif message.reasoning_content:
            add(choice.index, Delta(reasoning_content=message.reasoning_content))
        calls = None
        if message.tool_calls:
            calls = tuple(
                ToolCallDelta(
                    i, call.id, call.type, FunctionDelta(call.function.name, call.function.arguments), call.extra
                )
                for i, call in enumerate(message.tool_calls)
            )
        delta = Delta(role=message.role, content=message.content, tool_calls=calls, refusal=message.refusal)
        add(choice.index, delta, choice.finish_reason)
    chunks.append(
        ChatCompletionChunk(id=response.id, created=response.created, model=response.model, usage=response.usage)
    )
    return chunks


def as_sequence(value: Any) -> Sequence[Any]:
    """A list value, or an empty tuple for null."""
    return value if isinstance(value, list) else ()
