"""The chunk shape check at the provider boundary: after it, operators can trust their input.

:func:`chunk_problem` walks one :class:`~rxllm.types.ChatCompletionChunk` and names the first
field whose type is not what the data model promises (``choices[0].delta.content``), or
returns ``None``. It reads each field once with identity checks on classes, so a typical
chunk (one choice, a text delta) costs well under a microsecond; the provider boundary in
:mod:`rxllm.providers` turns a problem into a :class:`~rxllm.errors.MalformedStreamError`
naming the field and the provider.

The OpenAI-compatible provider checks its common chunks while decoding them instead (the
``check=`` rows of :mod:`rxllm.types`, compiled into ``ChatCompletionChunk._wire_checked``),
and comes here only for a chunk that fails or needs normalizing: the rules in both places
must stay the same (``tests/test_wire.py`` checks that they agree on arbitrary wire dicts).
"""

from __future__ import annotations

from typing import Any

from rxllm.types import ChatCompletionChunk, Delta, FunctionDelta, StreamChoice, ToolCallDelta, Usage

__all__ = ["chunk_problem", "describe"]

_STR = str
_INT = int


def describe(value: Any) -> str:
    """A short account of a bad value for an error message: its type and a clipped repr."""
    text = repr(value)
    if len(text) > 60:
        text = text[:60] + "..."
    return f"{type(value).__name__} {text}"


def _opt_str(value: Any) -> bool:
    return value is None or value.__class__ is _STR


def _count(value: Any) -> bool:
    """A token count: a non-negative int (not a bool)."""
    return value.__class__ is _INT and value >= 0


def _opt_count(value: Any) -> bool:
    return value is None or (value.__class__ is _INT and value >= 0)


def _function_problem(fn: Any, where: str) -> str | None:
    if fn.__class__ is not FunctionDelta:
        return f"{where} must be an object, got {describe(fn)}"
    if not _opt_str(fn.name):
        return f"{where}.name must be a string, got {describe(fn.name)}"
    if not _opt_str(fn.arguments):
        return f"{where}.arguments must be a string, got {describe(fn.arguments)}"
    return None


def _delta_problem(d: Any, where: str) -> str | None:
    if d.__class__ is not Delta:
        return f"{where} must be an object, got {describe(d)}"
    if not _opt_str(d.content):
        return f"{where}.content must be a string or null, got {describe(d.content)}"
    if not _opt_str(d.role):
        return f"{where}.role must be a string or null, got {describe(d.role)}"
    if not _opt_str(d.reasoning_content):
        return f"{where}.reasoning_content must be a string or null, got {describe(d.reasoning_content)}"
    if not _opt_str(d.refusal):
        return f"{where}.refusal must be a string or null, got {describe(d.refusal)}"
    tcs = d.tool_calls
    if tcs is not None:
        if tcs.__class__ is not tuple:
            return f"{where}.tool_calls must be a list, got {describe(tcs)}"
        for j, tc in enumerate(tcs):
            if tc.__class__ is ToolCallDelta:  # the sound case in identity checks; words only for a fault
                i, tid, kind, fn = tc.index, tc.id, tc.type, tc.function
                if (
                    (i is None or (i.__class__ is _INT and i >= 0))
                    and (tid is None or tid.__class__ is _STR)
                    and (kind is None or kind.__class__ is _STR)
                    and (
                        fn is None
                        or (
                            fn.__class__ is FunctionDelta
                            and (fn.name is None or fn.name.__class__ is _STR)
                            and (fn.arguments is None or fn.arguments.__class__ is _STR)
                        )
                    )
                ):
                    continue
            at = f"{where}.tool_calls[{j}]"
            if tc.__class__ is not ToolCallDelta:
                return f"{at} must be an object, got {describe(tc)}"
            if not _opt_count(tc.index):
                return f"{at}.index must be a non-negative integer, got {describe(tc.index)}"
            if not _opt_str(tc.id):
                return f"{at}.id must be a string, got {describe(tc.id)}"
            if not _opt_str(tc.type):
                return f"{at}.type must be a string, got {describe(tc.type)}"
            if tc.function is not None:
                problem = _function_problem(tc.function, f"{at}.function")
                if problem is not None:
                    return problem
    if d.function_call is not None:
        return _function_problem(d.function_call, f"{where}.function_call")
    return None


def _usage_problem(u: Any) -> str | None:
    if u.__class__ is not Usage:
        return f"usage must be an object, got {describe(u)}"
    for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
        value = getattr(u, name)
        if not _count(value):
            return f"usage.{name} must be a non-negative integer, got {describe(value)}"
    for group in ("prompt_tokens_details", "completion_tokens_details"):
        details = getattr(u, group)
        if details is None:
            continue
        fields = getattr(details, "_fields", None) or tuple(details._known)
        for name in fields:
            value = getattr(details, name, None)
            if not _opt_count(value):
                return f"usage.{group}.{name} must be a non-negative integer, got {describe(value)}"
    return None


def chunk_problem(chunk: ChatCompletionChunk) -> str | None:
    """The first field of ``chunk`` whose type breaks the data model, described; ``None`` when sound.

    Checked: the top-level strings (``id``, ``model``, ``object``, ``system_fingerprint``,
    ``service_tier``) and ``created``; every choice's ``index`` (a non-negative int),
    ``finish_reason`` and delta (strings for text, tool calls with int indexes and string
    ids, names and arguments); usage counts (non-negative ints).

    The sound common case (a text delta) is a handful of identity checks, inlined; any doubt
    goes to the full walk, which also writes the message.
    """
    if (
        chunk.id.__class__ is _STR
        and chunk.model.__class__ is _STR
        and chunk.object.__class__ is _STR
        and (chunk.created.__class__ is _INT or chunk.created.__class__ is float)
        and (chunk.system_fingerprint is None or chunk.system_fingerprint.__class__ is _STR)
        and (chunk.service_tier is None or chunk.service_tier.__class__ is _STR)
        and chunk.choices.__class__ is tuple
    ):
        for sc in chunk.choices:
            if sc.__class__ is not StreamChoice:
                break
            index = sc.index
            if index.__class__ is not _INT or index < 0:
                break
            fr = sc.finish_reason
            if fr is not None and fr.__class__ is not _STR:
                break
            d = sc.delta
            if d.__class__ is not Delta:
                break
            if (
                (d.content is None or d.content.__class__ is _STR)
                and d.tool_calls is None
                and d.function_call is None
                and (d.role is None or d.role.__class__ is _STR)
                and (d.reasoning_content is None or d.reasoning_content.__class__ is _STR)
                and (d.refusal is None or d.refusal.__class__ is _STR)
            ):
                continue
            if _delta_problem(d, "") is not None:
                break
        else:
            return None if chunk.usage is None else _usage_problem(chunk.usage)
    return _full_problem(chunk)


def _full_problem(chunk: ChatCompletionChunk) -> str | None:
    if chunk.id.__class__ is not _STR:
        return f"id must be a string, got {describe(chunk.id)}"
    if chunk.model.__class__ is not _STR:
        return f"model must be a string, got {describe(chunk.model)}"
    created = chunk.created
    if created.__class__ is not _INT and created.__class__ is not float:
        return f"created must be a number, got {describe(created)}"
    if chunk.object.__class__ is not _STR:
        return f"object must be a string, got {describe(chunk.object)}"
    if not _opt_str(chunk.system_fingerprint):
        return f"system_fingerprint must be a string or null, got {describe(chunk.system_fingerprint)}"
    if not _opt_str(chunk.service_tier):
        return f"service_tier must be a string or null, got {describe(chunk.service_tier)}"
    choices = chunk.choices
    if choices.__class__ is not tuple:
        return f"choices must be a list, got {describe(choices)}"
    for i, sc in enumerate(choices):
        if sc.__class__ is not StreamChoice:
            return f"choices[{i}] must be an object, got {describe(sc)}"
        index = sc.index
        if index.__class__ is not _INT or index < 0:
            return f"choices[{i}].index must be a non-negative integer, got {describe(index)}"
        if not _opt_str(sc.finish_reason):
            return f"choices[{i}].finish_reason must be a string or null, got {describe(sc.finish_reason)}"
        problem = _delta_problem(sc.delta, f"choices[{i}].delta")
        if problem is not None:
            return problem
    if chunk.usage is not None:
        return _usage_problem(chunk.usage)
    return None
