"""The one background event loop that serves synchronous callers.

Async code runs rxllm on its own running loop. Synchronous code (scripts, worker threads,
and Jupyter cells that do not ``await``, where the main thread's loop is busy running the
cell) needs a loop that is not its own: rxllm starts exactly one daemon thread for that, on
first use, and stops it at interpreter exit after closing its HTTP sessions.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["THREAD_NAME", "get_loop", "in_loop_thread", "on_shutdown", "run_sync", "shutdown"]

T = TypeVar("T")

#: The name of rxllm's loop thread (tests count threads by it).
THREAD_NAME = "rxllm-loop"

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_shutdown_hooks: list[Callable[[], Awaitable[None]]] = []


def on_shutdown(hook: Callable[[], Awaitable[None]]) -> None:
    """Have :func:`shutdown` await ``hook()`` on rxllm's loop before it stops (once per hook).

    Layers above the loop (the HTTP transport) register here, so the loop never has to know
    them: data and knowledge flow one way.
    """
    if hook not in _shutdown_hooks:
        _shutdown_hooks.append(hook)


def get_loop() -> asyncio.AbstractEventLoop:
    """rxllm's background loop, started on first use (thread-safe)."""
    global _loop, _thread
    loop = _loop
    if loop is not None and not loop.is_closed():
        return loop
    with _lock:
        if _loop is None or _loop.is_closed():
            ready = threading.Event()
            new_loop = asyncio.new_event_loop()

            def run() -> None:
                asyncio.set_event_loop(new_loop)
                new_loop.call_soon(ready.set)
                new_loop.run_forever()

            _thread = threading.Thread(target=run, name=THREAD_NAME, daemon=True)
            _thread.start()
            ready.wait()
            _loop = new_loop
        return _loop


def in_loop_thread() -> bool:
    """Whether the caller runs on rxllm's loop thread (where blocking would deadlock)."""
    return _thread is not None and threading.current_thread() is _thread


def run_sync(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """Run a coroutine on rxllm's loop and wait for its result from a synchronous caller.

    Raises:
        RuntimeError: When called from rxllm's own loop thread (it would wait forever).
    """
    if in_loop_thread():
        coro.close()
        raise RuntimeError(
            "a synchronous rxllm call was made on rxllm's own event-loop thread; "
            "use the async API (acompletion / to_async_iterator) there"
        )
    future = asyncio.run_coroutine_threadsafe(coro, get_loop())
    try:
        return future.result(timeout)
    except BaseException:
        future.cancel()
        raise


def shutdown(timeout: float = 5.0) -> None:
    """Close HTTP sessions, cancel leftover tasks and stop the loop thread (idempotent)."""
    global _loop, _thread
    with _lock:
        loop, thread = _loop, _thread
        _loop = _thread = None
    if loop is None or loop.is_closed():
        return

    async def close() -> None:
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for hook in list(_shutdown_hooks):
            try:
                await hook()
            except Exception:  # noqa: S112 - shutting down: one failing hook must not stop the rest
                continue

    if thread is not None and thread.is_alive():
        try:
            asyncio.run_coroutine_threadsafe(close(), loop).result(timeout)
        except (concurrent.futures.TimeoutError, RuntimeError):
            pass
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
    if not loop.is_running():
        loop.close()


atexit.register(shutdown)
