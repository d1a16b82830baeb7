"""to_responses_sse, to_messages_sse, to_ui_message_stream: dialect encoders as operators."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from _chunks import chunk
from reactivex import Observable
from reactivex.testing import ReactiveTest, TestScheduler

from rxllm import operators as ops
from rxllm.errors import InternalServerError
from rxllm.sse import SSEDecoder
from rxllm.types import ChatCompletionChunk

on_next, on_completed, on_error = ReactiveTest.on_next, ReactiveTest.on_completed, ReactiveTest.on_error
subscribe = ReactiveTest.subscribe

Operator = Callable[[Observable[ChatCompletionChunk]], Observable[bytes]]
OPERATORS: dict[str, Callable[[], Operator]] = {
    "responses": lambda: ops.to_responses_sse(model="asked"),
    "messages": lambda: ops.to_messages_sse(model="asked"),
    "ui": lambda: ops.to_ui_message_stream(),
}
#: What each dialect's failure looks like: (event name, predicate on the data)
FAILURE: dict[str, Callable[[str, Any], bool]] = {
    "responses": lambda name, data: name == "response.failed" and data["response"]["status"] == "failed",
    "messages": lambda name, data: name == "error" and data["error"]["type"] == "api_error",
    "ui": lambda name, data: data == "[DONE]",
}
SUCCESS = {"responses": "response.completed", "messages": "message_stop", "ui": "finish"}


def decoded(frames: list[bytes]) -> list[tuple[str, Any]]:
    """The events of the emitted frames; every frame must hold whole events."""
    out = []
    for frame in frames:
        decoder = SSEDecoder()
        for event in decoder.feed(frame):
            out.append((event.event, event.data if event.data == "[DONE]" else orjson.loads(event.data)))
        assert not decoder.close(), "a frame ends inside an event"
    return out


def kind(event: tuple[str, Any]) -> str:
    _name, data = event
    return data["type"] if isinstance(data, dict) else data


@pytest.mark.parametrize("dialect", sorted(OPERATORS))
class TestDialectOperators:
    def test_chunks_become_complete_frames_then_the_success_terminator(self, dialect: str) -> None:
        """Each emission is whole SSE events; completion adds the dialect's success terminator."""
        scheduler = TestScheduler()
        xs = scheduler.create_hot_observable(
            on_next(210, chunk("Hel")), on_next(220, chunk("lo", finish="stop")), on_completed(230)
        )
        results = scheduler.start(lambda: xs.pipe(OPERATORS[dialect]()))
        frames = [m.value.value for m in results.messages if m.value.kind == "N"]

        assert results.messages[-1] == on_completed(230)
        assert xs.subscriptions == [subscribe(200, 230)]
        assert SUCCESS[dialect] in [kind(e) for e in decoded(frames)]

    def test_an_error_becomes_the_dialects_error_event_then_completion(self, dialect: str) -> None:
        """An upstream error ends with that dialect's error event, never its success terminator."""
        scheduler = TestScheduler()
        xs = scheduler.create_hot_observable(on_next(210, chunk("Hel")), on_error(220, InternalServerError("boom")))
        results = scheduler.start(lambda: xs.pipe(OPERATORS[dialect]()))
        frames = [m.value.value for m in results.messages if m.value.kind == "N"]
        events = decoded(frames)

        assert results.messages[-1] == on_completed(220)
        assert FAILURE[dialect](*events[-1])
        assert SUCCESS[dialect] not in [kind(e) for e in events]

    def test_disposal_reaches_the_source(self, dialect: str) -> None:
        """Disposing the encoded stream unsubscribes from the chunks."""
        scheduler = TestScheduler()
        xs = scheduler.create_hot_observable(on_next(210, chunk("a")), on_next(400, chunk("b")), on_completed(500))
        scheduler.start(lambda: xs.pipe(OPERATORS[dialect]()), disposed=300)

        assert xs.subscriptions == [subscribe(200, 300)]

    def test_each_subscription_gets_its_own_encoder(self, dialect: str) -> None:
        """Two subscriptions of one pipeline each get a full stream with its own start."""
        pipeline = Observable(lambda obs, _=None: _emit(obs)).pipe(OPERATORS[dialect]())
        first: list[bytes] = []
        second: list[bytes] = []
        pipeline.subscribe(first.append)
        pipeline.subscribe(second.append)

        a, b = decoded(first), decoded(second)
        assert [kind(e) for e in a] == [kind(e) for e in b]
        assert kind(a[0]) in ("response.created", "message_start", "start")
        assert a[0] != b[0]  # fresh ids per subscription


def _emit(observer: Any) -> Any:
    observer.on_next(chunk("x", finish="stop"))
    observer.on_completed()


class TestModelName:
    def test_to_sse_reports_the_given_model(self) -> None:
        """to_sse(model=...) writes the client's model name into every chunk."""
        frames: list[bytes] = []
        Observable(lambda obs, _=None: _emit(obs)).pipe(ops.to_sse(model="alias")).subscribe(frames.append)

        assert orjson.loads(frames[0][len(b"data: ") : -2])["model"] == "alias"
        assert frames[-1] == b"data: [DONE]\n\n"

    def test_responses_and_messages_report_the_given_model(self) -> None:
        """The Responses and Messages encoders report the model they were given."""
        for op, read in (
            (ops.to_responses_sse(model="alias"), lambda d: d["response"]["model"]),
            (ops.to_messages_sse(model="alias"), lambda d: d["message"]["model"]),
        ):
            frames: list[bytes] = []
            Observable(lambda obs, _=None: _emit(obs)).pipe(op).subscribe(frames.append)

            assert read(decoded(frames)[0][1]) == "alias"
