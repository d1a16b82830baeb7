"""What ``rxllm serve`` tunes in its own process: the soft fd limit for its capacity, and the garbage collector."""

from __future__ import annotations

import gc
import json
import os
import re
import resource
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from rxllm.proxy import ConfigError, parse_config
from rxllm.proxy.tuning import FD_PER_STREAM, FD_RESERVE, raise_fd_limit, tune_gc

ENV = {**os.environ, "PYTHONSAFEPATH": "1"}


def _serve(tmp_path: Path, general: str, limits: tuple[int, int]) -> tuple[dict[str, int], str]:
    """Start ``rxllm serve`` with the given (soft, hard) fd limits: its limits once listening, and its stderr."""
    cfg = tmp_path / "config.yaml"
    cfg.write_text("model_list:\n  - model_name: m\n    litellm_params: {model: mock/x}\ngeneral_settings:\n" + general)

    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, limits)

    proc = subprocess.Popen(
        [sys.executable, "-m", "rxllm", "serve", "--config", str(cfg), "--port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        preexec_fn=preexec,
    )
    lines = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if re.search(r"listening on http://127\.0\.0\.1:\d+", line):
                break
        text = Path(f"/proc/{proc.pid}/limits").read_text()
        found = re.search(r"Max open files\s+(\d+)\s+(\d+)", text)
        assert found, text
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return {"soft": int(found.group(1)), "hard": int(found.group(2))}, "".join(lines)


@pytest.fixture
def restore_nofile() -> Iterator[None]:
    """Put this process's fd limits back after a test changes them."""
    saved = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, saved)


@pytest.fixture
def restore_gc() -> Iterator[None]:
    """Put the collector's thresholds back and unfreeze after a test tunes it."""
    saved = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*saved)


class TestFdLimit:
    def test_serve_raises_its_soft_limit_for_the_capacity(self, tmp_path: Path) -> None:
        """Started with a soft limit of 256, rxllm serve raises it to what 1,000 streams need (the hard limit stays)."""
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        need = FD_PER_STREAM * 1000 + FD_RESERVE
        if hard < need:
            pytest.fail(f"this test needs a hard fd limit of at least {need}, the machine has {hard}")
        limits, logs = _serve(tmp_path, "  global_max_parallel_requests: 1000\n", (256, hard))

        assert limits == {"soft": need, "hard": hard}
        assert "rxllm.proxy.fd_limit" not in logs

    def test_a_hard_limit_too_low_is_logged_naming_the_capacity(self, tmp_path: Path) -> None:
        """With a hard limit of 300 and capacity 1,000: soft raised to 300, and one fd_limit warning saying so."""
        limits, logs = _serve(tmp_path, "  global_max_parallel_requests: 1000\n", (100, 300))
        events = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
        (warning,) = [e for e in events if e.get("event") == "rxllm.proxy.fd_limit"]

        assert limits == {"soft": 300, "hard": 300}
        assert warning["level"] == "warning"
        assert warning["capacity"] == 1000 and warning["hard"] == 300
        assert warning["streams"] == (300 - FD_RESERVE) // FD_PER_STREAM
        assert "global_max_parallel_requests" in warning["message"]

    def test_raise_fd_limit_never_lowers_and_reports(self, restore_nofile: None) -> None:
        """A soft limit already above the need is left alone, and reported as enough."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        with structlog.testing.capture_logs() as logs:
            limit = raise_fd_limit(10)

        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (soft, hard)
        assert limit.enough and limit.soft == soft and limit.needed == 10 * FD_PER_STREAM + FD_RESERVE
        assert logs == []

    def test_raise_fd_limit_in_process_stops_at_the_hard_limit(self, restore_nofile: None) -> None:
        """Asked for more than the hard limit allows: soft becomes the hard limit, the warning names the streams."""
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(512, hard), hard))
        with structlog.testing.capture_logs() as logs:
            limit = raise_fd_limit(hard)  # needs 2 * hard + reserve

        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard
        assert not limit.enough and limit.streams == (hard - FD_RESERVE) // FD_PER_STREAM
        assert [e["event"] for e in logs] == ["rxllm.proxy.fd_limit"]


class TestGcTuning:
    def test_tuning_freezes_and_raises_the_young_threshold(self, restore_gc: None) -> None:
        """gc_tuning on: start-up objects frozen, gen0 threshold the configured one, older ratios kept."""
        _, older, oldest = gc.get_threshold()
        cfg = parse_config({"general_settings": {"gc_gen0_threshold": 12345}}, environ={})

        assert tune_gc(cfg) is True
        assert gc.get_threshold() == (12345, older, oldest)
        assert gc.get_freeze_count() > 0

    def test_off_leaves_the_collector_alone(self, restore_gc: None) -> None:
        """gc_tuning: false changes nothing."""
        before = gc.get_threshold()
        cfg = parse_config({"general_settings": {"gc_tuning": False}}, environ={})

        assert tune_gc(cfg) is False
        assert gc.get_threshold() == before

    def test_defaults(self) -> None:
        """By default rxllm serve tunes, with a young threshold of 50,000, and passes streams through."""
        cfg = parse_config({}, environ={})

        assert cfg.gc_tuning is True and cfg.gc_gen0_threshold == 50_000 and cfg.stream_passthrough is True

    @pytest.mark.parametrize(
        ("key", "value", "says"),
        [
            ("gc_tuning", "yes", "general_settings.gc_tuning must be true or false"),
            ("gc_gen0_threshold", 0, "general_settings.gc_gen0_threshold must be a positive integer"),
            ("stream_passthrough", 1, "general_settings.stream_passthrough must be true or false"),
        ],
    )
    def test_bad_values_are_config_errors(self, key: str, value: object, says: str) -> None:
        """Wrong types are refused at start-up with the key's full name."""
        with pytest.raises(ConfigError, match=re.escape(says)):
            parse_config({"general_settings": {key: value}}, environ={})
