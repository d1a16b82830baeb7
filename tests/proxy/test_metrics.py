"""GET /metrics on the proxy: scraped over HTTP and parsed with prometheus_client's own text parser."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rxllm.proxy import parse_config
from rxllm.proxy.metrics import ProxyMetrics
from tests.proxy.proxy_support import MASTER_KEY, USER, client, config, mock_entry, running

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition: (name, labels) -> value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples named ``name`` whose labels include ``labels`` (0 when none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


async def scrape(server: Any, headers: dict[str, str] | None = None) -> Samples:
    async with aiohttp.ClientSession() as session, session.get(server.make_url("/metrics"), headers=headers) as r:
        assert r.status == 200, await r.text()
        assert r.headers["Content-Type"].startswith("text/plain")
        return parse(await r.text())


def metrics_config(*entries: dict[str, Any], **settings: Any) -> Any:
    return parse_config(
        {
            "model_list": list(entries),
            "general_settings": {"metrics": True},
            "router_settings": settings,
        },
        environ={},
    )


class TestMetricsEndpoint:
    async def test_not_served_unless_enabled(self) -> None:
        """Without metrics enabled, /metrics does not exist."""
        async with (
            running(config(mock_entry("m"))) as server,
            aiohttp.ClientSession() as session,
            session.get(server.make_url("/metrics")) as r,
        ):
            status = r.status

        assert status == 404

    async def test_enabled_by_litellm_prometheus_callback(self) -> None:
        """litellm_settings.callbacks: ["prometheus"], LiteLLM's switch, turns it on."""
        cfg = parse_config(
            {"model_list": [mock_entry("m")], "litellm_settings": {"callbacks": ["prometheus"]}}, environ={}
        )
        async with running(cfg) as server:
            samples = await scrape(server)

        assert cfg.metrics
        assert ("rxllm_proxy_in_flight_requests", frozenset()) in samples

    async def test_requests_tokens_cost_and_latency(self) -> None:
        """A streamed and a collected answer are counted by dialect/model/deployment/status, with tokens, cost, TTFT."""
        entry = {
            "model_name": "mini",
            "litellm_params": {"model": "gpt-4o-mini", "mock_response": "one two three"},
            "model_info": {"id": "mini-a"},
        }
        async with running(metrics_config(entry)) as server:
            api = client(server)
            stream = await api.chat.completions.create(
                model="mini", messages=USER, stream=True, stream_options={"include_usage": True}
            )
            [c async for c in stream]
            await api.chat.completions.create(model="mini", messages=USER)
            samples = await scrape(server)

        assert value(samples, "rxllm_proxy_requests_total", dialect="chat", model="mini", deployment="mini-a") == 2
        assert value(samples, "rxllm_proxy_requests_total", model="mini", status="200", outcome="completed") == 2
        assert value(samples, "rxllm_proxy_tokens_total", model="mini", deployment="mini-a", type="completion") > 0
        assert value(samples, "rxllm_proxy_tokens_total", model="mini", type="prompt") > 0
        assert value(samples, "rxllm_proxy_cost_usd_total", model="mini", deployment="mini-a") > 0
        assert value(samples, "rxllm_proxy_time_to_first_chunk_seconds_count", dialect="chat", model="mini") == 2
        assert value(samples, "rxllm_proxy_request_duration_seconds_count", model="mini", outcome="completed") == 2
        assert value(samples, "rxllm_proxy_upstream_attempts_total", model="mini", deployment="mini-a") == 2
        assert value(samples, "rxllm_proxy_errors_total") == 0

    async def test_errors_failovers_and_cooldowns(self) -> None:
        """A deployment failing before its first chunk: a failover, a cooldown; a model failing everywhere: an error."""
        cfg = metrics_config(
            {**mock_entry("m", mock_fail_after=0), "model_info": {"id": "bad"}},
            {**mock_entry("m", mock_response="ok"), "model_info": {"id": "good"}},
            mock_entry("broken", mock_response="rxllm.RateLimitError"),
        )
        async with running(cfg) as server:
            api = client(server)
            answers = []
            for _ in range(2):  # the round-robin puts 'bad' first at least once
                answers.append((await api.chat.completions.create(model="m", messages=USER)).choices[0].message.content)
            with pytest.raises(openai.RateLimitError):
                await api.chat.completions.create(model="broken", messages=USER)
            samples = await scrape(server)

        assert answers == ["ok", "ok"]
        failovers = value(samples, "rxllm_proxy_upstream_failovers_total", model="m")
        assert failovers >= 1
        assert value(samples, "rxllm_proxy_deployment_cooldowns_total", deployment="bad") == failovers
        assert value(samples, "rxllm_proxy_errors_total", model="broken", error_type="RateLimitError") == 1
        assert value(samples, "rxllm_proxy_requests_total", model="broken", status="429", outcome="error") == 1

    async def test_retries_on_the_same_deployment(self) -> None:
        """router_settings.num_retries retries a lone deployment; each retry is counted."""
        cfg = metrics_config(mock_entry("m", mock_fail_after=0), num_retries=2)
        async with running(cfg) as server:
            with pytest.raises(openai.APIStatusError):
                await client(server).chat.completions.create(model="m", messages=USER)
            samples = await scrape(server)

        assert value(samples, "rxllm_proxy_upstream_attempts_total", model="m") == 3
        assert value(samples, "rxllm_proxy_upstream_retries_total", model="m") == 2
        assert value(samples, "rxllm_proxy_upstream_failovers_total", model="m") == 0
        assert value(samples, "rxllm_proxy_errors_total", model="m", error_type="APIConnectionError") == 1

    async def test_in_flight_streams_while_streaming(self) -> None:
        """A scrape taken while a stream is open counts it in flight; after it, nothing is."""
        cfg = metrics_config(mock_entry("slow", mock_response="a b c d e f", mock_delay=0.2))
        async with running(cfg) as server:
            stream = await client(server).chat.completions.create(model="slow", messages=USER, stream=True)
            first = await stream.__anext__()  # explicit event: the stream is open
            during = await scrape(server)
            rest = [c async for c in stream]
            after = await scrape(server)
            for _ in range(100):  # the client may read [DONE] just before the handler returns
                if value(after, "rxllm_proxy_in_flight_streams") == 0:
                    break
                after = await scrape(server)

        assert first.choices[0].delta.content == "a" and rest
        assert value(during, "rxllm_proxy_in_flight_streams") == 1
        assert value(during, "rxllm_proxy_in_flight_requests") == 1
        assert value(after, "rxllm_proxy_in_flight_streams") == 0

    async def test_the_master_key_applies_and_scrapes_are_not_logged(self) -> None:
        """With a master key /metrics needs it; scrapes do not add request log lines or counts."""
        cfg = parse_config(
            {"model_list": [mock_entry("m")], "general_settings": {"metrics": True, "master_key": MASTER_KEY}},
            environ={},
        )
        async with running(cfg) as server, aiohttp.ClientSession() as session:
            async with session.get(server.make_url("/metrics")) as r:
                refused = r.status
            samples = await scrape(server, {"Authorization": f"Bearer {MASTER_KEY}"})

        assert refused == 401
        assert value(samples, "rxllm_proxy_requests_total") == 0


class TestRegistry:
    def test_two_instances_do_not_collide(self) -> None:
        """Each metrics object has its own registry (two apps in one process)."""
        first, second = ProxyMetrics(), ProxyMetrics()

        assert first.registry is not second.registry
        assert b"# TYPE rxllm_proxy_requests_total counter" in first.exposition()
