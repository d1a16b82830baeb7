"""The shared transport: HTTP errors, cancellation to the socket, timeouts, broken and malformed bodies."""

from __future__ import annotations

import asyncio
import socket
from contextlib import aclosing
from typing import Any

import aiohttp
import attrs
import orjson
import pytest
from providers.provider_support import (
    SECRET,
    ReplayServer,
    collect,
    connections_in_use,
    fixture_bytes,
    request_for,
)

import rxllm
from rxllm import errors
from rxllm.providers import _http, get_provider
from rxllm.providers._http import error_from_payload

# (provider, status, body) -> (class, message fragment)
HTTP_ERRORS: list[tuple[str, int, dict[str, Any], type[errors.APIError], str]] = [
    (
        "openai",
        400,
        {"error": {"message": "Invalid value for 'temperature'", "type": "invalid_request_error"}},
        errors.BadRequestError,
        "Invalid value for 'temperature'",
    ),
    (
        "openai",
        400,
        {"error": {"message": "This model's maximum context length is 128000 tokens", "code": "context_length"}},
        errors.ContextWindowExceededError,
        "maximum context length",
    ),
    ("openai", 401, {"error": {"message": "Incorrect API key provided"}}, errors.AuthenticationError, "Incorrect API"),
    ("groq", 403, {"error": {"message": "Forbidden project"}}, errors.PermissionDeniedError, "Forbidden project"),
    ("mistral", 404, {"error": {"message": "Model not found"}}, errors.NotFoundError, "Model not found"),
    ("deepseek", 408, {"error": {"message": "Request timed out"}}, errors.Timeout, "Request timed out"),
    ("openai", 413, {"error": {"message": "Payload too large"}}, errors.RequestTooLargeError, "Payload too large"),
    ("hosted_vllm", 422, {"detail": "messages: field required"}, errors.UnprocessableEntityError, "field required"),
    ("openai", 500, {"error": {"message": "The server had an error"}}, errors.InternalServerError, "server had"),
    ("openrouter", 502, {"error": {"message": "Upstream failed"}}, errors.BadGatewayError, "Upstream failed"),
    ("openai", 503, {"error": {"message": "Slow down"}}, errors.ServiceUnavailableError, "Slow down"),
    (
        "anthropic",
        400,
        {"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"}},
        errors.BadRequestError,
        "max_tokens: Field required",
    ),
    (
        "anthropic",
        401,
        {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}},
        errors.AuthenticationError,
        "invalid x-api-key",
    ),
    (
        "anthropic",
        529,
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        errors.ServiceUnavailableError,
        "Overloaded",
    ),
    (
        "gemini",
        400,
        {"error": {"code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT"}},
        errors.BadRequestError,
        "API key not valid.",
    ),
    (
        "gemini",
        404,
        {"error": {"code": 404, "message": "models/nope is not found", "status": "NOT_FOUND"}},
        errors.NotFoundError,
        "models/nope is not found",
    ),
    (
        "gemini",
        503,
        [{"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}],
        errors.ServiceUnavailableError,
        "The model is overloaded.",
    ),
]


class TestHTTPErrors:
    @pytest.mark.parametrize(
        ("provider", "status", "body", "cls", "fragment"),
        HTTP_ERRORS,
        ids=[f"{p}-{s}-{c.__name__}" for p, s, _, c, _ in HTTP_ERRORS],
    )
    async def test_status_maps_to_class_with_provider_message(
        self,
        server: ReplayServer,
        provider: str,
        status: int,
        body: Any,
        cls: type[errors.APIError],
        fragment: str,
    ) -> None:
        """Each error status becomes its class, carrying the provider's own message and status."""
        server.reply(orjson.dumps(body), status=status)

        with pytest.raises(cls) as info:
            await collect(provider, server.url)

        err = info.value
        assert type(err) is cls
        assert fragment in err.message
        assert err.status_code == status
        assert err.llm_provider == provider
        assert err.model == f"{provider}/test-model"
        assert err.body == body

    async def test_429_keeps_retry_after(self, server: ReplayServer) -> None:
        """A 429 is a RateLimitError whose retry_after comes from the Retry-After header."""
        server.reply(
            orjson.dumps({"error": {"message": "Rate limit reached", "type": "requests"}}),
            status=429,
            headers={"Retry-After": "7"},
        )

        with pytest.raises(errors.RateLimitError, match="Rate limit reached") as info:
            await collect("openai", server.url)

        assert info.value.retry_after == 7.0
        assert info.value.response_headers["Retry-After"] == "7"

    async def test_non_json_error_body(self, server: ReplayServer) -> None:
        """An HTML error page still gives the status class and a readable message."""
        server.reply(b"<html><body>Bad gateway</body></html>", status=502)

        with pytest.raises(errors.BadGatewayError, match=r"HTTP 502.*Bad gateway"):
            await collect("openai", server.url)

    def test_error_events_map_by_type_and_code(self) -> None:
        """In-stream error payloads map by type name or numeric code."""
        anthropic = error_from_payload(
            {"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}}, provider="anthropic", model="m"
        )
        numeric = error_from_payload({"error": {"code": 503, "message": "down"}}, provider="openrouter", model="m")
        unknown = error_from_payload({"error": {"message": "weird"}}, provider="openai", model="m")

        assert type(anthropic) is errors.RateLimitError
        assert type(numeric) is errors.ServiceUnavailableError
        assert type(unknown) is errors.APIError
        assert "weird" in unknown.message


class TestCancellation:
    async def _open(self, server: ReplayServer) -> Any:
        body = fixture_bytes("openai/text_basic.sse")
        server.reply(body, mode="random", stall_after=len(body) // 2)
        return get_provider("openai").stream(request_for("openai", server.url))

    async def test_aclose_mid_stream_disconnects_promptly(self, server: ReplayServer) -> None:
        """Closing the provider's iterator mid-stream closes the socket: the server sees it at once."""
        stream = await self._open(server)
        first = await anext(stream)

        await stream.aclose()

        assert first.id == "chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL"
        await asyncio.wait_for(server.disconnected.wait(), 2.0)
        assert connections_in_use() == 0

    async def test_break_under_aclosing_disconnects(self, server: ReplayServer) -> None:
        """Leaving an `async for` (under aclosing) after a few chunks disconnects the server."""
        stream = await self._open(server)
        seen = 0

        async with aclosing(stream):
            async for _ in stream:
                seen += 1
                if seen == 3:
                    break

        assert seen == 3
        await asyncio.wait_for(server.disconnected.wait(), 2.0)
        assert connections_in_use() == 0

    async def test_task_cancel_while_waiting_disconnects(self, server: ReplayServer) -> None:
        """Cancelling the task that waits on a stalled stream closes the connection."""
        stream = await self._open(server)
        got_some = asyncio.Event()

        async def consume() -> None:
            async with aclosing(stream):
                async for _ in stream:
                    got_some.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(got_some.wait(), 2.0)
        task.cancel()

        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(server.disconnected.wait(), 2.0)
        assert connections_in_use() == 0

    async def test_observable_dispose_disconnects(self, server: ReplayServer) -> None:
        """Disposing rxllm.stream()'s subscription mid-stream reaches the socket."""
        body = fixture_bytes("openai/text_basic.sse")
        server.reply(body, stall_after=len(body) // 2)
        first = asyncio.Event()
        received: list[Any] = []

        def on_next(chunk: Any) -> None:
            received.append(chunk)
            first.set()

        observable = rxllm.stream(
            "openai/gpt-4o", [{"role": "user", "content": "hi"}], api_base=server.url, api_key=SECRET
        )
        subscription = observable.subscribe(on_next=on_next)
        await asyncio.wait_for(first.wait(), 2.0)

        subscription.dispose()

        await asyncio.wait_for(server.disconnected.wait(), 2.0)
        assert received[0].id == "chatcmpl-ABfw031mOJeYCSHe4yI2ZjOA6kMJL"
        for _ in range(5):
            await asyncio.sleep(0)
        assert connections_in_use() == 0


class TestBrokenStreams:
    async def test_stalled_server_raises_timeout(self, server: ReplayServer) -> None:
        """A server that stops sending mid-body raises rxllm.Timeout after stream_timeout (sock_read)."""
        body = fixture_bytes("anthropic/text_basic.sse")
        server.reply(body, stall_after=400)
        loop = asyncio.get_running_loop()
        started = loop.time()

        with pytest.raises(rxllm.Timeout, match="stream_timeout") as info:
            await collect("anthropic", server.url, stream_timeout=0.3)

        assert 0.25 <= loop.time() - started < 3.0
        assert info.value.status_code == 408
        await asyncio.wait_for(server.disconnected.wait(), 2.0)

    async def test_connection_reset_mid_body(self, server: ReplayServer) -> None:
        """The server dropping the connection mid-body raises APIConnectionError."""
        body = fixture_bytes("openai/text_basic.sse")
        server.reply(body, reset_after=len(body) // 2)

        with pytest.raises(errors.APIConnectionError, match="connection"):
            await collect("openai", server.url)

    async def test_body_without_done(self, server: ReplayServer) -> None:
        """A clean end of body before `data: [DONE]` is not a silent success."""
        body = fixture_bytes("openai/text_basic.sse")
        server.reply(body[: body.rindex(b"data: [DONE]")])

        with pytest.raises(errors.APIConnectionError, match=r"\[DONE\]"):
            await collect("openai", server.url)

    async def test_done_without_final_blank_line_is_accepted(self, server: ReplayServer) -> None:
        """`data: [DONE]` cut right after its line still ends the stream normally."""
        body = fixture_bytes("openai/text_basic.sse")
        server.reply(body.rstrip(b"\n"))

        chunks = await collect("openai", server.url)

        assert chunks[-1].usage is not None

    @pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
    async def test_invalid_json_in_data(self, server: ReplayServer, provider: str) -> None:
        """A data field that is not JSON raises MalformedStreamError quoting it."""
        server.reply(b'data: {"id": "x", "choices": [\n\n')

        with pytest.raises(errors.MalformedStreamError, match="not a JSON object"):
            await collect(provider, server.url)

    @pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
    async def test_body_that_is_not_sse(self, server: ReplayServer, provider: str) -> None:
        """An HTML page with status 200 raises MalformedStreamError naming the content type."""
        server.reply(b"<html><body>Login required</body></html>\n", content_type="text/html")

        with pytest.raises(errors.MalformedStreamError, match=r"text/html.*Login required"):
            await collect(provider, server.url)

    async def test_empty_body(self, server: ReplayServer) -> None:
        """A 200 with no body at all raises APIConnectionError, never an empty success."""
        server.reply(b"")

        with pytest.raises(errors.APIConnectionError, match="empty"):
            await collect("openai", server.url)

    async def test_connection_refused(self) -> None:
        """Nothing listening: APIConnectionError naming the endpoint (without secrets)."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]

        with pytest.raises(errors.APIConnectionError, match=f"127.0.0.1:{port}") as info:
            await collect("openai", f"http://127.0.0.1:{port}/v1")

        assert SECRET not in str(info.value) + repr(info.value)
        await _http.aclose_sessions()


class TestSecrets:
    async def test_key_never_in_errors_or_reprs(self, server: ReplayServer) -> None:
        """The API key appears in no error message, repr, body or chained cause, nor in request reprs."""
        server.reply(orjson.dumps({"error": {"message": "nope"}}), status=401)
        request = request_for("openai", server.url)

        with pytest.raises(errors.AuthenticationError) as info:
            await collect("openai", server.url)

        err = info.value
        text = " ".join([str(err), repr(err), str(err.body), str(err.response_headers), repr(err.__cause__)])
        assert SECRET not in text
        assert err.__cause__ is None
        assert SECRET not in repr(request)
        assert SECRET not in repr(get_provider("openai"))


class TestSessions:
    async def test_one_session_per_loop_reused_with_pooled_connection(self, server: ReplayServer) -> None:
        """Two requests on one loop share the session and the kept-alive connection."""
        server.replay("openai/text_basic.sse")
        server.replay("openai/text_basic.sse")

        await collect("openai", server.url)
        session = _http.get_session()
        await collect("openai", server.url)

        assert _http.get_session() is session
        assert len(server.peers) == 2
        assert server.peers[0] == server.peers[1]

    async def test_aclose_sessions_closes_and_a_new_one_is_made(self, server: ReplayServer) -> None:
        """After aclose_sessions() the next request opens a fresh session."""
        server.replay("openai/text_basic.sse")
        first = _http.get_session()

        await _http.aclose_sessions()
        await collect("openai", server.url)

        assert first.closed
        assert _http.get_session() is not first

    async def test_request_timeouts_are_passed_to_aiohttp(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """timeout → sock_connect, stream_timeout → sock_read, and no total limit."""
        seen: dict[str, Any] = {}

        class FakeSession:
            async def post(self, url: str, **kwargs: Any) -> Any:
                seen.update(kwargs)
                raise aiohttp.ClientConnectionError("refused")

        monkeypatch.setattr(_http, "get_session", FakeSession)
        request = attrs.evolve(request_for("openai", "http://127.0.0.1:9"), timeout=3.0, stream_timeout=45.0)
        default = request_for("openai", "http://127.0.0.1:9")

        with pytest.raises(errors.APIConnectionError):
            [c async for c in get_provider("openai").stream(request)]
        explicit = seen["timeout"]
        with pytest.raises(errors.APIConnectionError):
            [c async for c in get_provider("openai").stream(attrs.evolve(default, stream_timeout=None))]

        assert (explicit.total, explicit.sock_connect, explicit.sock_read) == (None, 3.0, 45.0)
        assert seen["timeout"].total is None
        assert seen["timeout"].sock_read == _http.DEFAULT_STREAM_TIMEOUT
        assert seen["timeout"].sock_connect == _http.DEFAULT_CONNECT_TIMEOUT
