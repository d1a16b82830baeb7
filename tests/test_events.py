"""EventBuilder and ops.events(): the event grammar, n>1, parallel tool calls, and split independence."""

from __future__ import annotations

import itertools
from typing import Any

import reactivex
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import (
    chunk_dicts,
    chunkings,
    content_chunk,
    finish_chunk,
    make_chunk,
    stream_specs,
    tool_chunk,
    tool_fragment,
)

from rxllm import operators as ops
from rxllm.builder import stream_chunk_builder
from rxllm.errors import InvalidToolArgumentsError
from rxllm.events import (
    EventBuilder,
    Finish,
    ReasoningDelta,
    ReasoningDone,
    RedactedReasoning,
    RefusalDone,
    TextDelta,
    TextDone,
    ToolCallArgumentsDelta,
    ToolCallDone,
    ToolCallStart,
    UsageUpdate,
)
from rxllm.types import ChatCompletionChunk


def run(chunks: list[Any]) -> list[Any]:
    """Every event EventBuilder gives for the chunks, the closing ones included."""
    builder = EventBuilder()
    return [e for c in chunks for e in builder.add(c)] + builder.close()


def delta_chunk(index: int = 0, finish_reason: str | None = None, **delta: Any) -> Any:
    return make_chunk({"index": index, "delta": delta, "finish_reason": finish_reason})


class TestGrammar:
    def test_text_then_finish(self) -> None:
        """Text deltas carry their snapshot; the finish closes the text and reports the reason."""
        events = run([content_chunk(""), content_chunk("Hel"), content_chunk("lo"), finish_chunk("length")])

        assert events == [TextDelta(0, "Hel"), TextDelta(0, "lo"), TextDone(0, "Hello"), Finish(0, "length")]
        assert [e.snapshot for e in events[:2]] == ["Hel", "Hello"]

    def test_reasoning_signature_and_redacted_blocks_are_their_own_events(self) -> None:
        """A signature closes its reasoning block; redacted blocks are events; text after reasoning is a new segment."""
        events = run(
            [
                delta_chunk(reasoning_content="hm"),
                delta_chunk(thinking_blocks=[{"type": "thinking", "signature": "sig"}]),
                delta_chunk(thinking_blocks=[{"type": "redacted_thinking", "data": "enc"}]),
                delta_chunk(content="ok"),
            ]
        )

        assert events == [
            ReasoningDelta(0, "hm"),
            ReasoningDone(0, "hm", "sig"),
            RedactedReasoning(0, "enc"),
            TextDelta(0, "ok"),
            TextDone(0, "ok"),
            Finish(0, "stop"),
        ]

    def test_parallel_tool_calls_with_partial_values(self) -> None:
        """Each call starts, streams fragments with a growing partial value, and is done when the next starts."""
        events = run(
            [
                tool_chunk(tool_fragment(0, "c1", "get", "")),
                tool_chunk(tool_fragment(0, arguments='{"city": "Pa')),
                tool_chunk(tool_fragment(0, arguments='ris"}')),
                tool_chunk(tool_fragment(1, "c2", "put", '{"n": 1}')),
                finish_chunk("tool_calls"),
            ]
        )
        deltas = [e for e in events if isinstance(e, ToolCallArgumentsDelta)]

        assert [type(e).__name__ for e in events] == [
            "ToolCallStart",
            "ToolCallArgumentsDelta",
            "ToolCallArgumentsDelta",
            "ToolCallDone",
            "ToolCallStart",
            "ToolCallArgumentsDelta",
            "ToolCallDone",
            "Finish",
        ]
        assert events[0] == ToolCallStart(0, 0, "c1", "get")
        assert [d.partial for d in deltas] == [{"city": "Pa"}, {"city": "Paris"}, {"n": 1}]
        assert [d.arguments for d in deltas] == ['{"city": "Pa', '{"city": "Paris"}', '{"n": 1}']
        assert events[3] == ToolCallDone(0, 0, "c1", "get", '{"city": "Paris"}', {"city": "Paris"})
        assert events[-1] == Finish(0, "tool_calls")

    def test_partials_read_in_any_order_are_the_same(self) -> None:
        """Partial values are computed lazily: read backwards, forwards or not at all, they agree."""
        fragments = ['{"a": [1', ", 2], ", '"b": "xy', 'z"}']
        chunks = [tool_chunk(tool_fragment(0, "c1", "f", ""))]
        chunks += [tool_chunk(tool_fragment(0, arguments=f)) for f in fragments]
        forwards = [e for e in run(chunks) if isinstance(e, ToolCallArgumentsDelta)]
        backwards = [e for e in run(chunks) if isinstance(e, ToolCallArgumentsDelta)]
        late = [e.partial for e in reversed(backwards)][::-1]

        assert (
            [e.partial for e in forwards]
            == late
            == [{"a": []}, {"a": [1, 2]}, {"a": [1, 2], "b": "xy"}, {"a": [1, 2], "b": "xyz"}]
        )

    def test_invalid_arguments_give_a_typed_error(self) -> None:
        """Arguments that are not JSON give ToolCallDone with parsed=None and an InvalidToolArgumentsError."""
        events = run([tool_chunk(tool_fragment(0, "c1", "f", '{"a": ')), finish_chunk("length")])
        done = next(e for e in events if isinstance(e, ToolCallDone))

        assert done.parsed is None
        assert isinstance(done.error, InvalidToolArgumentsError)
        assert done.error.arguments == '{"a": '

    def test_empty_arguments_parse_as_an_empty_object(self) -> None:
        """A call with no argument text is done with arguments "" and parsed {}."""
        events = run([tool_chunk(tool_fragment(0, "c1", "ping", "")), finish_chunk("tool_calls")])

        assert [e for e in events if isinstance(e, ToolCallDone)] == [ToolCallDone(0, 0, "c1", "ping", "", {})]

    def test_n_choices_interleaved_and_usage(self) -> None:
        """Events carry their choice index; usage gives UsageUpdate; every choice gets its Finish."""
        usage = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
        events = run(
            [
                content_chunk("a", 0),
                content_chunk("b", 1),
                delta_chunk(1, refusal="no"),
                content_chunk("c", 0, "stop"),
                finish_chunk("stop", 1),
                make_chunk(usage=usage),
            ]
        )

        assert sorted((e for e in events if isinstance(e, TextDone)), key=lambda e: e.choice_index) == [
            TextDone(0, "ac"),
            TextDone(1, "b"),
        ]
        assert [e for e in events if isinstance(e, RefusalDone)] == [RefusalDone(1, "no")]
        assert [e for e in events if isinstance(e, Finish)] == [Finish(0, "stop"), Finish(1, "stop")]
        assert events[-1] == UsageUpdate(stream_chunk_builder([make_chunk(usage=usage)]).usage)  # type: ignore[union-attr]


def _summary(events: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for e in events:
        ci = getattr(e, "choice_index", None)
        if isinstance(e, TextDone):
            out[f"text{ci}"] = out.get(f"text{ci}", "") + e.text
        elif isinstance(e, ReasoningDone):
            out[f"reasoning{ci}"] = out.get(f"reasoning{ci}", "") + e.text
        elif isinstance(e, ToolCallDone):
            out.setdefault(f"tools{ci}", []).append((e.index, e.id, e.name, e.arguments or "{}"))
        elif isinstance(e, Finish):
            out[f"finish{ci}"] = e.reason
        elif isinstance(e, UsageUpdate):
            out["usage"] = e.usage
    return out


class TestSplitIndependence:
    @settings(max_examples=40, deadline=None)
    @given(st.data())
    def test_events_do_not_depend_on_the_chunking(self, data: st.DataObject) -> None:
        """Two chunkings of one stream give the same done values, and the same as the rebuilt response."""
        spec = data.draw(stream_specs())
        one = data.draw(chunkings(spec))
        two = data.draw(chunkings(spec))
        ev1, ev2 = run(one), run(two)
        response = stream_chunk_builder(one)

        assert _summary(ev1) == _summary(ev2)
        assert response is not None
        s = _summary(ev1)
        for choice in response.choices:
            i = choice.index
            assert (s.get(f"text{i}") or None) == (choice.message.content or None)
            assert (s.get(f"reasoning{i}") or None) == choice.message.reasoning_content
            calls = [(c.id, c.function.name, c.function.arguments) for c in choice.message.tool_calls or ()]
            assert [t[1:] for t in s.get(f"tools{i}", [])] == calls
            assert s[f"finish{i}"] == choice.finish_reason


def _sse_events(body: bytes, cuts: list[int]) -> list[Any]:
    """Events for an OpenAI-format SSE body fed to the SSE decoder in the given pieces."""
    from rxllm.sse import SSEDecoder

    decoder = SSEDecoder()
    points = sorted({c % (len(body) + 1) for c in cuts})
    bounds = [0, *points, len(body)]
    chunks = []
    for a, b in itertools.pairwise(bounds):
        for event in decoder.feed(body[a:b]):
            if event.data != "[DONE]":
                chunks.append(ChatCompletionChunk.from_json(event.data))
    return run(chunks)


def _view(events: list[Any]) -> list[Any]:
    out: list[Any] = []
    for e in events:
        out.append(e)
        if isinstance(e, ToolCallArgumentsDelta):
            out.append((e.arguments, e.partial))
        elif isinstance(e, (TextDelta, ReasoningDelta)):
            out.append(e.snapshot)
    return out


class TestByteSplits:
    @settings(max_examples=30, deadline=None)
    @given(
        st.sampled_from(
            ["openai/tool_calls_parallel_2.sse", "openai/n3_choices.sse", "deepseek/reasoner_tool_call.sse"]
        ),
        st.lists(st.integers(0, 20_000), max_size=40),
    )
    def test_events_and_partials_do_not_depend_on_byte_splits(self, name: str, cuts: list[int]) -> None:
        """A recorded body cut at any bytes gives the same events, snapshots and partial values."""
        from support import fixture_path

        body = fixture_path(name).read_bytes()

        assert _view(_sse_events(body, cuts)) == _view(_sse_events(body, []))


class TestArbitraryChunks:
    @settings(max_examples=30, deadline=None)
    @given(st.lists(chunk_dicts(), max_size=5))
    def test_any_wire_chunks_give_events_that_match_the_rebuilt_text(self, dicts: list[dict[str, Any]]) -> None:
        """Arbitrary wire chunks (unknown keys, odd shapes) never break EventBuilder, and the text agrees."""
        chunks = [ChatCompletionChunk.from_dict(d) for d in dicts]
        events = run(chunks)
        response = stream_chunk_builder(chunks)

        if response is not None:
            texts = _summary(events)
            for choice in response.choices:
                assert (texts.get(f"text{choice.index}") or None) == (choice.message.content or None)


class TestEventsOperator:
    def test_operator_emits_events_and_closes_at_completion(self) -> None:
        """ops.events() emits each chunk's events, then the closing ones when the source completes."""
        out: list[Any] = []
        reactivex.from_iterable([content_chunk("hi")]).pipe(ops.events()).subscribe(out.append)

        assert out == [TextDelta(0, "hi"), TextDone(0, "hi"), Finish(0, "stop")]

    def test_errors_pass_through(self) -> None:
        """An upstream error reaches the subscriber after the events so far."""
        out: list[Any] = []
        errors: list[Exception] = []
        boom = ValueError("boom")
        reactivex.concat(reactivex.of(content_chunk("a")), reactivex.throw(boom)).pipe(ops.events()).subscribe(
            out.append, errors.append
        )

        assert out == [TextDelta(0, "a")]
        assert errors == [boom]
