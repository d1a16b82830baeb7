"""The ``rxllm`` command, run as a subprocess: ``chat`` with the offline mock, and ``serve``."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
ENV.pop("RXLLM_MASTER_KEY", None)


def _rxllm(*args: str, stdin: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rxllm", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )


class TestChat:
    def test_prompt_is_streamed_to_stdout_and_usage_to_stderr(self) -> None:
        """The default mock model echoes the prompt on stdout; usage, cost and TTFT go to stderr."""
        result = _rxllm("chat", "hello from the terminal")

        assert result.returncode == 0, result.stderr
        assert result.stdout == "hello from the terminal\n"
        assert re.search(r"usage: \d+ prompt \+ \d+ completion = \d+ tokens", result.stderr)
        assert "cost: $" in result.stderr
        assert "time to first token:" in result.stderr

    def test_prompt_from_stdin_with_a_system_message(self) -> None:
        """Without a prompt argument the prompt is read from stdin."""
        result = _rxllm("chat", "--system", "be brief", stdin="piped prompt")

        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "piped prompt"

    def test_json_prints_one_chunk_per_line(self) -> None:
        """--json prints each chunk's wire JSON on its own line."""
        result = _rxllm("chat", "--json", "a b c")

        chunks = [json.loads(line) for line in result.stdout.splitlines()]
        assert result.returncode == 0
        assert all(c["object"] == "chat.completion.chunk" for c in chunks)
        text = "".join(ch["delta"].get("content") or "" for c in chunks for ch in c["choices"])
        assert text == "a b c"
        assert chunks[-1]["usage"]["total_tokens"] > 0

    def test_no_stream_json_prints_the_whole_response(self) -> None:
        """--no-stream --json prints one chat.completion object."""
        result = _rxllm("chat", "--no-stream", "--json", "whole answer")

        response = json.loads(result.stdout)
        assert response["object"] == "chat.completion"
        assert response["choices"][0]["message"]["content"] == "whole answer"

    def test_errors_exit_non_zero_with_one_line(self) -> None:
        """An unknown provider exits 1 with a single-line error and nothing on stdout."""
        result = _rxllm("chat", "--model", "nosuch/model", "hi")

        assert result.returncode == 1
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("rxllm: error:")
        assert "unknown provider" in lines[0]

    def test_no_prompt_at_all_is_an_error(self) -> None:
        """No argument and an empty stdin: exit 1 explaining what is missing."""
        result = _rxllm("chat", stdin="")

        assert result.returncode == 1
        assert "prompt" in result.stderr


class TestServe:
    def test_serve_answers_and_stops_on_sigterm(self, tmp_path: Path) -> None:
        """rxllm serve listens on the given port, answers a chat request, and exits 0 on SIGTERM."""
        cfg = tmp_path / "config.yaml"
        cfg.write_text("model_list:\n  - model_name: m\n    litellm_params: {model: mock/x, mock_response: served}\n")
        proc = subprocess.Popen(
            [sys.executable, "-m", "rxllm", "serve", "--config", str(cfg), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        try:
            assert proc.stderr is not None
            line = proc.stderr.readline()
            match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
            assert match, line
            url = f"http://127.0.0.1:{match.group(1)}/v1/chat/completions"
            body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}]}).encode()
            request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as resp:
                answer = json.loads(resp.read())
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=10)
            logs = proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

        assert answer["choices"][0]["message"]["content"] == "served"
        assert code == 0
        assert '"rxllm.proxy.request"' in logs and '"outcome": "completed"' in logs

    @pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1"])
    def test_non_loopback_without_master_key_refuses_to_start(self, host: str) -> None:
        """Binding beyond loopback with no master key exits 1 before listening."""
        result = _rxllm("serve", "--host", host, "--port", "0", timeout=60)

        assert result.returncode == 1
        assert "master key" in result.stderr
        assert "listening" not in result.stderr

    def test_bad_config_exits_with_the_config_error(self, tmp_path: Path) -> None:
        """An invalid config file is one error line naming the problem."""
        cfg = tmp_path / "config.yaml"
        cfg.write_text("model_list:\n  - model_name: m\n")

        result = _rxllm("serve", "--config", str(cfg), "--port", "0")

        assert result.returncode == 1
        assert "litellm_params is required" in result.stderr
