"""Auth, request validation and limits: the proxy's refusals, as statuses and OpenAI-style bodies."""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

import aiohttp
import openai
import pytest
import structlog

from rxllm.proxy import PROXY_STATE, KeyChecker, ProxyError
from tests.proxy.proxy_support import (
    MASTER_KEY,
    USER,
    ProxyServer,
    client,
    config,
    mock_entry,
    request_logs,
    running,
)


async def _post(server: ProxyServer, data: bytes | str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    url = server.make_url("/v1/chat/completions")
    async with aiohttp.ClientSession() as session, session.post(url, data=data, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


async def _get(server: ProxyServer, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(server.make_url(path), headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


class TestAuth:
    async def test_missing_and_wrong_keys_are_401_and_the_right_key_works(self) -> None:
        """With a master key, requests without it or with another key get openai AuthenticationError."""
        async with running(config(master_key=MASTER_KEY)) as server:
            with structlog.testing.capture_logs() as logs:
                with pytest.raises(openai.AuthenticationError) as wrong:
                    await client(server, "sk-wrong").chat.completions.create(model="mock/echo", messages=USER)
                status, body = await _post(server, b'{"model": "mock/echo", "messages": []}')
                ok = await client(server, MASTER_KEY).chat.completions.create(model="mock/echo", messages=USER)

        assert wrong.value.status_code == 401
        assert status == 401
        assert body["error"]["code"] == "invalid_api_key"
        assert ok.choices[0].message.content == "hello proxy"
        assert MASTER_KEY not in repr(logs) and "sk-wrong" not in repr(logs)
        assert MASTER_KEY not in repr(wrong.value.body)

    async def test_health_needs_no_key_but_models_does(self) -> None:
        """Health probes work without a key; /v1/models does not."""
        async with running(config(mock_entry("m"), master_key=MASTER_KEY)) as server:
            live = await _get(server, "/health/liveliness")
            ready = await _get(server, "/health/readiness")
            models_denied = await _get(server, "/v1/models")
            models = await client(server, MASTER_KEY).models.list()

        assert live == (200, {"status": "healthy"})
        assert ready[0] == 200 and ready[1]["status"] == "healthy"
        assert models_denied[0] == 401
        assert [m.id for m in models.data] == ["m"]

    def test_keys_are_compared_in_constant_time(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The check goes through hmac.compare_digest, and the checker's repr hides the key."""
        calls: list[tuple[bytes, bytes]] = []
        real = hmac.compare_digest

        def spy(a: bytes, b: bytes) -> bool:
            calls.append((a, b))
            return real(a, b)

        monkeypatch.setattr(hmac, "compare_digest", spy)
        checker = KeyChecker(MASTER_KEY)
        checker.check({"Authorization": f"Bearer {MASTER_KEY}"})
        with pytest.raises(ProxyError) as info:
            checker.check({"Authorization": "Bearer nope"})

        assert len(calls) == 2
        assert all(len(a) == len(b) == 32 for a, b in calls)  # digests: length leaks nothing
        assert info.value.status_code == 401
        assert MASTER_KEY not in repr(checker)

    def test_master_key_from_the_environment(self) -> None:
        """RXLLM_MASTER_KEY sets the key when the config has none, and never shows in reprs."""
        from rxllm.proxy import parse_config

        cfg = parse_config({}, environ={"RXLLM_MASTER_KEY": "env-key-123"})

        assert cfg.master_key == "env-key-123"
        assert "env-key-123" not in repr(cfg)


class TestValidation:
    @pytest.mark.parametrize(
        ("body", "param", "fragment"),
        [
            ("{not json", None, "not valid JSON"),
            ("[1, 2]", None, "must be a JSON object"),
            ('{"messages": [{"role": "user", "content": "x"}]}', "model", "model"),
            ('{"model": 42, "messages": [{"role": "user", "content": "x"}]}', "model", "non-empty string"),
            ('{"model": "mock/echo"}', "messages", "messages"),
            ('{"model": "mock/echo", "messages": "hi"}', "messages", "array"),
            ('{"model": "mock/echo", "messages": []}', "messages", "empty"),
            ('{"model": "mock/echo", "messages": [{"role": "wizard", "content": "x"}]}', "messages", "role"),
            (
                '{"model": "mock/echo", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}',
                "stream",
                "boolean",
            ),
            (
                '{"model": "mock/echo", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}',
                "temperature",
                "number",
            ),
            ('{"model": "mock/echo", "messages": [{"role": "user", "content": "x"}], "n": 0}', "n", "at least 1"),
        ],
    )
    async def test_bad_requests_are_400_with_the_field_named(self, body: str, param: str | None, fragment: str) -> None:
        """Invalid JSON, missing or wrong-typed fields: 400, invalid_request_error, param set."""
        async with running() as server:
            status, answer = await _post(server, body, {"Content-Type": "application/json"})

        assert status == 400
        error = answer["error"]
        assert error["type"] == "invalid_request_error"
        assert error["param"] == param
        assert fragment in error["message"]

    async def test_unknown_model_is_404_listing_the_configured_ones(self) -> None:
        """An unknown model surfaces as openai.NotFoundError naming the models that exist."""
        async with running(config(mock_entry("alpha"), mock_entry("beta"))) as server:
            with pytest.raises(openai.NotFoundError) as info:
                await client(server).chat.completions.create(model="gamma", messages=USER)

        assert "alpha, beta" in info.value.message
        assert isinstance(info.value.body, dict) and info.value.body["code"] == "model_not_found"

    async def test_body_over_the_limit_is_413(self) -> None:
        """A body larger than max_request_size_mb is refused with 413 before it is parsed."""
        async with running(config(max_request_size_mb=0.001)) as server:
            big = [{"role": "user", "content": "x" * 5000}]
            with pytest.raises(openai.APIStatusError) as info:
                await client(server).chat.completions.create(model="mock/echo", messages=big)
            small = await client(server).chat.completions.create(model="mock/echo", messages=USER)

        assert info.value.status_code == 413
        assert isinstance(info.value.body, dict) and info.value.body["code"] == "request_too_large"
        assert small.choices[0].message.content == "hello proxy"

    async def test_unknown_routes_and_methods_get_json_errors(self) -> None:
        """404 and 405 answers carry OpenAI-style bodies too."""
        async with running() as server:
            missing = await _get(server, "/v1/nothing")
            wrong_method = await _get(server, "/v1/chat/completions")

        assert missing[0] == 404 and "error" in missing[1]
        assert wrong_method[0] == 405 and "error" in wrong_method[1]

    async def test_clients_cannot_redirect_the_upstream(self) -> None:
        """api_base/api_key in a request body are ignored: the deployment's settings stay."""
        async with running(config(mock_entry("m", mock_response="safe"))) as server:
            response = await client(server).chat.completions.create(
                model="m", messages=USER, extra_body={"api_base": "http://169.254.169.254/", "api_key": "x"}
            )

        assert response.choices[0].message.content == "safe"


class TestLimits:
    async def test_concurrency_limit_answers_429_and_frees_up(self) -> None:
        """Beyond global_max_parallel_requests a request gets 429; once one ends, requests fit again."""
        cfg = config(mock_entry("slow", mock_response="a " * 50, mock_delay=0.02), global_max_parallel_requests=1)
        async with running(cfg) as server:
            api = client(server)
            stream = await api.chat.completions.create(model="slow", messages=USER, stream=True)
            with pytest.raises(openai.RateLimitError) as info:
                await api.chat.completions.create(model="mock/echo", messages=USER)
            await stream.close()
            state = server.app[PROXY_STATE]

            async def released() -> None:
                while state.in_flight:
                    await asyncio.sleep(0)

            await asyncio.wait_for(released(), 30)  # a hang guard: the slot is freed when the proxy sees the close
            after = await api.chat.completions.create(model="mock/echo", messages=USER)

        assert info.value.status_code == 429
        assert info.value.response.headers.get("Retry-After") == "1"
        assert after.choices[0].message.content == "hello proxy"

    async def test_rpm_limit_answers_429_with_retry_after(self) -> None:
        """A deployment at its rpm limit (and no other deployment) gives 429 with Retry-After."""
        async with running(config(mock_entry("m", rpm=2))) as server:
            api = client(server)
            for _ in range(2):
                await api.chat.completions.create(model="m", messages=USER)
            with pytest.raises(openai.RateLimitError) as info:
                await api.chat.completions.create(model="m", messages=USER)

        assert int(info.value.response.headers["Retry-After"]) >= 1

    async def test_shutdown_ends_in_flight_streams_cleanly(self) -> None:
        """At shutdown a stream past the grace period gets an error event and a clean end, and is logged."""
        cfg = config(mock_entry("slow", mock_response="w " * 200, mock_delay=0.02), shutdown_grace_period=0.1)
        with structlog.testing.capture_logs() as logs:
            async with running(cfg) as server:
                api = client(server)
                stream = await api.chat.completions.create(model="slow", messages=USER, stream=True)
                first = await stream.__anext__()
                cleanup = asyncio.create_task(server.runner.cleanup())
                received = 1
                with pytest.raises(openai.APIError, match="shutting down"):
                    async for _ in stream:
                        received += 1
                await asyncio.wait_for(cleanup, 5)
                assert server.app[PROXY_STATE].draining

        assert first.choices[0].delta.content == "w"
        assert 1 < received < 200
        lines = request_logs(logs)
        assert lines[-1]["outcome"] == "cancelled"


class TestLogging:
    async def test_one_line_per_request_without_prompt_or_completion(self) -> None:
        """The request log line has the accounting fields and neither the prompt nor the answer."""
        secret_prompt = [{"role": "user", "content": "my-private-prompt-text"}]
        async with running() as server:
            with structlog.testing.capture_logs() as logs:
                stream = await client(server).chat.completions.create(
                    model="mock/echo", messages=secret_prompt, stream=True, extra_headers={"X-Request-Id": "abc-123"}
                )
                async for _ in stream:
                    pass

                async def logged() -> None:
                    while not request_logs(logs):
                        await asyncio.sleep(0)

                await asyncio.wait_for(logged(), 30)  # the line is written when the handler ends

        lines = request_logs(logs)
        assert len(lines) == 1
        line = lines[0]
        assert line["request_id"] == "abc-123"
        for field in ("model", "deployment", "status", "outcome", "prompt_tokens", "completion_tokens", "cost"):
            assert field in line
        assert line["time_to_first_chunk"] <= line["duration"]
        assert "my-private-prompt-text" not in repr(logs)
        assert "private" not in repr(logs)
