"""The dialect interface: a new wire protocol is one Dialect value over the shared exchange core."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from rxllm.proxy import PROXY_STATE, Call, Context, Dialect, ErrorInfo, Outcome, ProxyError, create_app
from rxllm.proxy.dialects import load_dialects
from rxllm.proxy.dialects.chat import DIALECT as CHAT
from rxllm.types import ChatCompletionChunk, ModelResponse, Usage
from tests.proxy.proxy_support import USER, client, config, mock_entry, running, upstream, upstream_entry


def _toy_translate(body: Any, request: web.Request) -> Call:
    if not isinstance(body, dict) or not isinstance(body.get("prompt"), str):
        raise ProxyError("prompt must be a string", status_code=400, param="prompt")
    model = body.get("model", "mock/echo")
    return Call(model, [{"role": "user", "content": body["prompt"]}], bool(body.get("stream")))


class _ToyEncoder:
    def __init__(self, context: Context) -> None:
        self.context = context

    def chunk(self, chunk: ChatCompletionChunk) -> bytes:
        text = "".join(c.delta.content or "" for c in chunk.choices)
        return b"event: text\ndata: " + orjson.dumps({"t": text, "m": chunk.model}) + b"\n\n" if text else b""

    def end(self, usage: Usage | None) -> bytes:
        tokens = usage.completion_tokens if usage is not None else None
        return b"event: end\ndata: " + orjson.dumps({"tokens": tokens}) + b"\n\n"

    def error(self, info: ErrorInfo) -> bytes:
        return b"event: oops\ndata: " + orjson.dumps({"oops": info.message}) + b"\n\n"


def _toy_respond(response: ModelResponse, context: Context) -> dict[str, Any]:
    return {"text": response.choices[0].message.content, "model": response.model}


def _toy_error(info: ErrorInfo) -> dict[str, Any]:
    return {"oops": {"why": info.message, "status": info.status}}


TOY = Dialect(
    name="toy",
    routes=("/toy",),
    translate=_toy_translate,
    stream_encoder=_ToyEncoder,
    respond=_toy_respond,
    error_body=_toy_error,
    keepalive=b"event: ping\ndata: {}\n\n",
    stream_headers={"X-Toy": "1"},
)


class _ToyServer:
    """The proxy app with the chat and toy dialects on a free port."""

    def __init__(self, cfg: Any) -> None:
        self.app = create_app(cfg, dialects=[CHAT, TOY])
        self.runner = web.AppRunner(self.app)

    async def __aenter__(self) -> _ToyServer:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()


async def _post(url: str, body: Any) -> tuple[int, Any, bytes]:
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as response:
        return response.status, response.headers, await response.read()


class TestDialectInterface:
    def test_the_default_dialects_start_with_chat_completions(self) -> None:
        """load_dialects finds every dialect module; chat completions comes first."""
        dialects = load_dialects()

        assert dialects[0] is CHAT
        assert "/v1/chat/completions" in CHAT.routes
        assert len({d.name for d in dialects}) == len(dialects)

    async def test_a_new_dialect_streams_in_its_own_events(self) -> None:
        """A Dialect value alone serves a route: its encoder's events, headers, and end event with usage."""
        async with _ToyServer(config(mock_entry("m", mock_response="one two three"))) as server:
            _, headers, body = await _post(server.url + "/toy", {"model": "m", "prompt": "x", "stream": True})

        assert headers["Content-Type"].startswith("text/event-stream")
        assert headers["X-Toy"] == "1"
        events = [block for block in body.decode().split("\n\n") if block]
        texts = [orjson.loads(e.split("data: ", 1)[1]) for e in events if e.startswith("event: text")]
        assert "".join(t["t"] for t in texts) == "one two three"
        assert {t["m"] for t in texts} == {"m"}  # the client's model name, not the deployment's
        assert events[-1].startswith("event: end")
        assert orjson.loads(events[-1].split("data: ", 1)[1])["tokens"] > 0

    async def test_a_new_dialect_answers_without_streaming(self) -> None:
        """The dialect's respond() shapes the collected answer."""
        async with _ToyServer(config(mock_entry("m", mock_response="whole answer"))) as server:
            _, _, raw = await _post(server.url + "/toy", {"model": "m", "prompt": "x"})
        answer = orjson.loads(raw)

        assert answer == {"text": "whole answer", "model": "m"}

    async def test_errors_use_the_dialects_shape(self) -> None:
        """A bad request, an unknown model and a missing key answer in the dialect's own error body."""
        cfg = config(mock_entry("m"), master_key="sk-master-toy")
        async with _ToyServer(cfg) as server, aiohttp.ClientSession() as session:
            auth = {"Authorization": "Bearer sk-master-toy"}
            async with session.post(server.url + "/toy", json={"prompt": 5}, headers=auth) as r:
                bad = (r.status, await r.json())
            async with session.post(server.url + "/toy", json={"model": "zz", "prompt": "x"}, headers=auth) as r:
                unknown = (r.status, await r.json())
            async with session.post(server.url + "/toy", json={"prompt": "x"}) as r:
                unauthorized = (r.status, await r.json())
            async with session.post(server.url + "/v1/chat/completions", json={}, headers=auth) as r:
                chat = (r.status, await r.json())

        assert bad == (400, {"oops": {"why": "prompt must be a string", "status": 400}})
        assert unknown[0] == 404 and "zz" in unknown[1]["oops"]["why"]
        assert unauthorized[0] == 401 and unauthorized[1]["oops"]["status"] == 401
        assert chat[0] == 400 and chat[1]["error"]["param"] == "model"  # chat keeps OpenAI's shape

    async def test_a_mid_stream_failure_ends_with_the_dialects_error_event(self) -> None:
        """After the first chunk a failure is the encoder's error event, never its end event."""
        cfg = config(mock_entry("m", mock_response="a b c d e f", mock_fail_after=2))
        async with _ToyServer(cfg) as server:
            _, _, raw = await _post(server.url + "/toy", {"model": "m", "prompt": "x", "stream": True})

        events = [block for block in raw.decode().split("\n\n") if block]
        assert events[0].startswith("event: text")
        assert events[-1].startswith("event: oops")
        assert not any(e.startswith("event: end") for e in events)

    async def test_outcome_hooks_see_each_request_once(self) -> None:
        """ProxyState.outcome_hooks receive one Outcome per request with dialect, status, model and usage."""
        seen: list[Outcome] = []
        async with _ToyServer(config(mock_entry("m", mock_response="a b"))) as server:
            server.app[PROXY_STATE].outcome_hooks.append(seen.append)
            async with aiohttp.ClientSession() as session:
                async with session.post(server.url + "/toy", json={"model": "m", "prompt": "x", "stream": True}) as r:
                    await r.read()
                async with session.post(server.url + "/toy", json={"prompt": 1}) as r:
                    await r.read()

        assert [(o.dialect, o.status, o.result) for o in seen] == [("toy", 200, "completed"), ("toy", 400, "error")]
        assert seen[0].model == "m" and seen[0].deployment == "m#0"
        assert seen[0].usage is not None and seen[0].usage.completion_tokens > 0
        assert seen[0].ttft is not None and seen[0].duration is not None
        assert seen[1].error_type == "ProxyError"


class TestKeepalive:
    async def test_silence_before_the_first_chunk_gets_keepalives(self) -> None:
        """A slow first chunk: the dialect's keepalive is written meanwhile, then the answer streams."""
        async with upstream(count=2) as up:
            up.first_delay = 0.6
            cfg = config(upstream_entry("m", up), keepalive_interval=0.25)
            async with _ToyServer(cfg) as server, aiohttp.ClientSession() as session:
                body_in = {"model": "m", "prompt": "x", "stream": True}
                async with session.post(server.url + "/toy", json=body_in) as r:
                    body = (await r.read()).decode()

        events = [block for block in body.split("\n\n") if block]
        assert events[0] == "event: ping\ndata: {}"
        assert any(e.startswith("event: text") for e in events)
        assert events[-1].startswith("event: end")

    async def test_after_a_keepalive_failover_still_happens_and_failures_are_error_events(self) -> None:
        """Headers committed by a keepalive: a failing deployment is still replaced; if all fail, an error event."""
        async with upstream() as broken, upstream(count=2) as good:
            broken.first_delay = 0.6
            broken.fail_status = 500
            both = config(upstream_entry("m", broken), upstream_entry("m", good), keepalive_interval=0.25)
            only_broken = config(upstream_entry("m", broken), keepalive_interval=0.25)
            body_in = {"model": "m", "prompt": "x", "stream": True}
            async with _ToyServer(both) as server:
                _, _, failed_over = await _post(server.url + "/toy", body_in)
            async with _ToyServer(only_broken) as server:
                status, _, failed = await _post(server.url + "/toy", body_in)

        events = [block for block in failed_over.decode().split("\n\n") if block]
        assert events[0] == "event: ping\ndata: {}"
        assert "".join(orjson.loads(e.split("data: ", 1)[1])["t"] for e in events if e.startswith("event: text"))
        assert events[-1].startswith("event: end")
        tail = [block for block in failed.decode().split("\n\n") if block]
        assert status == 200
        assert tail[0] == "event: ping\ndata: {}"
        assert tail[-1].startswith("event: oops")

    async def test_chat_keepalives_are_comments_the_openai_sdk_ignores(self) -> None:
        """Chat completions sends ': ping' comments; the official client still reads the whole answer."""
        cfg = config(mock_entry("m", mock_response="a b c", mock_delay=0.7), keepalive_interval=0.25)
        async with running(cfg) as server:
            async with aiohttp.ClientSession() as session:
                body = {"model": "m", "messages": USER, "stream": True}
                async with session.post(server.make_url("/v1/chat/completions"), json=body) as r:
                    raw = await r.read()
            stream = await client(server).chat.completions.create(model="m", messages=USER, stream=True)
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

        assert b": ping\n\n" in raw
        assert text == "a b c"

    async def test_no_keepalive_when_disabled(self) -> None:
        """keepalive_interval: 0 turns keepalives off."""
        cfg = config(mock_entry("m", mock_response="a b", mock_delay=0.3), keepalive_interval=0)
        async with running(cfg) as server, aiohttp.ClientSession() as session:
            body = {"model": "m", "messages": USER, "stream": True}
            async with session.post(server.make_url("/v1/chat/completions"), json=body) as r:
                raw = await r.read()

        assert b": ping" not in raw


class TestBookkeeping:
    async def test_in_flight_counts_return_to_zero(self) -> None:
        """After completed, failing, refused and abandoned requests, no deployment has an attempt in flight."""
        cfg = config(
            mock_entry("ok", mock_response="a b c"),
            mock_entry("bad", mock_response="a b c", mock_fail_after=0),
            mock_entry("slow", mock_response="a " * 40, mock_delay=0.05),
        )
        async with running(cfg) as server:
            api = client(server)
            for _ in range(5):
                await api.chat.completions.create(model="ok", messages=USER)
                try:
                    await api.chat.completions.create(model="bad", messages=USER)
                except Exception:
                    pass
                stream = await api.chat.completions.create(model="slow", messages=USER, stream=True)
                await stream.close()
            state = server.app[PROXY_STATE]
            for _ in range(50):
                if not state.active and all(v == 0 for v in state.router.in_flight().values()):
                    break
                await asyncio.sleep(0.05)

            assert state.router.in_flight() == {"ok#0": 0, "bad#1": 0, "slow#2": 0}
            assert state.in_flight == 0
