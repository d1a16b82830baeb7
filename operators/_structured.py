"""``structured_output``: partial objects as the JSON grows, then one validated final object."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reactivex import Observable, abc

from rxllm.errors import JSONSchemaValidationError
from rxllm.events import EventBuilder, Finish, RefusalDelta, TextDelta, ToolCallArgumentsDelta, ToolCallDone
from rxllm.partial_json import PartialJSONParser
from rxllm.structured import OutputSchema, StructuredFinal, StructuredPartial
from rxllm.types import ChatCompletionChunk

__all__ = ["structured_output"]

_Structured = StructuredPartial | StructuredFinal


def structured_output(
    target: Any, *, tool: str | None = None, choice: int = 0
) -> Callable[[Observable[ChatCompletionChunk]], Observable[_Structured]]:
    """Parse a choice's JSON output as it streams: partial objects, then one validated object.

    The JSON comes from the choice's content (``response_format`` structured output), or
    from the arguments of the first tool call named ``tool`` (a tool's schema used as the
    output schema; a tool definition passed as ``target`` names the tool itself). Partial
    values go through the linear incremental parser (:mod:`rxllm.partial_json`: unfinished
    numbers and literals are withheld), and a ``StructuredPartial`` is emitted each time the
    value grows. When the content or the tool call is complete, the text is validated and one
    ``StructuredFinal(value, raw)`` is emitted: for a JSON schema ``dict`` the parsed JSON
    checked by rxllm's own validator, for a pydantic model class an instance
    (``model_validate``), for an attrs class an instance (nested attrs classes included).
    rxllm needs neither pydantic nor jsonschema.

    ::

        content: -'{"name": "Ad'-'a", "age": 3'-'6}'-[finish]-|
        structured_output(Person)
        result:  -P{name:Ad}-----P{name:Ada}------------F(Person(name="Ada", age=36))-|

    Args:
        target: A JSON schema dict, an OpenAI ``response_format``, a tool definition, a
            pydantic model class or an attrs class (see :class:`rxllm.structured.OutputSchema`).
        tool: Read this tool call's arguments instead of the content.
        choice: The choice index to read.

    Returns:
        An operator ``Observable[ChatCompletionChunk] -> Observable[StructuredPartial | StructuredFinal]``.

    Raises:
        TypeError: When ``target`` is none of the accepted kinds (at call time).

    The stream errors with ``rxllm.JSONSchemaValidationError`` (``raw_response`` holds the
    model's text) when the final text is not valid JSON, does not validate, the model
    refused, or the stream ended without the output.
    """
    schema = OutputSchema(target)
    tool_name = tool or schema.tool_name

    def _structured_output(source: Observable[ChatCompletionChunk]) -> Observable[_Structured]:
        def subscribe(
            observer: abc.ObserverBase[_Structured], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            builder = EventBuilder()
            parser = PartialJSONParser()
            parts: list[str] = []
            refusal: list[str] = []
            state = {"seen": 0, "done": False, "failed": False, "call": -1}

            def grow(fragment: str) -> None:
                parts.append(fragment)
                parser.feed(fragment)
                if parser.changes != state["seen"]:
                    state["seen"] = parser.changes
                    value = parser.value
                    if value is not None:
                        observer.on_next(StructuredPartial(value))

            def final(raw: str) -> None:
                state["done"] = True
                if not raw.strip() and refusal:
                    text = "".join(refusal)
                    raise JSONSchemaValidationError(
                        f"the model refused instead of answering with {schema.name}: {text!r}",
                        raw_response=text,
                        schema=schema.schema if schema.kind == "schema" else schema.name,
                        errors=["$: refusal"],
                    )
                observer.on_next(StructuredFinal(schema.parse(raw), raw))

            def handle(events: list[Any]) -> None:
                for ev in events:
                    if state["done"] or getattr(ev, "choice_index", choice) != choice:
                        continue
                    if tool_name is None:
                        if isinstance(ev, TextDelta):
                            grow(ev.delta)
                        elif isinstance(ev, RefusalDelta):
                            refusal.append(ev.delta)
                        elif isinstance(ev, Finish):
                            final("".join(parts))
                    elif isinstance(ev, ToolCallArgumentsDelta) and ev.name == tool_name:
                        if state["call"] in (-1, ev.index):
                            state["call"] = ev.index
                            grow(ev.fragment)
                    elif isinstance(ev, ToolCallDone) and ev.name == tool_name and state["call"] in (-1, ev.index):
                        final(ev.arguments)
                    elif isinstance(ev, RefusalDelta):
                        refusal.append(ev.delta)

            def fail(exc: Exception) -> None:
                state["failed"] = True
                observer.on_error(exc)

            def on_next(chunk: ChatCompletionChunk) -> None:
                if state["failed"]:
                    return
                try:
                    handle(builder.add(chunk))
                except Exception as exc:
                    fail(exc)

            def on_completed() -> None:
                if state["failed"]:
                    return
                try:
                    handle(builder.close())
                    if not state["done"]:
                        what = f"a call of tool {tool_name!r}" if tool_name else "content"
                        raise JSONSchemaValidationError(
                            f"the stream ended without structured output ({what} for choice {choice})",
                            raw_response="".join(parts),
                            schema=schema.schema if schema.kind == "schema" else schema.name,
                            errors=["$: missing"],
                        )
                except Exception as exc:
                    fail(exc)
                    return
                observer.on_completed()

            return source.subscribe(on_next, observer.on_error, on_completed, scheduler=scheduler)

        return Observable(subscribe)

    return _structured_output
