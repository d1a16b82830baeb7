"""Every Python example in README.md runs, and prints what the README says it prints.

Conventions (also stated at the end of the README):

- Every fenced block whose info string starts with ``python`` is executed, none is skipped.
  Each runs as a script on its own, in a fresh namespace, with ``__name__ == "__main__"``;
  async examples call ``asyncio.run(...)`` themselves, as a reader's script would. They must be
  offline: ``mock/...`` models, ``mock_response``, or local servers.
- A ```` ```text ```` block that directly follows a Python block is that block's expected
  standard output, compared exactly (trailing spaces ignored).
- Blocks marked ```` ```python proxy ```` talk to ``rxllm serve`` at ``http://localhost:4000``.
  The test starts the real command (``python -m rxllm serve``) on a free port and points the
  example there instead.
- ```` ```bash ```` and ```` ```yaml ```` blocks are not executed; the README's opening commands
  are checked separately (``rxllm chat "Hello"`` is run).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import structlog

README = Path(__file__).resolve().parent.parent / "README.md"
PROXY_URL = "http://localhost:4000"

_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.M | re.S)


@attrs.frozen
class Block:
    """One fenced code block of the README."""

    info: str
    code: str
    line: int
    output: str | None = None

    @property
    def language(self) -> str:
        return self.info.split()[0] if self.info.split() else ""

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(self.info.split()[1:])


def fenced_blocks(text: str) -> list[Block]:
    """The README's fenced blocks in order, each Python block paired with the text block after it."""
    raw = [
        (m.group(1).strip(), m.group(2), text.count("\n", 0, m.start()) + 1, m.start(), m.end())
        for m in _FENCE.finditer(text)
    ]
    blocks: list[Block] = []
    for i, (info, code, line, _, end) in enumerate(raw):
        output = None
        if info.split()[:1] == ["python"] and i + 1 < len(raw):
            next_info, next_code, _, next_start, _ = raw[i + 1]
            if next_info == "text" and text[end:next_start].strip() == "":
                output = next_code
        blocks.append(Block(info, code, line, output))
    return blocks


BLOCKS = fenced_blocks(README.read_text(encoding="utf-8"))
PYTHON = [b for b in BLOCKS if b.language == "python"]


def _normalize(out: str) -> str:
    return "\n".join(line.rstrip() for line in out.rstrip("\n").split("\n"))


def run_block(block: Block, replacements: dict[str, str] | None = None) -> str:
    """Execute one example as a script and return what it printed."""
    code = block.code
    for old, new in (replacements or {}).items():
        code = code.replace(old, new)
    namespace = {"__name__": "__main__", "__file__": str(README)}
    structlog.reset_defaults()  # each example runs as a fresh script would: structlog unconfigured
    buffer = io.StringIO()
    compiled = compile(code, f"README.md:{block.line}", "exec")
    with contextlib.redirect_stdout(buffer):
        exec(compiled, namespace)
    return buffer.getvalue()


def check(block: Block, printed: str) -> None:
    if block.output is not None:
        assert _normalize(printed) == _normalize(block.output), f"README.md:{block.line} printed:\n{printed}"


class TestReadmeShape:
    def test_opens_with_the_two_commands(self) -> None:
        """The first lines after the title and one sentence are the two newcomer commands."""
        lines = README.read_text(encoding="utf-8").splitlines()
        first_block = BLOCKS[0]

        assert lines[0].startswith("# rxllm")
        assert lines[1] == "" and lines[2] and lines[3] == ""
        assert lines[4] == "```bash"
        assert first_block.code.splitlines() == [
            'pip install . && rxllm chat "Hello"',
            'pip install ".[test]" && pytest',
        ]

    def test_has_python_examples_with_outputs(self) -> None:
        """The guide is made of runnable examples, most with their expected output."""
        assert len(PYTHON) >= 15
        assert sum(b.output is not None for b in PYTHON) >= len(PYTHON) - 4

    def test_feature_table_covers_the_seed_features(self) -> None:
        """The LiteLLM feature table maps every streaming feature of the seed documents."""
        text = README.read_text(encoding="utf-8")
        table = text[text.index("## LiteLLM streaming features and their rxllm form") :]
        table = table[: table.index("\n## ")]

        for feature in [
            "stream=True",
            "stream_chunk_builder",
            "acompletion",
            "__anext__",
            "REPEATED_STREAMING_CHUNK_LIMIT",
            "success_callback",
            "response_cost",
            "Proxy",
            "mock_response",
            "SSE",
            "Collecting the full response",
            "Tool calls",
        ]:
            assert feature in table, feature

    def test_performance_placeholder_and_sections(self) -> None:
        """The sections the guide promises are present, Performance pointing at the benchmarks."""
        text = README.read_text(encoding="utf-8")

        for heading in [
            "## Install",
            "## Your first stream",
            "## Cost tracking",
            "## Errors",
            "## Development",
            "## Recorded fixtures",
            "## The proxy",
            "## Async services",
            "## Providers and configuration",
        ]:
            assert heading in text, heading
        assert "python -m benchmarks" in text[text.index("## Performance") :]


@pytest.mark.parametrize("block", [b for b in PYTHON if "proxy" not in b.tags], ids=lambda b: f"line{b.line}")
def test_example_runs(block: Block) -> None:
    """The example runs offline and prints what the README shows."""
    printed = run_block(block)

    check(block, printed)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"rxllm serve exited with {proc.returncode}: {proc.stderr.read().decode() if proc.stderr else ''}"
            )
        try:
            with urllib.request.urlopen(url + "/health/liveliness", timeout=1) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.05)  # polling a subprocess's readiness, not timing an assertion
    raise AssertionError(f"rxllm serve did not answer at {url} within {timeout} s")


@pytest.fixture(scope="module")
def proxy_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``rxllm serve`` on a free local port, as the README starts it (offline: mock models)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "RXLLM_MASTER_KEY"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rxllm", "serve", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path_factory.mktemp("serve"),  # not the repo root: run the installed rxllm
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


@pytest.mark.parametrize("block", [b for b in PYTHON if "proxy" in b.tags], ids=lambda b: f"line{b.line}")
def test_proxy_example_runs(block: Block, proxy_url: str) -> None:
    """The proxy example streams through a real ``rxllm serve`` with the official openai client."""
    printed = run_block(block, {PROXY_URL: proxy_url})

    check(block, printed)


def test_readme_first_command_streams_offline(tmp_path: Path) -> None:
    """``rxllm chat "Hello"`` (the README's first command, after install) streams from the mock model."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    result = subprocess.run(
        [sys.executable, "-m", "rxllm", "chat", "Hello"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,  # not the repo root, whose rxllm/ would shadow the installed package
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
