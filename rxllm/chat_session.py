"""The interactive ``rxllm chat``: a multi-turn session in the terminal.

``rxllm chat`` with no prompt and a terminal on stdin starts a session. Each line you type is
sent with the whole conversation so far; the answer streams to stdout, and one line of usage,
cost and time to first token follows on stderr. Lines starting with ``/`` are commands:

- ``/reset``: forget the conversation (the system message stays);
- ``/model NAME``: switch model for the next turns;
- ``/system TEXT``: set the system message (``/system`` alone removes it);
- ``/save FILE``: write the conversation as JSON (``{"model": ..., "messages": [...]}``);
- ``/help``; ``/exit`` (or ``/quit``, or Ctrl-D) ends the session with status 0.

Ctrl-C during an answer cancels that stream (the request is disposed, so the provider stops
generating), keeps the partial answer in the conversation marked ``[interrupted]``, and
returns to the prompt; Ctrl-C at the prompt clears the line. With ``--markdown`` answers are
rendered with ``rich`` when it is installed (``pip install "rxllm[rich]"``), else as plain text.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import attrs
import orjson

from rxllm.errors import APIError

__all__ = [
    "DEFAULT_MOCK_DELAY",
    "INTERRUPTED_MARK",
    "ChatSession",
    "Turn",
    "format_summary",
    "stream_turn",
]

#: Seconds between the mock model's chunks in the CLI, so that streaming is visible.
DEFAULT_MOCK_DELAY = 0.03
#: Appended to an answer cut short by Ctrl-C, in the conversation and on screen.
INTERRUPTED_MARK = "[interrupted]"

_REPORT_WAIT = 5.0  # seconds, at most, for a cancelled stream's cost report (normally microseconds)

_HELP = (
    "commands: /reset (forget the conversation) · /model NAME · /system TEXT · /save FILE · /help · /exit (or Ctrl-D)"
)


@attrs.define
class Turn:
    """One streamed answer: its text, tool calls, cost report and timings.

    Attributes:
        text: The answer's text (choice 0), partial when interrupted.
        tool_calls: ``"name(arguments)"`` for each tool call the model made.
        report: The :class:`~rxllm.operators.CostReport` of the stream, once it ended.
        first_token: Seconds to the first text, or ``None``.
        total: Seconds from the request to the end.
        interrupted: True when Ctrl-C cancelled the stream.
    """

    text: str = ""
    tool_calls: list[str] = attrs.field(factory=list)
    report: Any = None
    first_token: float | None = None
    total: float = 0.0
    interrupted: bool = False


def format_summary(report: Any, first_token: float | None, total: float) -> str:
    """The one-line usage, cost and latency summary printed after an answer."""
    est = " (estimated)" if report.usage_estimated else ""
    cost = f"${report.cost:.6f}" if report.cost is not None else "n/a"
    ttft = first_token if first_token is not None else report.time_to_first_content
    ttft_text = f"{ttft:.3f} s" if ttft is not None else "n/a"
    outcome = "" if report.outcome == "completed" else f" · {report.outcome}"
    return (
        f"usage: {report.prompt_tokens} prompt + {report.completion_tokens} completion = "
        f"{report.total_tokens} tokens{est} · cost: {cost} · time to first token: {ttft_text} · "
        f"total: {total:.3f} s{outcome}"
    )


class _PlainRenderer:
    """Writes text as it arrives."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.ended_line = True

    def __enter__(self) -> _PlainRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add(self, text: str, whole: str) -> None:
        self.out.write(text)
        self.out.flush()
        self.ended_line = text.endswith("\n")

    def line(self, text: str) -> None:
        if not self.ended_line:
            self.out.write("\n")
        self.out.write(text + "\n")
        self.out.flush()
        self.ended_line = True

    def finish(self) -> None:
        if not self.ended_line:
            self.out.write("\n")
            self.ended_line = True
        self.out.flush()


class _MarkdownRenderer:
    """Redraws the answer as Markdown with ``rich.live`` (a few times a second, not per chunk)."""

    def __init__(self, out: TextIO) -> None:
        from rich.console import Console
        from rich.live import Live
        from rich.markdown import Markdown

        self._markdown = Markdown
        self.console = Console(file=out)
        self.live = Live(Markdown(""), console=self.console, refresh_per_second=8, vertical_overflow="visible")
        self.extra: list[str] = []
        self.whole = ""

    def __enter__(self) -> _MarkdownRenderer:
        if self.console.is_terminal:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.console.is_terminal:
            self.live.__exit__(None, None, None)
        else:  # not a terminal: no redraws, the rendered answer once at the end
            self.console.print(self._renderable())

    def _renderable(self) -> Any:
        text = self.whole + "".join(f"\n\n{line}" for line in self.extra)
        return self._markdown(text)

    def add(self, text: str, whole: str) -> None:
        self.whole = whole
        if self.console.is_terminal:
            self.live.update(self._renderable())

    def line(self, text: str) -> None:
        self.extra.append(text.replace("[", "\\["))
        if self.console.is_terminal:
            self.live.update(self._renderable())

    def finish(self) -> None:
        if self.console.is_terminal:
            self.live.update(self._renderable(), refresh=True)


def markdown_available() -> bool:
    """Whether ``rich`` can be imported (the optional ``rxllm[rich]`` extra)."""
    try:
        import rich.markdown  # noqa: F401
    except ImportError:
        return False
    return True


def stream_turn(
    model: str,
    messages: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any],
    out: TextIO,
    *,
    markdown: bool = False,
    interruptible: bool = False,
) -> Turn:
    """Stream one answer to ``out`` and return it.

    Args:
        model: The model to ask.
        messages: The conversation, ending with the user's message.
        params: Further parameters for :func:`rxllm.stream`.
        out: Where the answer is written as it arrives.
        markdown: Render with ``rich`` (the caller checks it is installed).
        interruptible: Turn Ctrl-C into a cancelled turn (``interrupted=True``) instead of
            letting ``KeyboardInterrupt`` propagate.

    Returns:
        The :class:`Turn`.

    Raises:
        APIError: The provider's error (the partial text is on ``partial_response``).
    """
    import rxllm
    from rxllm.operators import CostReport, tap_cost

    reports: list[CostReport] = []
    reported = threading.Event()

    def on_report(report: CostReport) -> None:
        reports.append(report)
        reported.set()

    turn = Turn()
    pieces: list[str] = []
    calls: dict[int, list[str]] = {}
    source = rxllm.stream(model, list(messages), **params).pipe(tap_cost(on_report, model=model, messages=messages))
    start = time.monotonic()
    renderer: _PlainRenderer | _MarkdownRenderer = _MarkdownRenderer(out) if markdown else _PlainRenderer(out)
    iterator = rxllm.to_iterator(source)
    with renderer:
        try:
            for chunk in iterator:
                for choice in chunk.choices:
                    if choice.index != 0:
                        continue
                    text = choice.delta.content
                    if text:
                        if turn.first_token is None:
                            turn.first_token = time.monotonic() - start
                        pieces.append(text)
                        renderer.add(text, "".join(pieces) if markdown else "")
                    for call in choice.delta.tool_calls or ():
                        fn = call.function
                        parts = calls.setdefault(call.index or 0, ["", ""])
                        if fn is not None:
                            parts[0] += fn.name or ""
                            parts[1] += fn.arguments or ""
        except APIError:
            renderer.finish()
            raise
        except KeyboardInterrupt:
            if not interruptible:
                iterator.close()
                raise
            turn.interrupted = True
        finally:
            iterator.close()  # a no-op after the end; after Ctrl-C it cancels the request
        turn.text = "".join(pieces)
        turn.tool_calls = [f"{name}({arguments})" for name, arguments in (calls[i] for i in sorted(calls))]
        for call_text in turn.tool_calls:
            renderer.line(f"tool call: {call_text}")
        if turn.interrupted:
            renderer.line(INTERRUPTED_MARK)
        renderer.finish()
    turn.total = time.monotonic() - start
    # A cancelled stream reports once its disposal has reached rxllm's loop thread.
    reported.wait(_REPORT_WAIT)
    turn.report = reports[-1] if reports else None
    return turn


def _read_line(prompt: str, err: TextIO) -> str | None:
    """One line from the terminal; ``None`` at end of input. Ctrl-C clears the line."""
    while True:
        try:
            return input(prompt)
        except EOFError:
            return None
        except KeyboardInterrupt:
            err.write("\n(Ctrl-D or /exit to quit)\n")
            err.flush()


class ChatSession:
    """A multi-turn conversation in the terminal (see the module docstring).

    Args:
        model: The model to start with.
        params: Parameters sent with every request (``temperature``, ``api_base``, ...).
        system: The system message, if any.
        out: Where answers go (stdout).
        err: Where the banner, usage lines and errors go (stderr).
        markdown: Render answers with ``rich``.
        mock_delay: Seconds between the mock model's chunks (0: instant).
        read_line: Reads one line given a prompt; ``None`` ends the session (for tests).
    """

    def __init__(
        self,
        model: str,
        params: Mapping[str, Any],
        *,
        system: str | None = None,
        out: TextIO = sys.stdout,
        err: TextIO = sys.stderr,
        markdown: bool = False,
        mock_delay: float = DEFAULT_MOCK_DELAY,
        read_line: Callable[[str], str | None] | None = None,
    ) -> None:
        self.model = model
        self.params = dict(params)
        self.system = system
        self.history: list[dict[str, Any]] = []
        self.out = out
        self.err = err
        self.markdown = markdown
        self.mock_delay = mock_delay
        self._read = read_line or (lambda prompt: _read_line(prompt, err))

    def messages(self) -> list[dict[str, Any]]:
        """What the next request sends: the system message, then the conversation."""
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.history

    def request_params(self) -> dict[str, Any]:
        """The parameters for the next request (the mock gets its visible delay)."""
        params = dict(self.params)
        if self.model.startswith("mock/") and self.mock_delay > 0:
            params.setdefault("mock_delay", self.mock_delay)
        return params

    def _note(self, text: str) -> None:
        self.err.write(text + "\n")
        self.err.flush()

    def run(self) -> int:
        """Read and answer lines until ``/exit`` or end of input; returns the exit status (0)."""
        self._note(f"rxllm chat · model {self.model} · /help for commands, /exit or Ctrl-D to quit")
        while True:
            line = self._read("> ")
            if line is None:
                self.out.write("\n")
                self.out.flush()
                return 0
            line = line.strip()
            if not line:
                continue
            if line.startswith("/"):
                if self.command(line) == "exit":
                    return 0
                continue
            self.ask(line)

    def command(self, line: str) -> str | None:
        """Run one ``/command``; returns ``"exit"`` for ``/exit``."""
        name, _, arg = line.partition(" ")
        arg = arg.strip()
        if name in ("/exit", "/quit"):
            return "exit"
        if name == "/help":
            self._note(_HELP)
        elif name == "/reset":
            self.history.clear()
            self._note("conversation cleared")
        elif name == "/model":
            self._set_model(arg)
        elif name == "/system":
            self.system = arg or None
            self._note(f"system message set: {arg}" if arg else "system message removed")
        elif name == "/save":
            self._save(arg)
        else:
            self._note(f"unknown command {name}; {_HELP}")
        return None

    def _set_model(self, name: str) -> None:
        if not name:
            self._note(f"model: {self.model} (give /model NAME to switch)")
            return
        from rxllm.api import build_request

        try:
            build_request(name, [{"role": "user", "content": "-"}], {})
        except APIError as exc:
            self._note(f"error: {exc}")
            return
        self.model = name
        self._note(f"model: {name}")

    def _save(self, path: str) -> None:
        if not path:
            self._note("usage: /save FILE")
            return
        target = Path(path).expanduser()
        try:
            target.write_bytes(
                orjson.dumps({"model": self.model, "messages": self.messages()}, option=orjson.OPT_INDENT_2) + b"\n"
            )
        except OSError as exc:
            self._note(f"error: cannot write {target}: {exc.strerror or exc}")
            return
        self._note(f"saved {len(self.messages())} messages to {target}")

    def ask(self, prompt: str) -> Turn | None:
        """Send ``prompt`` with the conversation, stream the answer, and record both."""
        self.history.append({"role": "user", "content": prompt})
        try:
            turn = stream_turn(
                self.model,
                self.messages(),
                self.request_params(),
                self.out,
                markdown=self.markdown,
                interruptible=True,
            )
        except APIError as exc:
            self.history.pop()
            self._note("error: " + " ".join(str(exc).split()))
            return None
        except KeyboardInterrupt:
            # Ctrl-C outside the chunk loop (setting up, or waiting for the report)
            self.history.append({"role": "assistant", "content": INTERRUPTED_MARK})
            self._note(INTERRUPTED_MARK)
            return None
        content = turn.text
        if turn.interrupted:
            content = f"{content} {INTERRUPTED_MARK}" if content else INTERRUPTED_MARK
        message: dict[str, Any] = {"role": "assistant", "content": content}
        self.history.append(message)
        if turn.report is not None:
            self._note(format_summary(turn.report, turn.first_token, turn.total))
        return turn
