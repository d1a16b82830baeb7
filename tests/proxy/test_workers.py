"""``rxllm serve --workers N`` as real processes: one port, restarts, signals, no orphans, shared limits."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from rxllm.proxy.workers import WORKER_OPTION, Supervisor, WorkerStartError, bind_socket

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
ENV.pop("RXLLM_MASTER_KEY", None)
#: A bound on every wait for a subprocess (a hang guard, never a timing assertion).
HANG_GUARD = 60.0
CHAT = "/v1/chat/completions"


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie waiting to be reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


class Served:
    """One ``rxllm serve`` subprocess: its stderr lines collected by a thread, its port, its logs."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rxllm", "serve", "--port", "0", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=ENV,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="served-stderr", daemon=True)
        self._reader.start()
        line = self.wait_for(lambda: next((x for x in self.lines if "listening on" in x), None))
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert match, line
        self.listening = line
        self.base = f"http://127.0.0.1:{match.group(1)}"

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self.lines.append("<eof>")
            self._changed.notify_all()

    def wait_for(self, found: Callable[[], Any]) -> Any:
        """Wait (bounded) until ``found()`` is truthy as lines arrive; return it."""
        with self._changed:
            ok = self._changed.wait_for(lambda: found() or "<eof>" in self.lines, timeout=HANG_GUARD)
            result = found()
        assert ok and result, "".join(self.lines)[-3000:]
        return result

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The JSON log lines so far (of one event when ``name`` is given)."""
        with self._changed:
            lines = list(self.lines)
        parsed = [json.loads(x) for x in lines if x.startswith("{")]
        return [e for e in parsed if name is None or e.get("event") == name]

    def event(self, name: str, **fields: Any) -> dict[str, Any]:
        """Wait for an event with these fields and return it."""

        def found() -> dict[str, Any] | None:
            return next((e for e in self.events(name) if all(e.get(k) == v for k, v in fields.items())), None)

        result: dict[str, Any] = self.wait_for(found)
        return result

    def worker_pids(self) -> set[int]:
        """The pids of the workers started so far (first starts and restarts)."""
        return {e["pid"] for e in self.events() if e.get("event") in ("rxllm.proxy.worker_started",)}

    def stop(self) -> None:
        """End the process and every worker it may have left (the test failed)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=HANG_GUARD)
        for pid in self.worker_pids():
            if alive(pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        self._reader.join(timeout=HANG_GUARD)


@contextlib.contextmanager
def served(*args: str) -> Iterator[Served]:
    server = Served(*args)
    try:
        yield server
    finally:
        server.stop()


def write_config(tmp_path: Path, *entries: dict[str, Any], **sections: Any) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"model_list": list(entries), **sections}))
    return str(path)


def mock(name: str, **params: Any) -> dict[str, Any]:
    return {"model_name": name, "litellm_params": {"model": "mock/x", **params}}


def get(url: str) -> dict[str, Any]:
    """GET JSON on a fresh connection (urllib closes it: the next one may reach another worker)."""
    with urllib.request.urlopen(url, timeout=HANG_GUARD) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def chat(base: str, model: str = "m") -> int:
    """One non-streamed chat request on a fresh connection; its status."""
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode()
    request = urllib.request.Request(base + CHAT, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=HANG_GUARD) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.read()
        return int(exc.code)


def readiness(server: Served, want: set[int]) -> dict[int, int]:
    """Ask /health/readiness on fresh connections until every pid in ``want`` has answered (bounded).

    Returns:
        Each answering pid and the worker index it reported.
    """
    seen: dict[int, int] = {}
    deadline = time.monotonic() + HANG_GUARD
    while not want <= seen.keys() and time.monotonic() < deadline:
        body = get(server.base + "/health/readiness")
        seen[body["pid"]] = body["worker"]
    return seen


def wait_gone(pids: set[int]) -> set[int]:
    """Poll (bounded) until none of ``pids`` runs; the ones still running."""
    deadline = time.monotonic() + HANG_GUARD
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)  # polling other processes' exit, not timing an assertion
    return {p for p in pids if alive(p)}


def stream_request(base: str, model: str) -> urllib.request.Request:
    """A streamed chat request."""
    body = json.dumps({"model": model, "stream": True, "messages": [{"role": "user", "content": "x"}]})
    return urllib.request.Request(base + CHAT, data=body.encode(), headers={"Content-Type": "application/json"})


def streamed_text(raw: bytes) -> str:
    """The content of an SSE chat stream's chunks, concatenated."""
    chunks = [json.loads(line[6:]) for line in raw.split(b"\n") if line.startswith(b"data: {")]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


class TestWorkers:
    def test_two_workers_share_the_port_tag_their_logs_and_drain_on_sigterm(self, tmp_path: Path) -> None:
        """--workers 2: one listening line, both pids answer on the one port, every line tagged; SIGTERM
        mid-stream lets the stream finish, then every process exits and the supervisor exits 0."""
        cfg = write_config(
            tmp_path,
            mock("m", mock_response="ok"),
            mock("slow", mock_response="one two three four five six", mock_delay=0.1),
        )
        with served("--config", cfg, "--workers", "2") as server:
            started = {e["worker"]: e["pid"] for e in server.events("rxllm.proxy.worker_started")}
            answers = readiness(server, set(started.values()))
            statuses = [chat(server.base) for _ in range(4)]
            server.wait_for(lambda: len(server.events("rxllm.proxy.request")) >= 4)
            with urllib.request.urlopen(stream_request(server.base, "slow"), timeout=HANG_GUARD) as response:
                first = response.readline()
                server.proc.send_signal(signal.SIGTERM)
                server.event("rxllm.proxy.workers_stopping")
                rest = response.read()
            code = server.proc.wait(timeout=HANG_GUARD)
            left = wait_gone(set(started.values()))
            server.wait_for(lambda: "<eof>" in server.lines)

        assert "2 workers" in server.listening
        assert sum("listening on" in line for line in server.lines) == 1
        assert sorted(started) == [0, 1] and answers == {pid: index for index, pid in started.items()}
        assert statuses == [200] * 4
        assert len(server.events("rxllm.proxy.limits_per_worker")) == 1  # no Redis: said once
        for event in server.events("rxllm.proxy.request"):
            assert started[event["worker"]] == event["pid"]
        supervisor = {e["pid"] for e in server.events() if e["worker"] == "supervisor"}
        assert supervisor == {server.proc.pid}
        assert streamed_text(first + rest) == "one two three four five six"
        assert rest.rstrip().endswith(b"data: [DONE]")
        assert code == 0 and left == set()
        exited = server.events("rxllm.proxy.worker_exited")
        assert {e["pid"] for e in exited} == set(started.values()) and all(e["expected"] for e in exited)

    def test_a_killed_worker_is_restarted_and_no_worker_outlives_the_supervisor(self, tmp_path: Path) -> None:
        """kill -9 of a worker: requests keep succeeding and a new pid takes its place; then SIGKILL of the
        supervisor: every worker sees its control socket close, drains and exits by itself."""
        cfg = write_config(tmp_path, mock("m", mock_response="ok"))
        with served("--config", cfg, "--workers", "2") as server:
            victim = server.event("rxllm.proxy.worker_started", worker=0)["pid"]
            other = server.event("rxllm.proxy.worker_started", worker=1)["pid"]
            os.kill(victim, signal.SIGKILL)
            exited = server.event("rxllm.proxy.worker_exited", pid=victim)
            during = [chat(server.base) for _ in range(3)]  # one worker dead (restart_in >= 0.5 s)
            while not server.events("rxllm.proxy.worker_restarted"):
                during.append(chat(server.base))
            restarted = server.event("rxllm.proxy.worker_restarted", worker=0)
            seen = readiness(server, {restarted["pid"]})
            server.proc.kill()
            server.proc.wait(timeout=HANG_GUARD)
            left = wait_gone({restarted["pid"], other})
            lost = server.wait_for(lambda: len(server.events("rxllm.proxy.supervisor_lost")) == 2)

        assert exited["exit_code"] == -9 and exited["signal"] == "SIGKILL" and exited["expected"] is False
        assert exited["restart_in"] > 0  # it had run only briefly: the backoff applies
        assert set(during) == {200}
        assert restarted["previous_pid"] == victim and restarted["pid"] != victim
        assert seen[restarted["pid"]] == 0 and not alive(victim)
        assert left == set() and lost

    def test_a_second_sigterm_kills_workers_still_draining(self, tmp_path: Path) -> None:
        """SIGTERM, then SIGTERM again while a long stream drains: the rest are killed, exit 1, no process left."""
        cfg = write_config(
            tmp_path,
            mock("slow", mock_response="one two three four five six seven eight nine ten", mock_delay=1.0),
            general_settings={"shutdown_grace_period": 60},
        )
        with served("--config", cfg, "--workers", "2") as server:
            pids = server.worker_pids()
            with urllib.request.urlopen(stream_request(server.base, "slow"), timeout=HANG_GUARD) as response:
                response.readline()
                server.proc.send_signal(signal.SIGTERM)
                server.event("rxllm.proxy.workers_stopping", kill=False)
                server.proc.send_signal(signal.SIGTERM)
                code = server.proc.wait(timeout=HANG_GUARD)
                with contextlib.suppress(http.client.HTTPException, OSError):
                    response.read()
            left = wait_gone(pids)
            killed = server.events("rxllm.proxy.worker_killed")

        assert code == 1 and left == set()
        assert killed and {e["reason"] for e in killed} == {"second signal"}
        assert {e["pid"] for e in killed} <= pids

    @pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
    def test_a_bad_worker_count_is_refused(self, value: str, capsys: pytest.CaptureFixture[str]) -> None:
        """--workers must be a whole number of 1 or more: anything else exits 2 naming the option."""
        from rxllm.cli import main

        with pytest.raises(SystemExit) as exited:
            main(["serve", "--workers", value])

        err = capsys.readouterr().err
        assert exited.value.code == 2
        assert "--workers" in err and "1 or more" in err


class TestSupervisor:
    async def test_a_worker_that_dies_before_it_is_ready_stops_the_start(self) -> None:
        """A worker command that exits at once: WorkerStartError naming the worker and its exit code."""
        sock = bind_socket("127.0.0.1", 0, 16)
        command = [sys.executable, "-c", f"import sys; assert sys.argv[1] == {WORKER_OPTION!r}; sys.exit(3)"]
        supervisor = Supervisor(command, sock, 2, stop_timeout=HANG_GUARD)

        with pytest.raises(WorkerStartError, match=r"exited with code 3 before it was ready"):
            await supervisor.run()

        assert supervisor.pids == [] and sock.fileno() == -1

    async def test_a_worker_command_that_cannot_run_stops_the_start(self, tmp_path: Path) -> None:
        """No such executable: WorkerStartError saying which worker could not start, and the socket is closed."""
        sock = bind_socket("127.0.0.1", 0, 16)
        supervisor = Supervisor([str(tmp_path / "no-such-python")], sock, 2, stop_timeout=HANG_GUARD)

        with pytest.raises(WorkerStartError, match=r"cannot start worker 0: .*no-such-python"):
            await supervisor.run()

        assert supervisor.pids == [] and sock.fileno() == -1


#: A stand-in worker: says ready on its first start, then exits with 5 on the next three, then stays.
FAKE_WORKER = """
import pathlib, socket, sys
runs = pathlib.Path(sys.argv[1])
count = len(runs.read_text()) if runs.exists() else 0
runs.write_text("x" * (count + 1))
control = socket.socket(fileno=int(sys.argv[-1].split(":")[2]))
if count == 0:
    control.send(b"ready\\n")
elif count <= 3:
    sys.exit(5)
control.recv(1)  # until the supervisor goes (or SIGTERM ends this process)
"""


class TestRestartPolicy:
    async def test_quick_exits_back_off_doubling_up_to_the_cap(self, tmp_path: Path) -> None:
        """A worker killed, then crashing at start three times: restarts wait 0.01, 0.02, 0.04, then 0.05 (the cap)."""
        from structlog.testing import capture_logs

        script = tmp_path / "worker.py"
        script.write_text(FAKE_WORKER)
        runs = tmp_path / "runs"
        sock = bind_socket("127.0.0.1", 0, 16)
        supervisor = Supervisor(
            [sys.executable, str(script), str(runs)],
            sock,
            1,
            stop_timeout=HANG_GUARD,
            restart_delay=0.01,
            max_restart_delay=0.05,
            stable_after=HANG_GUARD,
        )
        ready = asyncio.Event()
        with capture_logs() as logs:
            running = asyncio.create_task(supervisor.run(ready.set))
            async with asyncio.timeout(HANG_GUARD):  # hang guard
                await ready.wait()
                first = supervisor.pids
                os.kill(first[0], signal.SIGKILL)
                while sum(e["event"] == "rxllm.proxy.worker_restarted" for e in logs) < 4:
                    await asyncio.sleep(0.01)
                last = supervisor.pids
                supervisor.stop()
                code = await running

        exits = [e for e in logs if e["event"] == "rxllm.proxy.worker_exited" and not e["expected"]]
        assert [e["exit_code"] for e in exits] == [-9, 5, 5, 5]
        assert [e["restart_in"] for e in exits] == [0.01, 0.02, 0.04, 0.05]
        restarts = [e for e in logs if e["event"] == "rxllm.proxy.worker_restarted"]
        assert [e["restarts"] for e in restarts] == [1, 2, 3, 4] and restarts[0]["previous_pid"] == first[0]
        assert code == 0
        assert not alive(last[0]) and supervisor.pids == []


#: A stand-in worker that ignores SIGTERM: only a kill ends it.
STUBBORN_WORKER = """
import signal, socket, sys
signal.signal(signal.SIGTERM, signal.SIG_IGN)
control = socket.socket(fileno=int(sys.argv[-1].split(":")[2]))
control.send(b"ready\\n")
control.recv(1)
"""


class TestStopTimeout:
    async def test_workers_ignoring_sigterm_are_killed_after_the_stop_timeout(self, tmp_path: Path) -> None:
        """Workers that do not stop on SIGTERM are killed once stop_timeout passes; the exit status is 1."""
        from structlog.testing import capture_logs

        script = tmp_path / "stubborn.py"
        script.write_text(STUBBORN_WORKER)
        sock = bind_socket("127.0.0.1", 0, 16)
        supervisor = Supervisor([sys.executable, str(script)], sock, 2, stop_timeout=0.2)
        ready = asyncio.Event()
        with capture_logs() as logs:
            running = asyncio.create_task(supervisor.run(ready.set))
            async with asyncio.timeout(HANG_GUARD):  # hang guard
                await ready.wait()
                pids = set(supervisor.pids)
                supervisor.stop()
                code = await running

        killed = [e for e in logs if e["event"] == "rxllm.proxy.worker_killed"]
        assert code == 1 and len(pids) == 2
        assert {e["pid"] for e in killed} == pids and {e["reason"] for e in killed} == {"still running after 0.2 s"}
        assert not any(alive(pid) for pid in pids)


class TestSharedLimits:
    def test_rpm_limit_is_exact_across_a_two_worker_proxy_and_another_instance(
        self, tmp_path: Path, redis_url: str
    ) -> None:
        """rpm: 5 on one Redis: requests over both workers of one proxy and a second instance admit exactly 5."""
        cfg = write_config(
            tmp_path,
            mock("m", rpm=5, mock_response="ok"),
            router_settings={"redis_url": redis_url, "redis_cache_ttl": 0},
        )
        with served("--config", cfg, "--workers", "2") as workers, served("--config", cfg) as single:
            bases = [workers.base, single.base]
            with ThreadPoolExecutor(6) as pool:
                statuses = list(pool.map(lambda i: chat(bases[i % 2]), range(12)))
                # more (all refused) until both workers have answered some: the limit spans them
                while len({e["worker"] for e in workers.events("rxllm.proxy.request")}) < 2:
                    statuses += list(pool.map(lambda i: chat(workers.base), range(4)))
            per_worker = {e["worker"] for e in workers.events("rxllm.proxy.request")}

        assert statuses.count(200) == 5 and set(statuses) == {200, 429}
        assert per_worker == {0, 1}
        assert not workers.events("rxllm.proxy.limits_per_worker")  # Redis named: no per-worker warning
