"""The data model: OpenAI ``chat.completion.chunk`` and ``chat.completion`` as attrs value objects.

Every class is frozen and slotted, reads like the OpenAI and LiteLLM objects
(``chunk.choices[0].delta.content``), and round-trips the wire JSON through
``from_dict`` / ``to_dict``: keys rxllm does not model are kept in ``extra`` and written back.

``from_dict`` is on the per-chunk hot path, so it is written by hand: one ``dict.get`` per
field, no validation beyond what building the object needs, nested objects only when present.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, TypeVar

import attrs
import orjson

from rxllm.errors import InvalidToolArgumentsError

__all__ = [
    "ChatCompletionChunk",
    "Choice",
    "ChoiceLogprobs",
    "CompletionTokensDetails",
    "Delta",
    "Function",
    "FunctionDelta",
    "Message",
    "ModelResponse",
    "PromptTokensDetails",
    "StreamChoice",
    "TokenLogprob",
    "ToolCall",
    "ToolCallDelta",
    "TopLogprob",
    "Usage",
    "carries_data",
]

class _Empty(Mapping[str, Any]):
    """The immutable, picklable empty mapping shared by every object with no unknown keys."""

    __slots__ = ()

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "{}"

    def __reduce__(self) -> str:
        return "EMPTY"


#: The shared immutable default for ``extra``: most objects carry no unknown keys.
EMPTY: Mapping[str, Any] = _Empty()

_T = TypeVar("_T", bound="_Wire")


def _extra(d: Mapping[str, Any], known: frozenset[str]) -> Mapping[str, Any]:
    """The keys of ``d`` that the model does not know (cheap when there are none)."""
    if d.keys() <= known:
        return EMPTY
    return {k: v for k, v in d.items() if k not in known}


def _slotted_base(cls: type[_T]) -> type[_T]:
    """Move a hot class's fields into a plain slotted base class (applied under attrs.frozen).

    attrs' frozen ``__init__`` stores each field through ``object.__setattr__`` (about 45 ns a
    field, three times a plain slot store). With the slots on a shared base, :func:`_builder`
    can make a mutable sibling class with the same layout, fill it with plain stores and swap
    ``__class__`` to the frozen class: the same frozen object at a third of the cost.
    """
    names = [n for n, a in cls.__annotations__.items() if not str(a).startswith("ClassVar")]
    base = type(f"_{cls.__name__}Slots", cls.__bases__, {"__slots__": tuple(names)})
    namespace = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
    rebased = type(cls.__name__, (base,), namespace)
    rebased.__qualname__ = cls.__qualname__
    return rebased


def _builder(cls: type[_T]) -> Callable[..., _T]:
    """A fast positional constructor (every field, in order) for ``from_dict``; see above."""
    names = [a.name for a in attrs.fields(cls)]  # type: ignore[arg-type]
    body = "".join(f"    self.{n} = {n}\n" for n in names)
    namespace: dict[str, Any] = {}
    exec(f"def __init__(self, {', '.join(names)}):\n{body}", namespace)  # noqa: S102
    sibling = type(f"_{cls.__name__}Builder", (cls.__mro__[1],), {"__slots__": (), "__init__": namespace["__init__"]})

    def build(*args: Any) -> _T:
        obj = sibling(*args)
        obj.__class__ = cls
        return obj  # type: ignore[no-any-return]

    return build


class _Wire:
    """Shared conveniences: dict-style access and pydantic-style aliases for LiteLLM users."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def to_json(self) -> bytes:
        """The wire JSON as UTF-8 bytes (compact, as providers send it)."""
        return orjson.dumps(self.to_dict())

    def model_dump(self) -> dict[str, Any]:
        """Alias of :meth:`to_dict`, for code written against pydantic/LiteLLM objects."""
        return self.to_dict()

    def json(self) -> str:
        """The wire JSON as ``str`` (LiteLLM's ``.json()``)."""
        return self.to_json().decode()

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            extra: Mapping[str, Any] = getattr(self, "extra", EMPTY)
            if key in extra:
                return extra[key]
            raise KeyError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        """Dict-style lookup of a field (or an unknown wire key kept in ``extra``)."""
        try:
            return self[key]
        except KeyError:
            return default


def _put_extra(out: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    if extra:
        out.update(extra)
    return out


# --------------------------------------------------------------------------- streaming deltas


@attrs.frozen(weakref_slot=False)
@_slotted_base
class FunctionDelta(_Wire):
    """A fragment of a function call: ``name`` usually once, ``arguments`` in pieces."""

    name: str | None = None
    arguments: str | None = None
    extra: Mapping[str, Any] = attrs.field(default=EMPTY, hash=False)

    _known: ClassVar[frozenset[str]] = frozenset({"name", "arguments"})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FunctionDelta:
        """Build from the wire dict; object-valued ``arguments`` become a JSON string."""
        args = d.get("arguments")
        if args is not None and not isinstance(args, str):
            args = orjson.dumps(args).decode()
        return _new_FunctionDelta(d.get("name"), args, _extra(d, cls._known))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.name is not None:
            out["name"] = self.name
        if self.arguments is not None:
            out["arguments"] = self.arguments
        return _put_extra(out, self.extra)


_new_FunctionDelta = _builder(FunctionDelta)

@attrs.frozen(weakref_slot=False)
@_slotted_base
class ToolCallDelta(_Wire):
    """A fragment of one tool call inside ``delta.tool_calls``; ``index`` says which call."""

    index: int | None = None
    id: str | None = None
    type: str | None = None
    function: FunctionDelta | None = None
    extra: Mapping[str, Any] = attrs.field(default=EMPTY, hash=False)

    _known: ClassVar[frozenset[str]] = frozenset({"index", "id", "type", "function"})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ToolCallDelta:
        """Build from the wire dict."""
        fn = d.get("function")
        return _new_ToolCallDelta(
            d.get("index"),
            d.get("id"),
            d.get("type"),
            FunctionDelta.from_dict(fn) if fn is not None else None,
            _extra(d, cls._known),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.index is not None:
            out["index"] = self.index
        if self.id is not None:
            out["id"] = self.id
        if self.type is not None:
            out["type"] = self.type
        if self.function is not None:
            out["function"] = self.function.to_dict()
        return _put_extra(out, self.extra)


_new_ToolCallDelta = _builder(ToolCallDelta)

@attrs.frozen
class TopLogprob(_Wire):
    """One alternative token with its log probability."""

    token: str
    logprob: float
    bytes: tuple[int, ...] | None = None
    extra: Mapping[str, Any] = attrs.field(default=EMPTY, hash=False)

    _known: ClassVar[frozenset[str]] = frozenset({"token", "logprob", "bytes"})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TopLogprob:
        """Build from the wire dict."""
        b = d.get("bytes")
        return cls(d["token"], d["logprob"], tuple(b) if b is not None else None, _extra(d, cls._known))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"token": self.token, "logprob": self.logprob}
        out["bytes"] = list(self.bytes) if self.bytes is not None else None
        return _put_extra(out, self.extra)


@attrs.frozen
class TokenLogprob(_Wire):
    """A sampled token, its log probability and the most likely alternatives."""

    token: str
    logprob: float
    bytes: tuple[int, ...] | None = None
    top_logprobs: tuple[TopLogprob, ...] = ()
    extra: Mapping[str, Any] = attrs.field(default=EMPTY, hash=False)

    _known: ClassVar[frozenset[str]] = frozenset({"token", "logprob", "bytes", "top_logprobs"})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TokenLogprob:
        """Build from the wire dict."""
        b = d.get("bytes")
        return cls(
            d["token"],
            d["logprob"],
            tuple(b) if b is not None else None,
            tuple(TopLogprob.from_dict(t) for t in d.get("top_logprobs") or ()),
            _extra(d, cls._known),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"token": self.token, "logprob": self.logprob}
        out["bytes"] = list(self.bytes) if self.bytes is not None else None
        out["top_logprobs"] = [t.to_dict() for t in self.top_logprobs]
        return _put_extra(out, self.extra)


@attrs.frozen
class ChoiceLogprobs(_Wire):
    """Log probabilities of a choice's content tokens and refusal tokens."""

    content: tuple[TokenLogprob, ...] | None = None
    refusal: tuple[TokenLogprob, ...] | None = None
    extra: Mapping[str, Any] = attrs.field(default=EMPTY, hash=False)

    _known: ClassVar[frozenset[str]] = frozenset({"content", "refusal"})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ChoiceLogprobs:
        """Build from the wire dict."""
        c = d.get("content")
        r = d.get("refusal")
        return cls(
            tuple(TokenLogprob.from_dict(t) for t in c) if c is not None else None,
            tuple(TokenLogprob.from_dict(t) for t in r) if r is not None else None,
            _extra(d, cls._known),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "content": [t.to_dict() for t in self.content] if self.content is not None else None,
            "refusal": [t.to_dict() for t in self.refusal] if self.refusal is not None else None,
        }
        return _put_extra(out, self.extra)


@attrs.frozen(weakref_slot=False)
@_slotted_base
class Delta(_Wire):
    """What one chunk adds to one choice: text, reasoning, refusal or tool-call fragments."""

    role: str | None = None
    content: str | None = None
    tool_calls: tuple[ToolCallDelta, ...] | None = None
    function_call: FunctionDelta | None = None
    reasoning_content: str | None = None
    refusal: str | None = None
    annotations: tuple[Any, ...] | None = attrs.field(default=None, hash=False)
    extra: Mapping[str, Any] = attrs.field(default=EMPTY, hash=False)

    _known: ClassVar[frozenset[str]] = frozenset(
        {"role", "content", "tool_calls", "function_call", "reasoning_content", "refusal", "annotations"}
    )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Delta:
        """Build from the wire dict."""
        tcs = d.get("tool_calls")
        fc = d.get("function_call")
        ann = d.get("annotations")
        return _new_Delta(
            d.get("role"),
            d.get("content"),
            tuple([ToolCallDelta.from_dict(t) for t in tcs]) if tcs is not None else None,
            FunctionDelta.from_dict(fc) if fc is not None else None,
            d.get("reasoning_content"),
            d.get("refusal"),
            tuple(ann) if ann is not None else None,
            _extra(d, cls._known),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.role is not None:
            out["role"] = self.role
        if self.content is not None:
            out["content"] = self.content
        if self.tool_calls is not None:
            out["tool_calls"] = [t.to_dict() for t in self.tool_calls]
        if self.function_call is not None:
            out["function_call"] = self.function_call.to_dict()
        if self.reasoning_content is not None:
            out["reasoning_content"] = self.reasoning_content
        if self.refusal is not None:
            out["refusal"] = self.refusal
        if self.annotations is not None:
            out["annotations"] = list(self.annotations)
        return _put_extra(out, self.extra)

    @property
    def thinking_blocks(self) -> Any:
        """LiteLLM's ``delta.thinking_blocks`` (signatures, redacted blocks), kept in ``extra``; or None."""
        return self.extra.get("thinking_blocks")


_EMPTY_DELTA = Delta()


_new_Delta = _builder(Delta)

@attrs.frozen(weakref_slot=False)
@_slotted_base
class StreamChoice(_Wire):
    """One choice inside a chunk. ``index`` says which choice (n > 1 interleaves them)."""

    index: int = 0
    delta: Delta = _EMPTY_DELTA
    finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None
    extra: Mapping[str, Any] = attrs.field(default=EMPTY, hash=False)

    _known: ClassVar[frozenset[str]] = frozenset({"index", "delta", "finish_reason", "logprobs"})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StreamChoice:
        """Build from the wire dict."""
        delta = d.get("delta")
        lp = d.get("logprobs")
        return _new_StreamChoice(
            d.get("index") or 0,
            Delta.from_dict(delta) if delta else _EMPTY_DELTA,
            d.get("finish_reason"),
            ChoiceLogprobs.from_dict(lp) if lp is not None else None,
            _extra(d, cls._known),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "index": self.index,
            "delta": self.delta.to_dict(),
            "finish_reason": self.finish_reason,
        }
        if self.logprobs is not None:
            out["logprobs"] = self.logprobs.to_dict()
        return _put_extra(out, self.extra)


_new_StreamChoice = _builder(StreamChoice)

# --------------------------------------------------------------------------- usage


@attrs.frozen
class PromptTokensDetails(_Wire):
    """Breakdown of prompt tokens: cache reads, cache writes, audio."""

    cached_tokens: int | None = None
    audio_tokens: int | None = None
    cache_creation_tokens: int | None = None
    extra: Mapping[str, Any] = attrs.field(default=EMPTY, hash=False)

    _known: ClassVar[frozenset[str]] = frozenset({"cached_tokens", "audio_tokens", "cache_creation_tokens"})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PromptTokensDetails:
        """Build from the wire dict."""
        return cls(
            d.get("cached_tokens"),
            d.get("audio_tokens"),
            d.get("cache_creation_tokens"),
            _extra(d, cls._known),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in ("cached_tokens", "audio_tokens", "cache_creation_tokens"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return _put_extra(out, self.extra)


@attrs.frozen
class CompletionTokensDetails(_Wire):
    """Breakdown of completion tokens: hidden reasoning, audio, predicted output."""

    reasoning_tokens: int | None = None
    audio_tokens: int | None = None
    accepted_prediction_tokens: int | None = None
    rejected_prediction_tokens: int | None = None
    extra: Mapping[str, Any] = attrs.field(default=EMPTY, hash=False)

    _fields: ClassVar[tuple[str, ...]] = (
        "reasoning_tokens",
        "audio_tokens",
        "accepted_prediction_tokens",
        "rejected_prediction_tokens",
    )
    _known: ClassVar[frozenset[str]] = frozenset(_fields)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CompletionTokensDetails:
        """Build from the wire dict."""
        return cls(
            d.get("reasoning_tokens"),
            d.get("audio_tokens"),
            d.get("accepted_prediction_tokens"),
            d.get("rejected_prediction_tokens"),
            _extra(d, cls._known),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self._fields:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return _put_extra(out, self.extra)


@attrs.frozen(weakref_slot=False)
@_slotted_base
class Usage(_Wire):
    """Token counts. ``estimated`` is True when rxllm counted them because the provider did not."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None
    estimated: bool = False
    extra: Mapping[str, Any] = attrs.field(default=EMPTY, hash=False)

    _known: ClassVar[frozenset[str]] = frozenset(
        {
            "prompt_tokens",
            "completion_tokens",
            "total_tokens",
            "prompt_tokens_details",
            "completion_tokens_details",
            "estimated",
        }
    )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Usage:
        """Build from the wire dict (``null`` counts read as 0)."""
        ptd = d.get("prompt_tokens_details")
        ctd = d.get("completion_tokens_details")
        return _new_Usage(
            d.get("prompt_tokens") or 0,
            d.get("completion_tokens") or 0,
            d.get("total_tokens") or 0,
            PromptTokensDetails.from_dict(ptd) if ptd is not None else None,
            CompletionTokensDetails.from_dict(ctd) if ctd is not None else None,
            bool(d.get("estimated", False)),
            _extra(d, cls._known),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
        if self.prompt_tokens_details is not None:
            out["prompt_tokens_details"] = self.prompt_tokens_details.to_dict()
        if self.completion_tokens_details is not None:
            out["completion_tokens_details"] = self.completion_tokens_details.to_dict()
        if self.estimated:
            out["estimated"] = True
        return _put_extra(out, self.extra)

    @property
    def cached_tokens(self) -> int:
        """Prompt tokens read from the provider's cache (0 when not reported)."""
        d = self.prompt_tokens_details
        return (d.cached_tokens or 0) if d is not None else 0

    @property
    def reasoning_tokens(self) -> int:
        """Completion tokens spent on hidden reasoning (0 when not reported)."""
        d = self.completion_tokens_details
        return (d.reasoning_tokens or 0) if d is not None else 0


_new_Usage = _builder(Usage)

# --------------------------------------------------------------------------- chunks


@attrs.frozen(weakref_slot=False)
@_slotted_base
class ChatCompletionChunk(_Wire):
    """One ``chat.completion.chunk``: what a stream emits.

    Usage-only chunks have ``choices == ()`` and ``usage`` set. Provider-specific top-level
    keys (``x_groq``, ``prompt_filter_results``, ``obfuscation``...) are kept in ``extra``.
    """

    id: str = ""
    choices: tuple[StreamChoice, ...] = ()
    created: int = 0
    model: str = ""
    object: str = "chat.completion.chunk"
    system_fingerprint: str | None = None
    usage: Usage | None = None
    service_tier: str | None = None
    extra: Mapping[str, Any] = attrs.field(default=EMPTY, hash=False)

    _known: ClassVar[frozenset[str]] = frozenset(
        {"id", "choices", "created", "model", "object", "system_fingerprint", "usage", "service_tier"}
    )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ChatCompletionChunk:
        """Build from the decoded wire JSON of one chunk."""
        choices = d.get("choices")
        usage = d.get("usage")
        return _new_ChatCompletionChunk(
            d.get("id") or "",
            tuple([StreamChoice.from_dict(c) for c in choices]) if choices else (),
            d.get("created") or 0,
            d.get("model") or "",
            d.get("object") or "chat.completion.chunk",
            d.get("system_fingerprint"),
            Usage.from_dict(usage) if usage is not None else None,
            d.get("service_tier"),
            _extra(d, cls._known),
        )

    @classmethod
    def from_json(cls, data: bytes | str) -> ChatCompletionChunk:
        """Parse one chunk from its JSON text."""
        return cls.from_dict(orjson.loads(data))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "object": self.object,
            "created": self.created,
            "model": self.model,
            "choices": [c.to_dict() for c in self.choices],
        }
        if self.system_fingerprint is not None:
            out["system_fingerprint"] = self.system_fingerprint
        if self.service_tier is not None:
            out["service_tier"] = self.service_tier
        if self.usage is not None:
            out["usage"] = self.usage.to_dict()
        return _put_extra(out, self.extra)

    def __iter__(self) -> Iterator[StreamChoice]:
        """Iterate the choices (so ``for choice in chunk`` reads naturally)."""
        return iter(self.choices)


_new_ChatCompletionChunk = _builder(ChatCompletionChunk)

# --------------------------------------------------------------------------- final response


@attrs.frozen
class Function(_Wire):
    """A complete function call: its name and its arguments as a JSON string."""

    name: str = ""
    arguments: str = "{}"
    extra: Mapping[str, Any] = attrs.field(default=EMPTY, hash=False)

    _known: ClassVar[frozenset[str]] = frozenset({"name", "arguments"})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Function:
        """Build from the wire dict; object-valued ``arguments`` become a JSON string."""
        args = d.get("arguments")
        if args is None:
            args = "{}"
        elif not isinstance(args, str):
            args = orjson.dumps(args).decode()
        return cls(d.get("name") or "", args, _extra(d, cls._known))

    def to_dict(self) -> dict[str, Any]:
        return _put_extra({"name": self.name, "arguments": self.arguments}, self.extra)

    def parsed_arguments(self) -> Any:
        """The arguments decoded from JSON (an empty string reads as ``{}``).

        Raises:
            InvalidToolArgumentsError: When the arguments are not valid JSON.
        """
        if not self.arguments.strip():
            return {}
        try:
            return orjson.loads(self.arguments)
        except orjson.JSONDecodeError as exc:
            raise InvalidToolArgumentsError(self.name, self.arguments, str(exc)) from None


@attrs.frozen
class ToolCall(_Wire):
    """A complete tool call.

    ``index`` (the tool-call index within its choice) and ``choice_index`` are set on calls
    emitted by ``accumulate_tool_calls``; they are written to the wire only when set.
    """

    id: str = ""
    function: Function = Function()
    type: str = "function"
    index: int | None = None
    choice_index: int | None = None
    extra: Mapping[str, Any] = attrs.field(default=EMPTY, hash=False)

    _known: ClassVar[frozenset[str]] = frozenset({"id", "function", "type", "index", "choice_index"})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ToolCall:
        """Build from the wire dict."""
        fn = d.get("function")
        return cls(
            d.get("id") or "",
            Function.from_dict(fn) if fn is not None else Function(),
            d.get("type") or "function",
            d.get("index"),
            d.get("choice_index"),
            _extra(d, cls._known),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "type": self.type, "function": self.function.to_dict()}
        if self.index is not None:
            out["index"] = self.index
        if self.choice_index is not None:
            out["choice_index"] = self.choice_index
        return _put_extra(out, self.extra)

    def parsed_arguments(self) -> Any:
        """The arguments decoded from JSON; see :meth:`Function.parsed_arguments`."""
        return self.function.parsed_arguments()


@attrs.frozen
class Message(_Wire):
    """The assistant message of a final response.

    ``thinking_blocks`` (LiteLLM's shape) holds the reasoning blocks that must be sent back
    with the message (Anthropic extended thinking): ``{"type": "thinking", "thinking": ...,
    "signature": ...}`` and ``{"type": "redacted_thinking", "data": ...}``, in stream order.
    """

    role: str = "assistant"
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] | None = None
    function_call: Function | None = None
    reasoning_content: str | None = None
    refusal: str | None = None
    annotations: tuple[Any, ...] | None = attrs.field(default=None, hash=False)
    thinking_blocks: tuple[Mapping[str, Any], ...] | None = attrs.field(default=None, hash=False)
    extra: Mapping[str, Any] = attrs.field(default=EMPTY, hash=False)

    _known: ClassVar[frozenset[str]] = frozenset(
        {
            "role",
            "content",
            "tool_calls",
            "function_call",
            "reasoning_content",
            "refusal",
            "annotations",
            "thinking_blocks",
        }
    )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Message:
        """Build from the wire dict."""
        tcs = d.get("tool_calls")
        fc = d.get("function_call")
        ann = d.get("annotations")
        blocks = d.get("thinking_blocks")
        return cls(
            d.get("role") or "assistant",
            d.get("content"),
            tuple(ToolCall.from_dict(t) for t in tcs) if tcs is not None else None,
            Function.from_dict(fc) if fc is not None else None,
            d.get("reasoning_content"),
            d.get("refusal"),
            tuple(ann) if ann is not None else None,
            tuple(dict(b) for b in blocks) if blocks is not None else None,
            _extra(d, cls._known),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls is not None:
            out["tool_calls"] = [t.to_dict() for t in self.tool_calls]
        if self.function_call is not None:
            out["function_call"] = self.function_call.to_dict()
        if self.reasoning_content is not None:
            out["reasoning_content"] = self.reasoning_content
        if self.refusal is not None:
            out["refusal"] = self.refusal
        if self.annotations is not None:
            out["annotations"] = list(self.annotations)
        if self.thinking_blocks is not None:
            out["thinking_blocks"] = [dict(b) for b in self.thinking_blocks]
        return _put_extra(out, self.extra)


@attrs.frozen
class Choice(_Wire):
    """One choice of a final response."""

    index: int = 0
    message: Message = Message()
    finish_reason: str | None = "stop"
    logprobs: ChoiceLogprobs | None = None
    extra: Mapping[str, Any] = attrs.field(default=EMPTY, hash=False)

    _known: ClassVar[frozenset[str]] = frozenset({"index", "message", "finish_reason", "logprobs"})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Choice:
        """Build from the wire dict."""
        msg = d.get("message")
        lp = d.get("logprobs")
        return cls(
            d.get("index") or 0,
            Message.from_dict(msg) if msg is not None else Message(),
            d.get("finish_reason"),
            ChoiceLogprobs.from_dict(lp) if lp is not None else None,
            _extra(d, cls._known),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "index": self.index,
            "message": self.message.to_dict(),
            "finish_reason": self.finish_reason,
            "logprobs": self.logprobs.to_dict() if self.logprobs is not None else None,
        }
        return _put_extra(out, self.extra)


@attrs.frozen
class ModelResponse(_Wire):
    """A complete ``chat.completion``: what ``completion()`` returns and streams rebuild to."""

    id: str = ""
    choices: tuple[Choice, ...] = ()
    created: int = 0
    model: str = ""
    object: str = "chat.completion"
    system_fingerprint: str | None = None
    usage: Usage | None = None
    service_tier: str | None = None
    extra: Mapping[str, Any] = attrs.field(default=EMPTY, hash=False)

    _known: ClassVar[frozenset[str]] = frozenset(
        {"id", "choices", "created", "model", "object", "system_fingerprint", "usage", "service_tier"}
    )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelResponse:
        """Build from the decoded wire JSON of a ``chat.completion``."""
        usage = d.get("usage")
        return cls(
            d.get("id") or "",
            tuple(Choice.from_dict(c) for c in d.get("choices") or ()),
            d.get("created") or 0,
            d.get("model") or "",
            d.get("object") or "chat.completion",
            d.get("system_fingerprint"),
            Usage.from_dict(usage) if usage is not None else None,
            d.get("service_tier"),
            _extra(d, cls._known),
        )

    @classmethod
    def from_json(cls, data: bytes | str) -> ModelResponse:
        """Parse a response from its JSON text."""
        return cls.from_dict(orjson.loads(data))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "object": self.object,
            "created": self.created,
            "model": self.model,
            "choices": [c.to_dict() for c in self.choices],
        }
        if self.system_fingerprint is not None:
            out["system_fingerprint"] = self.system_fingerprint
        if self.service_tier is not None:
            out["service_tier"] = self.service_tier
        if self.usage is not None:
            out["usage"] = self.usage.to_dict()
        return _put_extra(out, self.extra)


def carries_data(chunk: ChatCompletionChunk) -> bool:
    """Whether a chunk carries content, reasoning, refusal or tool-call data in any choice.

    Role-only deltas, finish-reason-only chunks, usage chunks and keep-alives do not (the
    timeout operators watch for data, not for keep-alives).
    """
    for choice in chunk.choices:
        d = choice.delta
        if d.content or d.reasoning_content or d.refusal or d.tool_calls or d.function_call is not None:
            return True
    return False
