"""``general_settings.event_loop``: ``rxllm serve`` on the standard asyncio loop or on uvloop."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import openai
import pytest

from rxllm.proxy import ConfigError, parse_config
from rxllm.proxy.eventloop import loop_factory, run, running_loop_name

ENV = {**os.environ, "PYTHONSAFEPATH": "1"}


def _config(tmp_path: Path, event_loop: str | None) -> Path:
    cfg = tmp_path / "config.yaml"
    general = f"general_settings:\n  event_loop: {event_loop}\n" if event_loop is not None else ""
    cfg.write_text("model_list:\n  - model_name: m\n    litellm_params: {model: mock/echo}\n" + general)
    return cfg


@contextmanager
def _served(cfg: Path, *extra: str, env: dict[str, str] = ENV) -> Iterator[tuple[str, str]]:
    """``rxllm serve`` on a free port: (base URL, its listening line); stopped with SIGTERM."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "rxllm", "serve", "--config", str(cfg), "--port", "0", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
            if found:
                yield found.group(1), line
                break
        else:
            raise AssertionError(f"rxllm serve exited {proc.wait()} before listening")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _without_uvloop(tmp_path: Path) -> dict[str, str]:
    """An environment whose interpreters cannot import uvloop (a sitecustomize hides it), as if not installed."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'uvloop':\n"
        "            raise ModuleNotFoundError(\"No module named 'uvloop'\")\n"
        "        return None\n"
        "sys.meta_path.insert(0, _Hide())\n"
    )
    return {**ENV, "PYTHONPATH": str(shadow)}


def _streamed(base: str) -> str:
    client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
    with client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "loops of events"}], stream=True
    ) as chunks:
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


class TestServeOnUvloop:
    def test_serve_streams_to_the_openai_sdk_on_uvloop_and_says_so(self, tmp_path: Path) -> None:
        """``event_loop: uvloop``: the server runs on uvloop (its listening line says so) and streams as on asyncio."""
        with _served(_config(tmp_path, "uvloop")) as (base, line):
            text = _streamed(base)
        assert "uvloop event loop" in line
        assert text == "loops of events"

    def test_auto_picks_uvloop_when_it_is_installed(self, tmp_path: Path) -> None:
        """``event_loop: auto`` runs on uvloop where uvloop is installed (it is, with the test extra)."""
        with _served(_config(tmp_path, "auto")) as (base, line):
            text = _streamed(base)
        assert "uvloop event loop" in line
        assert text == "loops of events"

    def test_the_default_is_the_standard_loop(self, tmp_path: Path) -> None:
        """Without ``event_loop`` the server runs on asyncio and its listening line is unchanged."""
        with _served(_config(tmp_path, None)) as (base, line):
            text = _streamed(base)
        assert "event loop" not in line
        assert text == "loops of events"

    def test_workers_run_on_uvloop_too(self, tmp_path: Path) -> None:
        """``--workers 2`` with ``event_loop: uvloop``: each worker serves streams."""
        with _served(_config(tmp_path, "uvloop"), "--workers", "2") as (base, _):
            texts = [_streamed(base) for _ in range(4)]
        assert texts == ["loops of events"] * 4


class TestEventLoopSetting:
    @pytest.mark.parametrize("value", ["trio", "UVLOOP", 1, True, ""])
    def test_an_unknown_loop_is_refused_by_name(self, value: object) -> None:
        """A value other than asyncio, uvloop or auto is a ConfigError naming the setting and the value."""
        data = {"model_list": [{"model_name": "m", "litellm_params": {"model": "mock/x"}}]}
        with pytest.raises(ConfigError, match=r"general_settings\.event_loop must be one of asyncio, uvloop, auto"):
            parse_config({**data, "general_settings": {"event_loop": value}})

    def test_uvloop_missing_is_a_config_error_naming_the_extra(self, tmp_path: Path) -> None:
        """Where uvloop cannot be imported, ``event_loop: uvloop`` fails to start with the pip extra to install."""
        env = _without_uvloop(tmp_path)
        done = subprocess.run(
            [sys.executable, "-m", "rxllm", "serve", "--config", str(_config(tmp_path, "uvloop")), "--port", "0"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert done.returncode != 0
        assert "pip install 'rxllm[uvloop]'" in done.stderr
        assert "Traceback" not in done.stderr

    def test_auto_without_uvloop_is_the_standard_loop(self, tmp_path: Path) -> None:
        """``event_loop: auto`` where uvloop cannot be imported serves on asyncio."""
        with _served(_config(tmp_path, "auto"), env=_without_uvloop(tmp_path)) as (base, line):
            text = _streamed(base)
        assert "asyncio event loop" in line
        assert text == "loops of events"


class TestRun:
    def test_run_returns_the_coroutines_result_on_the_chosen_loop(self) -> None:
        """``run`` runs the coroutine to completion on uvloop or asyncio and returns its value."""

        async def which() -> str:
            await asyncio.sleep(0)
            return running_loop_name()

        assert run(which(), "uvloop") == "uvloop"
        assert run(which(), "asyncio") == "asyncio"
        assert loop_factory("asyncio") is None

    def test_a_bad_choice_closes_the_coroutine_it_never_ran(self) -> None:
        """An unknown loop raises ValueError and the coroutine is closed (no never-awaited warning)."""

        async def never() -> None:
            raise AssertionError("ran")

        coro = never()
        with pytest.raises(ValueError, match="event_loop must be one of"):
            run(coro, "trio")
        assert coro.cr_frame is None  # closed
