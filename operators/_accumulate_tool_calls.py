"""``accumulate_tool_calls`` and ``tool_call_snapshots``: complete tool calls out of fragments."""

from __future__ import annotations

from collections.abc import Callable

from reactivex import Observable, abc

from rxllm.builder import ToolCallAssembler
from rxllm.types import ChatCompletionChunk, ToolCall

__all__ = ["accumulate_tool_calls", "tool_call_snapshots"]


def accumulate_tool_calls() -> Callable[[Observable[ChatCompletionChunk]], Observable[ToolCall]]:
    """Emit each tool call as soon as it is complete, so a tool can start while the model streams.

    A call is complete when the next call starts in its choice, when its choice sends a
    ``finish_reason``, or when the stream completes. Each ``ToolCall`` carries ``id``,
    ``type``, ``function.name``, ``function.arguments`` (a JSON string, ``"{}"`` when none
    came), ``index`` (its tool-call index) and ``choice_index``; ``parsed_arguments()``
    decodes the JSON or raises ``InvalidToolArgumentsError``. Every choice is handled, and
    everything providers send (see :class:`rxllm.builder.ToolCallAssembler`). Chunks are not
    re-emitted; on an upstream error, calls still open are dropped (they may be cut short).

    ::

        chunks:  -[0:id,name]-[0:'{"a"']-[0:':1}']-[1:id,name,'{}']-[finish]-|
        accumulate_tool_calls()
        result:  -------------------------------------call0------------call1--|

    Returns:
        An operator ``Observable[ChatCompletionChunk] -> Observable[ToolCall]``.
    """

    def _accumulate_tool_calls(source: Observable[ChatCompletionChunk]) -> Observable[ToolCall]:
        def subscribe(
            observer: abc.ObserverBase[ToolCall], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            assemblers: dict[int, ToolCallAssembler] = {}

            def on_next(chunk: ChatCompletionChunk) -> None:
                ready: list[ToolCall] | None = None
                try:
                    for sc in chunk.choices:
                        ci = sc.index
                        asm = assemblers.get(ci)
                        tcs = sc.delta.tool_calls
                        if tcs:
                            if asm is None:
                                asm = assemblers[ci] = ToolCallAssembler(ci)
                            closed = asm.add(tcs)
                            if closed:
                                ready = ready or []
                                ready.extend(s.to_tool_call(ci) for s in closed)
                        if sc.finish_reason is not None and asm is not None:
                            closed = asm.close_all()
                            if closed:
                                ready = ready or []
                                ready.extend(s.to_tool_call(ci) for s in closed)
                except Exception as exc:
                    observer.on_error(exc)
                    return
                if ready:
                    for call in ready:
                        observer.on_next(call)

            def on_completed() -> None:
                try:
                    ready = [s.to_tool_call(ci) for ci in sorted(assemblers) for s in assemblers[ci].close_all()]
                except Exception as exc:
                    observer.on_error(exc)
                    return
                for call in ready:
                    observer.on_next(call)
                observer.on_completed()

            return source.subscribe(on_next, observer.on_error, on_completed, scheduler=scheduler)

        return Observable(subscribe)

    return _accumulate_tool_calls


def tool_call_snapshots() -> Callable[[Observable[ChatCompletionChunk]], Observable[tuple[ToolCall, ...]]]:
    """Emit every tool call so far, with its partial arguments, after each chunk carrying fragments.

    The running view for UIs showing arguments as they stream: one tuple per chunk that had
    tool-call fragments, holding all calls of all choices (ordered by choice, then by
    appearance), ``index`` and ``choice_index`` set. Arguments are partial JSON until the
    call completes; each tuple costs O(argument text so far), fine for tool arguments.

    ::

        chunks:  -[0:id,name]--[0:'{"a"']--text--[0:':1}']--|
        tool_call_snapshots()
        result:  -(c0:'{}')----(c0:'{"a"')------(c0:'{"a":1}')|

    Returns:
        An operator ``Observable[ChatCompletionChunk] -> Observable[tuple[ToolCall, ...]]``.
    """

    def _tool_call_snapshots(source: Observable[ChatCompletionChunk]) -> Observable[tuple[ToolCall, ...]]:
        def subscribe(
            observer: abc.ObserverBase[tuple[ToolCall, ...]], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            assemblers: dict[int, ToolCallAssembler] = {}

            def on_next(chunk: ChatCompletionChunk) -> None:
                changed = False
                try:
                    for sc in chunk.choices:
                        tcs = sc.delta.tool_calls
                        if tcs:
                            asm = assemblers.get(sc.index)
                            if asm is None:
                                asm = assemblers[sc.index] = ToolCallAssembler(sc.index)
                            asm.add(tcs)
                            changed = True
                    if not changed:
                        return
                    view = tuple(tc for ci in sorted(assemblers) for tc in assemblers[ci].tool_calls())
                except Exception as exc:
                    observer.on_error(exc)
                    return
                observer.on_next(view)

            return source.subscribe(on_next, observer.on_error, observer.on_completed, scheduler=scheduler)

        return Observable(subscribe)

    return _tool_call_snapshots
