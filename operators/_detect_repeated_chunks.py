"""``detect_repeated_chunks``: stop a model that loops on the same chunk (LiteLLM's guard, per choice)."""

from __future__ import annotations

from collections.abc import Callable

from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rxllm.builder import ResponseBuilder
from rxllm.errors import InternalServerError
from rxllm.settings import check_repeated_chunk_limit, settings
from rxllm.types import ChatCompletionChunk

__all__ = ["RepeatTracker", "detect_repeated_chunks"]


class RepeatTracker:
    """One stream's repeated-chunk state: per choice, the last content and how often it came in a row.

    :meth:`check` is the whole per-chunk cost of the detection: for each choice, its content is
    compared with that choice's previous content (``==``, which is an identity check first),
    and a counter is bumped in place (no allocation per chunk). Shared by
    :func:`detect_repeated_chunks` and ``completion``/``acompletion``, which run it inside their
    instrumentation (one observer layer less per chunk).

    Args:
        limit: The number of identical chunks in a row that counts as a loop (at least 1).
    """

    __slots__ = ("count", "index", "last", "limit", "runs")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        # the run of the choice seen last, in slots: a one-choice stream never touches the dict
        self.index = -1
        self.last: str | None = None
        self.count = 0
        self.runs: dict[int, tuple[str | None, int]] = {}  # the other choices' runs

    def check(self, chunk: ChatCompletionChunk) -> str | None:
        """The content ``chunk`` repeats for the ``limit``-th time in a row, or ``None``."""
        for sc in chunk.choices:
            d = sc.delta
            c = d.content
            i = sc.index
            if i != self.index:  # another choice than last time: swap its run into the slots
                runs = self.runs
                if self.index >= 0:
                    runs[self.index] = (self.last, self.count)
                self.last, self.count = runs.pop(i, (None, 0))
                self.index = i
            if d.tool_calls:
                self.last = None
                continue
            if not c or c.__class__ is not str:
                continue
            if len(c) <= 2:
                self.last = None
            elif c == self.last:
                self.count += 1
                if self.count >= self.limit:
                    return c
            else:
                self.last = c
                self.count = 1
                if self.limit <= 1:
                    return c
        return None


def detect_repeated_chunks(
    limit: int | None = None,
    *,
    llm_provider: str | None = None,
    partial_response: bool = True,
) -> Callable[[Observable[ChatCompletionChunk]], Observable[ChatCompletionChunk]]:
    """Pass chunks through; fail when a choice repeats the same content more than ``limit`` times.

    The rules are LiteLLM's, counted per choice index: the ``limit``-th consecutive chunk
    whose ``delta.content`` is identical raises ``rxllm.InternalServerError`` (status 500,
    ``"The model is repeating the same chunk = <content>."``), as LiteLLM's counter does (it
    starts at 1 and fires at ``>= limit``), and that chunk is not emitted (100 identical
    chunks with ``limit=100``: 99 pass, then the error). Content of 2 characters or fewer
    never counts and resets the run; chunks with empty or ``None`` content are transparent; a
    chunk carrying tool calls resets its choice's run. The error is a plain
    ``InternalServerError`` (so retry logic catches it) with ``llm_provider``, ``model`` (from
    the chunk) and ``partial_response`` (the response rebuilt from the chunks that passed),
    and the upstream is disposed at once, so the model stops generating.

    ::

        chunks:   -a-a-a-a-|          (limit=3, a = "How are you?")
        detect_repeated_chunks(3)
        result:   -a-a-#              # InternalServerError; upstream disposed

    Args:
        limit: The number of identical chunks in a row that fails the stream. ``None`` reads
            ``rxllm.REPEATED_STREAMING_CHUNK_LIMIT`` at each subscription (its default is the
            ``REPEATED_STREAMING_CHUNK_LIMIT`` environment variable at import, else 100).
        llm_provider: Put on the error, for logs and retry decisions.
        partial_response: Rebuild the chunks that passed (about 0.25 µs a chunk) to attach
            them to the error. Pass ``False`` when an operator downstream attaches it anyway
            (``to_response``, ``completion()``'s instrumentation).

    Returns:
        An operator ``Observable[ChatCompletionChunk] -> Observable[ChatCompletionChunk]``.

    Raises:
        ValueError: When ``limit`` is below 1.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")

    def _detect_repeated_chunks(source: Observable[ChatCompletionChunk]) -> Observable[ChatCompletionChunk]:
        def subscribe(
            observer: abc.ObserverBase[ChatCompletionChunk], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            try:
                lim = limit if limit is not None else check_repeated_chunk_limit(settings.repeated_chunk_limit)
            except ValueError as exc:
                observer.on_error(exc)
                return Disposable()  # never subscribe: that would start a request for nothing
            check = RepeatTracker(lim).check
            builder = ResponseBuilder() if partial_response else None

            def on_next(chunk: ChatCompletionChunk) -> None:
                try:
                    repeated = check(chunk)
                    if repeated is not None:
                        observer.on_error(
                            InternalServerError(
                                f"The model is repeating the same chunk = {repeated}.",
                                llm_provider=llm_provider,
                                model=chunk.model or None,
                                partial_response=builder.build(partial=True) if builder else None,
                            )
                        )
                        return
                    if builder is not None:
                        builder.add(chunk)
                except Exception as exc:
                    observer.on_error(exc)
                    return
                observer.on_next(chunk)

            return source.subscribe(on_next, observer.on_error, observer.on_completed, scheduler=scheduler)

        return Observable(subscribe)

    return _detect_repeated_chunks
