"""Which event loop ``rxllm serve`` runs on: the standard asyncio loop, or uvloop.

A proxy spends much of its CPU in the event loop itself: accepting connections, one
``recv`` and one ``send`` per chunk, timers. uvloop (libuv, ``pip install 'rxllm[uvloop]'``)
does that work in C; ``general_settings.event_loop`` picks it:

- ``asyncio`` (the default): the standard library's loop, nothing extra needed;
- ``uvloop``: uvloop, and a :class:`~rxllm.proxy.config.ConfigError` naming the extra when it
  is not installed (checked when the config is loaded, before any socket is bound);
- ``auto``: uvloop when it is installed, else asyncio.

The library side of rxllm (``completion``, ``stream``) runs on whatever loop its caller
runs; this module only chooses the loop of the server process (and of each ``--workers``
process).
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

__all__ = ["EVENT_LOOPS", "loop_factory", "run", "running_loop_name", "uvloop_installed"]

_T = TypeVar("_T")

#: The values of ``general_settings.event_loop``.
EVENT_LOOPS: Final = ("asyncio", "uvloop", "auto")


def uvloop_installed() -> bool:
    """Whether uvloop can be imported (without importing it)."""
    try:
        return importlib.util.find_spec("uvloop") is not None
    except (ImportError, ValueError):
        return False


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory of the loop ``choice`` names, or ``None`` for the standard one.

    Args:
        choice: One of :data:`EVENT_LOOPS` (already validated by the config).

    Raises:
        ValueError: ``choice`` is not one of :data:`EVENT_LOOPS`.
        ImportError: ``choice`` is ``"uvloop"`` and uvloop is not installed.
    """
    if choice not in EVENT_LOOPS:
        raise ValueError(f"event_loop must be one of {', '.join(EVENT_LOOPS)}, got {choice!r}")
    if choice == "asyncio" or (choice == "auto" and not uvloop_installed()):
        return None
    try:
        import uvloop
    except ImportError as exc:
        raise ImportError("event_loop: uvloop needs uvloop: pip install 'rxllm[uvloop]'") from exc
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def running_loop_name() -> str:
    """``"uvloop"`` or ``"asyncio"``: which loop the calling coroutine runs on."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.split(".", 1)[0] == "uvloop" else "asyncio"


def run(main: Coroutine[Any, Any, _T], choice: str) -> _T:
    """``asyncio.run(main)`` on the loop ``choice`` names (see :func:`loop_factory`)."""
    try:
        factory = loop_factory(choice)
    except BaseException:
        main.close()  # never started: no "coroutine was never awaited" warning
        raise
    if factory is None:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
