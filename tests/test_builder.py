"""ResponseBuilder, ToolCallAssembler and stream_chunk_builder."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rxllm.builder import ResponseBuilder, ToolCallAssembler, stream_chunk_builder
from rxllm.errors import APIError, InvalidToolArgumentsError
from rxllm.types import ChatCompletionChunk, ModelResponse, ToolCall, ToolCallDelta, Usage
from tests.strategies import (
    StreamSpec,
    chunkings,
    content_chunk,
    finish_chunk,
    load_fixture_chunks,
    make_chunk,
    stream_specs,
    tool_chunk,
    tool_fragment,
)


def build(*chunks: ChatCompletionChunk, messages: Any = None) -> ModelResponse:
    return ResponseBuilder(messages).add_all(chunks).build()


def calls(response: ModelResponse, choice: int = 0) -> list[tuple[str, str, str]]:
    tcs = response.choices[choice].message.tool_calls or ()
    return [(tc.id, tc.function.name, tc.function.arguments) for tc in tcs]


class TestResponseBuilder:
    def test_joins_content_and_takes_metadata(self) -> None:
        """Content is joined; id/created/model are the first non-empty; fingerprint the last."""
        r = build(
            make_chunk({"index": 0, "delta": {"role": "assistant", "content": ""}}, id="", model=""),
            content_chunk("Hel", id="chatcmpl-A", system_fingerprint="fp_1"),
            content_chunk("lo", id="chatcmpl-B", model="other", system_fingerprint="fp_2"),
            finish_chunk("length"),
        )

        assert r.id == "chatcmpl-A"
        assert r.model == "gpt-test"
        assert r.created == 1700000000
        assert r.system_fingerprint == "fp_2"
        assert r.object == "chat.completion"
        assert r.choices[0].message.content == "Hello"
        assert r.choices[0].message.role == "assistant"
        assert r.choices[0].finish_reason == "length"

    def test_defaults_role_and_finish_reason(self) -> None:
        """With no role and no finish_reason the choice is an assistant message that stopped."""
        r = build(content_chunk("hi"))

        assert r.choices[0].message.role == "assistant"
        assert r.choices[0].finish_reason == "stop"

    def test_finish_reason_is_last_non_null(self) -> None:
        """A later null finish_reason does not erase an earlier one."""
        r = build(content_chunk("a", finish_reason="length"), content_chunk("b"))

        assert r.choices[0].finish_reason == "length"

    def test_empty_content_without_tool_calls_is_empty_string(self) -> None:
        """A choice that sent only ``content: ""`` (reasoning used the budget) has content ``""``."""
        r = build(content_chunk(""), finish_chunk("length"))

        assert r.choices[0].message.content == ""

    def test_content_is_none_when_only_tool_calls(self) -> None:
        """A choice with tool calls and only empty content has ``content is None``."""
        r = build(
            content_chunk(""),
            tool_chunk(tool_fragment(0, "call_1", "f", '{"a": 1}', "function")),
            finish_chunk("tool_calls"),
        )

        assert r.choices[0].message.content is None
        assert calls(r) == [("call_1", "f", '{"a": 1}')]
        assert r.choices[0].message.tool_calls is not None
        assert r.choices[0].message.tool_calls[0].index is None  # not in the chat.completion wire format

    def test_text_next_to_tool_calls_is_kept(self) -> None:
        """Text before a tool call stays in the message."""
        r = build(content_chunk("Let me check."), tool_chunk(tool_fragment(0, "c", "f", "{}")))

        assert r.choices[0].message.content == "Let me check."
        assert calls(r) == [("c", "f", "{}")]

    def test_reasoning_and_refusal_are_joined(self) -> None:
        """reasoning_content and refusal are joined per choice; None when nothing came."""
        r = build(
            make_chunk({"index": 0, "delta": {"reasoning_content": "think "}}),
            make_chunk({"index": 0, "delta": {"reasoning_content": "more", "refusal": ""}}),
            make_chunk({"index": 1, "delta": {"refusal": "I can't"}}),
            make_chunk({"index": 1, "delta": {"refusal": " do that."}}),
        )

        assert r.choices[0].message.reasoning_content == "think more"
        assert r.choices[0].message.refusal is None
        assert r.choices[0].message.content is None
        assert r.choices[1].message.refusal == "I can't do that."
        assert r.choices[1].message.reasoning_content is None

    def test_choices_are_ordered_by_index(self) -> None:
        """n > 1: one choice per index, in index order whatever order they arrived in."""
        r = build(content_chunk("B", index=1), content_chunk("A", index=0), content_chunk("b", index=1))

        assert [(c.index, c.message.content) for c in r.choices] == [(0, "A"), (1, "Bb")]

    def test_logprobs_are_concatenated(self) -> None:
        """logprobs.content entries of all chunks are concatenated per choice."""

        def lp(token: str) -> dict[str, Any]:
            return {"token": token, "logprob": -0.5, "bytes": None, "top_logprobs": []}

        r = build(
            make_chunk({"index": 0, "delta": {"content": ""}, "logprobs": {"content": [], "refusal": None}}),
            make_chunk({"index": 0, "delta": {"content": "a"}, "logprobs": {"content": [lp("a")]}}),
            make_chunk({"index": 0, "delta": {"content": "b"}, "logprobs": {"content": [lp("b")]}}),
            content_chunk("c"),
        )

        logprobs = r.choices[0].logprobs
        assert logprobs is not None
        assert logprobs.content is not None
        assert [t.token for t in logprobs.content] == ["a", "b"]
        assert logprobs.refusal is None

    def test_logprobs_with_no_token_lists_are_none(self) -> None:
        """``logprobs: {content: null, refusal: null}`` on every chunk rebuilds to no logprobs."""
        r = build(make_chunk({"index": 0, "delta": {"content": "x"}, "logprobs": {"content": None}}))

        assert r.choices[0].logprobs is None

    def test_usage_last_positive_value_wins(self) -> None:
        """Usage split across events merges per field; a later 0 never erases a count."""
        r = build(
            make_chunk(usage={"prompt_tokens": 10, "completion_tokens": 0, "total_tokens": 10}),
            content_chunk("hi"),
            make_chunk(
                usage={
                    "prompt_tokens": 0,
                    "completion_tokens": 7,
                    "total_tokens": 7,
                    "prompt_tokens_details": {"cached_tokens": 4},
                    "completion_tokens_details": {"reasoning_tokens": 3},
                }
            ),
        )

        assert r.usage is not None
        assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (10, 7, 17)
        assert r.usage.cached_tokens == 4
        assert r.usage.reasoning_tokens == 3
        assert r.usage.estimated is False

    def test_usage_is_estimated_when_absent(self) -> None:
        """No usage reported: prompt from the messages, completion from all generated text."""
        messages = [{"role": "user", "content": "abcdefgh"}]  # 2 tokens + 4 framing
        r = build(
            content_chunk("Hello world!"),  # 12 chars
            make_chunk({"index": 0, "delta": {"reasoning_content": "hmm."}}),  # 4 chars
            messages=messages,
        )

        assert r.usage == Usage(6, 4, 10, estimated=True)

    def test_build_mid_stream_is_partial_and_builder_goes_on(self) -> None:
        """build() at any time gives the response so far; adding more chunks continues it."""
        b = ResponseBuilder()
        b.add(content_chunk("Hel"))
        b.add(tool_chunk(tool_fragment(0, "c1", "f", '{"x"')))
        partial = b.build()
        b.add(tool_chunk(tool_fragment(0, arguments=": 1}")))
        b.add(content_chunk("lo", index=1))

        assert partial.choices[0].message.content == "Hel"
        assert calls(partial) == [("c1", "f", '{"x"')]
        assert len(partial.choices) == 1
        final = b.build()
        assert calls(final) == [("c1", "f", '{"x": 1}')]
        assert [c.message.content for c in final.choices] == ["Hel", "lo"]
        assert b.chunk_count == 4

    def test_chunk_level_extras_are_kept_except_padding(self) -> None:
        """Provider keys such as Azure's prompt_filter_results survive; obfuscation padding does not."""
        r = build(
            make_chunk(prompt_filter_results=[{"prompt_index": 0}], obfuscation="xyz"),
            content_chunk("hi", obfuscation="abc"),
        )

        assert dict(r.extra) == {"prompt_filter_results": [{"prompt_index": 0}]}

    def test_delta_extras_are_not_carried(self) -> None:
        """Unknown delta keys (per-token ids, channels) stay out of the final message."""
        r = build(make_chunk({"index": 0, "delta": {"content": "x", "token_id": 5, "channel": "final"}}))

        assert dict(r.choices[0].message.extra) == {}

    def test_legacy_function_call_is_assembled(self) -> None:
        """The pre-tools ``function_call`` delta is joined like a tool call."""
        r = build(
            make_chunk({"index": 0, "delta": {"function_call": {"name": "f", "arguments": ""}}}),
            make_chunk({"index": 0, "delta": {"function_call": {"arguments": '{"a":'}}}),
            make_chunk({"index": 0, "delta": {"function_call": {"arguments": "1}"}}}),
        )

        fc = r.choices[0].message.function_call
        assert fc is not None
        assert (fc.name, fc.arguments) == ("f", '{"a":1}')

    def test_non_string_content_is_ignored(self) -> None:
        """Content that is not a string (Mistral's thinking arrays) is left to the normalizer."""
        r = build(
            make_chunk({"index": 0, "delta": {"content": [{"type": "thinking", "thinking": []}]}}),
            content_chunk("ok"),
        )

        assert r.choices[0].message.content == "ok"

    def test_usage_only_stream(self) -> None:
        """A stream with only a usage chunk rebuilds to a response with no choices."""
        r = build(make_chunk(usage={"prompt_tokens": 3, "completion_tokens": 0, "total_tokens": 3}))

        assert r.choices == ()
        assert r.usage is not None
        assert r.usage.prompt_tokens == 3


class TestSnapshot:
    def test_snapshot_is_the_state_when_taken(self) -> None:
        """A snapshot's response ignores chunks added after it was taken."""
        b = ResponseBuilder()
        b.add(content_chunk("Hel"))
        b.add(tool_chunk(tool_fragment(0, "c1", "f", '{"x"')))
        snap = b.snapshot()
        b.add(content_chunk("lo", finish_reason="stop"))
        b.add(tool_chunk(tool_fragment(0, arguments=": 1}")))
        b.add(tool_chunk(tool_fragment(1, "c2", "g", "{}")))

        assert snap.content() == "Hel"
        assert snap.response.choices[0].message.content == "Hel"
        assert calls(snap.response) == [("c1", "f", '{"x"')]
        assert snap.response is snap.response  # built once
        assert b.snapshot().content() == "Hello"

    def test_snapshot_of_unknown_choice_has_no_content(self) -> None:
        """content() of a choice that never appeared is empty."""
        b = ResponseBuilder()
        b.add(content_chunk("x"))

        assert b.snapshot().content(3) == ""


class TestToolCallAssembly:
    def test_openai_style_fragments(self) -> None:
        """First fragment has id, name and empty arguments; then argument-only fragments."""
        r = build(
            tool_chunk(tool_fragment(0, "call_1", "get_weather", "", "function")),
            tool_chunk(tool_fragment(0, arguments='{"city"')),
            tool_chunk(tool_fragment(0, arguments=': "Paris"}')),
            finish_chunk("tool_calls"),
        )

        assert calls(r) == [("call_1", "get_weather", '{"city": "Paris"}')]
        assert r.choices[0].finish_reason == "tool_calls"

    def test_parallel_calls(self) -> None:
        """Calls at index 0 and 1 are assembled separately."""
        r = build(
            tool_chunk(tool_fragment(0, "a", "f", "")),
            tool_chunk(tool_fragment(0, arguments="{}")),
            tool_chunk(tool_fragment(1, "b", "g", "")),
            tool_chunk(tool_fragment(1, arguments='{"k": 2}')),
        )

        assert calls(r) == [("a", "f", "{}"), ("b", "g", '{"k": 2}')]

    def test_several_whole_calls_in_one_delta(self) -> None:
        """One delta can hold several complete calls."""
        r = build(tool_chunk(tool_fragment(0, "a", "f", '{"x":1}'), tool_fragment(1, "b", "f", '{"x":2}')))

        assert calls(r) == [("a", "f", '{"x":1}'), ("b", "f", '{"x":2}')]

    def test_missing_index_uses_position(self) -> None:
        """Fragments without ``index`` (Mistral) are placed by their position in the delta."""
        r = build(
            tool_chunk(tool_fragment(None, "a", "f", '{"x"'), tool_fragment(None, "b", "g", "{")),
            tool_chunk(tool_fragment(None, arguments=":1}"), tool_fragment(None, arguments="}")),
        )

        assert calls(r) == [("a", "f", '{"x":1}'), ("b", "g", "{}")]

    def test_new_id_at_used_index_is_a_new_call(self) -> None:
        """A different id at an index already used starts a new call at the next free index."""
        asm = ToolCallAssembler(0)
        asm.add([ToolCallDelta.from_dict(tool_fragment(None, "a", "f", "{}"))])
        asm.add([ToolCallDelta.from_dict(tool_fragment(None, "b", "g", '{"y": 1}'))])
        asm.add([ToolCallDelta.from_dict(tool_fragment(None, arguments=""))])

        got = [(t.id, t.index, t.function.name, t.function.arguments) for t in asm.tool_calls()]
        assert got == [("a", 0, "f", "{}"), ("b", 1, "g", '{"y": 1}')]

    def test_repeated_id_is_the_same_call(self) -> None:
        """Providers that repeat the id on every fragment still make one call."""
        r = build(
            tool_chunk(tool_fragment(0, "a", "f", '{"x"')),
            tool_chunk(tool_fragment(0, "a", None, ":1}")),
        )

        assert calls(r) == [("a", "f", '{"x":1}')]

    def test_object_arguments_become_json_text(self) -> None:
        """Arguments sent as a JSON object (Gemini-style) become a JSON string."""
        r = build(tool_chunk(tool_fragment(0, "a", "get_capital", {"country": "France"})))

        assert calls(r) == [("a", "get_capital", '{"country":"France"}')]
        tc = r.choices[0].message.tool_calls
        assert tc is not None
        assert tc[0].parsed_arguments() == {"country": "France"}

    def test_no_arguments_is_empty_object(self) -> None:
        """A call whose arguments never came (or came as "") has arguments ``"{}"``."""
        r = build(tool_chunk(tool_fragment(0, "a", "f")), tool_chunk(tool_fragment(1, "b", "g", "")))

        assert calls(r) == [("a", "f", "{}"), ("b", "g", "{}")]

    def test_type_defaults_to_function(self) -> None:
        """A call without ``type`` is a function call."""
        r = build(tool_chunk(tool_fragment(None, "a", "f", "{}")))

        tcs = r.choices[0].message.tool_calls
        assert tcs is not None
        assert tcs[0].type == "function"

    def test_tool_call_extras_are_kept(self) -> None:
        """Provider keys on a tool-call delta (thought signatures) stay on the ToolCall."""
        frag = {**tool_fragment(0, "a", "f", "{}"), "thought_signature": "sig"}
        r = build(tool_chunk(frag))

        tcs = r.choices[0].message.tool_calls
        assert tcs is not None
        assert dict(tcs[0].extra) == {"thought_signature": "sig"}

    def test_add_returns_calls_closed_by_the_next(self) -> None:
        """A call is reported closed when the next one starts, then by close_all()."""
        asm = ToolCallAssembler(2)
        first = asm.add([ToolCallDelta.from_dict(tool_fragment(0, "a", "f", "{}"))])
        second = asm.add([ToolCallDelta.from_dict(tool_fragment(1, "b", "g", "{}"))])
        rest = asm.close_all()

        assert first is None
        assert second is not None
        assert [s.to_tool_call(2) for s in second] == [
            ToolCall.from_dict({"id": "a", "function": {"name": "f", "arguments": "{}"}, "index": 0, "choice_index": 2})
        ]
        assert [s.id for s in rest] == ["b"]
        assert asm.close_all() == []

    def test_invalid_json_is_reported_when_parsed(self) -> None:
        """Truncated arguments build fine; parsing them raises InvalidToolArgumentsError."""
        r = build(tool_chunk(tool_fragment(0, "a", "make_file", '{"name": "Filing')))

        tcs = r.choices[0].message.tool_calls
        assert tcs is not None
        with pytest.raises(InvalidToolArgumentsError, match="make_file"):
            tcs[0].parsed_arguments()


class TestStreamChunkBuilder:
    def test_none_is_an_api_error(self) -> None:
        """``stream_chunk_builder(None)`` raises APIError, as LiteLLM does."""
        with pytest.raises(APIError):
            stream_chunk_builder(None)

    def test_empty_list_is_none(self) -> None:
        """No chunks, no response."""
        assert stream_chunk_builder([]) is None

    def test_accepts_dicts_and_objects(self) -> None:
        """Chunks may be wire dicts, chunk objects, or objects with model_dump()."""

        class Pydanticish:
            def model_dump(self) -> dict[str, Any]:
                return content_chunk("c").to_dict()

        r = stream_chunk_builder([content_chunk("a").to_dict(), content_chunk("b"), Pydanticish()])

        assert r is not None
        assert r.choices[0].message.content == "abc"

    def test_rejects_non_chunks(self) -> None:
        """Something that is not a chunk is an APIError, not an AttributeError."""
        with pytest.raises(APIError, match="not a chunk"):
            stream_chunk_builder([42])

    def test_messages_feed_the_estimate(self) -> None:
        """messages= is used for the prompt-token estimate."""
        r = stream_chunk_builder([content_chunk("abcd")], messages=[{"role": "user", "content": "x" * 40}])

        assert r is not None
        assert r.usage == Usage(14, 1, 15, estimated=True)


class TestRecordedStreams:
    def test_openai_parallel_tool_calls(self) -> None:
        """openai/tool_calls_parallel_2.sse rebuilds to its two calls and usage."""
        r = stream_chunk_builder(load_fixture_chunks("openai/tool_calls_parallel_2.sse"))

        assert r is not None
        assert r.id == "chatcmpl-ABfwAwrNePHUgBBezonVC6MX3zd63"
        assert calls(r) == [
            ("call_JMW1whyEaYG438VE1OIflxA2", "GetWeatherArgs", '{"city": "Edinburgh", "country": "GB", "units": "c"}'),
            ("call_DNYTawLBoN8fj3KN6qU9N1Ou", "get_stock_price", '{"ticker": "AAPL", "exchange": "NASDAQ"}'),
        ]
        assert r.choices[0].message.content is None
        assert r.choices[0].finish_reason == "tool_calls"
        assert r.usage == Usage.from_dict(
            {"prompt_tokens": 149, "completion_tokens": 60, "total_tokens": 209,
             "completion_tokens_details": {"reasoning_tokens": 0}}
        )  # fmt: skip

    def test_openai_n3_choices(self) -> None:
        """openai/n3_choices.sse: three interleaved choices rebuild separately."""
        r = stream_chunk_builder(load_fixture_chunks("openai/n3_choices.sse"))

        assert r is not None
        assert [c.message.content for c in r.choices] == [
            '{"city":"San Francisco","temperature":65,"units":"f"}',
            '{"city":"San Francisco","temperature":61,"units":"f"}',
            '{"city":"San Francisco","temperature":59,"units":"f"}',
        ]
        assert [c.finish_reason for c in r.choices] == ["stop", "stop", "stop"]
        assert r.usage is not None
        assert r.usage.total_tokens == 121

    def test_mistral_call_without_index(self) -> None:
        """mistral/tool_call_no_index.sse: a whole call with no index and no type."""
        r = stream_chunk_builder(load_fixture_chunks("mistral/tool_call_no_index.sse"))

        assert r is not None
        assert calls(r) == [("gSIMJiOkT", "weather", '{"location": "San Francisco"}')]
        assert r.usage is not None
        assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (124, 22, 146)

    def test_logprobs_and_refusal(self) -> None:
        """openai/logprobs_content.sse and openai/refusal.sse keep logprobs and refusal text."""
        lp = stream_chunk_builder(load_fixture_chunks("openai/logprobs_content.sse"))
        rf = stream_chunk_builder(load_fixture_chunks("openai/refusal.sse"))

        assert lp is not None
        assert rf is not None
        assert lp.choices[0].message.content == "Foo!"
        logprobs = lp.choices[0].logprobs
        assert logprobs is not None
        assert logprobs.content is not None
        assert [(t.token, t.logprob) for t in logprobs.content] == [("Foo", -0.0025094282), ("!", -0.26638845)]
        assert rf.choices[0].message.content is None
        assert rf.choices[0].message.refusal == "I'm sorry, I can't assist with that request."

    def test_deepseek_reasoning_then_tool_call(self) -> None:
        """deepseek/reasoner_tool_call.sse: reasoning joined, call assembled, cached tokens kept."""
        r = stream_chunk_builder(load_fixture_chunks("deepseek/reasoner_tool_call.sse"))

        assert r is not None
        msg = r.choices[0].message
        assert msg.reasoning_content is not None
        assert msg.reasoning_content.startswith("The user is asking for the weather in San Francisco.")
        assert calls(r) == [("call_00_ioIn7yN9p1ZOMNpDLwd4MgAF", "weather", '{"location": "San Francisco"}')]
        assert msg.content is None
        assert r.usage is not None
        assert (r.usage.cached_tokens, r.usage.reasoning_tokens, r.usage.total_tokens) == (320, 39, 422)

    def test_snowflake_without_finish_reason(self) -> None:
        """snowflake/cortex_claude_text_usage.sse: no finish_reason anywhere reads as "stop"."""
        r = stream_chunk_builder(load_fixture_chunks("snowflake/cortex_claude_text_usage.sse"))

        assert r is not None
        assert r.choices[0].message.content == "4"
        assert r.choices[0].finish_reason == "stop"
        assert r.choices[0].logprobs is None
        assert r.system_fingerprint is None

    def test_azure_filter_results_and_trailing_chunk(self) -> None:
        """Azure's leading filter chunk and gpt-5's trailing moderation chunk are kept as extras."""
        az = stream_chunk_builder(load_fixture_chunks("azure/model_router_content_filter.sse"))
        mod = stream_chunk_builder(load_fixture_chunks("openai/gpt5_trailing_moderation_chunk.sse"))

        assert az is not None
        assert mod is not None
        assert az.id == "chatcmpl-CYPS1lijGoK8gd9lYzY3r9Sx50nbt"
        assert az.choices[0].message.content == "Capital of Denmark."
        assert "prompt_filter_results" in az.extra
        assert mod.choices[0].message.content == "Paris."
        assert "moderation" in mod.extra
        assert mod.usage is not None
        assert mod.usage.total_tokens == 24


def _expected_calls(spec: StreamSpec, i: int) -> list[tuple[str, str, str]]:
    return [(t.id, t.name, t.arguments) for t in spec.choices[i].tool_calls]


class TestSplitIndependence:
    @settings(max_examples=60, deadline=None)
    @given(st.data())
    def test_rebuild_ignores_splitting_and_interleaving(self, data: st.DataObject) -> None:
        """Any split of text/arguments and any interleaving of choices rebuilds to the same response."""
        spec = data.draw(stream_specs())
        one = stream_chunk_builder(data.draw(chunkings(spec)), messages=[{"role": "user", "content": "hi"}])
        two = stream_chunk_builder(data.draw(chunkings(spec)), messages=[{"role": "user", "content": "hi"}])

        assert one == two
        assert one is not None
        assert one.id == spec.id
        for i, c in enumerate(spec.choices):
            msg = one.choices[i].message
            assert one.choices[i].index == c.index
            assert msg.content == (c.content or None)
            assert msg.reasoning_content == (c.reasoning or None)
            assert calls(one, i) == _expected_calls(spec, i)
            assert one.choices[i].finish_reason == (c.finish_reason or "stop")
        if spec.usage is not None:
            assert one.usage == spec.usage
        else:
            assert one.usage is not None
            assert one.usage.estimated
