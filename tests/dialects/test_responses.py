"""The Responses dialect: its translator, and its events as the official ``openai`` SDK reads them."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.responses import Response
from strategies import content_chunk, finish_chunk, make_chunk, tool_chunk, tool_fragment

from rxllm.dialects import RequestFieldError
from rxllm.dialects.responses import ResponsesEncoder, ResponseStore, response_object, translate_request
from rxllm.errors import BadRequestError, RateLimitError
from rxllm.types import ChatCompletionChunk
from tests.dialects.dialect_support import BodyServer, encode_all, events

USAGE = {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}


def reasoning_chunk(text: str) -> ChatCompletionChunk:
    """A chunk carrying reasoning text."""
    return make_chunk({"index": 0, "delta": {"reasoning_content": text}, "finish_reason": None})


def text_stream(*pieces: str, finish: str = "stop") -> list[ChatCompletionChunk]:
    """Text pieces, a finish chunk and a usage chunk."""
    return [*(content_chunk(p) for p in pieces), finish_chunk(finish), make_chunk(usage=USAGE)]


def tool_stream() -> list[ChatCompletionChunk]:
    """Some text, then two tool calls streamed in fragments."""
    return [
        content_chunk("Let me look."),
        tool_chunk(tool_fragment(0, "call_a", "get_weather", "", "function")),
        tool_chunk(tool_fragment(0, arguments='{"city": ')),
        tool_chunk(tool_fragment(0, arguments='"Paris"}')),
        tool_chunk(tool_fragment(1, "call_b", "get_time", '{"tz": "CET"}', "function")),
        finish_chunk("tool_calls"),
        make_chunk(usage=USAGE),
    ]


class TestTranslateRequest:
    def test_string_input_is_one_user_message(self) -> None:
        """A string input becomes one user message; instructions a leading system message."""
        call = translate_request({"model": "m", "input": "hi", "instructions": "be brief"})

        assert call.model == "m"
        assert list(call.messages) == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
        assert call.stream is False
        assert call.params["stream_options"] == {"include_usage": True}

    def test_item_list_with_function_call_round_trip(self) -> None:
        """function_call and function_call_output items become assistant tool_calls and tool messages."""
        items = [
            {"role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
            {"type": "function_call", "call_id": "call_2", "name": "get_time", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            {"type": "function_call_output", "call_id": "call_2", "output": "noon"},
        ]
        call = translate_request({"model": "m", "input": items, "stream": True})

        assert call.stream is True
        assert call.messages[0] == {"role": "user", "content": [{"type": "text", "text": "weather?"}]}
        assert call.messages[1]["role"] == "assistant"
        assert [c["id"] for c in call.messages[1]["tool_calls"]] == ["call_1", "call_2"]
        assert call.messages[1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
        assert call.messages[2:] == (
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_2", "content": "noon"},
        )

    def test_signed_reasoning_round_trips_as_thinking_blocks(self) -> None:
        """A reasoning item carrying a signature goes back as thinking_blocks; unsigned reasoning is not resent."""
        signed = make_chunk(
            {
                "index": 0,
                "delta": {"thinking_blocks": [{"type": "thinking", "signature": "sig=="}]},
                "finish_reason": None,
            }
        )
        answer = response_object([reasoning_chunk("hmm"), signed, *tool_stream()], response_id="r")
        reasoning_item = answer["output"][0]
        items = [{"role": "user", "content": "q"}, *answer["output"]]
        call = translate_request({"model": "m", "input": items})
        plain = translate_request(
            {
                "model": "m",
                "input": [
                    {"type": "reasoning", "summary": [{"type": "summary_text", "text": "x"}]},
                    *answer["output"][1:],
                ],
            }
        )

        assert reasoning_item["encrypted_content"] == "sig=="
        assistant = call.messages[1]
        assert assistant["thinking_blocks"] == [{"type": "thinking", "thinking": "hmm", "signature": "sig=="}]
        assert assistant["content"] == "Let me look." and len(assistant["tool_calls"]) == 2
        assert "reasoning_content" not in assistant
        assert all("thinking_blocks" not in m and "reasoning_content" not in m for m in plain.messages)

    def test_parameters_map_to_chat_completions(self) -> None:
        """Tools, tool_choice, max_output_tokens, reasoning.effort and text.format take their chat names."""
        body = {
            "model": "m",
            "input": "x",
            "tools": [{"type": "function", "name": "f", "description": "d", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "function", "name": "f"},
            "max_output_tokens": 64,
            "reasoning": {"effort": "low"},
            "temperature": 0.5,
            "top_p": 0.9,
            "parallel_tool_calls": False,
            "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True}},
        }
        params = translate_request(body).params

        assert params["tools"] == [
            {"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}}
        ]
        assert params["tool_choice"] == {"type": "function", "function": {"name": "f"}}
        assert params["max_tokens"] == 64
        assert params["reasoning_effort"] == "low"
        assert params["temperature"] == 0.5
        assert params["top_p"] == 0.9
        assert params["parallel_tool_calls"] is False
        assert params["response_format"] == {
            "type": "json_schema",
            "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": True},
        }

    def test_previous_response_id_without_a_store_is_a_clear_400(self) -> None:
        """previous_response_id is refused with a 400 naming it when no store is configured."""
        with pytest.raises(RequestFieldError) as info:
            translate_request({"model": "m", "input": "x", "previous_response_id": "resp_1"})

        assert isinstance(info.value, BadRequestError)
        assert info.value.status_code == 400
        assert info.value.param == "previous_response_id"
        assert "store" in info.value.message

    def test_previous_response_id_with_a_store_prepends_the_history(self) -> None:
        """With a store, the earlier request and its answer come before the new input."""
        store = ResponseStore()
        first = translate_request({"model": "m", "input": "a"})
        store.save(response_object(text_stream("b"), response_id="resp_1"), first.messages)
        call = translate_request({"model": "m", "input": "c", "previous_response_id": "resp_1"}, store=store)

        assert [(m["role"], m["content"]) for m in call.messages] == [("user", "a"), ("assistant", "b"), ("user", "c")]

    def test_item_references_resolve_in_the_store(self) -> None:
        """item_reference items (what the AI SDK sends with store on) become the stored items again."""
        store = ResponseStore()
        answer = response_object(tool_stream(), response_id="resp_1")
        store.save(answer, ())
        message, call_a, _ = answer["output"]
        items = [
            {"role": "user", "content": "weather?"},
            {"type": "item_reference", "id": message["id"]},
            {"type": "item_reference", "id": call_a["id"]},
            {"type": "function_call_output", "call_id": "call_a", "output": "sunny"},
        ]
        call = translate_request({"model": "m", "input": items}, store=store)

        assert call.messages[1]["content"] == "Let me look."
        assert call.messages[1]["tool_calls"][0]["id"] == "call_a"
        assert call.messages[2] == {"role": "tool", "tool_call_id": "call_a", "content": "sunny"}
        with pytest.raises(RequestFieldError) as info:
            translate_request({"model": "m", "input": [{"type": "item_reference", "id": "msg_gone"}]}, store=store)
        assert info.value.param == "input[0].id"

    def test_the_store_keeps_only_the_latest_responses(self) -> None:
        """A full store forgets its oldest response and that response's items."""
        store = ResponseStore(max_responses=2)
        for n in range(3):
            store.save(response_object(text_stream(str(n)), response_id=f"resp_{n}"), ())

        assert len(store) == 2
        assert store.get("resp_0") is None and store.conversation("resp_0") is None
        assert store.get("resp_2") is not None
        oldest = response_object(text_stream("x"), response_id="resp_x")
        assert store.item(oldest["output"][0]["id"]) is None

    @pytest.mark.parametrize(
        ("body", "param"),
        [
            ({"input": "x"}, "model"),
            ({"model": "m"}, "input"),
            ({"model": "m", "input": 3}, "input"),
            ({"model": "m", "input": "x", "stream": "yes"}, "stream"),
            ({"model": "m", "input": "x", "temperature": "hot"}, "temperature"),
            ({"model": "m", "input": "x", "max_output_tokens": 0}, "max_output_tokens"),
            ({"model": "m", "input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
            ({"model": "m", "input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
            ({"model": "m", "input": [{"type": "web_search_call"}]}, "input[0].type"),
            ({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].id"),
            ({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type"),
            ({"model": "m", "input": "x", "tool_choice": "always"}, "tool_choice"),
            ({"model": "m", "input": "x", "reasoning": {"effort": 3}}, "reasoning.effort"),
        ],
    )
    def test_invalid_fields_are_named(self, body: dict[str, Any], param: str) -> None:
        """Each malformed request is a typed 400 whose param names the field at fault."""
        with pytest.raises(BadRequestError) as info:
            translate_request(body)

        assert info.value.status_code == 400
        assert getattr(info.value, "param", None) == param


class TestEncoderWithTheSDK:
    async def test_text_stream_accumulates_to_the_final_response(self, body_server: BodyServer) -> None:
        """responses.stream() reads the events and get_final_response() has the text and usage."""
        body_server.queue(encode_all(ResponsesEncoder(model="my-model"), text_stream("Hel", "lo", " world")))
        client = body_server.openai()

        async with client.responses.stream(model="my-model", input="hi") as stream:
            deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
            final = await stream.get_final_response()

        assert deltas == ["Hel", "lo", " world"]
        assert final.output_text == "Hello world"
        assert final.status == "completed"
        assert final.model == "my-model"
        assert final.usage is not None
        assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.total_tokens) == (11, 5, 16)

    async def test_create_stream_yields_typed_events_in_order(self, body_server: BodyServer) -> None:
        """responses.create(stream=True) parses every event into the SDK's typed models."""
        body_server.queue(encode_all(ResponsesEncoder(), text_stream("a", "b")))
        stream = await body_server.openai().responses.create(model="m", input="hi", stream=True)
        seen = [event async for event in stream]

        assert [e.type for e in seen] == [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
        assert [e.sequence_number for e in seen] == list(range(len(seen)))

    async def test_tool_calls_become_function_call_items(self, body_server: BodyServer) -> None:
        """Tool calls stream as function_call items whose arguments the SDK accumulates."""
        body_server.queue(encode_all(ResponsesEncoder(), tool_stream()))

        async with body_server.openai().responses.stream(model="m", input="hi") as stream:
            arg_deltas = [e async for e in stream if e.type == "response.function_call_arguments.delta"]
            final = await stream.get_final_response()

        calls = [item for item in final.output if item.type == "function_call"]
        assert [(c.call_id, c.name, json.loads(c.arguments)) for c in calls] == [
            ("call_a", "get_weather", {"city": "Paris"}),
            ("call_b", "get_time", {"tz": "CET"}),
        ]
        assert final.output_text == "Let me look."
        assert "".join(e.delta for e in arg_deltas if e.item_id == calls[0].id) == '{"city": "Paris"}'

    async def test_reasoning_becomes_a_reasoning_item_with_summary_deltas(self, body_server: BodyServer) -> None:
        """Reasoning content streams as reasoning_summary_text deltas of a reasoning item before the message."""
        chunks = [reasoning_chunk("think"), reasoning_chunk("ing"), *text_stream("answer")]
        body_server.queue(encode_all(ResponsesEncoder(), chunks))

        async with body_server.openai().responses.stream(model="m", input="hi") as stream:
            summary = [e.delta async for e in stream if e.type == "response.reasoning_summary_text.delta"]
            final = await stream.get_final_response()

        assert summary == ["think", "ing"]
        assert [item.type for item in final.output] == ["reasoning", "message"]
        assert final.output[0].summary[0].text == "thinking"
        assert final.output_text == "answer"

    async def test_a_failure_ends_with_error_and_response_failed(self, body_server: BodyServer) -> None:
        """A mid-stream error gives error and response.failed, never response.completed."""
        error = RateLimitError("slow down", llm_provider="openai", model="gpt")
        body_server.queue(encode_all(ResponsesEncoder(), [content_chunk("part")], error=error))

        async with body_server.openai().responses.stream(model="m", input="hi") as stream:
            kinds = [e.type async for e in stream]
            with pytest.raises(RuntimeError):
                await stream.get_final_response()

        assert kinds[-2:] == ["error", "response.failed"]
        assert "response.completed" not in kinds

    async def test_token_limit_ends_with_response_incomplete(self, body_server: BodyServer) -> None:
        """finish_reason length is a response.incomplete with reason max_output_tokens."""
        body = encode_all(ResponsesEncoder(), text_stream("cut", finish="length"))
        body_server.queue(body)
        stream = await body_server.openai().responses.create(model="m", input="hi", stream=True)
        last = [e async for e in stream][-1]

        assert last.type == "response.incomplete"
        assert last.response.incomplete_details is not None
        assert last.response.incomplete_details.reason == "max_output_tokens"

    async def test_non_streaming_object_is_what_responses_create_returns(self, body_server: BodyServer) -> None:
        """response_object() is a valid Response that responses.create() parses, tool calls included."""
        obj = response_object(tool_stream(), model="asked-for", options={"instructions": "x"})
        body_server.queue(json.dumps(obj).encode(), "application/json")
        response = await body_server.openai().responses.create(model="asked-for", input="hi")

        Response.model_validate(obj)
        assert response.model == "asked-for"
        assert response.instructions == "x"
        assert response.output_text == "Let me look."
        assert [item.type for item in response.output] == ["message", "function_call", "function_call"]


class TestEncoderProperties:
    def test_every_event_is_valid_for_the_sdk_types(self) -> None:
        """Every event (and the completed response) validates against the SDK's pydantic models."""
        from openai.types.responses import ResponseStreamEvent
        from pydantic import TypeAdapter

        adapter: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
        chunks = [reasoning_chunk("r"), *tool_stream()]
        for _, data in events(encode_all(ResponsesEncoder(model="m"), chunks)):
            adapter.validate_python(data)

    @settings(max_examples=40, deadline=None)
    @given(
        st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=8),
        st.lists(st.text(min_size=1, max_size=8), max_size=5),
        st.lists(st.sampled_from(['{"a"', ": 1", ', "b": [', "2]", "}"]), max_size=5),
    )
    def test_deltas_join_to_done_and_sequence_numbers_increase(
        self, text: list[str], reasoning: list[str], args: list[str]
    ) -> None:
        """Per item, the deltas join to the .done value, and sequence_number counts 0, 1, 2…"""
        chunks = [reasoning_chunk(p) for p in reasoning] + [content_chunk(p) for p in text]
        if args:
            chunks.append(tool_chunk(tool_fragment(0, "call_x", "f", "", "function")))
            chunks.extend(tool_chunk(tool_fragment(0, arguments=a)) for a in args)
        parsed = [data for _, data in events(encode_all(ResponsesEncoder(), [*chunks, finish_chunk()]))]

        assert [d["sequence_number"] for d in parsed] == list(range(len(parsed)))
        deltas: dict[str, list[str]] = {}
        done: dict[str, str] = {}
        for d in parsed:
            kind = d["type"]
            if kind.endswith(".delta"):
                deltas.setdefault(d["item_id"], []).append(d["delta"])
            elif kind in ("response.output_text.done", "response.reasoning_summary_text.done"):
                done[d["item_id"]] = d["text"]
            elif kind == "response.function_call_arguments.done":
                done[d["item_id"]] = d["arguments"]
        assert {k: "".join(v) for k, v in deltas.items()} == done
        final = parsed[-1]["response"]
        texts = [p["text"] for item in final["output"] if item["type"] == "message" for p in item["content"]]
        assert texts == ["".join(text)]

    @settings(max_examples=40, deadline=None)
    @given(st.text(min_size=1, max_size=60), st.data())
    def test_the_response_does_not_depend_on_chunk_splitting(self, text: str, data: st.DataObject) -> None:
        """However the text is split into chunks, the completed response says the same."""
        cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(text) - 1)), max_size=6)))
        bounds = [0, *[c for c in cuts if c < len(text)], len(text)]
        split = [text[a:b] for a, b in itertools.pairwise(bounds) if b > a]

        whole = response_object([content_chunk(text), finish_chunk()], response_id="r")
        pieces = response_object([*(content_chunk(p) for p in split), finish_chunk()], response_id="r")

        def view(obj: dict[str, Any]) -> Any:
            return [(i["type"], [p["text"] for p in i["content"]]) for i in obj["output"]], obj["status"]

        assert view(whole) == view(pieces)
