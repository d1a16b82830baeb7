"""The per-request path after its slimming: bodies that arrive late, slots, cost reports, one-deployment plans."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import attrs
import openai
import orjson
import pytest
from structlog.testing import capture_logs

import rxllm
from rxllm.adapters import to_async_iterator
from rxllm.operators import tap_cost
from rxllm.proxy import PROXY_STATE
from rxllm.proxy.exchange import Outcome
from rxllm.proxy.router import Router
from tests.proxy.proxy_support import (
    MASTER_KEY,
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


#: CostReport fields that depend on the clock (compared for presence, not value).
_TIMED = ("time_to_first_chunk", "time_to_first_content", "duration", "output_tokens_per_second")


def _fields(report: Any) -> dict[str, Any]:
    d = attrs.asdict(report, recurse=False)
    error = d.pop("error")
    d["error"] = None if error is None else (type(error).__name__, str(error))
    for name in _TIMED:
        d[name] = d[name] is not None
    return d


async def _direct_report(up: Any, **params: Any) -> Any:
    """What tap_cost reports for the same upstream stream, subscribed directly (the reference)."""
    reports: list[Any] = []
    source = rxllm.stream(
        "openai/up-model",
        USER,
        api_base=up.api_base,
        api_key=UPSTREAM_KEY,
        stream_options={"include_usage": True},
        **params,
    ).pipe(tap_cost(reports.append, model="openai/up-model", messages=USER))
    with contextlib.suppress(Exception):
        async for _ in to_async_iterator(source):
            pass
    return reports[0]


class TestFusedMeter:
    """The exchange meters chunks itself; its report is the one tap_cost makes."""

    async def _proxied_report(self, up: Any, **general: Any) -> tuple[list[Outcome], list[dict[str, Any]]]:
        async with running(config(upstream_entry("m", up), **general)) as server:
            seen: list[Outcome] = []
            server.app[PROXY_STATE].outcome_hooks.append(seen.append)
            with capture_logs() as logs, contextlib.suppress(openai.APIError):
                stream = await client(server).chat.completions.create(model="m", messages=USER, stream=True)
                async for _ in stream:
                    pass
            for _ in range(100):
                if seen:
                    break
                await asyncio.sleep(0.01)
        return seen, logs

    async def test_a_completed_stream_reports_what_tap_cost_reports(self) -> None:
        """Completed: tokens, cost, chunk count, outcome and provider equal tap_cost's report."""
        async with upstream(count=4) as up:
            expected = await _direct_report(up)
            seen, _ = await self._proxied_report(up)

        assert len(seen) == 1 and seen[0].report is not None
        assert _fields(seen[0].report) == _fields(expected)
        assert seen[0].report.outcome == "completed" and seen[0].report.usage_estimated is False

    async def test_a_failed_stream_reports_the_error_as_tap_cost_does(self) -> None:
        """An error event mid-stream: the same outcome, error, counts and estimated usage."""
        async with upstream(count=4) as up:
            up.fail_after = 2
            expected = await _direct_report(up)
            seen, _ = await self._proxied_report(up)

        report = seen[0].report
        assert report is not None and report.outcome == "error"
        assert _fields(report) == _fields(expected)

    async def test_a_client_that_leaves_gets_a_cancelled_report(self) -> None:
        """A client that stops reading mid-stream: one report, cancelled, usage estimated."""
        async with upstream(count=50, delay=0.02) as up, running(config(upstream_entry("m", up))) as server:
            seen: list[Outcome] = []
            server.app[PROXY_STATE].outcome_hooks.append(seen.append)
            stream = await client(server).chat.completions.create(model="m", messages=USER, stream=True)
            got = 0
            async for _ in stream:
                got += 1
                if got == 3:
                    break
            await stream.close()
            await asyncio.wait_for(up.disconnected.wait(), 5)
            for _ in range(200):
                if seen:
                    break
                await asyncio.sleep(0.01)

        assert len(seen) == 1
        report = seen[0].report
        assert report is not None and report.outcome == "cancelled" and report.usage_estimated
        assert 3 <= report.chunk_count < 50

    async def test_a_failing_report_callback_is_logged_and_the_stream_is_served(self) -> None:
        """A report callback that raises: logged as rxllm.tap_cost.on_report_failed; the client gets its stream."""
        async with upstream(count=3) as up, running(config(upstream_entry("m", up))) as server:
            router = server.app[PROXY_STATE].router

            def broken(state: Any, tokens: int) -> None:
                raise RuntimeError("bookkeeping broke")

            router.add_tokens = broken  # type: ignore[method-assign]
            with capture_logs() as logs:
                stream = await client(server).chat.completions.create(model="m", messages=USER, stream=True)
                text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
                await asyncio.sleep(0.05)

        assert text == "tok0 tok1 tok2 "
        failed = [e for e in logs if e.get("event") == "rxllm.tap_cost.on_report_failed"]
        assert len(failed) == 1 and failed[0]["model"] == "openai/up-model"
        assert len(request_logs(logs)) == 1


class TestPullPaths:
    """The provider pulled directly (the default) and through a subscription (an operator piped) relay alike."""

    async def _relay(self, up: Any, **params: Any) -> tuple[list[str], str | None, Outcome]:
        async with running(config(upstream_entry("m", up, **params))) as server:
            seen: list[Outcome] = []
            server.app[PROXY_STATE].outcome_hooks.append(seen.append)
            texts: list[str] = []
            error: str | None = None
            stream = await client(server).chat.completions.create(model="m", messages=USER, stream=True)
            try:
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        texts.append(chunk.choices[0].delta.content)
            except openai.APIError as exc:
                error = exc.message
            for _ in range(100):
                if seen:
                    break
                await asyncio.sleep(0.01)
        return texts, error, seen[0]

    async def test_a_completed_stream_is_the_same_both_ways(self) -> None:
        """Same text, same outcome and report tokens, pulled directly or through split_think_tags."""
        async with upstream(count=4) as up:
            direct = await self._relay(up)
            subscribed = await self._relay(up, split_think_tags=True)

        assert direct[0] == ["tok0 ", "tok1 ", "tok2 ", "tok3 "]
        assert "".join(subscribed[0]) == "".join(direct[0])  # split_think_tags may hold text back
        assert direct[1] is None and subscribed[1] is None
        assert direct[2].result == subscribed[2].result == "completed"
        assert direct[2].report is not None and subscribed[2].report is not None
        assert direct[2].report.total_tokens == subscribed[2].report.total_tokens

    async def test_an_upstream_error_mid_stream_is_the_same_both_ways(self) -> None:
        """An error event after two chunks: the same text, then the same error, logged as the same outcome."""
        async with upstream(count=4) as up:
            up.fail_after = 2
            direct = await self._relay(up)
            subscribed = await self._relay(up, split_think_tags=True)

        assert direct[0] == ["tok0 ", "tok1 "]
        assert "".join(direct[0]).startswith("".join(subscribed[0]))  # split_think_tags may hold text back
        assert direct[1] is not None and direct[1] == subscribed[1]
        assert "upstream broke mid-stream" in direct[1]
        assert direct[2].result == subscribed[2].result == "error"
        assert direct[2].error_type == subscribed[2].error_type
