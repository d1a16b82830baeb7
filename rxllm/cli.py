"""The ``rxllm`` command: ``rxllm chat`` streams an answer to the terminal, ``rxllm serve`` runs the proxy.

``rxllm chat "hello"`` works with no key and no network: the default model is the offline
mock (``mock/echo``), which the CLI slows a little (``--mock-delay``, default 0.03 s a chunk)
so that streaming is visible. Text goes to stdout as it arrives; usage, cost and time to first
token go to stderr at the end, so ``rxllm chat ... > answer.txt`` keeps only the answer.
Failures exit non-zero with one line on stderr. ``rxllm chat`` with no prompt and a terminal
on stdin starts an interactive session (:mod:`rxllm.chat_session`).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

import orjson
import structlog

from rxllm.chat_session import DEFAULT_MOCK_DELAY, ChatSession, format_summary, markdown_available, stream_turn
from rxllm.errors import APIError

__all__ = ["main"]

DEFAULT_MODEL = "mock/echo"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rxllm", description="LLM streams as ReactiveX Observables.")
    parser.add_argument("--version", action="version", version=f"rxllm {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    chat = commands.add_parser(
        "chat", help="stream one answer to the terminal, or chat interactively (no prompt, a terminal)"
    )
    chat.add_argument(
        "prompt", nargs="?", help="the prompt (read from stdin when omitted; none and a terminal: interactive)"
    )
    chat.add_argument("--model", "-m", default=DEFAULT_MODEL, help=f"provider/model (default: {DEFAULT_MODEL})")
    chat.add_argument("--system", "-s", help="a system message")
    chat.add_argument("--json", action="store_true", help="print each chunk (or the response) as JSON")
    chat.add_argument("--no-stream", action="store_true", help="print the answer once it is complete")
    chat.add_argument("--api-base", help="the provider endpoint (keys come from the provider's env variable)")
    chat.add_argument("--temperature", type=float)
    chat.add_argument("--max-tokens", type=int)
    chat.add_argument(
        "--markdown", action="store_true", help="render answers as Markdown (needs rich: pip install 'rxllm[rich]')"
    )
    chat.add_argument(
        "--mock-delay",
        type=float,
        default=None,
        metavar="SECONDS",
        help=f"seconds between the mock model's chunks (default {DEFAULT_MOCK_DELAY}; 0 for instant)",
    )

    serve = commands.add_parser("serve", help="run the OpenAI-compatible streaming proxy")
    serve.add_argument("--config", "-c", help="a YAML config in LiteLLM's model_list shape")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    serve.add_argument("--port", "-p", type=int, default=4000, help="port (default: 4000; 0 picks a free one)")
    serve.add_argument(
        "--model",
        "-m",
        dest="serve_model",
        metavar="PROVIDER/MODEL",
        help="serve this one model without a config file (as `litellm --model`); with --config, added to it",
    )
    serve.add_argument("--alias", help="the name clients use for --model (default: the model string itself)")
    serve.add_argument(
        "--workers",
        "-w",
        type=_worker_count,
        default=1,
        metavar="N",
        help="worker processes sharing the port, under one supervisor (default: 1, a single process)",
    )
    serve.add_argument("--worker-spec", help=argparse.SUPPRESS)  # set by the supervisor for its workers
    return parser


def _worker_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of processes, 1 or more; got {text!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more; got {count}")
    return count


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rxllm")
    except PackageNotFoundError:  # a source checkout that was never installed
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (also used by ``python -m rxllm``)."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "chat":
            return _chat(args, sys.stdout, sys.stderr)
        return _serve(args)
    except KeyboardInterrupt:
        print("rxllm: interrupted", file=sys.stderr)
        return 130


# --------------------------------------------------------------------------- chat


def _fail(message: str) -> int:
    line = " ".join(message.split())
    print(f"rxllm: error: {line}", file=sys.stderr)
    return 1


def _ctrl_c_interrupts() -> None:
    """Make Ctrl-C stop the answer at a terminal, even if SIGINT was ignored when we started.

    A shell without job control (a script's ``cmd &``, some CI runners and supervisors) starts
    its children with SIGINT ignored, and Python then never raises ``KeyboardInterrupt``: the
    user's Ctrl-C would do nothing. At a terminal, the person typing is the one to obey.
    """
    if sys.stdin is not None and sys.stdin.isatty() and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _chat(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    _ctrl_c_interrupts()
    # A library never configures logging, but a command does: keep stdout for the answer.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(30),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    mock_delay = DEFAULT_MOCK_DELAY if args.mock_delay is None else args.mock_delay
    if mock_delay < 0:
        return _fail(f"--mock-delay must be 0 or more seconds, got {mock_delay}")
    if args.markdown and not markdown_available():
        err.write("rxllm: --markdown needs rich (pip install 'rxllm[rich]'); showing plain text\n")
        args.markdown = False
    params: dict[str, Any] = {"stream_options": {"include_usage": True}}
    if args.api_base:
        params["api_base"] = args.api_base
    if args.temperature is not None:
        params["temperature"] = args.temperature
    if args.max_tokens is not None:
        params["max_tokens"] = args.max_tokens
    prompt = args.prompt
    if prompt is None:
        if sys.stdin is None:
            return _fail("no prompt: give one as an argument or on stdin")
        if sys.stdin.isatty():
            return _interactive(args, params, mock_delay, out, err)
        prompt = sys.stdin.read()
    if not prompt.strip():
        return _fail("the prompt is empty")
    messages: list[dict[str, Any]] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    messages.append({"role": "user", "content": prompt})
    if args.model.startswith("mock/") and mock_delay > 0:
        params["mock_delay"] = mock_delay
    try:
        if args.markdown and not args.json and not args.no_stream:
            turn = stream_turn(args.model, messages, params, out, markdown=True)
            if turn.report is not None:
                err.write(format_summary(turn.report, turn.first_token, turn.total) + "\n")
            return 0
        return _run_chat(args, messages, params, out, err)
    except APIError as exc:
        return _fail(str(exc))
    except BrokenPipeError:
        return 1


def _interactive(args: argparse.Namespace, params: dict[str, Any], mock_delay: float, out: TextIO, err: TextIO) -> int:
    try:
        import readline  # noqa: F401  (line editing and history for input(), where available)
    except ImportError:  # pragma: no cover - platforms without readline
        pass
    session = ChatSession(
        args.model,
        params,
        system=args.system,
        out=out,
        err=err,
        markdown=args.markdown,
        mock_delay=mock_delay,
    )
    try:
        return session.run()
    except BrokenPipeError:
        return 1


def _run_chat(
    args: argparse.Namespace, messages: list[dict[str, Any]], params: dict[str, Any], out: TextIO, err: TextIO
) -> int:
    import rxllm
    from rxllm.builder import ResponseBuilder
    from rxllm.operators import CostReport, tap_cost

    reports: list[CostReport] = []
    builder = ResponseBuilder(messages)
    source = rxllm.stream(args.model, messages, **params).pipe(
        tap_cost(reports.append, model=args.model, messages=messages)
    )
    stream = not args.no_stream
    first_token: float | None = None
    start = time.monotonic()
    ended_line = True
    with rxllm.to_iterator(source) as chunks:
        for chunk in chunks:
            builder.add(chunk)
            if not stream:
                continue
            if args.json:
                out.write(chunk.to_json().decode() + "\n")
                out.flush()
                continue
            for choice in chunk.choices:
                text = choice.delta.content
                if text and choice.index == 0:
                    if first_token is None:
                        first_token = time.monotonic() - start
                    out.write(text)
                    out.flush()
                    ended_line = text.endswith("\n")
    response = builder.build()
    if args.json and not stream:
        out.write(orjson.dumps(response.to_dict()).decode() + "\n")
    elif not args.json:
        message = response.choices[0].message if response.choices else None
        if not stream and message is not None and message.content:
            out.write(message.content)
            ended_line = message.content.endswith("\n")
        for call in (message.tool_calls or ()) if message is not None else ():
            if not ended_line:
                out.write("\n")
            out.write(f"tool call: {call.function.name}({call.function.arguments})\n")
            ended_line = True
        if not ended_line:
            out.write("\n")
    out.flush()
    if reports:
        _summary(reports[-1], first_token, time.monotonic() - start, err)
    return 0


def _summary(report: Any, first_token: float | None, total: float, err: TextIO) -> None:
    err.write(format_summary(report, first_token, total) + "\n")
    err.flush()


# --------------------------------------------------------------------------- serve


def _serve(args: argparse.Namespace) -> int:
    from rxllm.proxy import ConfigError, eventloop, is_loopback, load_config, serve
    from rxllm.proxy.config import with_model

    try:
        config = load_config(args.config)
        if args.serve_model:
            config = with_model(config, args.serve_model, args.alias)
        elif args.alias:
            return _fail("--alias names the model given with --model; add --model provider/model")
    except ConfigError as exc:
        return _fail(str(exc))
    if not is_loopback(args.host) and not config.master_key:
        return _fail(
            f"refusing to listen on {args.host} without a master key: anyone who can reach it could "
            "spend your provider keys; set general_settings.master_key in the config or RXLLM_MASTER_KEY "
            "(or use --host 127.0.0.1)"
        )
    processors: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso"),
        structlog.processors.JSONRenderer(),
    ]
    several = args.worker_spec is not None or args.workers > 1
    if several:
        from rxllm.proxy.workers import log_tags

        # every line says which process wrote it: worker=K (or "supervisor") and pid
        tag = args.worker_spec.split(":", 1)[0] if args.worker_spec is not None else "supervisor"
        processors.insert(0, log_tags(int(tag) if tag.isdigit() else tag))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(20),
        # several processes share stderr: one write per line keeps their lines whole
        logger_factory=structlog.WriteLoggerFactory(sys.stderr)
        if several
        else structlog.PrintLoggerFactory(sys.stderr),
    )
    if args.worker_spec is not None:
        from rxllm.proxy.workers import run_worker

        try:
            run_worker(config, args.worker_spec, args.host)
        except ValueError as exc:
            return _fail(str(exc))
        return 0

    def ready(host: str, port: int) -> None:
        shown = f"[{host}]" if ":" in host else host
        auth = "master key required" if config.master_key else "no auth (loopback only)"
        count = f"; {args.workers} workers" if args.workers > 1 else ""
        if args.workers == 1 and config.event_loop != "asyncio":  # the loop it runs on, when asked to choose
            count += f"; {eventloop.running_loop_name()} event loop"
        print(
            f"rxllm proxy listening on http://{shown}:{port} ({len(config.model_names)} model names; {auth}{count})",
            file=sys.stderr,
            flush=True,
        )

    if args.workers > 1 and os.name != "posix":
        return _fail("--workers more than 1 needs a POSIX system (inherited sockets); run one process per port")
    try:
        if args.workers > 1:
            return _supervise(args, config, ready)
        eventloop.run(serve(config, args.host, args.port, on_ready=ready), config.event_loop)
    except OSError as exc:
        return _fail(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
    return 0


def _supervise(args: argparse.Namespace, config: Any, ready: Any) -> int:
    """``--workers N``: this process binds the port and supervises N re-executed ``rxllm serve`` workers."""
    from rxllm.proxy.workers import WorkerStartError, supervise

    command = [sys.executable, "-m", "rxllm", "serve", "--host", args.host, "--workers", str(args.workers)]
    if args.config:
        command += ["--config", os.path.abspath(args.config)]  # a worker may not share our idea of "."
    if args.serve_model:
        command += ["--model", args.serve_model]
    if args.alias:
        command += ["--alias", args.alias]
    try:
        return supervise(config, args.host, args.port, args.workers, command, on_ready=ready)
    except WorkerStartError as exc:
        return _fail(str(exc))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
