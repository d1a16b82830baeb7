"""``rxllm serve --workers N``: a supervisor, one listening socket, N worker processes.

The supervisor binds the listening socket once and hands the same socket to every worker;
each worker runs the whole proxy app (:func:`rxllm.proxy.app.serve` with ``sock=``) and the
kernel gives each new connection to whichever worker calls ``accept()`` first.

Why one socket handed out rather than ``SO_REUSEPORT`` (each worker binding its own):

- ``--port 0`` works: the port is chosen once, and the one "listening on" line reports the
  real port. With ``SO_REUSEPORT`` every worker would have to be told the port after the
  first had bound it.
- No port stealing: ``SO_REUSEPORT`` lets any process of the same user bind the same port
  and silently receive a share of its connections (an old instance left running, a second
  ``rxllm serve`` started by mistake). A handed-out socket cannot be joined by anyone else.
- Nothing is lost in restarts: connections queue in the one backlog while a worker is
  being replaced, whereas a ``SO_REUSEPORT`` socket that closes drops the connections the
  kernel had already hashed to it.
- Portable: every POSIX system has inheritable descriptors; ``SO_REUSEPORT`` balances
  connections only on Linux (FreeBSD needs its own ``SO_REUSEPORT_LB``; macOS does not
  balance at all).

The price is balance: a shared socket wakes the workers and the first to call ``accept()``
wins, so the split is not exactly even (a busy worker accepts less, which is what one wants).

Why a re-executed ``python -m rxllm serve`` rather than :mod:`multiprocessing`: a worker is a
fresh interpreter that loads the config itself exactly as a single-process ``rxllm serve``
does (the supervisor checked it first), so the supervisor shares no state, no event loop and
no imported module with its workers; nothing is pickled (the config holds keys); there is no
``multiprocessing`` resource tracker process; and ``subprocess``'s ``pass_fds`` passes exactly
the two descriptors a worker needs (the listening socket and its control socket), every other
descriptor being closed on exec.

Each worker gets one end of a socket pair (its *control* socket). The worker writes
``ready`` on it once it accepts connections; the supervisor prints the "listening on" line
when all N have. The worker watches it too: when the supervisor dies, however it dies
(``SIGKILL`` included), the kernel closes the supervisor's end, the worker reads end-of-file
and drains and exits like on ``SIGTERM``. So no worker outlives its supervisor, on any POSIX
system (``PR_SET_PDEATHSIG`` is Linux-only and fires on the death of the parent *thread*).

Signals: ``SIGTERM`` or ``SIGINT`` to the supervisor closes its copy of the socket and
forwards ``SIGTERM`` to every worker, which refuses new requests and lets streams finish
within ``shutdown_grace_period``; the supervisor exits 0 once all are gone. A second signal,
or workers still running ``shutdown_grace_period + 10`` s later, kills the rest (exit 1).

Restarts: a worker that exits while the supervisor is not stopping is started again, at once
when it had been running for :data:`STABLE_AFTER` seconds, otherwise after a delay that
doubles from :data:`RESTART_DELAY` up to :data:`MAX_RESTART_DELAY` (a worker crashing at
start-up does not spin). A worker that exits before the first "ready" ends the supervisor
with :class:`WorkerStartError`: at the first start that is a setup problem, not bad luck.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from rxllm._log import get_logger
from rxllm.proxy import eventloop

if TYPE_CHECKING:
    from rxllm.proxy.config import ProxyConfig

__all__ = [
    "MAX_RESTART_DELAY",
    "RESTART_DELAY",
    "STABLE_AFTER",
    "STOP_MARGIN",
    "WORKER_OPTION",
    "Supervisor",
    "WorkerStartError",
    "bind_socket",
    "log_tags",
    "run_worker",
    "supervise",
]

_log = get_logger("rxllm.proxy")

#: The (hidden) ``rxllm serve`` option that makes a process a worker: ``INDEX:SOCKET_FD:CONTROL_FD``.
WORKER_OPTION: Final = "--worker-spec"
#: The first restart delay, in seconds, of a worker that exited soon after it started.
RESTART_DELAY: Final = 0.5
#: The longest restart delay, in seconds.
MAX_RESTART_DELAY: Final = 30.0
#: Seconds after which a worker counts as having started well (its next restart is at once).
STABLE_AFTER: Final = 10.0
#: Seconds beyond ``shutdown_grace_period`` that stopping workers get before they are killed.
STOP_MARGIN: Final = 10.0

_READY: Final = b"ready\n"


class WorkerStartError(RuntimeError):
    """A worker could not be started, or exited before it was first ready: the start is abandoned.

    The supervisor has stopped the other workers and closed the socket by then; the CLI
    reports the message and exits 1.
    """


def log_tags(worker: int | str) -> Callable[[Any, str, MutableMapping[str, Any]], MutableMapping[str, Any]]:
    """A structlog processor adding ``worker`` and ``pid`` to every event of this process.

    An event that names a ``worker`` or ``pid`` itself keeps them: the supervisor's
    ``rxllm.proxy.worker_*`` events are about a worker and carry that worker's index and pid.

    Args:
        worker: The worker's index, or ``"supervisor"``.

    Returns:
        A processor for ``structlog.configure(processors=[...])`` (first in the chain).
    """
    pid = os.getpid()

    # setdefault: the supervisor's lines about a worker (rxllm.proxy.worker_*) name that worker
    def tag(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event.setdefault("worker", worker)
        event.setdefault("pid", pid)
        return event

    return tag


def bind_socket(host: str, port: int, backlog: int) -> socket.socket:
    """The listening socket every worker shares: ``host``'s first address, ``port`` (0: any free one).

    Raises:
        OSError: The address cannot be resolved or bound (in use, not local, no permission).
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass
class _Slot:
    """One worker position: the process currently filling it and its history."""

    index: int
    process: asyncio.subprocess.Process | None = None
    control: socket.socket | None = None
    started: float = 0.0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    quick_exits: int = 0
    restarts: int = 0


class Supervisor:
    """Runs ``workers`` copies of ``command`` on one socket until told to stop.

    Args:
        command: The worker command line (``python -m rxllm serve ...``); the supervisor
            appends ``--worker-spec INDEX:SOCKET_FD:CONTROL_FD``.
        sock: The bound, listening socket (:func:`bind_socket`); the supervisor closes it when
            it stops.
        workers: How many worker processes (1 or more).
        stop_timeout: Seconds stopping workers get before they are killed.
        restart_delay: The first restart delay of a worker that exited within ``stable_after``
            seconds of its start; it doubles with each further such exit.
        max_restart_delay: The longest restart delay.
        stable_after: Seconds after which a worker counts as having started well (a worker
            that ran this long is restarted at once, and its delay starts over).

    Raises:
        ValueError: ``workers`` is less than 1, or a delay is negative.
    """

    def __init__(
        self,
        command: Sequence[str],
        sock: socket.socket,
        workers: int,
        *,
        stop_timeout: float,
        restart_delay: float = RESTART_DELAY,
        max_restart_delay: float = MAX_RESTART_DELAY,
        stable_after: float = STABLE_AFTER,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be 1 or more, got {workers}")
        if min(stop_timeout, restart_delay, max_restart_delay, stable_after) < 0:
            raise ValueError("the supervisor's timeouts and delays must be 0 or more seconds")
        self._restart_delay, self._max_restart_delay, self._stable_after = (
            restart_delay,
            max_restart_delay,
            stable_after,
        )
        self._command = list(command)
        self._sock = sock
        self._slots = [_Slot(index) for index in range(workers)]
        self._stop_timeout = stop_timeout
        self._stop: asyncio.Event | None = None
        self._kill: asyncio.Event | None = None
        self._boot_failure: str | None = None
        self._booting = True
        self._readers: set[asyncio.Task[None]] = set()
        self.killed = 0

    @property
    def pids(self) -> list[int]:
        """The pids of the workers running now."""
        return [s.process.pid for s in self._slots if s.process is not None and s.process.returncode is None]

    async def run(self, on_ready: Callable[[], None] | None = None) -> int:
        """Start the workers, keep them running, stop them on SIGTERM/SIGINT; the exit status.

        Args:
            on_ready: Called once every worker accepts connections.

        Returns:
            0 when every worker stopped by itself; 1 when some had to be killed.

        Raises:
            WorkerStartError: A worker could not be started, or exited before its first "ready".
        """
        loop = asyncio.get_running_loop()
        self._stop, self._kill = asyncio.Event(), asyncio.Event()
        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._signalled, sig)
                installed.append(sig)
        keepers: list[asyncio.Task[None]] = []
        try:
            for slot in self._slots:
                try:
                    await self._spawn(slot)
                except OSError as exc:
                    self._boot_failure = f"cannot start worker {slot.index}: {exc}"
                    break
                keepers.append(asyncio.create_task(self._keep(slot), name=f"rxllm-worker-{slot.index}"))
            if self._boot_failure is not None:
                self._stop.set()
            everyone: asyncio.Future[Any] = asyncio.ensure_future(
                asyncio.gather(*(s.ready.wait() for s in self._slots))
            )
            stopped: asyncio.Future[Any] = asyncio.ensure_future(self._stop.wait())
            await asyncio.wait({everyone, stopped}, return_when=asyncio.FIRST_COMPLETED)
            everyone.cancel()
            stopped.cancel()
            self._booting = False
            if not self._stop.is_set() and on_ready is not None:
                on_ready()
            await self._stop.wait()
            await self._shutdown(keepers)
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            for task in keepers:
                task.cancel()
            await asyncio.gather(*keepers, return_exceptions=True)
            await self._kill_all("supervisor ending")  # never an orphan, whatever went wrong
            for reader in list(self._readers):
                reader.cancel()
            await asyncio.gather(*self._readers, return_exceptions=True)
            self._sock.close()
        if self._boot_failure is not None:
            raise WorkerStartError(self._boot_failure)
        return 1 if self.killed else 0

    def stop(self) -> None:
        """Begin the graceful stop (what the first SIGTERM/SIGINT does)."""
        if self._stop is not None:
            self._stop.set()

    def _signalled(self, sig: int) -> None:
        assert self._stop is not None and self._kill is not None
        if self._stop.is_set():
            _log.warning(
                "rxllm.proxy.workers_stopping", signal=signal.Signals(sig).name, workers=len(self.pids), kill=True
            )
            self._kill.set()
            return
        _log.info("rxllm.proxy.workers_stopping", signal=signal.Signals(sig).name, workers=len(self.pids), kill=False)
        self._stop.set()

    async def _spawn(self, slot: _Slot) -> None:
        loop = asyncio.get_running_loop()
        mine, theirs = socket.socketpair()
        try:
            spec = f"{slot.index}:{self._sock.fileno()}:{theirs.fileno()}"
            process = await asyncio.create_subprocess_exec(
                *self._command, WORKER_OPTION, spec, pass_fds=(self._sock.fileno(), theirs.fileno())
            )
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
        mine.setblocking(False)
        slot.process, slot.control, slot.started = process, mine, loop.time()
        slot.ready = asyncio.Event()
        reader = asyncio.create_task(self._await_ready(slot, mine), name=f"rxllm-worker-{slot.index}-ready")
        self._readers.add(reader)
        reader.add_done_callback(self._readers.discard)
        _log.info("rxllm.proxy.worker_started", worker=slot.index, pid=process.pid)

    async def _await_ready(self, slot: _Slot, control: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        received = b""
        with contextlib.suppress(OSError):
            while not received.endswith(b"\n"):
                part = await loop.sock_recv(control, 64)
                if not part:
                    return
                received += part
        if received == _READY and slot.control is control:
            slot.ready.set()

    async def _keep(self, slot: _Slot) -> None:
        """Wait for the slot's worker to exit; start another unless stopping."""
        loop = asyncio.get_running_loop()
        assert self._stop is not None
        previous: int | None = None
        while True:
            process = slot.process
            lived = 0.0
            fields: dict[str, Any] = {"worker": slot.index}
            if process is not None:  # None: the last start failed (logged), try again
                code = await process.wait()
                if slot.control is not None:
                    slot.control.close()
                    slot.control = None
                lived = loop.time() - slot.started
                previous = process.pid
                fields.update(pid=process.pid, exit_code=code)
                if code < 0:
                    with contextlib.suppress(ValueError):
                        fields["signal"] = signal.Signals(-code).name
                if self._stop.is_set():
                    _log.info("rxllm.proxy.worker_exited", **fields, expected=True)
                    return
                if self._booting and not slot.ready.is_set():
                    _log.error("rxllm.proxy.worker_exited", **fields, expected=False, restart_in=None)
                    self._boot_failure = (
                        f"worker {slot.index} exited with code {code} before it was ready (see its log lines above)"
                    )
                    self._stop.set()
                    return
            slot.quick_exits = 0 if lived >= self._stable_after else slot.quick_exits + 1
            delay = 0.0
            if slot.quick_exits:
                delay = min(self._restart_delay * 2 ** (slot.quick_exits - 1), self._max_restart_delay)
            if process is not None:
                _log.warning(
                    "rxllm.proxy.worker_exited", **fields, expected=False, ran_for=round(lived, 3), restart_in=delay
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            if self._stop.is_set():
                return
            try:
                await self._spawn(slot)
            except OSError as exc:  # out of processes or descriptors, say: back off and try again
                slot.process = None
                _log.error("rxllm.proxy.worker_start_failed", worker=slot.index, error=str(exc))
                continue
            slot.restarts += 1
            assert slot.process is not None
            _log.info(
                "rxllm.proxy.worker_restarted",
                worker=slot.index,
                pid=slot.process.pid,
                previous_pid=previous,
                restarts=slot.restarts,
            )

    async def _shutdown(self, keepers: list[asyncio.Task[None]]) -> None:
        assert self._kill is not None
        self._sock.close()  # once every worker has closed its copy, new connections are refused
        for slot in self._slots:
            process = slot.process
            if process is not None and process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        done: asyncio.Future[Any] = asyncio.ensure_future(asyncio.gather(*keepers, return_exceptions=True))
        kill: asyncio.Future[Any] = asyncio.ensure_future(self._kill.wait())
        try:
            await asyncio.wait({done, kill}, timeout=self._stop_timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            kill.cancel()
        if not done.done():
            await self._kill_all(
                "second signal" if self._kill.is_set() else f"still running after {self._stop_timeout:g} s"
            )
        await done

    async def _kill_all(self, reason: str) -> None:
        for slot in self._slots:
            process = slot.process
            if process is not None and process.returncode is None:
                _log.warning("rxllm.proxy.worker_killed", worker=slot.index, pid=process.pid, reason=reason)
                self.killed += 1
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
            if slot.control is not None:
                slot.control.close()
                slot.control = None


def supervise(
    config: ProxyConfig,
    host: str,
    port: int,
    workers: int,
    command: Sequence[str],
    *,
    on_ready: Callable[[str, int], None] | None = None,
) -> int:
    """Bind ``host:port`` once and run ``workers`` worker processes on it until SIGTERM/SIGINT.

    Args:
        config: The proxy config (already loaded and checked by the caller).
        host: The address to bind.
        port: The port (0 picks a free one; ``on_ready`` is told which).
        workers: How many worker processes.
        command: The worker command line without the worker option (``python -m rxllm serve ...``).
        on_ready: Called with the bound host and port once every worker accepts connections.

    Returns:
        The supervisor's exit status: 0 after a clean stop, 1 when workers had to be killed.

    Raises:
        OSError: The socket cannot be bound.
        WorkerStartError: A worker could not be started, or exited before it was first ready.
    """
    sock = bind_socket(host, port, config.listen_backlog)
    bound = int(sock.getsockname()[1])
    if config.redis_url is None and workers > 1:
        message = (
            f"no router_settings.redis_url: rpm, tpm and max_parallel_requests limits, cooldowns and least-busy "
            f"counts are kept per worker, so {workers} workers admit up to {workers} times each limit"
        )
        if config.resumable_streams:
            message += "; a resumed stream is found only when the reconnect reaches the worker that started it"
        _log.warning("rxllm.proxy.limits_per_worker", workers=workers, message=message)
    try:
        supervisor = Supervisor(command, sock, workers, stop_timeout=config.shutdown_grace_period + STOP_MARGIN)
    except BaseException:
        sock.close()
        raise

    def ready() -> None:
        if on_ready is not None:
            on_ready(host, bound)

    return asyncio.run(supervisor.run(ready))


def run_worker(config: ProxyConfig, spec: str, host: str) -> None:
    """The body of a worker process: serve ``config`` on the inherited socket until told to stop.

    The worker stops (gracefully, as on SIGTERM) when its control socket reaches end-of-file,
    which is when the supervisor has gone.

    Args:
        config: The proxy config.
        spec: ``INDEX:SOCKET_FD:CONTROL_FD`` from the supervisor.
        host: The host the supervisor bound (for the app's own records).

    Raises:
        ValueError: ``spec`` is not what a supervisor passes.
    """
    try:
        index, sock_fd, control_fd = (int(part) for part in spec.split(":"))
    except ValueError:
        raise ValueError(f"{WORKER_OPTION} takes INDEX:SOCKET_FD:CONTROL_FD, got {spec!r}") from None
    sock = socket.socket(fileno=sock_fd)
    control = socket.socket(fileno=control_fd)
    for inherited in (sock, control):
        inherited.set_inheritable(False)  # this worker's own children (none today) must not hold them
    try:
        eventloop.run(_work(config, host, sock, control, index), config.event_loop)
    finally:
        control.close()
        sock.close()


async def _work(config: ProxyConfig, host: str, sock: socket.socket, control: socket.socket, index: int) -> None:
    from rxllm.proxy.app import serve

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    control.setblocking(False)

    def readable() -> None:
        try:
            data = control.recv(64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(control.fileno())
            if not stop.is_set():
                _log.warning("rxllm.proxy.supervisor_lost", worker=index, action="draining and exiting")
                stop.set()

    def ready(_host: str, _port: int) -> None:
        with contextlib.suppress(OSError):
            control.send(_READY)

    loop.add_reader(control.fileno(), readable)
    try:
        await serve(config, host, int(sock.getsockname()[1]), on_ready=ready, stop=stop, sock=sock, worker=index)
    finally:
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(control.fileno())
