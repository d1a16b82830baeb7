"""Small shared pieces: peer detection, an offline environment for peers, process CPU and memory."""

from __future__ import annotations

import functools
import importlib.util
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_TICKS = os.sysconf("SC_CLK_TCK")

#: Environment for every benchmark process: LiteLLM never phones home (no telemetry, the
#: bundled cost map and beta-header list instead of fetching them), and any HTTP(S) request
#: that is not for 127.0.0.1 goes to a dead local proxy port instead of the network.
OFFLINE_ENV = {
    "LITELLM_TELEMETRY": "False",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOG": "ERROR",
    "DISABLE_SCHEMA_UPDATE": "True",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "NO_PROXY": "127.0.0.1,localhost",
    "OPENAI_API_KEY": "sk-bench-not-a-key",
    "TOKENIZERS_PARALLELISM": "false",
}


def apply_offline_env() -> None:
    """Set :data:`OFFLINE_ENV` in this process (before any peer is imported)."""
    os.environ.update(OFFLINE_ENV)


@functools.cache
def _benchmarks_shelf() -> str:
    """A directory holding only a link to ``benchmarks/``, for child processes' PYTHONPATH.

    Putting the repository root there instead would put its ``rxllm/`` source tree before the
    installed package, where ``operators/`` is not mapped to ``rxllm.operators``.
    """
    shelf = Path(tempfile.mkdtemp(prefix="rxllm-bench-path-"))
    (shelf / "benchmarks").symlink_to(Path(__file__).resolve().parent, target_is_directory=True)
    return str(shelf)


def child_env() -> dict[str, str]:
    """The environment for child processes: offline, and ``benchmarks`` importable."""
    env = {**os.environ, **OFFLINE_ENV}
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = _benchmarks_shelf() + (os.pathsep + path if path else "")
    return env


def installed(module: str) -> bool:
    """Whether a peer package is importable (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def version(dist: str) -> str:
    try:
        from importlib.metadata import version as _version

        return _version(dist)
    except Exception:
        return "not installed"


def raise_fd_limit(want: int = 65536) -> None:
    """Allow thousands of sockets (the upstream holds one per stream of a 10,000-stream burst)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def cpu_seconds(pid: int, children: bool = True) -> float:
    """User + system CPU of a process (and, with psutil, its children: LiteLLM may fork workers)."""
    try:
        import psutil  # type: ignore[import-untyped]

        proc = psutil.Process(pid)
        procs = [proc, *(proc.children(recursive=True) if children else [])]
        total = 0.0
        for p in procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total
    except ImportError:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_mb(pid: int | None = None) -> float:
    """Resident memory in MB (``/proc``)."""
    path = Path(f"/proc/{pid or 'self'}/status")
    for line in path.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def stop_process(proc: subprocess.Popen[bytes] | None, grace: float) -> None:
    """Terminate a server process gently (SIGTERM lets profilers write their files), then kill."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def median(values: Iterable[float]) -> float:
    vals = list(values)
    return statistics.median(vals) if vals else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    vals = sorted(values)
    if not vals:
        return float("nan")
    k = min(len(vals) - 1, max(0, round(q * (len(vals) - 1))))
    return vals[k]


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None or value != value:  # None or NaN
        return "n/a"
    return f"{value:,.{digits}f}"


def table(header: Sequence[str], rows: Iterable[Sequence[str]], align: str | None = None) -> str:
    """A markdown table; ``align`` is one letter per column (``l`` or ``r``), default: first left."""
    align = align or "l" + "r" * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> str:
    """One line describing the machine and the versions measured."""
    versions = ", ".join(
        f"{name} {version(name)}" for name in ("rxllm", "aiohttp", "orjson", "reactivex", "openai", "litellm")
    )
    return (
        f"{os.cpu_count()} CPUs ({cpu_model()}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; {versions}"
    )


def run_python(code: str, cwd: str, timeout: float = 120, *, write_bytecode: bool = False) -> str:
    """Run ``python -c code`` in a fresh interpreter; its stdout.

    ``write_bytecode`` lets the child write ``__pycache__`` even when this process runs with
    ``PYTHONDONTWRITEBYTECODE`` (as an installed package has its bytecode compiled by pip).
    """
    env = child_env()
    if write_bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}")
    return out.stdout
