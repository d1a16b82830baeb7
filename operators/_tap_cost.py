"""``tap_cost``: one cost, usage and latency report per subscription, chunks untouched."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import attrs
from reactivex import Observable, abc
from reactivex.disposable import Disposable, SingleAssignmentDisposable

from rxllm._log import get_logger
from rxllm.errors import as_api_error
from rxllm.pricing import lookup_model_price, usage_cost
from rxllm.types import ChatCompletionChunk, CompletionTokensDetails, Usage
from rxllm.usage import UsageAccumulator, estimate_prompt_tokens

from ._scheduling import clock

__all__ = ["CostReport", "Outcome", "tap_cost"]

Outcome = Literal["completed", "error", "cancelled"]

_log = get_logger("rxllm")


@attrs.frozen
class CostReport:
    """What one stream cost, used and took; ``tap_cost`` makes one per subscription.

    Attributes:
        model: The model name (the ``model=`` given to ``tap_cost``, else the chunks' model).
        provider: The provider (given, else the model's ``prefix/``, else the price entry's).
        prompt_tokens: Prompt tokens, including cached ones.
        completion_tokens: Completion tokens, including reasoning ones.
        cached_tokens: Prompt tokens read from the provider's cache.
        reasoning_tokens: Completion tokens spent on hidden reasoning.
        cost: Total USD, or ``None`` when the model has no price (see ``cost_unavailable``).
        prompt_cost: The prompt part of ``cost`` (``None`` likewise).
        completion_cost: The completion part of ``cost`` (``None`` likewise).
        cost_unavailable: Why ``cost`` is ``None``; ``None`` when it is known.
        usage_estimated: True when rxllm estimated tokens because the provider reported none
            (always the case for a stream cancelled before OpenAI's final usage chunk).
        time_to_first_chunk: Seconds from subscription to the first chunk (``None``: none came).
        time_to_first_content: Seconds to the first chunk carrying content, reasoning, refusal
            or tool-call data (``None``: none came).
        duration: Seconds from subscription to the end (completion, error or cancellation).
        chunk_count: Chunks seen.
        output_tokens_per_second: ``completion_tokens`` over the time from the first chunk to
            the end (``None`` when that time is 0).
        outcome: ``"completed"``, ``"error"`` or ``"cancelled"`` (disposed before the end).
        error: The exception, when ``outcome == "error"``.
    """

    model: str
    provider: str | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    cost: float | None
    prompt_cost: float | None
    completion_cost: float | None
    cost_unavailable: str | None
    usage_estimated: bool
    time_to_first_chunk: float | None
    time_to_first_content: float | None
    duration: float
    chunk_count: int
    output_tokens_per_second: float | None
    outcome: Outcome
    error: BaseException | None = None

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens


def _tokens_for_chars(n: int) -> int:
    # The same rule as rxllm.usage.estimate_tokens, on a character count instead of the text:
    # the hot path counts characters and never joins text.
    return 0 if n <= 0 else max(1, (n + 3) // 4)


class _Meter:
    """Per-subscription counters; ``add`` is the whole per-chunk cost."""

    __slots__ = (
        "chars",
        "chunk_model",
        "chunks",
        "first_chunk",
        "first_content",
        "now",
        "reasoning_chars",
        "start",
        "usage",
    )

    def __init__(self, now: Callable[[], float]) -> None:
        self.now = now
        self.start = now()
        self.first_chunk: float | None = None
        self.first_content: float | None = None
        self.chunks = 0
        self.chars = 0
        self.reasoning_chars = 0
        self.chunk_model = ""
        self.usage = UsageAccumulator()

    def add(self, chunk: ChatCompletionChunk) -> None:
        choices = chunk.choices  # first: an item that is not a chunk fails here, uncounted
        self.chunks += 1
        if self.first_chunk is None:
            self.first_chunk = self.now()
        if not self.chunk_model and chunk.model:
            self.chunk_model = chunk.model
        if chunk.usage is not None:
            self.usage.add(chunk.usage)
        for choice in choices:
            delta = choice.delta
            n = 0
            text = delta.content
            if text:
                n += len(text)
            text = delta.reasoning_content
            if text:
                self.reasoning_chars += len(text)
                n += len(text)
            text = delta.refusal
            if text:
                n += len(text)
            calls = delta.tool_calls
            if calls:
                for call in calls:
                    fn = call.function
                    if fn is not None:
                        n += len(fn.arguments or "") + len(fn.name or "") + 1
            if delta.function_call is not None:
                n += len(delta.function_call.arguments or "") + len(delta.function_call.name or "") + 1
            if n:
                self.chars += n
                if self.first_content is None:
                    self.first_content = self.now()

    def final_usage(self, messages: Iterable[Mapping[str, Any]] | None) -> Usage:
        """The provider's usage where it reported it, estimates for what it did not."""
        if self.usage.reported:
            usage = self.usage.result()
            if usage.completion_tokens == 0 and self.chars:
                # A stream cut short before the provider's output count (Anthropic sends it last).
                usage = attrs.evolve(usage, completion_tokens=_tokens_for_chars(self.chars), estimated=True)
            if usage.prompt_tokens == 0 and messages:
                usage = attrs.evolve(usage, prompt_tokens=estimate_prompt_tokens(messages), estimated=True)
            return usage
        details = (
            CompletionTokensDetails(reasoning_tokens=_tokens_for_chars(self.reasoning_chars))
            if self.reasoning_chars
            else None
        )
        prompt = estimate_prompt_tokens(messages)
        completion = _tokens_for_chars(self.chars)
        return Usage(prompt, completion, prompt + completion, completion_tokens_details=details, estimated=True)


def _price(
    names: Iterable[str], llm_provider: str | None, pricing: Mapping[str, Any] | None
) -> tuple[Mapping[str, Any] | None, str | None]:
    """The price entry to apply, or ``(None, reason)``."""
    if pricing is not None and "input_cost_per_token" in pricing:
        return pricing, None
    table: Mapping[str, Mapping[str, Any]] | None = pricing
    tried = []
    for name in names:
        if not name:
            continue
        tried.append(name)
        found = lookup_model_price(name, llm_provider=llm_provider, table=table)
        if found is not None:
            return found[1], None
    if not tried:
        return None, "no model name: pass model= to tap_cost"
    shown = " or ".join(repr(n) for n in dict.fromkeys(tried))
    return None, f"no price for model {shown}; add one with rxllm.register_model()"


def build_report(
    m: _Meter,
    outcome: Outcome,
    error: BaseException | None,
    *,
    model: str | None,
    llm_provider: str | None,
    pricing: Mapping[str, Any] | None,
    messages: Iterable[Mapping[str, Any]] | None,
) -> CostReport:
    """The :class:`CostReport` of one metered stream, read at its end (``tap_cost``'s arguments).

    Shared by :func:`tap_cost` and the proxy, which meters inside its own feed.
    """
    end = m.now()
    usage = m.final_usage(messages)
    entry, reason = _price((model or "", m.chunk_model), llm_provider, pricing)
    prompt_cost: float | None = None
    completion_cost: float | None = None
    if entry is not None:
        try:
            prompt_cost, completion_cost = usage_cost(entry, usage)
        except (TypeError, ValueError) as exc:
            reason = f"bad price entry: {exc}"
    name = model or m.chunk_model
    provider = llm_provider
    if provider is None and "/" in name:
        provider = name.split("/", 1)[0]
    if provider is None and entry is not None:
        provider = entry.get("litellm_provider")
    total = (prompt_cost or 0.0) + (completion_cost or 0.0)
    gen_time = end - m.first_chunk if m.first_chunk is not None else 0.0
    return CostReport(
        model=name,
        provider=provider,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cached_tokens=usage.cached_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        cost=None if prompt_cost is None or completion_cost is None else total,
        prompt_cost=prompt_cost,
        completion_cost=completion_cost,
        cost_unavailable=None if prompt_cost is not None else reason,
        usage_estimated=usage.estimated,
        time_to_first_chunk=None if m.first_chunk is None else m.first_chunk - m.start,
        time_to_first_content=None if m.first_content is None else m.first_content - m.start,
        duration=end - m.start,
        chunk_count=m.chunks,
        output_tokens_per_second=usage.completion_tokens / gen_time if gen_time > 0 else None,
        outcome=outcome,
        error=error,
    )


def tap_cost(
    on_report: Callable[[CostReport], Any],
    pricing: Mapping[str, Any] | None = None,
    *,
    model: str | None = None,
    llm_provider: str | None = None,
    messages: Iterable[Mapping[str, Any]] | None = None,
    scheduler: abc.SchedulerBase | None = None,
) -> Callable[[Observable[ChatCompletionChunk]], Observable[ChatCompletionChunk]]:
    """Report cost, usage and latency once per subscription; chunks pass through untouched.

    ::

        source:  --a--b--c--|            --a--b--#           --a--b--  (disposed)
        output:  --a--b--c--|            --a--b--#           --a--b--
        report:             R(completed)         R(error)            R(cancelled)

    ``on_report`` receives a :class:`CostReport` exactly once per subscription: just before
    completion or the error is passed on, or right after a disposal (a consumer that stops
    early, ``break``, a client leaving). A cancelled stream is still costed, from the usage the
    provider sent if any, else estimated from the characters received (and ``messages``).

    Per chunk the operator only counts: characters (no text is joined), chunks, usage objects,
    and reads the clock twice per stream. Times come from the scheduler's ``now`` (the
    operator's ``scheduler``, else the subscription's), so they are exact in virtual time;
    with neither, from the monotonic clock.

    An ``on_report`` that raises is logged on the ``"rxllm"`` structlog logger (event
    ``rxllm.tap_cost.on_report_failed``) and otherwise ignored: accounting must never break, or
    retry, the stream it watches. A model with no price gives ``cost=None`` and says why in
    ``cost_unavailable``. Place ``tap_cost`` upstream of ``retry_stream`` for one report per
    attempt (each attempt is a billed request); items that are not chunks pass unmetered.

    Args:
        on_report: Called with the :class:`CostReport`.
        pricing: A price table like :data:`rxllm.model_cost` to search instead of it, or one
            price entry (a mapping with ``input_cost_per_token``) to apply whatever the model.
        model: The model name to price and report (default: the chunks' ``model``, which
            is also tried when this one has no price).
        llm_provider: The provider, when not a prefix of the model name.
        messages: The prompt, to estimate prompt tokens when the provider reports none.
        scheduler: Where time is read; see above.

    Returns:
        An operator ``Observable[ChatCompletionChunk] -> Observable[ChatCompletionChunk]``.
    """

    def _tap_cost(source: Observable[ChatCompletionChunk]) -> Observable[ChatCompletionChunk]:
        def subscribe(
            observer: abc.ObserverBase[ChatCompletionChunk], scheduler_: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            meter = _Meter(clock(scheduler or scheduler_))
            lock = threading.Lock()
            reported = False

            def finish(outcome: Outcome, error: BaseException | None) -> None:
                nonlocal reported
                with lock:
                    if reported:
                        return
                    reported = True
                try:
                    on_report(
                        build_report(
                            meter,
                            outcome,
                            error,
                            model=model,
                            llm_provider=llm_provider,
                            pricing=pricing,
                            messages=messages,
                        )
                    )
                except Exception:
                    # A broken report callback must not break (or re-run) the stream it watches.
                    _log.exception("rxllm.tap_cost.on_report_failed", model=model or meter.chunk_model)

            add = meter.add

            def on_next(chunk: ChatCompletionChunk) -> None:
                # Markers that share the stream (retry_stream's StreamRestart) are not metered;
                # a chunk the meter cannot read is an error, never silently skipped or hung on.
                if isinstance(chunk, ChatCompletionChunk):
                    try:
                        add(chunk)
                    except Exception as exc:
                        error = as_api_error(exc)
                        upstream.dispose()
                        finish("error", error)
                        observer.on_error(error)
                        return
                observer.on_next(chunk)

            def on_error(error: Exception) -> None:
                finish("error", error)
                observer.on_error(error)

            def on_completed() -> None:
                finish("completed", None)
                observer.on_completed()

            upstream = SingleAssignmentDisposable()
            upstream.disposable = source.subscribe(on_next, on_error, on_completed, scheduler=scheduler_)

            def dispose() -> None:
                upstream.dispose()
                finish("cancelled", None)

            return Disposable(dispose)

        return Observable(subscribe)

    return _tap_cost
