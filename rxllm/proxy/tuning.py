"""What ``rxllm serve`` tunes in its own process: the garbage collector and the file-descriptor limit.

A streaming proxy allocates a small object graph per request and per chunk and frees almost
all of it by reference counting; the cyclic collector's young-generation passes (every 700
net allocations by default) find next to nothing, yet cost a fifth to a third of the
proxy's CPU in a burst of short streams, and every old-generation pass walks every object
the imports made. With ``gc_tuning`` (on by default, ``general_settings.gc_tuning``):

- after start-up, :func:`gc.freeze` moves every object alive then (modules, the app, the
  config) out of the collector's view, so later collections never walk them again;
- young collections run every ``gc_gen0_threshold`` net allocations (50,000 by default)
  instead of 700; the older generations keep their ratios. Cycles are still collected, just
  in fewer, larger passes.

Each open stream holds two sockets (the client's and the upstream's), so
``global_max_parallel_requests`` concurrent streams need about twice that many file
descriptors. :func:`raise_fd_limit` raises the soft ``RLIMIT_NOFILE`` as far as the hard
limit allows (the hard limit itself is left alone: raising it is the administrator's call,
``ulimit -Hn`` or systemd's ``LimitNOFILE``) and logs ``rxllm.proxy.fd_limit`` (a warning)
when even that cannot hold the configured capacity, naming how many streams it can.
"""

from __future__ import annotations

import gc
from typing import Final

import attrs

from rxllm._log import get_logger
from rxllm.proxy.config import ProxyConfig

__all__ = ["FD_PER_STREAM", "FD_RESERVE", "FdLimit", "raise_fd_limit", "tune_gc", "tune_process"]

_log = get_logger("rxllm.proxy")

#: File descriptors one open stream holds: the client's socket and the upstream's.
FD_PER_STREAM: Final = 2
#: File descriptors kept for everything else (listening sockets, the event loop, logs, Redis).
FD_RESERVE: Final = 64


@attrs.frozen
class FdLimit:
    """The process's file-descriptor limit after :func:`raise_fd_limit`.

    Attributes:
        soft: The soft limit now in force (``-1``: unlimited, or unknown on this platform).
        hard: The hard limit (``-1``: unlimited, or unknown).
        needed: What the configured capacity needs.
        streams: Concurrent streams the soft limit holds (``-1``: no limit).
        enough: Whether ``soft`` covers ``needed``.
    """

    soft: int
    hard: int
    needed: int
    streams: int
    enough: bool


def _needed(capacity: int) -> int:
    return FD_PER_STREAM * capacity + FD_RESERVE


def raise_fd_limit(capacity: int) -> FdLimit:
    """Raise the soft ``RLIMIT_NOFILE`` toward what ``capacity`` concurrent streams need, up to the hard limit.

    Never lowers a limit and never touches the hard limit. Logs ``rxllm.proxy.fd_limit``
    (warning) when the limit stays below what ``capacity`` needs.

    Args:
        capacity: The concurrent streams the proxy is configured for
            (``global_max_parallel_requests``).

    Returns:
        The limit in force afterwards.
    """
    needed = _needed(capacity)
    try:
        import resource
    except ImportError:  # pragma: no cover - not a POSIX system: nothing to raise
        return FdLimit(-1, -1, needed, -1, True)
    infinity = resource.RLIM_INFINITY
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != infinity and soft < needed:
        target = needed if hard == infinity else min(needed, hard)
        if target > soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
            except (OSError, ValueError):
                pass  # a platform that refuses: report what is in force
    if soft == infinity:
        return FdLimit(-1, -1 if hard == infinity else hard, needed, -1, True)
    streams = max(0, (soft - FD_RESERVE) // FD_PER_STREAM)
    limit = FdLimit(soft, -1 if hard == infinity else hard, needed, streams, soft >= needed)
    if not limit.enough:
        _log.warning(
            "rxllm.proxy.fd_limit",
            soft=limit.soft,
            hard=limit.hard,
            needed=needed,
            capacity=capacity,
            streams=streams,
            message=(
                f"the file-descriptor limit ({soft}, the hard limit) holds about {streams} concurrent "
                f"streams, fewer than global_max_parallel_requests={capacity} (each needs "
                f"{FD_PER_STREAM}); streams past it fail to connect: raise the hard limit "
                "(ulimit -Hn, systemd LimitNOFILE) or lower global_max_parallel_requests"
            ),
        )
    return limit


def tune_gc(config: ProxyConfig) -> bool:
    """Freeze the objects alive now and raise the young-generation threshold (when ``config.gc_tuning``).

    Call it once start-up is done (every import made, the app built). Returns whether it tuned.
    """
    if not config.gc_tuning:
        return False
    gc.collect()  # what start-up left as garbage is freed, not frozen
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(config.gc_gen0_threshold, older, oldest)
    return True


def tune_process(config: ProxyConfig) -> FdLimit:
    """Everything :func:`~rxllm.proxy.serve` tunes before it accepts connections (see the module docstring).

    Returns:
        The file-descriptor limit in force.
    """
    limit = raise_fd_limit(config.max_parallel_requests)
    tune_gc(config)
    return limit
