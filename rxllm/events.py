"""Typed stream events: what a chunk stream means, one frozen value per thing that happened.

The chunk stream says *what arrived*; events say *what it is*: a piece of text, the end of a
reasoning block with its signature, a tool call starting, its arguments growing (with the
partial parsed value), its arguments complete (parsed, or a typed error), usage, the finish.
:class:`EventBuilder` turns chunks into events one chunk at a time; the ``events()`` operator
is a thin wrapper around it.

Every event of a choice carries ``choice_index`` (n > 1 streams interleave choices); tool-call
events also carry the tool call's ``index``. For each choice the events follow this grammar::

    ( TextDelta* TextDone | ReasoningDelta* ReasoningDone | RedactedReasoning
      | RefusalDelta* RefusalDone
      | ToolCallStart ToolCallArgumentsDelta* ToolCallDone )*  Finish

A *segment* (a run of text, reasoning or refusal) ends when another kind of output starts
(reasoning after text, a tool call, a reasoning signature, a redacted block) or the choice
finishes, so the ``Done`` events of a choice keep the stream order of Anthropic's content
blocks. The concatenation of a segment's deltas is its ``Done`` value; the concatenation of a
choice's ``TextDone`` texts is the rebuilt message's ``content`` (likewise reasoning and
refusal), and its ``ToolCallDone`` events are the message's tool calls.

Snapshots (``TextDelta.snapshot``, ``ToolCallArgumentsDelta.arguments`` and ``.partial``)
are computed only when read: building an event costs O(size of the chunk), never O(text so
far). Partial values come from :class:`rxllm.partial_json.PartialJSONParser`, fed lazily: a
pipeline that never reads ``partial`` never parses, and one that reads every partial in order
parses each fragment once, so a whole tool call costs time linear in its arguments.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import attrs
import orjson

from rxllm.builder import ToolCallAssembler, _ToolSlot, thinking_entries
from rxllm.errors import InvalidToolArgumentsError
from rxllm.partial_json import PartialJSONParser, _Joined, parse_partial
from rxllm.types import EMPTY, ChatCompletionChunk, Usage
from rxllm.usage import UsageAccumulator

__all__ = [
    "Event",
    "EventBuilder",
    "Finish",
    "ReasoningDelta",
    "ReasoningDone",
    "RedactedReasoning",
    "RefusalDelta",
    "RefusalDone",
    "TextDelta",
    "TextDone",
    "ToolCallArgumentsDelta",
    "ToolCallDone",
    "ToolCallStart",
    "UsageUpdate",
    "parse_arguments",
]


class _SoFar:
    """Text so far, as shared growing parts and a count: joined only when read, then cached."""

    __slots__ = ("_joined", "_n", "_text")

    def __init__(self, joined: _Joined, n: int) -> None:
        self._joined = joined
        self._n = n
        self._text: str | None = None

    def text(self) -> str:
        t = self._text
        if t is None:
            t = self._text = self._joined.upto(self._n)
        return t


@attrs.frozen
class TextDelta:
    """A piece of a choice's content text.

    Attributes:
        choice_index: The choice.
        delta: The new text.
        snapshot: The text of this segment so far, ``delta`` included (joined when read).
    """

    choice_index: int
    delta: str
    _so_far: _SoFar | None = attrs.field(default=None, eq=False, repr=False, kw_only=True)

    @property
    def snapshot(self) -> str:
        """The segment's text so far (this delta included)."""
        return self._so_far.text() if self._so_far is not None else self.delta


@attrs.frozen
class TextDone:
    """A run of content text ended; ``text`` is the concatenation of its deltas."""

    choice_index: int
    text: str

    @property
    def content(self) -> str:
        """The text (the OpenAI SDK's ``content.done`` calls it ``content``)."""
        return self.text


@attrs.frozen
class ReasoningDelta:
    """A piece of a choice's reasoning (``reasoning_content``, Anthropic thinking, Gemini thoughts).

    Attributes:
        choice_index: The choice.
        delta: The new reasoning text.
        snapshot: The reasoning block's text so far, ``delta`` included (joined when read).
    """

    choice_index: int
    delta: str
    _so_far: _SoFar | None = attrs.field(default=None, eq=False, repr=False, kw_only=True)

    @property
    def snapshot(self) -> str:
        """The reasoning block's text so far (this delta included)."""
        return self._so_far.text() if self._so_far is not None else self.delta


@attrs.frozen
class ReasoningDone:
    """A reasoning block ended.

    Attributes:
        choice_index: The choice.
        text: The block's reasoning text (the concatenation of its deltas).
        signature: Anthropic's signature of the block, needed to send it back (``None``
            when the provider gave none).
    """

    choice_index: int
    text: str
    signature: str | None = None


@attrs.frozen
class RedactedReasoning:
    """An encrypted reasoning block (Anthropic ``redacted_thinking``), to be sent back as is."""

    choice_index: int
    data: str


@attrs.frozen
class RefusalDelta:
    """A piece of a refusal message (OpenAI structured outputs)."""

    choice_index: int
    delta: str
    _so_far: _SoFar | None = attrs.field(default=None, eq=False, repr=False, kw_only=True)

    @property
    def snapshot(self) -> str:
        """The refusal so far (this delta included)."""
        return self._so_far.text() if self._so_far is not None else self.delta


@attrs.frozen
class RefusalDone:
    """A refusal ended; ``refusal`` is the concatenation of its deltas."""

    choice_index: int
    refusal: str


@attrs.frozen
class ToolCallStart:
    """A tool call began: its position, id and function name are known."""

    choice_index: int
    index: int
    id: str
    name: str


@attrs.frozen
class ToolCallArgumentsDelta:
    """A fragment of a tool call's arguments, with the partial parsed value so far.

    Attributes:
        choice_index: The choice.
        index: The tool call's index within the choice.
        name: The function name.
        fragment: The new argument text.
        arguments: The argument text so far (joined when read).
        partial: The arguments parsed so far (see :mod:`rxllm.partial_json` for what an
            unfinished value shows; built when read).
    """

    choice_index: int
    index: int
    name: str
    fragment: str
    _so_far: _SoFar | None = attrs.field(default=None, eq=False, repr=False, kw_only=True)
    _mark: _PartialAt | None = attrs.field(default=None, eq=False, repr=False, kw_only=True)

    @property
    def arguments(self) -> str:
        """The argument text so far (this fragment included)."""
        return self._so_far.text() if self._so_far is not None else self.fragment

    @property
    def snapshot(self) -> str:
        """The argument text so far (as ``TextDelta.snapshot`` is the text so far)."""
        return self.arguments

    @property
    def partial(self) -> Any:
        """The partial parsed arguments (``None`` until a value has started)."""
        if self._mark is None:
            return parse_partial(self.fragment)
        return self._mark.value()

    @property
    def parsed_arguments(self) -> Any:
        """The partial parsed arguments (the OpenAI SDK's name for them)."""
        return self.partial


@attrs.frozen
class ToolCallDone:
    """A tool call is complete.

    Attributes:
        choice_index: The choice.
        index: The tool call's index within the choice.
        id: The call id.
        name: The function name.
        arguments: The argument text (the concatenation of the fragments; may be ``""``).
        parsed: The parsed arguments (empty text reads as ``{}``), or ``None`` with ``error``.
        error: Why the arguments are not valid JSON, or ``None``.
    """

    choice_index: int
    index: int
    id: str
    name: str
    arguments: str
    parsed: Any = None
    error: InvalidToolArgumentsError | None = attrs.field(default=None, eq=False)

    @property
    def parsed_arguments(self) -> Any:
        """The parsed arguments (the OpenAI SDK's name for them)."""
        return self.parsed


@attrs.frozen
class UsageUpdate:
    """Token usage reported by the provider (the stream's merged usage so far)."""

    usage: Usage


@attrs.frozen
class Finish:
    """A choice finished; ``reason`` is its ``finish_reason`` (``"stop"`` when none was sent)."""

    choice_index: int
    reason: str

    @property
    def finish_reason(self) -> str:
        """The reason (the chunk field's name)."""
        return self.reason


Event: TypeAlias = (
    TextDelta
    | TextDone
    | ReasoningDelta
    | ReasoningDone
    | RedactedReasoning
    | RefusalDelta
    | RefusalDone
    | ToolCallStart
    | ToolCallArgumentsDelta
    | ToolCallDone
    | UsageUpdate
    | Finish
)


def parse_arguments(name: str, arguments: str) -> tuple[Any, InvalidToolArgumentsError | None]:
    """Final parse of a tool call's arguments: (value, None) or (None, error); ``""`` is ``{}``."""
    if not arguments.strip():
        return {}, None
    try:
        return orjson.loads(arguments), None
    except orjson.JSONDecodeError as exc:
        return None, InvalidToolArgumentsError(name, arguments, str(exc))


_UNREAD: Any = object()
_TEXT = 1
_REASONING = 2
_REFUSAL = 3


class _Call:
    """One tool call's event state; its argument parser runs only when a partial value is read."""

    __slots__ = ("args", "done", "fed", "joined", "parser", "seen", "started")

    def __init__(self, slot: _ToolSlot) -> None:
        self.started = False
        self.done = False
        self.seen = 0
        self.args = slot.args
        self.joined = _Joined(slot.args)
        self.parser: PartialJSONParser | None = None
        self.fed = 0

    def partial_at(self, k: int) -> Any:
        """The partial value after the first ``k`` fragments.

        Reading in stream order feeds each fragment to the incremental parser once (linear in
        total); a read behind the parser re-parses that prefix (O(k)); no read costs nothing.
        """
        parser = self.parser
        if parser is None:
            parser = self.parser = PartialJSONParser()
        if self.fed > k:
            return parse_partial(self.joined.upto(k))
        if self.fed < k:  # everything not yet read, in one feed
            parser.feed("".join(self.args[self.fed : k]))
            self.fed = k
        return parser.value


class _PartialAt:
    """A tool call's partial value after ``k`` fragments, computed when first read."""

    __slots__ = ("_call", "_k", "_value")

    def __init__(self, call: _Call, k: int) -> None:
        self._call = call
        self._k = k
        self._value: Any = _UNREAD

    def value(self) -> Any:
        v = self._value
        if v is _UNREAD:
            v = self._value = self._call.partial_at(self._k)
        return v


class _ChoiceEvents:
    __slots__ = ("calls", "finished", "first_open", "index", "joined", "kind", "parts", "tools")

    def __init__(self, index: int) -> None:
        self.index = index
        self.kind = 0
        self.parts: list[str] = []
        self.joined = _Joined(self.parts)
        self.tools: ToolCallAssembler | None = None
        self.calls: list[_Call] = []
        self.first_open = 0
        self.finished = False

    def close_segment(self, out: list[Any], signature: str | None = None) -> None:
        kind = self.kind
        if not kind:
            return
        text = "".join(self.parts)
        ci = self.index
        if kind == _TEXT:
            out.append(TextDone(ci, text))
        elif kind == _REASONING:
            out.append(ReasoningDone(ci, text, signature))
        else:
            out.append(RefusalDone(ci, text))
        self.kind = 0
        self.parts = []
        self.joined = _Joined(self.parts)

    def segment(self, kind: int, text: str, out: list[Any]) -> None:
        if self.kind != kind:
            self.close_segment(out)
            self.kind = kind
        parts = self.parts
        parts.append(text)
        so_far = _SoFar(self.joined, len(parts))
        ci = self.index
        if kind == _TEXT:
            out.append(TextDelta(ci, text, so_far=so_far))
        elif kind == _REASONING:
            out.append(ReasoningDelta(ci, text, so_far=so_far))
        else:
            out.append(RefusalDelta(ci, text, so_far=so_far))

    def tool_progress(self, closed: list[_ToolSlot] | None, out: list[Any]) -> None:
        """Emit what changed in the tool calls since the last look."""
        tools = self.tools
        assert tools is not None
        slots = tools.slots
        calls = self.calls
        while len(calls) < len(slots):
            calls.append(_Call(slots[len(calls)]))
        closed_ids = {id(s) for s in closed} if closed else ()
        ci = self.index
        for pos in range(self.first_open, len(slots)):
            slot = slots[pos]
            call = calls[pos]
            if call.done:
                continue
            n = len(slot.args)
            closing = id(slot) in closed_ids
            if not call.started and (slot.name or n or closing):
                call.started = True
                out.append(ToolCallStart(ci, slot.index, slot.id, slot.name))
            if n > call.seen:
                args = slot.args
                joined = call.joined
                for k in range(call.seen, n):
                    out.append(
                        ToolCallArgumentsDelta(
                            ci,
                            slot.index,
                            slot.name,
                            args[k],
                            so_far=_SoFar(joined, k + 1),
                            mark=_PartialAt(call, k + 1),
                        )
                    )
                call.seen = n
            if closing:
                self.finish_call(pos, out)

    def finish_call(self, pos: int, out: list[Any]) -> None:
        assert self.tools is not None
        slot = self.tools.slots[pos]
        call = self.calls[pos]
        call.done = True
        arguments = "".join(slot.args[: call.seen])
        parsed, error = parse_arguments(slot.name, arguments)
        out.append(ToolCallDone(self.index, slot.index, slot.id, slot.name, arguments, parsed, error))
        while self.first_open < len(self.calls) and self.calls[self.first_open].done:
            self.first_open += 1

    def finish(self, reason: str, out: list[Any]) -> None:
        self.close_segment(out)
        if self.tools is not None:
            closed = self.tools.close_all()
            self.tool_progress(closed, out)
            for pos in range(self.first_open, len(self.calls)):  # calls closed earlier but never seen
                if not self.calls[pos].done:
                    self.tool_progress([self.tools.slots[pos]], out)
        self.finished = True
        out.append(Finish(self.index, reason))


class EventBuilder:
    """Turns ``ChatCompletionChunk`` objects into typed events, one chunk at a time.

    ::

        builder = EventBuilder()
        for chunk in chunks:
            for event in builder.add(chunk):
                ...
        for event in builder.close():   # the stream ended: close what is still open
            ...

    Agrees with :class:`rxllm.builder.ResponseBuilder` on what the stream contains (text,
    reasoning, refusal, tool calls, finish reasons, usage); see the module docstring.
    """

    __slots__ = ("_choices", "_usage")

    def __init__(self) -> None:
        self._choices: dict[int, _ChoiceEvents] = {}
        self._usage = UsageAccumulator()

    def add(self, chunk: ChatCompletionChunk) -> list[Event]:
        """The events one chunk gives (O(size of the chunk))."""
        out: list[Any] = []
        states = self._choices
        for sc in chunk.choices:
            st = states.get(sc.index)
            if st is None:
                st = states[sc.index] = _ChoiceEvents(sc.index)
            d = sc.delta
            r = d.reasoning_content
            entries = thinking_entries(d) if d.extra is not EMPTY else ()
            if r and r.__class__ is str:
                st.segment(_REASONING, r, out)
            for entry in entries:
                kind = entry.get("type")
                if kind == "redacted_thinking":
                    st.close_segment(out)
                    out.append(RedactedReasoning(sc.index, str(entry.get("data") or "")))
                elif kind == "thinking":
                    text = entry.get("thinking")
                    if text and not r and isinstance(text, str):
                        st.segment(_REASONING, text, out)
                    signature = entry.get("signature")
                    if signature:
                        if st.kind != _REASONING:
                            st.close_segment(out)
                            st.kind = _REASONING
                        st.close_segment(out, str(signature))
            c = d.content
            if c and c.__class__ is str:
                st.segment(_TEXT, c, out)
            c = d.refusal
            if c and c.__class__ is str:
                st.segment(_REFUSAL, c, out)
            tcs = d.tool_calls
            if tcs:
                st.close_segment(out)
                tools = st.tools
                if tools is None:
                    tools = st.tools = ToolCallAssembler(sc.index)
                closed = tools.add(tcs)
                st.tool_progress(closed, out)
            if sc.finish_reason is not None and not st.finished:
                st.finish(sc.finish_reason, out)
        if chunk.usage is not None:
            self._usage.add(chunk.usage)
            out.append(UsageUpdate(self._usage.result()))
        return out

    def close(self) -> list[Event]:
        """The events that end the stream: every unfinished choice is closed (``Finish("stop")``)."""
        out: list[Any] = []
        for _, st in sorted(self._choices.items()):
            if not st.finished:
                st.finish("stop", out)
            else:  # output that came after the finish reason: close it, no second Finish
                st.close_segment(out)
        return out
