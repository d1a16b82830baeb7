"""``limit``: output-token, reasoning-token and cost budgets enforced mid-stream."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from reactivex import Observable, abc
from reactivex.disposable import SingleAssignmentDisposable

from rxllm.builder import ResponseBuilder
from rxllm.errors import APIError, BudgetExceededError
from rxllm.pricing import get_model_info, prices_cost
from rxllm.types import ChatCompletionChunk
from rxllm.usage import estimate_prompt_tokens

__all__ = ["limit"]

_Operator = Callable[[Observable[ChatCompletionChunk]], Observable[ChatCompletionChunk]]


def _tokens(chars: int) -> int:
    """Estimated tokens for ``chars`` characters (``rxllm.usage.estimate_tokens``'s rule, 0 for none)."""
    return (chars + 3) // 4 if chars else 0


class _Meter:
    """Running counts for one stream: characters generated, and the usage reported so far."""

    __slots__ = ("chars", "entry", "prompt", "reasoning_chars", "reported_out", "reported_reasoning")

    def __init__(self, prompt: int) -> None:
        self.chars = 0
        self.reasoning_chars = 0
        self.reported_out = 0
        self.reported_reasoning = 0
        self.prompt = prompt
        self.entry: Mapping[str, Any] | None = None

    def add(self, chunk: ChatCompletionChunk) -> None:
        for sc in chunk.choices:
            d = sc.delta
            if d.content and d.content.__class__ is str:
                self.chars += len(d.content)
            if d.refusal:
                self.chars += len(d.refusal)
            if d.reasoning_content:
                self.chars += len(d.reasoning_content)
                self.reasoning_chars += len(d.reasoning_content)
            for tc in d.tool_calls or ():
                fn = tc.function
                if fn is not None:
                    self.chars += len(fn.name or "") + len(fn.arguments or "")
            if d.function_call is not None:
                self.chars += len(d.function_call.arguments or "")
        u = chunk.usage
        if u is not None:
            self.reported_out = max(self.reported_out, u.completion_tokens)
            self.reported_reasoning = max(self.reported_reasoning, u.reasoning_tokens)
            if u.prompt_tokens:
                self.prompt = u.prompt_tokens

    @property
    def output_tokens(self) -> int:
        return max(self.reported_out, _tokens(self.chars))

    @property
    def reasoning_tokens(self) -> int:
        return max(self.reported_reasoning, _tokens(self.reasoning_chars))

    def cost(self) -> float | None:
        if self.entry is None:
            return None
        prompt_cost, output_cost = prices_cost(self.entry, self.prompt, self.output_tokens)
        return prompt_cost + output_cost


def limit(
    *,
    max_output_tokens: int | None = None,
    max_cost: float | None = None,
    max_reasoning_tokens: int | None = None,
    model: str | None = None,
    messages: Iterable[Mapping[str, Any]] | None = None,
) -> _Operator:
    """Cut a stream off the moment it crosses a budget: dispose the upstream, raise ``BudgetExceededError``.

    Checked on every chunk, against the provider's reported usage when a chunk carries it and
    otherwise against an estimate from the text received so far (about 4 characters a token,
    the estimate rxllm uses everywhere; reasoning, refusals and tool-call arguments count as
    output). ``max_cost`` prices the prompt (reported, or estimated from ``messages``) and
    the output with rxllm's price table (``model``, or the chunks' model name; an unknown
    price fails the stream with ``PriceNotFoundError``). The chunk that crosses a budget is
    not passed on: the upstream (the HTTP request) is disposed at once and the stream errors
    with :class:`rxllm.BudgetExceededError` carrying ``budget``, ``limit``, ``used``, the
    ``cost`` so far (``None`` when the model has no price) and ``partial_response``
    (everything received, that chunk included).

    ::

        chunks:  -a--b--c--d--|       c takes the output past max_output_tokens
        limit(max_output_tokens=...)
        result:  -a--b--#             # BudgetExceededError; upstream disposed at c

    Args:
        max_output_tokens: Most completion tokens allowed (reasoning included).
        max_cost: Most USD allowed for prompt plus output.
        max_reasoning_tokens: Most reasoning tokens allowed.
        model: The model to price (default: the chunks' ``model``).
        messages: The prompt, to estimate its tokens until usage is reported.

    Returns:
        An operator ``Observable[ChatCompletionChunk] -> Observable[ChatCompletionChunk]``.
    """
    for name, value in (
        ("max_output_tokens", max_output_tokens),
        ("max_cost", max_cost),
        ("max_reasoning_tokens", max_reasoning_tokens),
    ):
        if value is not None and value < 0:
            raise ValueError(f"limit: {name} must not be negative, got {value!r}")
    msgs = list(messages) if messages is not None else None

    def _limit(source: Observable[ChatCompletionChunk]) -> Observable[ChatCompletionChunk]:
        def subscribe(
            observer: abc.ObserverBase[ChatCompletionChunk], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            upstream = SingleAssignmentDisposable()
            builder = ResponseBuilder(msgs)
            meter = _Meter(estimate_prompt_tokens(msgs) if msgs else 0)
            stopped = [False]

            def stop(exc: Exception) -> None:
                stopped[0] = True
                upstream.dispose()
                observer.on_error(exc)

            def crossed(name: str, limit_: float, used: float, chunk: ChatCompletionChunk) -> BudgetExceededError:
                if meter.entry is None:
                    try:
                        meter.entry = get_model_info(model or chunk.model)
                    except APIError:
                        pass  # no price: the error carries cost=None
                unit = "USD" if name == "max_cost" else "tokens"
                return BudgetExceededError(
                    f"{name}={limit_} exceeded: {used:.6g} {unit} used when the stream was cut off",
                    budget=name,
                    limit=limit_,
                    used=used,
                    cost=meter.cost(),
                    model=model or chunk.model or None,
                    partial_response=builder.build(partial=True),
                )

            def on_next(chunk: ChatCompletionChunk) -> None:
                if stopped[0]:
                    return
                try:
                    builder.add(chunk)
                    meter.add(chunk)
                    if max_cost is not None and meter.entry is None:
                        meter.entry = get_model_info(model or chunk.model)  # PriceNotFoundError if unknown
                    error = None
                    if max_output_tokens is not None and meter.output_tokens > max_output_tokens:
                        error = crossed("max_output_tokens", max_output_tokens, meter.output_tokens, chunk)
                    elif max_reasoning_tokens is not None and meter.reasoning_tokens > max_reasoning_tokens:
                        error = crossed("max_reasoning_tokens", max_reasoning_tokens, meter.reasoning_tokens, chunk)
                    elif max_cost is not None:
                        cost = meter.cost()
                        if cost is not None and cost > max_cost:
                            error = crossed("max_cost", max_cost, cost, chunk)
                except Exception as exc:
                    stop(exc)
                    return
                if error is not None:
                    stop(error)
                    return
                observer.on_next(chunk)

            def on_error(exc: Exception) -> None:
                if not stopped[0]:
                    observer.on_error(exc)

            def on_completed() -> None:
                if not stopped[0]:
                    observer.on_completed()

            upstream.disposable = source.subscribe(on_next, on_error, on_completed, scheduler=scheduler)
            return upstream

        return Observable(subscribe)

    return _limit
