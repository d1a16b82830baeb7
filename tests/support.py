"""Helpers shared by the tests (on the path as `support`: pytest adds tests/ to sys.path)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest

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


def fixtures_dir() -> Path:
    """Where the recorded provider streams live: ``$RXLLM_FIXTURES`` or ``../shared/fixtures``.

    They are licensed test data kept outside the repository. Where they are absent (a user's
    clone) the calling test is skipped with the reason; CI sets ``RXLLM_REQUIRE_FIXTURES=1``,
    which turns their absence into a failure.
    """
    repo = Path(__file__).resolve().parent.parent
    path = Path(os.environ.get("RXLLM_FIXTURES") or repo.parent / "shared" / "fixtures")
    if not (path / "README.md").is_file():
        reason = f"recorded provider fixtures not found at {path} (set RXLLM_FIXTURES)"
        if os.environ.get("RXLLM_REQUIRE_FIXTURES"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path
