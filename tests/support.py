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


def fixtures_root() -> Path:
    """Where the recorded provider streams live: ``$RXLLM_FIXTURES`` or ``../shared/fixtures``.

    They are licensed test data kept outside the repository and read in place.
    """
    repo = Path(__file__).resolve().parent.parent
    return Path(os.environ.get("RXLLM_FIXTURES") or repo.parent / "shared" / "fixtures")


def missing_fixture(reason: str) -> None:
    """Skip the calling test with ``reason`` (a user's clone has no fixtures).

    CI sets ``RXLLM_REQUIRE_FIXTURES=1``, which turns the absence into a failure.
    """
    if os.environ.get("RXLLM_REQUIRE_FIXTURES"):
        pytest.fail(reason)
    pytest.skip(reason)


def fixtures_dir() -> Path:
    """The fixtures folder, or skip (fail in CI) when it is absent."""
    path = fixtures_root()
    if not (path / "README.md").is_file():
        missing_fixture(f"recorded provider fixtures not found at {path} (set RXLLM_FIXTURES)")
    return path


def fixture_path(name: str) -> Path:
    """One recorded body (``"openai/text_basic.sse"``), or skip (fail in CI) when it is absent."""
    path = fixtures_dir() / name
    if not path.is_file():
        missing_fixture(f"recorded fixture {name} not found under {path.parent} (set RXLLM_FIXTURES)")
    return path
