"""The proxy in front of a real local OpenAI-compatible server: streaming, failover, disconnects."""

from __future__ import annotations

import asyncio

import openai
import pytest
import structlog

from tests.proxy.proxy_support import (
    UPSTREAM_KEY,
    USER,
    client,
    config,
    mock_entry,
    request_logs,
    running,
    upstream,
    upstream_entry,
)


async def _log_line(logs: list[dict[str, object]], timeout: float = 30.0) -> dict[str, object]:
    """Wait for the proxy's request log line (written when the handler ends); ``timeout`` guards a hang."""

    async def written() -> None:
        while not request_logs(logs):
            await asyncio.sleep(0)

    await asyncio.wait_for(written(), timeout)
    lines = request_logs(logs)
    assert len(lines) == 1, lines
    return lines[0]


class TestThroughUpstream:
    async def test_chunks_stream_from_the_upstream_with_its_key(self, no_leaks: None) -> None:
        """The proxy streams the upstream's chunks and sends the configured key upstream only."""
        async with upstream(count=4) as up, running(config(upstream_entry("gpt", up))) as server:
            with structlog.testing.capture_logs() as logs:
                stream = await client(server).chat.completions.create(model="gpt", messages=USER, stream=True)
                chunks = [c async for c in stream]
                line = await _log_line(logs)

        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "tok0 tok1 tok2 tok3 "
        assert up.auth == [f"Bearer {UPSTREAM_KEY}"]
        assert up.requests[0]["model"] == "up-model"
        assert up.requests[0]["messages"] == USER
        assert all(c.usage is None for c in chunks)
        assert line["outcome"] == "completed"
        assert line["completion_tokens"] == 4
        assert line["prompt_tokens"] == 7
        assert line["deployment"] == "gpt#0"
        assert UPSTREAM_KEY not in repr(logs)

    async def test_failover_to_the_next_deployment_before_the_first_chunk(self) -> None:
        """An upstream answering 500 is skipped: the next deployment of the model serves the request."""
        async with upstream() as broken, upstream(count=2) as healthy:
            broken.fail_status = 500
            cfg = config(upstream_entry("gpt", broken), upstream_entry("gpt", healthy))
            async with running(cfg) as server:
                with structlog.testing.capture_logs() as logs:
                    response = await client(server).chat.completions.create(model="gpt", messages=USER)

        assert response.choices[0].message.content == "tok0 tok1 "
        assert len(broken.requests) == 1
        assert len(healthy.requests) == 1
        line = request_logs(logs)[0]
        assert line["attempts"] == 2
        assert line["deployment"] == "gpt#1"

    async def test_when_every_deployment_fails_the_last_status_is_returned(self) -> None:
        """With no healthy deployment the client gets the upstream's status, key-free."""
        async with upstream() as up:
            up.fail_status = 503
            async with running(config(upstream_entry("gpt", up))) as server:
                with pytest.raises(openai.InternalServerError) as info:
                    await client(server).chat.completions.create(model="gpt", messages=USER, stream=True)

        assert info.value.status_code == 503
        assert "upstream says 503" in info.value.message
        assert UPSTREAM_KEY not in info.value.message

    async def test_an_upstream_echoing_the_key_does_not_leak_it(self) -> None:
        """An upstream error message that quotes the configured key reaches the client and log masked."""
        async with upstream() as up:
            up.fail_status = 401
            up.fail_message = f"Incorrect API key provided: {UPSTREAM_KEY}"
            async with running(config(upstream_entry("gpt", up))) as server:
                with structlog.testing.capture_logs() as logs, pytest.raises(openai.AuthenticationError) as info:
                    await client(server).chat.completions.create(model="gpt", messages=USER)

        assert "Incorrect API key provided: ***" in info.value.message
        assert UPSTREAM_KEY not in repr(info.value.body)
        assert UPSTREAM_KEY not in repr(logs)
        assert request_logs(logs)[0]["status"] == 401

    async def test_upstream_error_event_mid_stream_reaches_the_client(self) -> None:
        """An upstream that fails after two chunks: two chunks, then an openai APIError."""
        async with upstream(count=5) as up, running(config(upstream_entry("gpt", up))) as server:
            up.fail_after = 2
            stream = await client(server).chat.completions.create(model="gpt", messages=USER, stream=True)
            texts = []
            with pytest.raises(openai.APIError, match="upstream broke mid-stream"):
                async for chunk in stream:
                    texts.append(chunk.choices[0].delta.content)

        assert texts == ["tok0 ", "tok1 "]

    async def test_stream_timeout_ends_an_idle_stream(self) -> None:
        """A deployment's stream_timeout ends a stream whose upstream goes quiet, with an error event."""
        async with upstream(count=3, delay=30.0) as up:
            cfg = config(upstream_entry("gpt", up, stream_timeout=0.3))
            async with running(cfg) as server:
                stream = await client(server).chat.completions.create(model="gpt", messages=USER, stream=True)
                texts = []
                with pytest.raises(openai.APIError) as info:
                    async for chunk in stream:
                        texts.append(chunk.choices[0].delta.content)

        # the upstream's second chunk comes 30 s after the first: only the timeout can end it
        assert texts == ["tok0 "]
        assert "0.3" in str(info.value)


class TestDisconnect:
    @pytest.mark.parametrize(
        ("handler_cancellation", "delay"),
        [(False, 0.05), (False, 5.0), (True, 5.0)],
        ids=["busy-stream", "idle-stream-watchdog", "idle-stream-handler-cancellation"],
    )
    async def test_client_leaving_cancels_the_upstream_and_logs_cancelled(
        self, handler_cancellation: bool, delay: float, no_leaks: None
    ) -> None:
        """Closing the client mid-stream closes the upstream request promptly; the log says cancelled.

        With a 5 s gap between upstream chunks nothing is written when the client leaves, so
        only the watchdog (or aiohttp's handler cancellation) can notice.
        """
        async with upstream(count=200, delay=delay) as up:
            cfg = config(upstream_entry("slow", up))
            async with running(cfg, handler_cancellation=handler_cancellation) as server:
                with structlog.testing.capture_logs() as logs:
                    stream = await client(server).chat.completions.create(model="slow", messages=USER, stream=True)
                    received = 0
                    async for _ in stream:
                        received += 1
                        if received == (3 if delay < 1 else 1):
                            break
                    await stream.close()
                    await asyncio.wait_for(up.disconnected.wait(), timeout=30.0)  # a hang guard, not a timing bound
                    line = await _log_line(logs)

        assert up.disconnected.is_set()
        assert up.sent < 200  # the upstream was stopped, not read to its end
        assert line["outcome"] == "cancelled"
        assert line["model"] == "slow"
        assert line["completion_tokens"] >= 1
        assert line["time_to_first_chunk"] is not None

    async def test_client_leaving_a_mock_stream_is_cancelled_too(self, no_leaks: None) -> None:
        """A slow mock stream stops producing once its client left; the log says cancelled."""
        async with running(config(mock_entry("m", mock_response="w " * 100, mock_delay=0.05))) as server:
            with structlog.testing.capture_logs() as logs:
                stream = await client(server).chat.completions.create(model="m", messages=USER, stream=True)
                async for _ in stream:
                    break
                await stream.close()
                line = await _log_line(logs)

        assert line["outcome"] == "cancelled"
        assert line["completion_tokens"] < 100  # the mock stopped producing: 100 words were asked for
