"""Helpers shared by the tests (importable as tests.support)."""

from __future__ import annotations

import asyncio
import threading
import time

from rxllm.loop import THREAD_NAME


def rxllm_threads() -> list[threading.Thread]:
    """Threads other than the main thread and rxllm's single loop thread."""
    return [
        t
        for t in threading.enumerate()
        if t is not threading.main_thread() and t.name != THREAD_NAME and not t.name.startswith("asyncio_")
    ]


def wait_for(predicate, timeout: float = 2.0) -> bool:  # type: ignore[no-untyped-def]
    """Poll a condition that another thread makes true (disposal crosses to rxllm's loop)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.001)
    return predicate()


async def settle() -> None:
    """Let the running loop process pending callbacks (cancellations, closes)."""
    for _ in range(5):
        await asyncio.sleep(0)
