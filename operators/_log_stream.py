"""``log_stream``: one canonical structlog line per stream, per-chunk details only at debug."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import structlog
from reactivex import Observable, abc

from rxllm._log import Logger, get_logger
from rxllm.errors import APIError
from rxllm.types import ChatCompletionChunk

from ._tap_cost import CostReport, tap_cost

__all__ = ["log_stream"]


def _debug_enabled(logger: Any) -> bool:
    if isinstance(logger, Logger):
        return logger.is_enabled_for(logging.DEBUG)
    # A structlog logger passed in: its unconfigured default prints every level to stdout; a
    # library should not flood an application that never asked for logs, so per-chunk lines
    # also need structlog to have been configured (by the application, or capture_logs()).
    if not structlog.is_configured():
        return False
    check = getattr(logger, "is_enabled_for", None)
    if check is None:
        check = getattr(logger, "isEnabledFor", None)
    try:
        return bool(check(logging.DEBUG)) if check is not None else False
    except Exception:
        return False


def _fields(r: CostReport) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "model": r.model,
        "provider": r.provider,
        "outcome": r.outcome,
        "prompt_tokens": r.prompt_tokens,
        "completion_tokens": r.completion_tokens,
        "cached_tokens": r.cached_tokens,
        "reasoning_tokens": r.reasoning_tokens,
        "total_tokens": r.total_tokens,
        "usage_estimated": r.usage_estimated,
        "cost_usd": r.cost,
        "time_to_first_chunk_s": r.time_to_first_chunk,
        "time_to_first_content_s": r.time_to_first_content,
        "duration_s": r.duration,
        "chunks": r.chunk_count,
        "output_tokens_per_second": r.output_tokens_per_second,
    }
    if r.cost_unavailable is not None:
        fields["cost_unavailable"] = r.cost_unavailable
    if r.error is not None:
        fields["error_type"] = type(r.error).__name__
        if isinstance(r.error, APIError):
            # APIError messages are built to be safe (no keys, no request bodies);
            # other exceptions may carry anything, so only their type is logged.
            fields["error"] = r.error.message
            fields["status_code"] = r.error.status_code
    return fields


def log_stream(
    logger: Any = None,
    *,
    model: str | None = None,
    llm_provider: str | None = None,
    log_chunks: bool | None = None,
    scheduler: abc.SchedulerBase | None = None,
) -> Callable[[Observable[ChatCompletionChunk]], Observable[ChatCompletionChunk]]:
    """Log one "canonical" info line per stream when it ends; chunks pass through untouched.

    ::

        source:  --a--b--c--|
        output:  --a--b--c--|
        log:                L     info "rxllm.stream" model=... outcome=completed cost_usd=...

    The line (event ``"rxllm.stream"``) carries model, provider, outcome (``completed``,
    ``error`` or ``cancelled``), prompt/completion/cached/reasoning/total tokens, whether they
    were estimated, ``cost_usd``, time to first chunk and to first content, duration, chunk
    count and output tokens per second; for errors the error type (and, for rxllm's own
    errors, their message and status). It is built by :func:`tap_cost`, so it is emitted
    exactly once per subscription, cancellations included. Never logged: prompt text,
    generated text, API keys.

    Per-chunk lines (event ``"rxllm.stream.chunk"``: sequence number, choice count, characters,
    finish reasons, never text) are emitted at debug level only when the logger has debug
    enabled and structlog has been configured (its unconfigured default prints everything),
    decided once per subscription. rxllm never calls ``structlog.configure()``.

    Args:
        logger: A structlog logger (default ``structlog.get_logger("rxllm")``).
        model: The model name to log and price (default: the chunks' ``model``).
        llm_provider: The provider, when not a prefix of the model name.
        log_chunks: Force per-chunk debug lines on (True) or off (False); None decides as
            above.
        scheduler: Where times are read (as for :func:`tap_cost`).

    Returns:
        An operator ``Observable[ChatCompletionChunk] -> Observable[ChatCompletionChunk]``.
    """

    def _log_stream(source: Observable[ChatCompletionChunk]) -> Observable[ChatCompletionChunk]:
        def subscribe(
            observer: abc.ObserverBase[ChatCompletionChunk], scheduler_: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            log = logger if logger is not None else get_logger("rxllm")
            per_chunk = _debug_enabled(log) if log_chunks is None else log_chunks

            def report(r: CostReport) -> None:
                log.info("rxllm.stream", **_fields(r))

            counted = source
            if per_chunk:
                seq = 0

                def debug(chunk: ChatCompletionChunk) -> None:
                    nonlocal seq
                    seq += 1
                    try:
                        log.debug(
                            "rxllm.stream.chunk",
                            seq=seq,
                            choices=len(chunk.choices),
                            chars=sum(len(c.delta.content or "") for c in chunk.choices),
                            finish_reasons=[c.finish_reason for c in chunk.choices if c.finish_reason] or None,
                            usage=chunk.usage is not None,
                        )
                    except Exception:  # noqa: S110 - a logging failure must not break the stream
                        pass

                counted = source.pipe(_tap(debug))
            return counted.pipe(
                tap_cost(report, model=model, llm_provider=llm_provider, scheduler=scheduler)
            ).subscribe(observer, scheduler=scheduler_)

        return Observable(subscribe)

    return _log_stream


def _tap(
    fn: Callable[[ChatCompletionChunk], None],
) -> Callable[[Observable[ChatCompletionChunk]], Observable[ChatCompletionChunk]]:
    def _tap(source: Observable[ChatCompletionChunk]) -> Observable[ChatCompletionChunk]:
        def subscribe(
            observer: abc.ObserverBase[ChatCompletionChunk], scheduler_: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            def on_next(chunk: ChatCompletionChunk) -> None:
                fn(chunk)
                observer.on_next(chunk)

            return source.subscribe(on_next, observer.on_error, observer.on_completed, scheduler=scheduler_)

        return Observable(subscribe)

    return _tap
