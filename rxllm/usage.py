"""Merging usage reported in pieces, and estimating it when a provider reports none.

Providers split usage across events (Anthropic: input tokens in ``message_start``, output in
``message_delta``; Gemini repeats running totals; OpenAI sends one ``choices: []`` chunk).
The rule that handles all of them: per field, the last positive value wins, so a later 0
never erases an earlier count; ``total_tokens`` is recomputed from the parts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from rxllm.types import Usage

__all__ = ["UsageAccumulator", "estimate_prompt_tokens", "estimate_tokens"]


def estimate_tokens(text: str) -> int:
    """A rough token count for text (about four characters a token), never 0 for non-empty text."""
    if not text:
        return 0
    return max(1, (len(text) + 3) // 4)


def estimate_prompt_tokens(messages: Iterable[Mapping[str, Any]] | None) -> int:
    """A rough prompt token count: the text of every message plus a few tokens of framing each."""
    if not messages:
        return 0
    total = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            total += estimate_tokens(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                    total += estimate_tokens(part["text"])
        total += 4
    return total


def _merge_details(old: Any, new: Any) -> Any:
    if new is None:
        return old
    if old is None:
        return new
    changes = {}
    for field in attrs.fields(type(new)):
        if field.name == "extra":
            continue
        value = getattr(new, field.name)
        if value:
            changes[field.name] = value
    merged_extra = {**old.extra, **new.extra} if (old.extra or new.extra) else old.extra
    return attrs.evolve(old, extra=merged_extra, **changes)


class UsageAccumulator:
    """Folds the usage objects of one stream into one, last positive value per field.

    Cheap to call per chunk: it does work only for chunks that carry usage.
    """

    __slots__ = ("_usage",)

    def __init__(self) -> None:
        self._usage: Usage | None = None

    def add(self, usage: Usage | None) -> None:
        """Fold in the usage one chunk carried (``None`` is ignored)."""
        if usage is None:
            return
        old = self._usage
        if old is None:
            self._usage = usage
            return
        self._usage = Usage(
            prompt_tokens=usage.prompt_tokens or old.prompt_tokens,
            completion_tokens=usage.completion_tokens or old.completion_tokens,
            total_tokens=0,
            prompt_tokens_details=_merge_details(old.prompt_tokens_details, usage.prompt_tokens_details),
            completion_tokens_details=_merge_details(old.completion_tokens_details, usage.completion_tokens_details),
            estimated=usage.estimated and old.estimated,
            extra={**old.extra, **usage.extra} if (old.extra or usage.extra) else old.extra,
        )

    @property
    def reported(self) -> bool:
        """Whether any chunk carried usage."""
        return self._usage is not None

    def result(
        self,
        *,
        completion_text: str = "",
        messages: Iterable[Mapping[str, Any]] | None = None,
    ) -> Usage:
        """The merged usage; estimated from text when the provider reported none.

        Args:
            completion_text: All generated text (content, reasoning, tool arguments), used
                only when no usage was reported.
            messages: The prompt messages, used only when no usage was reported.
        """
        u = self._usage
        if u is None:
            prompt = estimate_prompt_tokens(messages)
            completion = estimate_tokens(completion_text)
            return Usage(prompt, completion, prompt + completion, estimated=True)
        total = u.prompt_tokens + u.completion_tokens
        if u.total_tokens > total and not (u.prompt_tokens and u.completion_tokens):
            total = u.total_tokens
        return attrs.evolve(u, total_tokens=total)
