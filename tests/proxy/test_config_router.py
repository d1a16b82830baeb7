"""Config parsing (LiteLLM's model_list shape) and the router's choices."""

from __future__ import annotations

from pathlib import Path

import pytest

from rxllm.proxy import ConfigError, ProxyError, Router, load_config, parse_config
from tests.proxy.proxy_support import config, mock_entry

YAML = """
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: https://example.invalid/v1
      api_key: os.environ/TEST_UPSTREAM_KEY
      rpm: 100
      timeout: 30
      stream_timeout: 60
      temperature: 0.2
  - model_name: gpt-4o
    litellm_params:
      model: mock/x
      mock_response: offline
    model_info:
      id: backup
general_settings:
  master_key: os.environ/TEST_MASTER
  max_request_size_mb: 2
  global_max_parallel_requests: 50
"""


class TestConfig:
    def test_litellm_shaped_file_with_environment_references(self, tmp_path: Path) -> None:
        """A LiteLLM config.yaml loads: os.environ/NAME resolved, limits read, extras passed on."""
        path = tmp_path / "config.yaml"
        path.write_text(YAML)

        cfg = load_config(path, environ={"TEST_UPSTREAM_KEY": "sk-up-1", "TEST_MASTER": "sk-master-1"})

        first, second = cfg.deployments
        assert first.api_key == "sk-up-1"
        assert (first.model, first.rpm, first.timeout, first.stream_timeout) == ("openai/gpt-4o", 100, 30.0, 60.0)
        assert first.params == {"temperature": 0.2}
        assert first.id == "gpt-4o#0" and second.id == "backup"
        assert second.is_mock and not first.is_mock
        assert cfg.master_key == "sk-master-1"
        assert cfg.max_request_size == 2 * 1024 * 1024
        assert cfg.max_parallel_requests == 50
        assert cfg.model_names == ["gpt-4o"]
        assert "sk-up-1" not in repr(cfg) and "sk-master-1" not in repr(cfg)

    def test_unset_environment_variable_names_the_variable_and_the_place(self, tmp_path: Path) -> None:
        """An os.environ/NAME that is not set fails at load, saying which and where."""
        path = tmp_path / "config.yaml"
        path.write_text(YAML)

        with pytest.raises(ConfigError, match=r"model_list\[0\]\.litellm_params\.api_key: environment variable "):
            load_config(path, environ={"TEST_MASTER": "x"})

    @pytest.mark.parametrize(
        ("data", "fragment"),
        [
            ({"model_list": {"a": 1}}, "model_list must be a list"),
            ({"model_list": [{"litellm_params": {"model": "mock/x"}}]}, r"model_list\[0\]\.model_name is required"),
            ({"model_list": [{"model_name": "m"}]}, r"model_list\[0\]\.litellm_params is required"),
            ({"model_list": [{"model_name": "m", "litellm_params": {}}]}, r"litellm_params\.model is required"),
            ({"model_list": [mock_entry("m", rpm=0)]}, r"rpm must be a positive integer"),
            ({"model_list": [mock_entry("m", timeout="soon")]}, r"timeout must be a positive number"),
            ({"model_list": [mock_entry("m", api_base="ftp://x")]}, r"api_base must be an http\(s\) URL"),
            ({"general_settings": {"master_kee": "x"}}, r"unknown setting\(s\) 'master_kee'"),
            ({"general_settings": {"master_key": 12345}}, r"master_key must be a string"),
            ("just text", "must be a mapping"),
        ],
    )
    def test_invalid_configs_fail_with_a_located_message(self, data: object, fragment: str) -> None:
        """Each mistake is reported with where it is; a numeric key is not echoed."""
        with pytest.raises(ConfigError, match=fragment) as info:
            parse_config(data, environ={})

        assert "12345" not in str(info.value)

    def test_missing_file_and_bad_yaml(self, tmp_path: Path) -> None:
        """Unreadable or non-YAML files are ConfigErrors, not tracebacks."""
        bad = tmp_path / "bad.yaml"
        bad.write_text("model_list: [unclosed\n")

        with pytest.raises(ConfigError, match="cannot read"):
            load_config(tmp_path / "absent.yaml")
        with pytest.raises(ConfigError, match="not valid YAML"):
            load_config(bad)

    def test_no_file_means_offline_defaults(self) -> None:
        """Without a config file there are no deployments, mock models are allowed and no key is set."""
        cfg = load_config(None, environ={})

        assert cfg.deployments == () and cfg.allow_mock_models and cfg.master_key is None


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestRouter:
    def test_equal_deployments_take_turns(self) -> None:
        """Sequential requests alternate between two idle deployments."""
        router = Router(config(mock_entry("m"), mock_entry("m")))

        firsts = [router.plan("m")[0].deployment.id for _ in range(4)]

        assert firsts == ["m#0", "m#1", "m#0", "m#1"]

    def test_least_busy_deployment_first(self) -> None:
        """A deployment with requests in flight goes after an idle one."""
        router = Router(config(mock_entry("m"), mock_entry("m")))
        busy = router.plan("m")[0]
        router.start(busy)

        assert [router.plan("m")[0] is not busy for _ in range(3)] == [True, True, True]

    def test_failed_deployment_cools_down(self) -> None:
        """A deployment that just failed is tried last until cooldown_time passes."""
        clock = _Clock()
        router = Router(config(mock_entry("m"), mock_entry("m"), cooldown_time=5), clock=clock)
        state = router.plan("m")[0]
        router.start(state)
        router.finish(state, failed=True)

        assert all(router.plan("m")[0] is not state for _ in range(3))
        clock.now += 6
        assert any(router.plan("m")[0] is state for _ in range(2))

    def test_rpm_window_refills_after_a_minute(self) -> None:
        """Over its rpm a deployment is skipped; 429 when none is left; a minute later it is back."""
        clock = _Clock()
        router = Router(config(mock_entry("m", rpm=1)), clock=clock)
        state = router.plan("m")[0]
        assert router.start(state)
        router.finish(state, failed=False)

        with pytest.raises(ProxyError) as info:
            router.plan("m")
        assert info.value.status_code == 429 and info.value.retry_after == 60.0
        clock.now += 60
        assert router.plan("m")[0] is state

    def test_mock_models_are_served_unless_disabled_and_not_remembered(self) -> None:
        """mock/* works without config; disabling it makes the model unknown; ad-hoc names are not kept."""
        router = Router(config())
        disabled = Router(config(allow_mock_models=False))

        assert router.plan("mock/anything")[0].deployment.model == "mock/anything"
        assert router.model_names == []
        with pytest.raises(ProxyError) as info:
            disabled.plan("mock/echo")
        assert info.value.status_code == 404
