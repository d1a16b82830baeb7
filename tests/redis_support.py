"""A real ``redis-server`` for the tests: started per test session on a free loopback port.

The server runs without persistence (``--save ""``, ``--appendonly no``) in its own
temporary directory, and is stopped when the session ends. :meth:`RedisServer.kill` ends it
the hard way (SIGKILL, as a crash would) and :meth:`RedisServer.start` brings it back on the
same port, for the tests of what happens when Redis goes away mid-run.

Where ``redis-server`` (Debian's ``redis-server`` package) or the ``redis`` Python client is
not installed, the tests that need it skip with that reason; ``.ci/run`` sets
``RXLLM_REQUIRE_REDIS=1``, which turns the absence into a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

#: How long a starting server gets to answer PING (a bound, not a timing assumption).
READY_TIMEOUT = 10.0


def missing_redis(reason: str) -> None:
    """Skip the calling test with ``reason``; fail instead when ``RXLLM_REQUIRE_REDIS`` is set."""
    if os.environ.get("RXLLM_REQUIRE_REDIS"):
        pytest.fail(reason)
    pytest.skip(reason)


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def command(port: int, *args: str, timeout: float = 2.0) -> bytes:
    """Send one command in RESP to ``127.0.0.1:port`` and return the raw first reply line."""
    payload = f"*{len(args)}\r\n".encode() + b"".join(
        f"${len(a.encode())}\r\n".encode() + a.encode() + b"\r\n" for a in args
    )
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        reply = b""
        while not reply.endswith(b"\r\n"):
            part = sock.recv(4096)
            if not part:
                break
            reply += part
        return reply


class RedisServer:
    """One ``redis-server`` process this test session owns.

    Attributes:
        port: The loopback port it listens on (kept across :meth:`kill` / :meth:`start`).
        url: ``redis://127.0.0.1:<port>/0``.
    """

    def __init__(self, executable: str, directory: Path) -> None:
        self.executable = executable
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start the server (on the same port as before) and wait until it answers PING."""
        if self.running:
            return
        args = [
            self.executable,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--loglevel",
            "warning",
        ]
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - the child keeps it
        try:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                tail = (self.directory / "redis.log").read_text(errors="replace")[-500:]
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {tail}")
            with contextlib.suppress(OSError):
                if command(self.port, "PING", timeout=0.5).startswith(b"+PONG"):
                    return
            time.sleep(0.01)  # a bounded readiness poll, not a timing assumption
        raise RuntimeError(f"redis-server on port {self.port} did not answer PING within {READY_TIMEOUT} s")

    def kill(self) -> None:
        """End the server at once (SIGKILL: no shutdown, as a crash or a lost host)."""
        process = self.process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        """End the server politely (SIGTERM), or kill it if it lingers."""
        process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self.process = None

    def flush(self) -> None:
        """Forget every key (between tests)."""
        self.start()
        command(self.port, "FLUSHALL")


def start_redis_server() -> RedisServer | str:
    """A started :class:`RedisServer`, or the reason there cannot be one."""
    executable = shutil.which("redis-server")
    if executable is None:
        return "redis-server is not installed (Debian: apt-get install redis-server); the Redis tests need it"
    try:
        import redis.asyncio  # noqa: F401
    except ImportError:
        return "the redis Python client is not installed (pip install 'rxllm[redis]'); the Redis tests need it"
    directory = Path(tempfile.mkdtemp(prefix="rxllm-redis-"))
    problem = ""
    for _ in range(3):  # a free port can be taken between probing and binding: try another
        server = RedisServer(executable, directory)
        try:
            server.start()
        except (OSError, RuntimeError) as exc:
            server.kill()
            problem = str(exc)
            continue
        return server
    shutil.rmtree(directory, ignore_errors=True)
    return f"redis-server could not be started: {problem}"


def remove(server: RedisServer) -> None:
    """Stop ``server`` and delete its directory."""
    server.stop()
    shutil.rmtree(server.directory, ignore_errors=True)
