"""The per-request path after its slimming: bodies that arrive late, slots, cost reports, one-deployment plans."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import orjson
import pytest
from structlog.testing import capture_logs

from rxllm.proxy import PROXY_STATE
from rxllm.proxy.exchange import Outcome
from rxllm.proxy.router import Router
from tests.proxy.proxy_support import (
    MASTER_KEY,
    USER,
    client,
    config,
    mock_entry,
    request_logs,
    running,
    upstream,
    upstream_entry,
)


async def _raw_post(port: int, head: bytes, pieces: list[bytes], pause: float) -> bytes:
    """POST with the body sent in ``pieces`` after the headers, ``pause`` s apart; the whole answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        await writer.drain()
        for piece in pieces:
            await asyncio.sleep(pause)
            writer.write(piece)
            await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


def _head(body: bytes) -> bytes:
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )


class TestBodyArrival:
    """A body that came with the headers and one that trickles in after them are served alike."""

    async def test_a_body_sent_after_the_headers_is_waited_for(self) -> None:
        """The body arriving in two pieces after the headers (within body_timeout) gets the same answer."""
        body = orjson.dumps({"model": "mock/echo", "messages": USER})
        async with running(config(body_timeout=5)) as server:
            late = await _raw_post(server.port, _head(body), [body[:10], body[10:]], 0.1)
            whole = await _raw_post(server.port, _head(body) + body, [], 0.0)

        assert late.startswith(b"HTTP/1.1 200") and whole.startswith(b"HTTP/1.1 200")
        late_answer = orjson.loads(late.split(b"\r\n\r\n", 1)[1])
        whole_answer = orjson.loads(whole.split(b"\r\n\r\n", 1)[1])
        assert late_answer["choices"][0]["message"]["content"] == "hello proxy"
        assert whole_answer["choices"][0]["message"] == late_answer["choices"][0]["message"]

    async def test_a_body_that_stops_short_still_gets_408(self) -> None:
        """Headers and half a body, then nothing: 408 after body_timeout, in OpenAI's error shape."""
        body = orjson.dumps({"model": "mock/echo", "messages": USER})
        async with running(config(body_timeout=0.3)) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(_head(body) + body[:5])
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 10)
            writer.close()

        assert answer.startswith(b"HTTP/1.1 408")
        error = orjson.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
        assert error["code"] == "request_timeout"


class TestSlotsAndReports:
    """Every request gives its concurrency slot back and reports its cost once."""

    async def test_slots_are_given_back_after_streams_and_answers(self) -> None:
        """After streamed, non-streamed and failed requests the proxy holds no slot."""
        async with running(config(mock_entry("m", mock_response="one two three"))) as server:
            state = server.app[PROXY_STATE]
            api = client(server)
            stream = await api.chat.completions.create(model="m", messages=USER, stream=True)
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            answer = await api.chat.completions.create(model="m", messages=USER)
            with pytest.raises(openai.NotFoundError):
                await api.chat.completions.create(model="no-such-model", messages=USER)

            assert text == answer.choices[0].message.content == "one two three"
            assert state.in_flight == 0
            assert state.router.shared.global_in_flight == 0
            assert state.router.in_flight() == {"m#0": 0}

    async def test_a_streamed_request_reports_tokens_once_to_hooks_log_and_tpm(self) -> None:
        """The cost report reaches the outcome hook, the log line and the deployment's tpm window, once."""
        async with upstream(count=3) as up:
            cfg = config(upstream_entry("m", up, tpm=1_000_000), master_key=MASTER_KEY)
            async with running(cfg) as server:
                state = server.app[PROXY_STATE]
                seen: list[Outcome] = []
                state.outcome_hooks.append(seen.append)
                with capture_logs() as logs:
                    stream = await client(server, MASTER_KEY).chat.completions.create(
                        model="m", messages=USER, stream=True, stream_options={"include_usage": True}
                    )
                    chunks = [c async for c in stream]
                    await asyncio.sleep(0.05)  # the log line is written as the handler returns
                windows = [list(s.tokens) for s in state.router.groups()]

        usage = [c.usage for c in chunks if c.usage is not None]
        assert len(seen) == 1 and seen[0].report is not None
        report = seen[0].report
        assert report.total_tokens == usage[-1].total_tokens
        line: dict[str, Any] = request_logs(logs)[0]
        assert (line["prompt_tokens"], line["completion_tokens"]) == (report.prompt_tokens, report.completion_tokens)
        assert line["chunks"] == report.chunk_count
        assert [n for _, n in windows[0]] == [report.total_tokens]


class TestOneDeploymentPlans:
    """A model name with one deployment is planned as that deployment, whatever its state."""

    def test_a_cooling_deployment_is_still_the_plan(self) -> None:
        """The only deployment, cooling down after a failure, is still tried (nothing else could be)."""
        now = [100.0]
        router = Router(config(mock_entry("m"), cooldown_time=30), clock=lambda: now[0])
        (state,) = router.plan("m")
        lease = router.acquire(state)
        assert lease is not None
        lease.release(failed=True)

        assert [s.deployment.id for s in router.plan("m")] == [state.deployment.id]
        assert router.shared.cooling(state, now[0], 30)

    def test_two_deployments_put_the_cooling_one_last(self) -> None:
        """With two deployments, the one that just failed is planned after the healthy one."""
        now = [100.0]
        router = Router(config(mock_entry("m"), mock_entry("m"), cooldown_time=30), clock=lambda: now[0])
        first = router.plan("m")[0]
        lease = router.acquire(first)
        assert lease is not None
        lease.release(failed=True)

        assert [s.deployment.id for s in router.plan("m")][-1] == first.deployment.id
