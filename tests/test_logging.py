"""rxllm's logging: silent unless the application configures it; then through ``logging``."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import pytest
import structlog

import rxllm
from rxllm import operators as ops
from rxllm._log import get_logger

MESSAGES = [{"role": "user", "content": "hi there"}]

_FAILING_CALLBACK = textwrap.dedent(
    """
    import rxllm

    def bad_callback(kwargs, response, start, end):
        raise RuntimeError("callback bug")

    rxllm.success_callback = [bad_callback]
    for _ in rxllm.completion("mock/echo", [{"role": "user", "content": "hi"}], stream=True):
        pass
    print("DONE")
    """
)


class TestSilentByDefault:
    def test_failing_callback_prints_nothing_unconfigured(self) -> None:
        """A raising success_callback writes nothing to stdout or stderr when nothing configured logging."""
        done = subprocess.run(
            [sys.executable, "-c", _FAILING_CALLBACK], capture_output=True, text=True, timeout=120, check=False
        )

        assert done.returncode == 0, done.stderr
        assert done.stdout == "DONE\n"
        assert done.stderr == ""

    def test_failing_callback_reaches_configured_logging(self) -> None:
        """With logging.basicConfig, the callback failure is one warning on the 'rxllm' logger."""
        configure = "import logging; logging.basicConfig(format='%(name)s|%(levelname)s|%(message)s')\n"
        script = configure + _FAILING_CALLBACK
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)

        assert done.returncode == 0, done.stderr
        lines = [line for line in done.stderr.splitlines() if line.startswith("rxllm|")]
        assert len(lines) == 1
        assert lines[0].startswith("rxllm|WARNING|rxllm.callback_failed ")
        assert "callback='bad_callback'" in lines[0]


class TestStdlibRouting:
    def test_fields_travel_on_the_record(self, caplog: pytest.LogCaptureFixture) -> None:
        """Unconfigured structlog: events become stdlib records with the fields on record.rxllm."""
        structlog.reset_defaults()
        with caplog.at_level(logging.INFO, logger="rxllm"):
            get_logger("rxllm.test").info("rxllm.test.event", answer=42)

        (record,) = [r for r in caplog.records if r.name == "rxllm.test"]
        assert record.getMessage() == "rxllm.test.event answer=42"
        assert record.rxllm == {"event": "rxllm.test.event", "answer": 42}  # type: ignore[attr-defined]

    def test_level_filtering_is_logging_s(self, caplog: pytest.LogCaptureFixture) -> None:
        """A debug event is dropped while the rxllm logger is at INFO."""
        structlog.reset_defaults()
        with caplog.at_level(logging.INFO, logger="rxllm"):
            get_logger("rxllm.test").debug("rxllm.test.quiet")

        assert [r for r in caplog.records if r.name == "rxllm.test"] == []

    def test_bound_fields_are_added(self, caplog: pytest.LogCaptureFixture) -> None:
        """bind() adds fields to every event of the bound logger."""
        structlog.reset_defaults()
        with caplog.at_level(logging.INFO, logger="rxllm"):
            get_logger("rxllm.test").bind(worker=3).warning("rxllm.test.bound", x=1)

        (record,) = [r for r in caplog.records if r.name == "rxllm.test"]
        assert record.rxllm == {"event": "rxllm.test.bound", "worker": 3, "x": 1}  # type: ignore[attr-defined]

    def test_log_stream_line_goes_to_logging(self, caplog: pytest.LogCaptureFixture) -> None:
        """log_stream()'s canonical line is an INFO record 'rxllm.stream' when structlog is unconfigured."""
        structlog.reset_defaults()
        with caplog.at_level(logging.INFO, logger="rxllm"):
            list(rxllm.to_iterator(rxllm.stream("mock/echo", MESSAGES).pipe(ops.log_stream())))

        lines = [r for r in caplog.records if getattr(r, "rxllm", {}).get("event") == "rxllm.stream"]
        assert len(lines) == 1
        assert lines[0].rxllm["outcome"] == "completed"  # type: ignore[attr-defined]


class TestStructlogWhenConfigured:
    def test_configured_structlog_decides(self) -> None:
        """When structlog is configured (capture_logs), events go to structlog with their fields."""
        with structlog.testing.capture_logs() as logs:
            get_logger("rxllm.test").info("rxllm.test.event", answer=42)

        assert logs == [{"event": "rxllm.test.event", "answer": 42, "log_level": "info"}]


class TestImportCost:
    def test_import_rxllm_does_not_import_structlog(self) -> None:
        """``import rxllm`` leaves structlog (and rich behind it) unimported: it is only looked up."""
        done = subprocess.run(
            [sys.executable, "-c", "import sys, rxllm; print('structlog' in sys.modules, 'rich' in sys.modules)"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

        assert done.stdout.split() == ["False", "False"]

    def test_import_rxllm_leaves_the_rarely_needed_stdlib_modules_to_their_first_use(self) -> None:
        """``email`` (HTTP-date ``Retry-After``) and ``random`` (backoff jitter) load when first needed, and work."""
        code = (
            "import sys, rxllm\n"
            "from rxllm.errors import parse_retry_after\n"
            "from rxllm.retry_policy import exponential_backoff\n"
            "before = ['email.utils' in sys.modules, 'random' in sys.modules]\n"
            "gone = parse_retry_after('Wed, 21 Oct 2015 07:28:00 GMT')\n"
            "jittered = exponential_backoff(initial=1.0, jitter=0.5)(1)\n"
            "print(*before, gone, 0.5 <= jittered <= 1.0, 'email.utils' in sys.modules, 'random' in sys.modules)\n"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)

        assert done.stdout.split() == ["False", "False", "0.0", "True", "True", "True"], done.stderr

    def test_the_transport_is_imported_at_the_first_request(self) -> None:
        """``import rxllm`` and a mock completion leave aiohttp unimported; a real request imports it and works."""
        code = (
            "import sys, rxllm\n"
            "before = 'aiohttp' in sys.modules\n"
            "r = rxllm.completion(model='mock/echo', messages=[{'role': 'user', 'content': 'lazy transport'}])\n"
            "mock = 'aiohttp' in sys.modules\n"
            "try:\n"
            "    rxllm.completion(model='openai/x', api_base='http://127.0.0.1:9', api_key='k', num_retries=0,\n"
            "                     messages=[{'role': 'user', 'content': 'x'}])\n"
            "except rxllm.APIConnectionError:\n"
            "    pass\n"
            "print(before, mock, r.choices[0].message.content, 'aiohttp' in sys.modules)\n"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)

        assert done.stdout.split() == ["False", "False", "lazy", "transport", "True"], done.stderr
