"""The interactive ``rxllm chat``, in a real pseudo-terminal (pexpect), and its session object in-process."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from rxllm.chat_session import INTERRUPTED_MARK, ChatSession

ENV = {k: v for k, v in os.environ.items() if not k.startswith("RXLLM_")}
ENV.update({"PYTHONUNBUFFERED": "1", "TERM": "xterm", "COLUMNS": "100", "LINES": "40", "NO_COLOR": "1"})
LONG = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen"
USAGE = re.compile(r"usage: (\d+) prompt \+ (\d+) completion = \d+ tokens[^\r\n]*")


def spawn(*args: str, env: dict[str, str] | None = None) -> pexpect.spawn:
    """``rxllm chat ARGS`` on a fresh pseudo-terminal (stdin is a TTY: interactive)."""
    child = pexpect.spawn(
        sys.executable,
        ["-m", "rxllm", "chat", *args],
        env=env or ENV,
        encoding="utf-8",
        timeout=20,
        dimensions=(40, 100),
    )
    child.expect_exact("/exit or Ctrl-D to quit")
    child.expect_exact("> ")
    return child


def say(child: pexpect.spawn, line: str) -> None:
    """Type a line and wait for the terminal's echo of it (so later patterns match the answer)."""
    child.sendline(line)
    child.expect_exact(line)
    child.expect_exact("\n")


def finish(child: pexpect.spawn) -> int:
    """Wait for the process to exit; its exit status."""
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus is not None, child.signalstatus
    return child.exitstatus


@pytest.fixture
def children() -> Iterator[list[pexpect.spawn]]:
    """Spawned sessions, terminated if a test fails half way."""
    spawned: list[pexpect.spawn] = []
    yield spawned
    for child in spawned:
        if child.isalive():
            child.terminate(force=True)


class TestInteractiveTerminal:
    def test_multi_turn_session_streams_and_keeps_history(self, children: list[pexpect.spawn]) -> None:
        """Each typed line is answered; the usage line follows; the history grows and is sent; /exit is 0."""
        child = spawn("--mock-delay", "0")
        children.append(child)

        say(child, "hello there")
        child.expect_exact("hello there")
        child.expect(USAGE)
        first_prompt = int(child.match.group(1))
        assert "cost:" in child.match.group(0) and "time to first token:" in child.match.group(0)
        child.expect_exact("> ")
        say(child, "and a second question")
        child.expect_exact("and a second question")
        child.expect(USAGE)
        second_prompt = int(child.match.group(1))
        child.expect_exact("> ")
        child.sendline("/exit")

        assert finish(child) == 0
        assert second_prompt > first_prompt + 4  # the first turn (question and answer) was sent again

    def test_ctrl_c_cancels_the_answer_and_keeps_the_session(
        self, children: list[pexpect.spawn], tmp_path: Path
    ) -> None:
        """Ctrl-C mid-answer stops the stream, marks the partial answer, and the next turn still works."""
        child = spawn("--mock-delay", "0.5")
        children.append(child)
        saved = tmp_path / "conversation.json"

        say(child, LONG)
        child.expect_exact("one two")  # streamed: the answer has begun and is far from its end
        child.sendintr()
        child.expect_exact(INTERRUPTED_MARK)
        child.expect(USAGE)
        summary = child.match.group(0)
        child.expect_exact("> ")
        shown = child.before
        say(child, "/nosuch")
        child.expect_exact("unknown command")
        child.expect_exact("> ")
        child.sendline("/save " + str(saved))
        child.expect_exact("saved 2 messages")
        child.expect_exact("> ")
        child.sendeof()

        assert finish(child) == 0
        assert "cancelled" in summary
        assert "fifteen" not in shown
        messages = json.loads(saved.read_text())["messages"]
        assert messages[0] == {"role": "user", "content": LONG}
        answer = messages[1]["content"]
        assert messages[1]["role"] == "assistant" and answer.endswith(INTERRUPTED_MARK)
        assert answer.startswith("one two") and "fifteen" not in answer

    def test_ctrl_c_at_the_prompt_does_not_leave(self, children: list[pexpect.spawn]) -> None:
        """Ctrl-C with no answer running clears the line; Ctrl-D then ends the session with status 0."""
        child = spawn()
        children.append(child)

        child.sendintr()
        child.expect_exact("Ctrl-D or /exit to quit")
        child.expect_exact("> ")
        say(child, "still here")
        child.expect_exact("still here")
        child.expect(USAGE)
        child.expect_exact("> ")
        child.sendeof()

        assert finish(child) == 0

    def test_commands(self, children: list[pexpect.spawn], tmp_path: Path) -> None:
        """/system, /model (a bad name is refused), /reset and /save change what the next request sends."""
        child = spawn("--mock-delay", "0", "--system", "be brief")
        children.append(child)
        saved = tmp_path / "c.json"

        say(child, "/model nosuch/thing")
        child.expect_exact("unknown provider")
        child.expect_exact("> ")
        say(child, "/model mock/other")
        child.expect_exact("model: mock/other")
        child.expect_exact("> ")
        say(child, "first")
        child.expect_exact("mock model")  # mock/other says its greeting
        child.expect(USAGE)
        child.expect_exact("> ")
        say(child, "/reset")
        child.expect_exact("conversation cleared")
        child.expect_exact("> ")
        say(child, "/system talk like a pirate")
        child.expect_exact("system message set")
        child.expect_exact("> ")
        say(child, "/save " + str(saved))
        child.expect_exact("saved 1 messages")
        child.expect_exact("> ")
        child.sendline("/exit")

        assert finish(child) == 0
        assert json.loads(saved.read_text()) == {
            "model": "mock/other",
            "messages": [{"role": "system", "content": "talk like a pirate"}],
        }

    def test_markdown_with_rich(self, children: list[pexpect.spawn]) -> None:
        """--markdown renders the answer with rich: the asterisks of **bold** are not shown."""
        pytest.importorskip("rich")
        child = spawn("--markdown", "--mock-delay", "0")
        children.append(child)

        say(child, "some **bold** words")
        child.expect(USAGE)
        answer = child.before
        child.expect_exact("> ")
        child.sendline("/exit")

        assert finish(child) == 0
        assert "bold" in answer and "**" not in answer

    def test_markdown_without_rich_falls_back_to_plain_text(
        self, children: list[pexpect.spawn], tmp_path: Path
    ) -> None:
        """Without rich installed --markdown says how to get it and shows plain text."""
        blocker = tmp_path / "rich"
        blocker.mkdir()
        (blocker / "__init__.py").write_text("raise ImportError('rich is not installed here')\n")
        # no empty entry: "" on PYTHONPATH would put the working directory (the source tree) first
        env = {**ENV, "PYTHONPATH": os.pathsep.join(p for p in (str(tmp_path), ENV.get("PYTHONPATH")) if p)}
        child = pexpect.spawn(
            sys.executable, ["-m", "rxllm", "chat", "--markdown"], env=env, encoding="utf-8", timeout=20
        )
        children.append(child)

        child.expect_exact("pip install 'rxllm[rich]'")
        child.expect_exact("> ")
        say(child, "some **bold** words")
        child.expect_exact("some **bold** words")
        child.expect_exact("> ")
        child.sendeof()

        assert finish(child) == 0


class TestOneShotInATerminal:
    def test_ctrl_c_during_a_one_shot_answer_exits_130(self, children: list[pexpect.spawn]) -> None:
        """A prompt argument keeps the one-shot mode; Ctrl-C there stops the command with status 130."""
        child = pexpect.spawn(
            sys.executable, ["-m", "rxllm", "chat", "--mock-delay", "0.5", LONG], env=ENV, encoding="utf-8", timeout=20
        )
        children.append(child)

        child.expect_exact("one two")
        child.sendintr()
        child.expect_exact("rxllm: interrupted")

        assert finish(child) == 130

    def test_ctrl_c_works_when_started_with_sigint_ignored(self, children: list[pexpect.spawn]) -> None:
        """Started by a shell that ignores SIGINT (no job control), Ctrl-C at the terminal still stops it."""
        child = pexpect.spawn(
            sys.executable,
            ["-m", "rxllm", "chat", "--mock-delay", "0.5", LONG],
            env=ENV,
            encoding="utf-8",
            timeout=20,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
        children.append(child)

        child.expect_exact("one two")
        child.sendintr()
        child.expect_exact("rxllm: interrupted")

        assert finish(child) == 130


class TestChatSession:
    def _session(self, lines: list[str], **kw: object) -> tuple[ChatSession, io.StringIO, io.StringIO]:
        out, err = io.StringIO(), io.StringIO()
        feed = iter(lines)
        session = ChatSession(
            str(kw.pop("model", "mock/echo")),
            dict(kw.pop("params", {})),  # type: ignore[call-overload]
            out=out,
            err=err,
            mock_delay=0,
            read_line=lambda _prompt: next(feed, None),
            **kw,  # type: ignore[arg-type]
        )
        return session, out, err

    def test_history_is_sent_with_each_turn(self) -> None:
        """The second request carries the first question and answer."""
        session, out, _ = self._session(["first", "second"])

        assert session.run() == 0
        assert out.getvalue() == "first\nsecond\n\n"
        assert [m["content"] for m in session.history] == ["first", "first", "second", "second"]

    def test_a_failed_turn_is_reported_and_dropped(self) -> None:
        """A provider error prints one line and leaves the history as it was; the session goes on."""
        session, _, err = self._session(
            ["hello", "/exit"], model="gpt-4o", params={"mock_response": "rxllm.RateLimitError"}
        )

        assert session.run() == 0
        assert "error: " in err.getvalue() and "RateLimitError" in err.getvalue()
        assert session.history == []

    def test_mock_delay_only_for_mock_models(self) -> None:
        """The visible-streaming delay is added for mock/ models only."""
        session, _, _ = self._session([])
        session.mock_delay = 0.25

        assert session.request_params()["mock_delay"] == 0.25
        session.model = "openai/gpt-4o"
        assert "mock_delay" not in session.request_params()

    def test_save_to_an_unwritable_path_is_an_error_line(self, tmp_path: Path) -> None:
        """/save into a missing directory says why and keeps the session."""
        session, _, err = self._session([f"/save {tmp_path}/missing/dir/file.json", "/exit"])

        assert session.run() == 0
        assert "cannot write" in err.getvalue()
