"""Byte passthrough: an upstream's own event data reaches chat clients when nothing needs rewriting."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer
from strategies import load_fixture_chunks
from support import fixture_path

from rxllm.providers._http import aclose_sessions
from rxllm.proxy.dialects.chat import ChatEncoder
from rxllm.proxy.exchange import _Feed
from rxllm.sse import SSEDecoder
from rxllm.types import ChatCompletionChunk, Usage
from tests.proxy.proxy_support import USER, client, config, request_logs, running

#: Recorded OpenAI-compatible streams, each replayed by a local upstream.
RECORDED = [
    "openai/text_basic.sse",
    "openai/tool_calls_parallel_2.sse",
    "openai/tool_calls_parallel_2_obfuscation.sse",
    "openai/n3_choices.sse",
    "openai/logprobs_content.sse",
    "openai/refusal.sse",
    "openai/gpt5_trailing_moderation_chunk.sse",
    "azure/model_router_content_filter.sse",
    "deepseek/reasoner_reasoning_content.sse",
    "groq/gpt_oss_reasoning_tool_call.sse",
    "mistral/tool_call_no_index.sse",
    "vllm/crusoe_llama33_text.sse",
]


def _events(body: bytes) -> list[str]:
    """The data fields of an SSE body, ``[DONE]`` excluded."""
    decoder = SSEDecoder()
    events = decoder.feed(body)
    tail = decoder.flush()
    if tail is not None:
        events.append(tail)
    return [e.data for e in events if e.event == "message" and e.data != "[DONE]"]


def _model_of(body: bytes) -> str:
    """The model name the recorded upstream reports (what a client must ask for to get passthrough)."""
    for data in _events(body):
        model = orjson.loads(data).get("model")
        if model:
            return str(model)
    raise AssertionError("no model in the recording")


def _no_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _no_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_no_nulls(v) for v in value]
    return value


@contextlib.asynccontextmanager
async def replaying(body: bytes) -> AsyncIterator[str]:
    """A local OpenAI-compatible upstream that answers every POST with ``body``; yields its api_base."""

    async def handle(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(body)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    server = TestServer(app)
    await server.start_server()
    try:
        yield str(server.make_url("/v1"))
    finally:
        await aclose_sessions()
        await server.close()


def _entry(name: str, api_base: str, model: str = "openai/recorded") -> dict[str, Any]:
    return {"model_name": name, "litellm_params": {"model": model, "api_base": api_base, "api_key": "sk-rec"}}


async def _sdk_chunks(body: bytes, name: str, passthrough: bool, **kwargs: Any) -> list[dict[str, Any]]:
    """The chunks the official OpenAI SDK sees through the proxy, as dicts."""
    async with replaying(body) as base, running(config(_entry(name, base), stream_passthrough=passthrough)) as server:
        stream = await client(server).chat.completions.create(model=name, messages=USER, stream=True, **kwargs)
        return [chunk.model_dump() async for chunk in stream]


async def _raw(body: bytes, name: str, passthrough: bool, request: dict[str, Any], **general: Any) -> bytes:
    """The proxy's answer body, as bytes."""
    async with replaying(body) as base:
        cfg = config(_entry(name, base), stream_passthrough=passthrough, **general)
        async with running(cfg) as server, aiohttp.ClientSession() as session:
            payload = {"model": name, "messages": USER, "stream": True, **request}
            async with session.post(server.make_url("/v1/chat/completions"), json=payload) as resp:
                assert resp.status == 200
                return await resp.read()


class TestPassthroughIsInvisible:
    @pytest.mark.parametrize("name", RECORDED)
    @pytest.mark.parametrize("usage", [True, False])
    async def test_the_sdk_sees_the_same_chunks_with_passthrough_on_and_off(self, name: str, usage: bool) -> None:
        """Recorded upstreams: the OpenAI SDK's chunks are identical whether the proxy forwards or re-encodes."""
        body = fixture_path(name).read_bytes()
        model = _model_of(body)
        kwargs: dict[str, Any] = {"stream_options": {"include_usage": True}} if usage else {}
        on = await _sdk_chunks(body, model, True, **kwargs)
        off = await _sdk_chunks(body, model, False, **kwargs)

        assert on == off
        assert on

    @pytest.mark.parametrize("name", RECORDED)
    async def test_the_wire_is_the_same_json_but_for_explicit_nulls(self, name: str) -> None:
        """Each event's JSON is the re-encoded one, except for ``null`` fields the re-encoder leaves out."""
        body = fixture_path(name).read_bytes()
        model = _model_of(body)
        request = {"stream_options": {"include_usage": True}}
        on = _events(await _raw(body, model, True, request))
        off = _events(await _raw(body, model, False, request))

        assert [_no_nulls(orjson.loads(e)) for e in on] == [_no_nulls(orjson.loads(e)) for e in off]


class TestPassthroughForwards:
    async def test_the_upstreams_own_event_data_is_forwarded(self) -> None:
        """With the client's model name the upstream's, the events go out as the upstream wrote them.

        All but the first: its delta holds ``"refusal": null``, which re-encoding leaves out.
        """
        body = fixture_path("openai/text_basic.sse").read_bytes()
        model = _model_of(body)
        upstream = _events(body)
        out = _events(await _raw(body, model, True, {"stream_options": {"include_usage": True}}))

        assert out[1:] == upstream[1:]
        assert '"refusal":null' in upstream[0] and '"refusal"' not in out[0]

    async def test_off_re_encodes(self) -> None:
        """With stream_passthrough off the events are the proxy's own encoding (null logprobs left out)."""
        body = fixture_path("openai/text_basic.sse").read_bytes()
        model = _model_of(body)
        out = _events(await _raw(body, model, False, {"stream_options": {"include_usage": True}}))

        assert out != _events(body)
        assert not any('"logprobs":null' in e for e in out)
        assert all('"logprobs":null' in e for e in _events(body) if '"choices":[{' in e)

    async def test_usage_still_reaches_the_log_line_and_the_cost(self) -> None:
        """Forwarded streams are still metered: tokens and chunk count in the request's log line."""
        body = fixture_path("openai/text_basic.sse").read_bytes()
        model = _model_of(body)
        usage = next(orjson.loads(e)["usage"] for e in _events(body) if orjson.loads(e).get("usage"))
        with structlog.testing.capture_logs() as logs:
            await _raw(body, model, True, {})
        (line,) = request_logs(logs)

        assert line["prompt_tokens"] == usage["prompt_tokens"]
        assert line["completion_tokens"] == usage["completion_tokens"]
        assert line["chunks"] == len(_events(body))
        assert line["outcome"] == "completed"

    async def test_a_looping_upstream_is_still_cut_off(self) -> None:
        """Repeated identical chunks end the stream with an error event, forwarded or not."""
        event = {
            "id": "chatcmpl-loop",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "loop-model",
            "choices": [{"index": 0, "delta": {"content": "again"}, "logprobs": None, "finish_reason": None}],
        }
        body = b"".join(b"data: " + orjson.dumps(event) + b"\n\n" for _ in range(150)) + b"data: [DONE]\n\n"
        out = _events(await _raw(body, "loop-model", True, {}))

        assert "error" in orjson.loads(out[-1])
        assert len(out) < 150


class TestRewritingFallsBack:
    async def test_a_renamed_model_is_re_encoded(self) -> None:
        """A client model name other than the upstream's: every chunk carries the client's name."""
        body = fixture_path("openai/text_basic.sse").read_bytes()
        request = {"stream_options": {"include_usage": True}}
        on = _events(await _raw(body, "alias", True, request))
        off = _events(await _raw(body, "alias", False, request))

        assert on == off
        assert {orjson.loads(e)["model"] for e in on} == {"alias"}

    async def test_usage_the_client_did_not_ask_for_is_dropped(self) -> None:
        """Without include_usage the usage chunk is left out, as OpenAI does, while other events are forwarded."""
        body = fixture_path("openai/text_basic.sse").read_bytes()
        model = _model_of(body)
        out = _events(await _raw(body, model, True, {}))
        upstream = _events(body)

        assert not any(orjson.loads(e).get("usage") for e in out)
        assert out[1:] == [e for e in upstream[1:] if not orjson.loads(e).get("usage")]

    async def test_normalized_chunks_are_re_encoded(self) -> None:
        """Groq's ``reasoning`` deltas are renamed to ``reasoning_content``: those chunks never go out raw."""
        body = fixture_path("groq/gpt_oss_reasoning_tool_call.sse").read_bytes()
        model = _model_of(body)
        out = [orjson.loads(e) for e in _events(await _raw(body, model, True, {}))]
        deltas = [c["choices"][0]["delta"] for c in out if c.get("choices")]

        assert not any("reasoning" in d for d in deltas)
        assert any(d.get("reasoning_content") for d in deltas)

    async def test_resumable_streams_rename_every_id(self) -> None:
        """Resumable streams give every chunk the response id: the renaming encoder is never bypassed."""
        body = fixture_path("openai/text_basic.sse").read_bytes()
        model = _model_of(body)
        upstream_id = orjson.loads(_events(body)[0])["id"]
        out = _events(await _raw(body, model, True, {}, resumable_streams=True))
        ids = {orjson.loads(e)["id"] for e in out}

        assert len(ids) == 1
        assert ids != {upstream_id}


class TestRenamedEncoding:
    @pytest.mark.parametrize("name", RECORDED)
    @pytest.mark.parametrize("include_usage", [True, False])
    def test_renaming_the_wire_dict_writes_the_renamed_chunks_bytes(self, name: str, include_usage: bool) -> None:
        """The chat encoder's rename of the wire dict writes what encoding a renamed chunk wrote, event by event."""
        chunks = load_fixture_chunks(name)
        direct, built = ChatEncoder(include_usage), ChatEncoder(include_usage)

        for chunk in chunks:
            assert direct.renamed(chunk, "alias") == built.chunk(_Feed._renamed(chunk, "alias", None))
        estimate = Usage(3, 4, 7, estimated=True)
        assert direct.end(estimate) == built.end(estimate)
        assert chunks

    def test_an_estimated_usage_chunk_carries_the_clients_model_name(self) -> None:
        """A usage chunk the proxy adds at the end of a renamed stream names the client's model, not the upstream's."""
        encoder = ChatEncoder(True)
        encoder.renamed(ChatCompletionChunk.from_dict({"id": "c1", "model": "upstream", "choices": []}), "alias")

        data = encoder.end(Usage(1, 2, 3))

        assert orjson.loads(data.split(b"\n\n")[0][len(b"data: ") :])["model"] == "alias"

    async def test_a_renamed_stream_without_upstream_usage_ends_with_the_clients_name(self) -> None:
        """Through the proxy: every event of a renamed stream, the estimated usage chunk too, carries the alias."""
        events = [
            {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "upstream-model",
                "choices": [{"index": 0, "delta": {"content": f"word {i}"}, "finish_reason": None}],
            }
            for i in range(3)
        ]
        body = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"
        out = _events(await _raw(body, "alias", True, {"stream_options": {"include_usage": True}}))

        assert [orjson.loads(e)["model"] for e in out] == ["alias"] * 4
        assert orjson.loads(out[-1])["usage"]["total_tokens"] > 0
