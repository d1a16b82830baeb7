"""The data model: OpenAI ``chat.completion.chunk`` and ``chat.completion`` as attrs value objects.

Every class is frozen and slotted, reads like the OpenAI and LiteLLM objects
(``chunk.choices[0].delta.content``), and round-trips the wire JSON through
``from_dict`` / ``to_dict``: keys rxllm does not model are kept in ``extra`` and written back.

Each class declares its fields once: the class body is its field table (``wire(...)`` says
how a field travels). :func:`rxllm._wire.wire_class` generates ``from_dict``, ``to_dict`` and
the known keys from it and verifies them when this module is imported; the per-chunk classes
are built through :func:`rxllm._fastnew.blank_sibling` (slot stores, no attrs ``__init__``). A new
delta field is one line: ``audio: str | None = wire(None)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, TypeVar

import attrs
import orjson

from rxllm._fastnew import slotted_base
from rxllm._wire import EMPTY as EMPTY
from rxllm._wire import Check, Kind, hidden_key, wire, wire_class
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

_T = TypeVar("_T", bound="_Wire")


class _Wire:
    """Shared conveniences: dict-style access and pydantic-style aliases for LiteLLM users.

    ``from_dict``, ``to_dict``, ``_known`` and ``_fields`` are generated per class by
    :func:`rxllm._wire.wire_class`; the definitions here only type them.
    """

    __slots__ = ()

    _known: ClassVar[frozenset[str]] = frozenset()
    _fields: ClassVar[tuple[str, ...]] = ()
    #: ``extra`` without the hidden keys (no dict built): for per-chunk code that ignores them
    _unknown_keys: ClassVar[Callable[[Any], Mapping[str, Any]]]
    #: The decoder that also applies the fields' checks: the object, or ``None`` when a value fails one
    _wire_checked: ClassVar[Callable[[Mapping[str, Any]], Any]]

    @classmethod
    def from_dict(cls: type[_T], d: Mapping[str, Any]) -> _T:  # pragma: no cover - generated per class
        """Build from the wire dict (unknown keys go to ``extra``)."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - generated per class
        """The wire dict (keys kept in ``extra`` written back)."""
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


# --------------------------------------------------------------------------- streaming deltas


@wire_class(fast=True)
@attrs.frozen(weakref_slot=False)
@slotted_base
class FunctionDelta(_Wire):
    """A fragment of a function call: ``name`` usually once, ``arguments`` in pieces.

    Object-valued ``arguments`` on the wire become their JSON text.
    """

    name: str | None = wire(None, check=Check.OPT_STR)
    arguments: str | None = wire(None, kind=Kind.JSON_TEXT, solo=True)
    extra: Mapping[str, Any] = attrs.field(default=EMPTY, hash=False)


@wire_class(fast=True)
@attrs.frozen(weakref_slot=False)
@slotted_base
class ToolCallDelta(_Wire):
    """A fragment of one tool call inside ``delta.tool_calls``; ``index`` says which call."""

    index: int | None = wire(None, check=Check.OPT_COUNT)
    id: str | None = wire(None, check=Check.OPT_STR)
    type: str | None = wire(None, check=Check.OPT_STR)
    function: FunctionDelta | None = wire(None, kind=FunctionDelta)
    extra: Mapping[str, Any] = attrs.field(default=EMPTY, hash=False)


@wire_class()
@attrs.frozen
class TopLogprob(_Wire):
    """One alternative token with its log probability."""

    token: str = wire()
    logprob: float = wire()
    bytes: tuple[int, ...] | None = wire(None, kind=Kind.TUPLE, always=True)
    extra: Mapping[str, Any] = attrs.field(default=EMPTY, hash=False)


@wire_class()
@attrs.frozen
class TokenLogprob(_Wire):
    """A sampled token, its log probability and the most likely alternatives."""

    token: str = wire()
    logprob: float = wire()
    bytes: tuple[int, ...] | None = wire(None, kind=Kind.TUPLE, always=True)
    top_logprobs: tuple[TopLogprob, ...] = wire((), kind=(TopLogprob,))
    extra: Mapping[str, Any] = attrs.field(default=EMPTY, hash=False)


@wire_class()
@attrs.frozen
class ChoiceLogprobs(_Wire):
    """Log probabilities of a choice's content tokens and refusal tokens."""

    content: tuple[TokenLogprob, ...] | None = wire(None, kind=(TokenLogprob,), always=True)
    refusal: tuple[TokenLogprob, ...] | None = wire(None, kind=(TokenLogprob,), always=True)
    extra: Mapping[str, Any] = attrs.field(default=EMPTY, hash=False)


@wire_class(fast=True)
@attrs.frozen(weakref_slot=False)
@slotted_base
class Delta(_Wire):
    """What one chunk adds to one choice: text, reasoning, refusal or tool-call fragments."""

    role: str | None = wire(None, check=Check.OPT_STR)
    content: str | None = wire(None, solo=True, check=Check.OPT_STR)
    tool_calls: tuple[ToolCallDelta, ...] | None = wire(None, kind=(ToolCallDelta,), solo=True)
    function_call: FunctionDelta | None = wire(None, kind=FunctionDelta)
    reasoning_content: str | None = wire(None, solo=True, check=Check.OPT_STR)
    refusal: str | None = wire(None, check=Check.OPT_STR)
    annotations: tuple[Any, ...] | None = wire(None, kind=Kind.TUPLE, hash=False)
    extra: Mapping[str, Any] = attrs.field(default=EMPTY, hash=False)

    @property
    def thinking_blocks(self) -> Any:
        """LiteLLM's ``delta.thinking_blocks`` (signatures, redacted blocks), kept in ``extra``; or None."""
        return self.extra.get("thinking_blocks")


_EMPTY_DELTA = Delta()


@wire_class(fast=True)
@attrs.frozen(weakref_slot=False)
@slotted_base
class StreamChoice(_Wire):
    """One choice inside a chunk. ``index`` says which choice (n > 1 interleaves them)."""

    index: int = wire(0, falsy_default=True, check=Check.COUNT)
    delta: Delta = wire(_EMPTY_DELTA, kind=Delta)
    finish_reason: str | None = wire(None, always=True, check=Check.OPT_STR)
    logprobs: ChoiceLogprobs | None = wire(None, kind=ChoiceLogprobs)
    extra: Mapping[str, Any] = attrs.field(default=EMPTY, hash=False)


# --------------------------------------------------------------------------- usage


@wire_class()
@attrs.frozen
class PromptTokensDetails(_Wire):
    """Breakdown of prompt tokens: cache reads, cache writes, audio."""

    cached_tokens: int | None = wire(None, check=Check.OPT_COUNT)
    audio_tokens: int | None = wire(None, check=Check.OPT_COUNT)
    cache_creation_tokens: int | None = wire(None, check=Check.OPT_COUNT)
    extra: Mapping[str, Any] = attrs.field(default=EMPTY, hash=False)


@wire_class()
@attrs.frozen
class CompletionTokensDetails(_Wire):
    """Breakdown of completion tokens: hidden reasoning, audio, predicted output."""

    reasoning_tokens: int | None = wire(None, check=Check.OPT_COUNT)
    audio_tokens: int | None = wire(None, check=Check.OPT_COUNT)
    accepted_prediction_tokens: int | None = wire(None, check=Check.OPT_COUNT)
    rejected_prediction_tokens: int | None = wire(None, check=Check.OPT_COUNT)
    extra: Mapping[str, Any] = attrs.field(default=EMPTY, hash=False)


@wire_class(fast=True)
@attrs.frozen(weakref_slot=False)
@slotted_base
class Usage(_Wire):
    """Token counts (``null`` counts read as 0).

    ``estimated`` is True when rxllm counted them because the provider did not.
    """

    prompt_tokens: int = wire(0, falsy_default=True, check=Check.COUNT)
    completion_tokens: int = wire(0, falsy_default=True, check=Check.COUNT)
    total_tokens: int = wire(0, falsy_default=True, check=Check.COUNT)
    prompt_tokens_details: PromptTokensDetails | None = wire(None, kind=PromptTokensDetails)
    completion_tokens_details: CompletionTokensDetails | None = wire(None, kind=CompletionTokensDetails)
    estimated: bool = wire(False, kind=Kind.FLAG)
    extra: Mapping[str, Any] = attrs.field(default=EMPTY, hash=False)

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


# --------------------------------------------------------------------------- chunks

#: The order ``to_dict`` writes a chunk's and a response's first keys in (as OpenAI does).
_TOP_ORDER = ("id", "object", "created", "model", "choices", "system_fingerprint", "service_tier")


@wire_class(order=_TOP_ORDER, fast=True)
@attrs.frozen(weakref_slot=False)
@slotted_base
class ChatCompletionChunk(_Wire):
    """One ``chat.completion.chunk``: what a stream emits.

    Usage-only chunks have ``choices == ()`` and ``usage`` set. Provider-specific top-level
    keys (``x_groq``, ``prompt_filter_results``, ``obfuscation``...) are kept in ``extra``.
    """

    id: str = wire("", falsy_default=True, check=Check.STR)
    choices: tuple[StreamChoice, ...] = wire((), kind=(StreamChoice,))
    created: int = wire(0, falsy_default=True, check=Check.NUMBER)
    model: str = wire("", falsy_default=True, check=Check.STR)
    object: str = wire("chat.completion.chunk", falsy_default=True, check=Check.STR)
    system_fingerprint: str | None = wire(None, check=Check.OPT_STR)
    usage: Usage | None = wire(None, kind=Usage)
    service_tier: str | None = wire(None, check=Check.OPT_STR)
    #: OpenAI's random padding: a key of nearly every chunk, so no ``extra`` dict per chunk for it
    _obfuscation: str | None = attrs.field(
        default=None, init=False, eq=False, repr=False, hash=False, metadata=hidden_key("obfuscation")
    )
    extra: Mapping[str, Any] = attrs.field(default=EMPTY, hash=False)

    @classmethod
    def from_json(cls, data: bytes | str) -> ChatCompletionChunk:
        """Parse one chunk from its JSON text."""
        return cls.from_dict(orjson.loads(data))

    def __iter__(self) -> Iterator[StreamChoice]:
        """Iterate the choices (so ``for choice in chunk`` reads naturally)."""
        return iter(self.choices)


# --------------------------------------------------------------------------- final response


@wire_class()
@attrs.frozen
class Function(_Wire):
    """A complete function call: its name and its arguments as a JSON string.

    Object-valued ``arguments`` on the wire become their JSON text; absent ones read ``"{}"``.
    """

    name: str = wire("", falsy_default=True)
    arguments: str = wire("{}", kind=Kind.JSON_TEXT)
    extra: Mapping[str, Any] = attrs.field(default=EMPTY, hash=False)

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


@wire_class(order=("id", "type", "function"))
@attrs.frozen
class ToolCall(_Wire):
    """A complete tool call.

    ``index`` (the tool-call index within its choice) and ``choice_index`` are set on calls
    emitted by ``accumulate_tool_calls``; they are written to the wire only when set.
    """

    id: str = wire("", falsy_default=True)
    function: Function = wire(Function(), kind=Function)
    type: str = wire("function", falsy_default=True)
    index: int | None = wire(None)
    choice_index: int | None = wire(None)
    extra: Mapping[str, Any] = attrs.field(default=EMPTY, hash=False)

    def parsed_arguments(self) -> Any:
        """The arguments decoded from JSON; see :meth:`Function.parsed_arguments`."""
        return self.function.parsed_arguments()


@wire_class()
@attrs.frozen
class Message(_Wire):
    """The assistant message of a final response.

    ``thinking_blocks`` (LiteLLM's shape) holds the reasoning blocks that must be sent back
    with the message (Anthropic extended thinking): ``{"type": "thinking", "thinking": ...,
    "signature": ...}`` and ``{"type": "redacted_thinking", "data": ...}``, in stream order.
    """

    role: str = wire("assistant", falsy_default=True)
    content: str | None = wire(None, always=True)
    tool_calls: tuple[ToolCall, ...] | None = wire(None, kind=(ToolCall,))
    function_call: Function | None = wire(None, kind=Function)
    reasoning_content: str | None = wire(None)
    refusal: str | None = wire(None)
    annotations: tuple[Any, ...] | None = wire(None, kind=Kind.TUPLE, hash=False)
    thinking_blocks: tuple[Mapping[str, Any], ...] | None = wire(None, kind=Kind.DICTS, hash=False)
    extra: Mapping[str, Any] = attrs.field(default=EMPTY, hash=False)


@wire_class()
@attrs.frozen
class Choice(_Wire):
    """One choice of a final response."""

    index: int = wire(0, falsy_default=True)
    message: Message = wire(Message(), kind=Message)
    finish_reason: str | None = wire("stop", always=True, keep_null=True)
    logprobs: ChoiceLogprobs | None = wire(None, kind=ChoiceLogprobs, always=True)
    extra: Mapping[str, Any] = attrs.field(default=EMPTY, hash=False)


@wire_class(order=_TOP_ORDER)
@attrs.frozen
class ModelResponse(_Wire):
    """A complete ``chat.completion``: what ``completion()`` returns and streams rebuild to."""

    id: str = wire("", falsy_default=True)
    choices: tuple[Choice, ...] = wire((), kind=(Choice,))
    created: int = wire(0, falsy_default=True)
    model: str = wire("", falsy_default=True)
    object: str = wire("chat.completion", falsy_default=True)
    system_fingerprint: str | None = wire(None)
    usage: Usage | None = wire(None, kind=Usage)
    service_tier: str | None = wire(None)
    extra: Mapping[str, Any] = attrs.field(default=EMPTY, hash=False)

    @classmethod
    def from_json(cls, data: bytes | str) -> ModelResponse:
        """Parse a response from its JSON text."""
        return cls.from_dict(orjson.loads(data))


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
