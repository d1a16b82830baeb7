"""LiteLLM config sections: supported keys take effect, the rest are refused or warned about by name."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from rxllm.proxy import ConfigError, create_app, load_config, parse_config
from tests.proxy.proxy_support import USER, client, mock_entry, running


def parse(**sections: Any) -> Any:
    data = {"model_list": [mock_entry("m")], **sections}
    return parse_config(data, environ={})


class TestEnvironmentVariables:
    def test_resolve_references_and_reach_the_process(self, tmp_path: Path) -> None:
        """environment_variables feed os.environ/NAME references, and create_app sets them in os.environ."""
        path = tmp_path / "config.yaml"
        path.write_text(
            "environment_variables:\n  RXLLM_TEST_UPSTREAM_KEY: sk-from-config\n  RXLLM_TEST_NUMBER: 3\n"
            "model_list:\n  - model_name: g\n    litellm_params:\n      model: openai/gpt-4o\n"
            "      api_key: os.environ/RXLLM_TEST_UPSTREAM_KEY\n"
        )
        try:
            cfg = load_config(path, environ={})
            assert cfg.deployments[0].api_key == "sk-from-config"
            assert "sk-from-config" not in repr(cfg)
            create_app(cfg)
            assert os.environ["RXLLM_TEST_UPSTREAM_KEY"] == "sk-from-config"
            assert os.environ["RXLLM_TEST_NUMBER"] == "3"
        finally:
            os.environ.pop("RXLLM_TEST_UPSTREAM_KEY", None)
            os.environ.pop("RXLLM_TEST_NUMBER", None)

    def test_loading_from_the_process_environment_sets_them(self, tmp_path: Path) -> None:
        """load_config() on the real environment sets environment_variables at once, as LiteLLM does."""
        path = tmp_path / "config.yaml"
        path.write_text("environment_variables:\n  RXLLM_TEST_AT_LOAD: yes-set\nmodel_list: []\n")
        try:
            load_config(path)
            assert os.environ["RXLLM_TEST_AT_LOAD"] == "yes-set"
        finally:
            os.environ.pop("RXLLM_TEST_AT_LOAD", None)

    def test_must_be_a_mapping(self) -> None:
        """environment_variables as a list is an error naming the section."""
        with pytest.raises(ConfigError, match="environment_variables must be a mapping"):
            parse(environment_variables=["A=1"])


class TestSupportedSettings:
    def test_router_and_litellm_settings_map_onto_the_proxy(self) -> None:
        """num_retries, request_timeout, fallbacks, routing_strategy and cooldown_time are read."""
        cfg = parse_config(
            {
                "model_list": [mock_entry("a"), mock_entry("b", timeout=5)],
                "litellm_settings": {"num_retries": 1, "request_timeout": 30, "fallbacks": [{"a": ["b"]}]},
                "router_settings": {"routing_strategy": "least-busy", "cooldown_time": 12, "num_retries": 2},
            },
            environ={},
        )

        assert cfg.num_retries == 2  # router_settings wins over litellm_settings
        assert [d.timeout for d in cfg.deployments] == [30.0, 5.0]  # the default, and a deployment's own
        assert cfg.fallbacks_for("a") == ("b",) and cfg.fallbacks_for("b") == ()
        assert cfg.routing_strategy == "least-busy"
        assert cfg.cooldown_time == 12.0
        assert cfg.warnings == ()

    def test_default_fallbacks_and_disable_cooldowns(self) -> None:
        """default_fallbacks apply to every model; disable_cooldowns sets the cooldown to 0."""
        cfg = parse_config(
            {
                "model_list": [mock_entry("a"), mock_entry("b")],
                "router_settings": {"default_fallbacks": ["b"], "disable_cooldowns": True},
            },
            environ={},
        )

        assert cfg.fallbacks_for("a") == ("b",)
        assert cfg.cooldown_time == 0.0

    def test_fallback_to_an_unknown_model_is_refused(self) -> None:
        """A fallback naming no configured model fails at load, naming both."""
        with pytest.raises(ConfigError, match="'m' falls back to 'nope'"):
            parse(router_settings={"fallbacks": [{"m": ["nope"]}]})

    def test_callbacks_enable_metrics_and_tracing(self) -> None:
        """callbacks: [prometheus, otel] turn on /metrics and tracing; other callbacks are named in a warning."""
        cfg = parse(litellm_settings={"callbacks": ["prometheus", "otel", "langfuse"]})

        assert cfg.metrics and cfg.otel
        assert any("'langfuse'" in w for w in cfg.warnings)

    def test_custom_llm_provider_and_deployment_prices(self) -> None:
        """custom_llm_provider prefixes the model; input/output_cost_per_token price the deployment."""
        entry = {
            "model_name": "mine",
            "litellm_params": {
                "model": "my-model",
                "custom_llm_provider": "hosted_vllm",
                "input_cost_per_token": 1e-6,
                "output_cost_per_token": 2e-6,
            },
        }
        cfg = parse_config({"model_list": [entry]}, environ={})

        [d] = cfg.deployments
        assert d.model == "hosted_vllm/my-model"
        assert d.pricing == {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}
        assert "custom_llm_provider" not in d.params and "input_cost_per_token" not in d.params


class TestRefusedAndWarned:
    @pytest.mark.parametrize(
        ("sections", "named"),
        [
            ({"litellm_settings": {"redis_host": "localhost"}}, "litellm_settings.redis_host: not a Redis setting"),
            ({"router_settings": {"redis_sentinel": "x"}}, "router_settings.redis_sentinel: not a Redis setting"),
            ({"litellm_settings": {"cache": True}}, "litellm_settings.cache"),
            ({"litellm_settings": {"max_budget": 10}}, "litellm_settings.max_budget"),
            ({"general_settings": {"database_url": "postgres://x"}}, "general_settings.database_url"),
            ({"include": ["other.yaml"]}, "include"),
            ({"router_settings": {"routing_strategy": "fastest"}}, "unknown routing strategy 'fastest'"),
        ],
    )
    def test_refused_with_the_key_named(self, sections: dict[str, Any], named: str) -> None:
        """Keys whose silent absence would break a promise fail the load, naming the key."""
        with pytest.raises(ConfigError, match=named.replace(".", r"\.").replace("(", r"\(")):
            parse(**sections)

    @pytest.mark.parametrize(
        ("sections", "named"),
        [
            ({"litellm_settings": {"drop_params": True}}, "litellm_settings.drop_params is ignored"),
            ({"litellm_settings": {"set_verbose": True}}, "litellm_settings.set_verbose is ignored"),
            ({"router_settings": {"routing_strategy": "latency-based-routing"}}, "'latency-based-routing'"),
            ({"router_settings": {"allowed_fails": 3}}, "router_settings.allowed_fails is ignored"),
            ({"litellm_settings": {"made_up": 1}}, "litellm_settings.made_up is not a setting"),
            ({"general_settings": {"alerting": ["slack"]}}, "general_settings.alerting is ignored"),
            ({"something_else": {}}, "something_else: unknown top-level section"),
        ],
    )
    def test_warned_with_the_key_named(self, sections: dict[str, Any], named: str) -> None:
        """Keys that change nothing essential load, with one warning naming each."""
        cfg = parse(**sections)

        assert [w for w in cfg.warnings if named in w], cfg.warnings

    def test_deployment_parameters_the_router_ignores(self) -> None:
        """litellm_params rxllm does not use (weight) or does not know are named; tpm is a limit now."""
        cfg = parse_config(
            {"model_list": [mock_entry("m", tpm=1000, weight=2, frobnicate=True, temperature=0.1)]}, environ={}
        )

        text = "\n".join(cfg.warnings)
        assert "litellm_params.weight is ignored" in text and "tpm" not in text
        assert cfg.deployments[0].tpm == 1000
        assert "litellm_params.frobnicate is not a parameter rxllm knows" in text
        assert "temperature" not in text and "mock_response" not in text
        assert "frobnicate" in cfg.deployments[0].params

    def test_warnings_are_logged_when_the_app_is_created(self) -> None:
        """create_app logs each warning as rxllm.proxy.config_warning."""
        cfg = parse(litellm_settings={"drop_params": True})
        with structlog.testing.capture_logs() as logs:
            create_app(cfg)

        [event] = [e for e in logs if e["event"] == "rxllm.proxy.config_warning"]
        assert "drop_params" in event["message"]


class TestBehaviour:
    async def test_fallbacks_serve_when_every_deployment_failed(self) -> None:
        """A model whose deployments fail before the first chunk is served by its fallback."""
        cfg = parse_config(
            {
                "model_list": [mock_entry("primary", mock_fail_after=0), mock_entry("backup", mock_response="saved")],
                "router_settings": {"fallbacks": [{"primary": ["backup"]}]},
            },
            environ={},
        )
        async with running(cfg) as server:
            answer = await client(server).chat.completions.create(model="primary", messages=USER)

        assert answer.choices[0].message.content == "saved"
        assert answer.model == "primary"

    async def test_mock_parameters_in_the_request_body(self) -> None:
        """mock_response, mock_tool_calls and mock_delay sent per request reach the mock model."""
        body = {
            "model": "mock/echo",
            "messages": USER,
            "stream": True,
            "mock_response": "calling a tool",
            "mock_tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
            "mock_delay": 0.001,
        }
        async with (
            running(parse_config({}, environ={})) as server,
            aiohttp.ClientSession() as session,
            session.post(server.make_url("/v1/chat/completions"), json=body) as r,
        ):
            raw = await r.text()

        events = [orjson.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: {")]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in events if c["choices"])
        names = [
            t["function"]["name"]
            for c in events
            for ch in c["choices"]
            for t in ch["delta"].get("tool_calls") or []
            if t.get("function", {}).get("name")
        ]
        assert text == "calling a tool" and names == ["get_weather"]


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    """The global tracer provider, set once for this module (OpenTelemetry allows one per process)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    yield exporter
    provider.shutdown()


class TestProxyTracing:
    async def test_otel_from_config_traces_each_attempt(self, spans: InMemorySpanExporter) -> None:
        """general_settings.otel traces every upstream attempt as a GenAI span with the deployment's id."""
        if trace.get_tracer_provider().__class__ is not TracerProvider:
            pytest.fail("another test set a different global tracer provider")
        cfg = parse_config(
            {"model_list": [mock_entry("m", mock_response="traced")], "general_settings": {"otel": True}}, environ={}
        )
        async with running(cfg) as server:
            await client(server).chat.completions.create(model="m", messages=USER)

        found = [s for s in spans.get_finished_spans() if s.attributes.get("rxllm.deployment") == "m#0"]
        assert len(found) == 1
        assert found[0].name == "chat mock/x"
        assert found[0].attributes["gen_ai.usage.output_tokens"] > 0  # type: ignore[operator]


class TestReadmeReference:
    def test_every_key_the_config_reads_is_in_the_readme_reference(self) -> None:
        """The README's configuration reference names every key config.py supports, refuses or warns about."""
        from rxllm.proxy import config as cfg

        readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
        start = readme.index("### Configuration reference")
        section = readme[start : readme.index("\n### ", start + 10)]
        keys = {
            *cfg._TOP_LEVEL,
            *cfg._TOP_LEVEL_REFUSED,
            *cfg._GENERAL_KEYS,
            *cfg._GENERAL_REFUSED,
            *cfg._GENERAL_IGNORED,
            *cfg._SUPPORTED_SETTINGS,
            *cfg._REFUSED_SETTINGS,
            *cfg._IGNORED_SETTINGS,
            *cfg._PARAMS_IGNORED,
            *cfg._PRICE_KEYS,
            *cfg.MOCK_PARAMS,
            *(k for k in cfg._TRANSPORT if k != "base_url"),
        }

        assert sorted(k for k in keys if f"`{k}`" not in section) == []
