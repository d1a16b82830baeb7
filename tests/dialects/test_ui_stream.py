"""The Vercel AI SDK UI message stream: parts checked against the protocol's documented shapes."""

from __future__ import annotations

from typing import Any

import pytest
from strategies import content_chunk, finish_chunk, make_chunk, tool_chunk, tool_fragment

from rxllm.dialects.ui_stream import HEADERS, UIMessageStreamEncoder, translate_request
from rxllm.errors import APIConnectionError, BadRequestError
from tests.dialects.dialect_support import encode_all, events

# The UI message chunk schema of the AI SDK (ai/src/ui-message-stream/ui-message-chunks.ts): each
# part is a strict object, so only these keys may appear. (required keys, optional keys)
PART_SHAPES: dict[str, tuple[set[str], set[str]]] = {
    "start": ({"type"}, {"messageId", "messageMetadata"}),
    "start-step": ({"type"}, set()),
    "finish-step": ({"type"}, set()),
    "finish": ({"type"}, {"finishReason", "messageMetadata"}),
    "error": ({"type", "errorText"}, set()),
    "text-start": ({"type", "id"}, {"providerMetadata"}),
    "text-delta": ({"type", "id", "delta"}, {"providerMetadata"}),
    "text-end": ({"type", "id"}, {"providerMetadata"}),
    "reasoning-start": ({"type", "id"}, {"providerMetadata"}),
    "reasoning-delta": ({"type", "id", "delta"}, {"providerMetadata"}),
    "reasoning-end": ({"type", "id"}, {"providerMetadata"}),
    "tool-input-start": ({"type", "toolCallId", "toolName"}, {"providerExecuted", "providerMetadata", "dynamic"}),
    "tool-input-delta": ({"type", "toolCallId", "inputTextDelta"}, set()),
    "tool-input-available": (
        {"type", "toolCallId", "toolName", "input"},
        {"providerExecuted", "providerMetadata", "dynamic"},
    ),
    "tool-input-error": (
        {"type", "toolCallId", "toolName", "input", "errorText"},
        {"providerExecuted", "providerMetadata", "dynamic"},
    ),
}
STRING_KEYS = {"messageId", "id", "delta", "errorText", "toolCallId", "toolName", "inputTextDelta"}


def check_part(part: dict[str, Any]) -> None:
    """Fail unless ``part`` matches its documented shape."""
    required, optional = PART_SHAPES[part["type"]]
    keys = set(part)
    assert required <= keys, f"{part['type']} lacks {required - keys}"
    assert keys <= required | optional, f"{part['type']} has undocumented keys {keys - required - optional}"
    for key in keys & STRING_KEYS:
        assert isinstance(part[key], str)


def parts(body: bytes) -> list[Any]:
    """The data of each event (``[DONE]`` as the string)."""
    out = []
    for name, data in events(body):
        assert name == "message"  # the protocol uses unnamed data-only events
        out.append(data)
    return out


def reasoning(text: str) -> Any:
    """A chunk carrying reasoning text."""
    return make_chunk({"index": 0, "delta": {"reasoning_content": text}, "finish_reason": None})


class TestEncoder:
    def test_text_stream_has_the_documented_parts_in_order(self) -> None:
        """start, start-step, text-start/-delta/-end, finish-step, finish, then [DONE]."""
        body = encode_all(UIMessageStreamEncoder(message_id="msg-1"), [content_chunk("Hi"), content_chunk("!")])
        got = parts(body)

        for part in got[:-1]:
            check_part(part)
        assert [p if isinstance(p, str) else p["type"] for p in got] == [
            "start",
            "start-step",
            "text-start",
            "text-delta",
            "text-delta",
            "text-end",
            "finish-step",
            "finish",
            "[DONE]",
        ]
        assert got[0]["messageId"] == "msg-1"
        assert {p["id"] for p in got[2:6]} == {got[2]["id"]}

    def test_reasoning_text_and_tool_calls(self) -> None:
        """Reasoning, text and tool parts keep their ids; tool-input-available carries the parsed input."""
        chunks = [
            reasoning("hm"),
            content_chunk("ok"),
            tool_chunk(tool_fragment(0, "call_1", "lookup", "", "function")),
            tool_chunk(tool_fragment(0, arguments='{"q": ')),
            tool_chunk(tool_fragment(0, arguments='"x"}')),
            finish_chunk("tool_calls"),
        ]
        got = [p for p in parts(encode_all(UIMessageStreamEncoder(), chunks)) if p != "[DONE]"]
        for part in got:
            check_part(part)
        kinds = [p["type"] for p in got]

        assert kinds[2:5] == ["reasoning-start", "reasoning-delta", "reasoning-end"]
        assert kinds[5:8] == ["text-start", "text-delta", "text-end"]
        assert kinds[8:12] == ["tool-input-start", "tool-input-delta", "tool-input-delta", "tool-input-available"]
        assert got[11] == {
            "type": "tool-input-available",
            "toolCallId": "call_1",
            "toolName": "lookup",
            "input": {"q": "x"},
        }
        assert "".join(p["inputTextDelta"] for p in got if p["type"] == "tool-input-delta") == '{"q": "x"}'

    def test_invalid_tool_arguments_are_a_tool_input_error(self) -> None:
        """Arguments that are not JSON end the call with tool-input-error, not tool-input-available."""
        chunks = [tool_chunk(tool_fragment(0, "call_1", "f", '{"broken', "function"))]
        got = [p for p in parts(encode_all(UIMessageStreamEncoder(), chunks)) if p != "[DONE]"]
        for part in got:
            check_part(part)

        assert [p["type"] for p in got if p["type"].startswith("tool-input-")][-1] == "tool-input-error"

    def test_a_failure_is_an_error_part_without_finish(self) -> None:
        """A mid-stream error becomes one error part and [DONE]; no finish part is sent."""
        body = encode_all(UIMessageStreamEncoder(), [content_chunk("par")], error=APIConnectionError("cut"))
        got = parts(body)

        assert got[-2] == {"type": "error", "errorText": "cut"}
        assert got[-1] == "[DONE]"
        assert all(p == "[DONE]" or p["type"] != "finish" for p in got)

    def test_headers_name_the_protocol(self) -> None:
        """The response headers announce the v1 UI message stream over SSE."""
        assert HEADERS["x-vercel-ai-ui-message-stream"] == "v1"
        assert HEADERS["Content-Type"].startswith("text/event-stream")


class TestTranslateRequest:
    def test_use_chat_body_becomes_chat_messages(self) -> None:
        """UI messages with text, tool and file parts become chat messages with tool results."""
        body = {
            "id": "chat-1",
            "trigger": "submit-message",
            "messages": [
                {"id": "1", "role": "user", "parts": [{"type": "text", "text": "weather?"}]},
                {
                    "id": "2",
                    "role": "assistant",
                    "parts": [
                        {"type": "step-start"},
                        {"type": "text", "text": "Checking."},
                        {
                            "type": "tool-get_weather",
                            "toolCallId": "call_1",
                            "state": "output-available",
                            "input": {"city": "Paris"},
                            "output": {"temp": 20},
                        },
                        {"type": "step-start"},
                        {"type": "text", "text": "It is 20."},
                    ],
                },
                {
                    "id": "3",
                    "role": "user",
                    "parts": [
                        {"type": "text", "text": "and this?"},
                        {"type": "file", "mediaType": "image/png", "url": "data:image/png;base64,AA"},
                    ],
                },
            ],
        }
        call = translate_request(body, model="mock/echo")

        assert call.model == "mock/echo"
        assert call.stream is True
        assert call.messages[0] == {"role": "user", "content": "weather?"}
        assert call.messages[1]["content"] == "Checking."
        assert call.messages[1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
        assert call.messages[2] == {"role": "tool", "tool_call_id": "call_1", "content": '{"temp":20}'}
        assert call.messages[3] == {"role": "assistant", "content": "It is 20."}
        assert call.messages[4]["content"][1] == {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}

    @pytest.mark.parametrize(
        ("body", "param"),
        [
            ({"messages": [{"role": "user", "parts": []}]}, "model"),
            ({"model": "m", "messages": []}, "messages"),
            ({"model": "m", "messages": [{"role": "tool", "parts": []}]}, "messages[0].role"),
            ({"model": "m", "messages": [{"role": "user", "parts": "x"}]}, "messages[0].parts"),
            (
                {"model": "m", "messages": [{"role": "assistant", "parts": [{"type": "tool-f", "state": "x"}]}]},
                "messages[0].parts[0].toolCallId",
            ),
        ],
    )
    def test_invalid_fields_are_named(self, body: dict[str, Any], param: str) -> None:
        """Each malformed body is a typed 400 whose param names the field at fault."""
        with pytest.raises(BadRequestError) as info:
            translate_request(body)

        assert getattr(info.value, "param", None) == param
