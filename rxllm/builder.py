"""Rebuilding a ``chat.completion`` from its ``chat.completion.chunk`` stream.

:class:`ResponseBuilder` folds chunks in one at a time. Each :meth:`~ResponseBuilder.add` does
work proportional to the chunk (text is appended to lists of parts and only joined by
:meth:`~ResponseBuilder.build`), so a stream costs O(total text), never O(chunks²), and no
chunk is kept. :meth:`~ResponseBuilder.build` can be called at any time: mid-stream it gives
the partial response (what errors carry as ``partial_response``).

:class:`ToolCallAssembler` turns the tool-call fragments of one choice into complete calls; the
builder and the ``accumulate_tool_calls`` operator share it, so both agree on what a call is.

:func:`stream_chunk_builder` is LiteLLM's helper of the same name, built on the builder.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import orjson

from rxllm.errors import APIError
from rxllm.types import (
    EMPTY,
    ChatCompletionChunk,
    Choice,
    ChoiceLogprobs,
    Function,
    Message,
    ModelResponse,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from rxllm.usage import UsageAccumulator

__all__ = [
    "ResponseBuilder",
    "ResponseSnapshot",
    "ToolCallAssembler",
    "stream_chunk_builder",
    "thinking_entries",
]

#: Chunk-level keys not carried into the response: per-chunk padding and prompt echoes.
DROPPED_CHUNK_KEYS = frozenset({"obfuscation", "prompt_token_ids", "prompt_text"})
_chunk_unknown_keys = ChatCompletionChunk._unknown_keys

_MISSING: Any = object()


def thinking_entries(delta: Any) -> Sequence[Mapping[str, Any]]:
    """The ``thinking_blocks`` entries (LiteLLM's shape) a delta carries in ``extra``, or ``()``."""
    extra = delta.extra
    blocks = extra.get("thinking_blocks") if extra else None
    if not blocks or isinstance(blocks, (str, bytes)) or not isinstance(blocks, Sequence):
        return ()
    return [b for b in blocks if isinstance(b, Mapping)]


def _json_text(value: Any) -> str:
    """Arguments given as a JSON value (Gemini, some gateways) become their JSON text."""
    return orjson.dumps(value).decode()


# --------------------------------------------------------------------------- tool calls


def _complete_json(text: str) -> bool:
    """Whether tool-call arguments are a complete JSON value (an object can not grow after its ``}``)."""
    if not text:
        return False
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True


class _ToolSlot:
    """One tool call being assembled: scalar fields set once, argument text as parts."""

    __slots__ = ("args", "extra", "id", "index", "name", "type")

    def __init__(self, index: int) -> None:
        self.index = index
        self.id = ""
        self.name = ""
        self.type = ""
        self.args: list[str] = []
        self.extra: dict[str, Any] | None = None

    def to_tool_call(self, choice_index: int | None) -> ToolCall:
        """The call with the arguments received so far (``"{}"`` when there are none).

        ``choice_index`` also decides whether the position is written: calls emitted by the
        operator carry ``index``/``choice_index``; calls inside a response message do not
        (the OpenAI ``chat.completion`` wire format has neither).
        """
        args = "".join(self.args)
        return ToolCall(
            self.id,
            Function(self.name, args or "{}"),
            self.type or "function",
            self.index if choice_index is not None else None,
            choice_index,
            self.extra or EMPTY,
        )


class ToolCallAssembler:
    """Assembles the tool-call fragments of one choice into complete calls.

    Robust to what providers really send: the first fragment with id and name and empty
    arguments; argument-only fragments; a whole call in one fragment; several whole calls in
    one delta; fragments without ``index`` (their position in the delta decides); a new ``id``
    at an index already used (a new call, never glued onto the old one; it takes the next
    free index); arguments as a JSON value (serialized); the fragments of parallel calls
    interleaved. A call is *closed* when another call starts in the choice and its arguments
    are complete JSON, or when :meth:`close_all` is called (the choice finished, or the
    stream ended). Providers stream calls one after another; should a fragment for a closed
    call still come, it is appended (the rebuilt response stays right) but a call already
    handed out is not revised.

    Args:
        choice_index: The choice these calls belong to.
    """

    __slots__ = ("_by_key", "_open", "_used", "choice_index", "slots")

    def __init__(self, choice_index: int = 0) -> None:
        self.choice_index = choice_index
        #: Every call in order of appearance.
        self.slots: list[_ToolSlot] = []
        self._by_key: dict[int, _ToolSlot] = {}
        self._open: list[_ToolSlot] = []
        self._used: set[int] = set()

    def add(self, deltas: Sequence[ToolCallDelta]) -> list[_ToolSlot] | None:
        """Fold in one delta's fragments; return the calls that a new call closed (or None)."""
        closed: list[_ToolSlot] | None = None
        by_key = self._by_key
        for pos, tcd in enumerate(deltas):
            key = tcd.index
            if key is None:
                key = pos
            slot = by_key.get(key)
            tid = tcd.id
            if slot is None or (tid and slot.id and tid != slot.id):
                index = key
                if index in self._used:
                    index = max(self._used) + 1
                self._used.add(index)
                if self._open:
                    done = self._close_complete()
                    if done:
                        if closed is None:
                            closed = done
                        else:
                            closed.extend(done)
                slot = _ToolSlot(index)
                by_key[key] = slot
                self.slots.append(slot)
                self._open.append(slot)
            if tid and not slot.id:
                slot.id = tid
            if tcd.type and not slot.type:
                slot.type = tcd.type
            fn = tcd.function
            if fn is not None:
                if fn.name and not slot.name:
                    slot.name = fn.name
                a = fn.arguments
                if a:
                    slot.args.append(a if a.__class__ is str else _json_text(a))
            extra = tcd.extra
            if extra is not EMPTY and extra:  # (identity first: the shared empty mapping's len() is Python code)
                if slot.extra is None:
                    slot.extra = dict(extra)
                else:
                    slot.extra.update(extra)
        return closed

    def _close_complete(self) -> list[_ToolSlot]:
        """A new call started: close the open calls whose arguments are complete JSON.

        Calls whose arguments are still empty or partial stay open: providers that interleave
        the fragments of parallel calls (several calls open at once) keep sending them, and a
        call handed out early would run with arguments cut short.
        """
        done: list[_ToolSlot] = []
        still: list[_ToolSlot] = []
        for slot in self._open:
            (done if _complete_json("".join(slot.args)) else still).append(slot)
        self._open = still
        return done

    def close_all(self) -> list[_ToolSlot]:
        """Close the calls still open and return them (in order of appearance)."""
        closed = self._open
        self._open = []
        return closed

    def tool_calls(self, *, positioned: bool = True) -> tuple[ToolCall, ...]:
        """Every call so far, with the arguments received so far."""
        ci = self.choice_index if positioned else None
        return tuple(s.to_tool_call(ci) for s in self.slots)


# --------------------------------------------------------------------------- per choice


class _ChoiceMark(NamedTuple):
    """How far one choice had got: lengths of its append-only lists plus its scalars."""

    role: str | None
    finish_reason: str | None
    has_content: bool
    n_content: int
    n_reasoning: int
    n_refusal: int
    n_lp_content: int  # -1: logprobs.content never given
    n_lp_refusal: int
    has_logprobs: bool
    n_annotations: int
    tools: tuple[tuple[_ToolSlot, int, str, str, str], ...]
    fc: tuple[str, int] | None
    n_blocks: int  # -1: no thinking_blocks in the stream
    last_block_open: bool


class _ChoiceState:
    """Everything one choice index has accumulated."""

    __slots__ = (
        "annotations",
        "block_open",
        "blocks",
        "content",
        "fc_args",
        "fc_name",
        "finish_reason",
        "has_blocks",
        "has_content",
        "has_fc",
        "has_logprobs",
        "index",
        "lp_content",
        "lp_refusal",
        "reasoning",
        "refusal",
        "role",
        "tools",
    )

    def __init__(self, index: int) -> None:
        self.index = index
        self.role: str | None = None
        self.finish_reason: str | None = None
        self.has_content = False
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.refusal: list[str] = []
        self.has_logprobs = False
        self.lp_content: list[TokenLogprob] | None = None
        self.lp_refusal: list[TokenLogprob] | None = None
        self.annotations: list[Any] = []
        self.tools: ToolCallAssembler | None = None
        self.has_fc = False
        self.fc_name = ""
        self.fc_args: list[str] = []
        #: Reasoning blocks in stream order, as [type, start, end, signature, data] over
        #: ``reasoning`` (end None while open); reported only once a delta carried thinking_blocks.
        self.blocks: list[list[Any]] = []
        self.block_open = False
        self.has_blocks = False

    def reasoning_text(self, text: str) -> None:
        """Reasoning arrived: it joins the open reasoning block, or starts one."""
        if not self.block_open:
            self.blocks.append(["thinking", len(self.reasoning), None, None, None])
            self.block_open = True
        self.reasoning.append(text)

    def close_block(self) -> None:
        """Text or a tool call arrived: the open reasoning block (if any) ends here."""
        if self.block_open:
            self.block_open = False
            self.blocks[-1][2] = len(self.reasoning)

    def thinking_entries(self, entries: Sequence[Mapping[str, Any]], had_reasoning: bool) -> None:
        """Fold in a delta's ``thinking_blocks`` (signatures, redacted blocks, LiteLLM-style text)."""
        self.has_blocks = True
        for entry in entries:
            kind = entry.get("type")
            if kind == "redacted_thinking":
                self.close_block()
                self.blocks.append(["redacted_thinking", 0, 0, None, entry.get("data")])
            elif kind == "thinking":
                text = entry.get("thinking")
                if text and not had_reasoning and isinstance(text, str):
                    self.reasoning_text(text)
                signature = entry.get("signature")
                if signature:
                    if not self.block_open:
                        self.blocks.append(["thinking", len(self.reasoning), None, None, None])
                        self.block_open = True
                    self.blocks[-1][3] = signature
                    self.close_block()

    def thinking_blocks(self, m: _ChoiceMark) -> tuple[dict[str, Any], ...] | None:
        """The reasoning blocks as of mark ``m``, in LiteLLM's ``thinking_blocks`` shape."""
        blocks = self.blocks
        if m.n_blocks < 0:
            return None
        out = []
        last = m.n_blocks - 1
        for i, (kind, start, end, signature, data) in enumerate(blocks[: m.n_blocks]):
            if kind == "redacted_thinking":
                out.append({"type": "redacted_thinking", "data": data})
                continue
            if i == last and m.last_block_open:
                end, signature = m.n_reasoning, None
            block: dict[str, Any] = {"type": "thinking", "thinking": "".join(self.reasoning[start:end])}
            if signature is not None:
                block["signature"] = signature
            out.append(block)
        return tuple(out)

    def mark(self) -> _ChoiceMark:
        tools = self.tools
        lpc = self.lp_content
        lpr = self.lp_refusal
        return _ChoiceMark(
            self.role,
            self.finish_reason,
            self.has_content,
            len(self.content),
            len(self.reasoning),
            len(self.refusal),
            -1 if lpc is None else len(lpc),
            -1 if lpr is None else len(lpr),
            self.has_logprobs,
            len(self.annotations),
            tuple((s, len(s.args), s.id, s.name, s.type) for s in tools.slots) if tools else (),
            (self.fc_name, len(self.fc_args)) if self.has_fc else None,
            len(self.blocks) if self.has_blocks else -1,
            self.block_open,
        )

    def materialize(self, m: _ChoiceMark, default_finish: str | None = "stop") -> tuple[Choice, str]:
        """The ``Choice`` as of mark ``m``, and all its generated text (for usage estimates)."""
        content = "".join(self.content[: m.n_content]) if m.has_content else None
        reasoning = "".join(self.reasoning[: m.n_reasoning]) or None
        refusal = "".join(self.refusal[: m.n_refusal]) or None
        tool_calls: tuple[ToolCall, ...] | None = None
        if m.tools:
            calls = []
            for slot, n_args, tid, name, typ in m.tools:
                args = "".join(slot.args[:n_args])
                fn = Function(name, args or "{}")
                calls.append(ToolCall(tid, fn, typ or "function", None, None, slot.extra or EMPTY))
            tool_calls = tuple(calls)
            if not content:
                content = None
        function_call = None
        if m.fc is not None:
            function_call = Function(m.fc[0], "".join(self.fc_args[: m.fc[1]]) or "{}")
        logprobs = None
        if m.has_logprobs and (m.n_lp_content >= 0 or m.n_lp_refusal >= 0):
            lpc = self.lp_content
            lpr = self.lp_refusal
            logprobs = ChoiceLogprobs(
                tuple(lpc[: m.n_lp_content]) if lpc is not None and m.n_lp_content >= 0 else None,
                tuple(lpr[: m.n_lp_refusal]) if lpr is not None and m.n_lp_refusal >= 0 else None,
            )
        message = Message(
            m.role or "assistant",
            content,
            tool_calls,
            function_call,
            reasoning,
            refusal,
            tuple(self.annotations[: m.n_annotations]) if m.n_annotations else None,
            self.thinking_blocks(m),
        )
        choice = Choice(self.index, message, m.finish_reason or default_finish, logprobs)
        text_parts = [content or "", reasoning or "", refusal or ""]
        if tool_calls:
            text_parts.extend(tc.function.name + tc.function.arguments for tc in tool_calls)
        if function_call is not None:
            text_parts.append(function_call.name + function_call.arguments)
        return choice, "".join(text_parts)


# --------------------------------------------------------------------------- the builder


class _Mark(NamedTuple):
    id: str
    created: int
    model: str
    system_fingerprint: str | None
    service_tier: str | None
    usage: Usage | None  # the merged reported usage, or None (estimate at materialization)
    extra: Mapping[str, Any]
    choices: tuple[tuple[_ChoiceState, _ChoiceMark], ...]


class ResponseBuilder:
    """Folds ``ChatCompletionChunk`` objects into a ``ModelResponse``, one chunk at a time.

    Semantics (LiteLLM's ``stream_chunk_builder``, for every choice index): ``id`` is the first
    non-empty id; ``created`` and ``model`` the first non-empty values; ``system_fingerprint``
    and ``service_tier`` the last non-empty ones; one choice per choice index, in index order,
    with its content, ``reasoning_content`` and ``refusal`` joined, its reasoning blocks as
    ``thinking_blocks`` when the stream carried any (signatures and redacted blocks, in stream
    order; a block ends where text or a tool call starts), its tool calls assembled
    (see :class:`ToolCallAssembler`), its logprobs concatenated (``None`` when no chunk
    carried a token list), role ``"assistant"`` unless a delta said otherwise,
    ``finish_reason`` the last non-null one (``"stop"`` when none came). ``content`` is
    ``None`` when the choice never sent content, or sent only empty content next to tool
    calls. Usage: the last positive value per field wins
    (:class:`~rxllm.usage.UsageAccumulator`); with no usage reported it is estimated from
    ``messages`` and all generated text, and marked ``estimated``. Unknown chunk-level keys
    (Azure's ``prompt_filter_results``, ``x_groq``, ...) are kept in the response's ``extra``,
    except per-chunk padding and prompt echoes; unknown delta keys are not carried over.

    Args:
        messages: The prompt messages, used only to estimate prompt tokens when the provider
            reports no usage.
    """

    __slots__ = (
        "_choices",
        "_created",
        "_extra",
        "_extra_frozen",
        "_fingerprint",
        "_id",
        "_messages",
        "_model",
        "_service_tier",
        "_usage",
        "_usage_result",
        "chunk_count",
    )

    def __init__(self, messages: Iterable[Mapping[str, Any]] | None = None) -> None:
        self._messages = list(messages) if messages is not None else None
        self._id = ""
        self._created = 0
        self._model = ""
        self._fingerprint: str | None = None
        self._service_tier: str | None = None
        self._usage = UsageAccumulator()
        self._usage_result: Usage | None = None
        self._extra: dict[str, Any] = {}
        self._extra_frozen: Mapping[str, Any] | None = EMPTY
        self._choices: dict[int, _ChoiceState] = {}
        #: How many chunks were added.
        self.chunk_count = 0

    def add(self, chunk: ChatCompletionChunk) -> None:
        """Fold in one chunk (O(size of the chunk))."""
        self.chunk_count += 1
        if not self._id and chunk.id:
            self._id = chunk.id
        if not self._created and chunk.created:
            self._created = chunk.created
        if not self._model and chunk.model:
            self._model = chunk.model
        v = chunk.system_fingerprint
        if v:
            self._fingerprint = v
        v = chunk.service_tier
        if v:
            self._service_tier = v
        u = chunk.usage
        if u is not None:
            self._usage.add(u)
            self._usage_result = None
        ex = _chunk_unknown_keys(chunk)  # extra without obfuscation (dropped anyway): no dict built
        if ex is not EMPTY and ex:  # (identity first: the shared empty mapping's len() is Python code)
            extra = self._extra
            for k, val in ex.items():
                if k not in DROPPED_CHUNK_KEYS and extra.get(k, _MISSING) is not val:
                    extra[k] = val
                    self._extra_frozen = None
        states = self._choices
        for sc in chunk.choices:
            st = states.get(sc.index)
            if st is None:
                st = states[sc.index] = _ChoiceState(sc.index)
            d = sc.delta
            r = d.reasoning_content
            if r:
                st.reasoning_text(r)
            if d.extra is not EMPTY:  # (identity first: most deltas share EMPTY)
                entries = thinking_entries(d)
                if entries:
                    st.thinking_entries(entries, bool(r))
            c = d.content
            if c is not None and c.__class__ is str:
                st.has_content = True
                if c:
                    st.content.append(c)
                    if st.block_open:
                        st.close_block()
            c = d.refusal
            if c:
                st.refusal.append(c)
            tcs = d.tool_calls
            if tcs:
                if st.block_open:
                    st.close_block()
                tools = st.tools
                if tools is None:
                    tools = st.tools = ToolCallAssembler(sc.index)
                tools.add(tcs)
            if d.role is not None and st.role is None:
                st.role = d.role
            fc = d.function_call
            if fc is not None:
                st.has_fc = True
                if fc.name and not st.fc_name:
                    st.fc_name = fc.name
                if fc.arguments:
                    a = fc.arguments
                    st.fc_args.append(a if a.__class__ is str else _json_text(a))
            if d.annotations:
                st.annotations.extend(d.annotations)
            if sc.finish_reason is not None:
                st.finish_reason = sc.finish_reason
            lp = sc.logprobs
            if lp is not None:
                st.has_logprobs = True
                if lp.content is not None:
                    if st.lp_content is None:
                        st.lp_content = list(lp.content)
                    else:
                        st.lp_content.extend(lp.content)
                if lp.refusal is not None:
                    if st.lp_refusal is None:
                        st.lp_refusal = list(lp.refusal)
                    else:
                        st.lp_refusal.extend(lp.refusal)

    def add_all(self, chunks: Iterable[ChatCompletionChunk]) -> ResponseBuilder:
        """Fold in several chunks; returns ``self``."""
        add = self.add
        for chunk in chunks:
            add(chunk)
        return self

    def _mark(self) -> _Mark:
        if self._usage_result is None and self._usage.reported:
            self._usage_result = self._usage.result()
        if self._extra_frozen is None:
            self._extra_frozen = dict(self._extra)
        return _Mark(
            self._id,
            self._created,
            self._model,
            self._fingerprint,
            self._service_tier,
            self._usage_result,
            self._extra_frozen,
            tuple((st, st.mark()) for _, st in sorted(self._choices.items())),
        )

    def _materialize(self, m: _Mark, default_finish: str | None = "stop") -> ModelResponse:
        choices = []
        texts = []
        for st, cm in m.choices:
            choice, text = st.materialize(cm, default_finish)
            choices.append(choice)
            texts.append(text)
        usage = m.usage
        if usage is None:
            usage = UsageAccumulator().result(completion_text="".join(texts), messages=self._messages)
        return ModelResponse(
            m.id,
            tuple(choices),
            m.created,
            m.model,
            "chat.completion",
            m.system_fingerprint,
            usage,
            m.service_tier,
            m.extra,
        )

    def build(self, *, partial: bool = False) -> ModelResponse:
        """The response so far (complete once the stream has ended); the builder stays usable.

        Args:
            partial: The stream was cut short (an error, a timeout, a cancellation): choices
                that never received a ``finish_reason`` keep ``None`` instead of the
                ``"stop"`` a completed stream defaults to, so nobody mistakes a truncated
                answer for a finished one.
        """
        return self._materialize(self._mark(), None if partial else "stop")

    def snapshot(self, chunk: ChatCompletionChunk | None = None) -> ResponseSnapshot:
        """A cheap record of the state now; its ``response`` is built only when read.

        Costs O(choices + tool calls), not O(text): the builder's lists only grow, so a
        snapshot keeps their lengths and joins the parts up to them on demand.
        """
        return ResponseSnapshot(self, self._mark(), chunk)

    def tool_calls(self, choice_index: int = 0) -> tuple[ToolCall, ...]:
        """The tool calls of one choice so far (with ``index`` and ``choice_index`` set)."""
        st = self._choices.get(choice_index)
        if st is None or st.tools is None:
            return ()
        return st.tools.tool_calls()


class ResponseSnapshot:
    """The running response after one chunk, built lazily (see :meth:`ResponseBuilder.snapshot`).

    Attributes:
        chunk: The chunk that led to this state (``None`` when taken outside a stream).
    """

    __slots__ = ("_builder", "_mark", "_response", "chunk")

    def __init__(self, builder: ResponseBuilder, mark: _Mark, chunk: ChatCompletionChunk | None) -> None:
        self._builder = builder
        self._mark = mark
        self._response: ModelResponse | None = None
        self.chunk = chunk

    @property
    def response(self) -> ModelResponse:
        """The response as it stood at this chunk (built on first access, then cached)."""
        r = self._response
        if r is None:
            # mid-stream: a choice that has not finished has no finish_reason yet
            r = self._response = self._builder._materialize(self._mark, None)
        return r

    def content(self, choice_index: int = 0) -> str:
        """The content of one choice so far (``""`` when none), without building the response."""
        for st, cm in self._mark.choices:
            if st.index == choice_index:
                return "".join(st.content[: cm.n_content])
        return ""

    def __repr__(self) -> str:
        n = sum(cm.n_content for _, cm in self._mark.choices)
        return f"<ResponseSnapshot id={self._mark.id!r} choices={len(self._mark.choices)} parts={n}>"


def _as_chunk(obj: Any) -> ChatCompletionChunk:
    if isinstance(obj, ChatCompletionChunk):
        return obj
    if isinstance(obj, Mapping):
        return ChatCompletionChunk.from_dict(obj)
    dump = getattr(obj, "model_dump", None) or getattr(obj, "to_dict", None)
    if callable(dump):  # pydantic objects from openai / litellm
        return ChatCompletionChunk.from_dict(dump())
    raise APIError(f"stream_chunk_builder: not a chunk: {type(obj).__name__}")


def stream_chunk_builder(
    chunks: Iterable[Any] | None,
    messages: Iterable[Mapping[str, Any]] | None = None,
) -> ModelResponse | None:
    """Rebuild the complete response from a stream's chunks (LiteLLM's helper).

    Args:
        chunks: The chunks as ``ChatCompletionChunk`` objects, wire dicts, or objects with a
            ``model_dump()`` (OpenAI / LiteLLM chunks).
        messages: The prompt, used to estimate prompt tokens when no usage was reported.

    Returns:
        The ``ModelResponse`` (see :class:`ResponseBuilder` for the rules), or ``None`` for an
        empty list.

    Raises:
        APIError: When ``chunks`` is ``None`` or holds something that is not a chunk.
    """
    if chunks is None:
        raise APIError("stream_chunk_builder needs a list of chunks, got None", status_code=500)
    builder = ResponseBuilder(messages)
    add = builder.add
    for chunk in chunks:
        add(chunk if chunk.__class__ is ChatCompletionChunk else _as_chunk(chunk))
    if builder.chunk_count == 0:
        return None
    return builder.build()
