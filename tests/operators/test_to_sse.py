"""to_sse: chunks to OpenAI-compatible server-sent events, and back."""

from __future__ import annotations

from typing import Any

import orjson
from _chunks import chunk, usage_chunk
from reactivex.testing import ReactiveTest, TestScheduler

from rxllm import operators as ops
from rxllm.errors import InternalServerError, RateLimitError, Timeout, error_body
from rxllm.operators import StreamRestart
from rxllm.types import ChatCompletionChunk

on_next, on_completed, on_error = ReactiveTest.on_next, ReactiveTest.on_completed, ReactiveTest.on_error
subscribe = ReactiveTest.subscribe


def run(*messages: Any, disposed: int = 1000) -> tuple[Any, Any]:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(*messages)
    return xs, scheduler.start(lambda: xs.pipe(ops.to_sse()), disposed=disposed)


def payloads(results: Any) -> list[bytes]:
    return [m.value.value for m in results.messages if m.value.kind == "N"]


def parse(event: bytes) -> Any:
    assert event.startswith(b"data: ") and event.endswith(b"\n\n")
    body = event[len(b"data: ") : -2]
    assert b"\n" not in body
    return body if body == b"[DONE]" else orjson.loads(body)


class TestToSse:
    def test_data_events_then_done(self) -> None:
        """One data event per chunk, [DONE] at the end, then completion."""
        a, b = chunk("Hel"), chunk("lo", finish="stop")
        xs, results = run(on_next(210, a), on_next(220, b), on_completed(230))

        assert results.messages == [
            on_next(210, b"data: " + a.to_json() + b"\n\n"),
            on_next(220, b"data: " + b.to_json() + b"\n\n"),
            on_next(230, b"data: [DONE]\n\n"),
            on_completed(230),
        ]
        assert xs.subscriptions == [subscribe(200, 230)]

    def test_round_trip(self) -> None:
        """Parsing the bytes back gives the same chunks: n > 1, tool calls, unicode, usage, extras."""
        tool = [{"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"q":"é"}'}}]
        other = [{"index": 1, "delta": {"content": "¡hola! 👋\nline"}, "finish_reason": None}]
        extra = ChatCompletionChunk.from_dict({**chunk("x").to_dict(), "x_groq": {"id": "req_1"}})
        chunks = [chunk("a", more=other), chunk(tools=tool), extra, usage_chunk(3, 4, cached=1, reasoning=2)]
        _xs, results = run(*[on_next(210 + i, c) for i, c in enumerate(chunks)], on_completed(220))

        events = [parse(e) for e in payloads(results)]
        assert events[-1] == b"[DONE]"
        assert [ChatCompletionChunk.from_dict(e) for e in events[:-1]] == chunks
        assert events[2]["x_groq"] == {"id": "req_1"}

    def test_error_becomes_an_openai_error_event_then_completion(self) -> None:
        """An error mid-stream: an {"error": ...} event, no [DONE], and normal completion."""
        err = RateLimitError("quota exceeded", model="gpt-4o")
        xs, results = run(on_next(210, chunk("a")), on_error(215, err))

        assert [m.time for m in results.messages] == [210, 215, 215]
        assert results.messages[-1] == on_completed(215)
        assert parse(payloads(results)[-1]) == {
            "error": {
                "message": "quota exceeded",
                "type": "rate_limit_error",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        }
        assert xs.subscriptions == [subscribe(200, 215)]

    def test_error_types(self) -> None:
        """Status codes map to OpenAI's error types and codes; foreign exceptions are not described."""
        assert error_body(Timeout("slow"))["error"]["type"] == "timeout_error"
        assert error_body(InternalServerError("x", llm_provider="openai"))["error"] == {
            "message": "openai error: x",
            "type": "server_error",
            "param": None,
            "code": None,
        }
        assert error_body(KeyError("sk-secret"))["error"] == {
            "message": "internal error (KeyError)",
            "type": "server_error",
            "param": None,
            "code": None,
        }

    def test_disposal_reaches_upstream(self) -> None:
        """A client leaving disposes the source, with no [DONE]."""
        xs, results = run(on_next(210, chunk("a")), on_next(400, chunk("b")), disposed=300)

        assert len(results.messages) == 1
        assert xs.subscriptions == [subscribe(200, 300)]

    def test_restart_marker_is_a_named_event(self) -> None:
        """A StreamRestart from retry_stream becomes an 'rxllm.restart' event, not data."""
        marker = StreamRestart(attempt=2, error=InternalServerError("x"), discarded_chunks=3)
        _, results = run(on_next(210, marker), on_completed(220))

        assert payloads(results)[0] == b'event: rxllm.restart\ndata: {"attempt":2,"discarded_chunks":3}\n\n'
