"""Shared test fixtures: leak accounting for tasks, threads and pump tasks; a real Redis."""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Iterator

import pytest
from redis_support import RedisServer, missing_redis, remove, start_redis_server
from support import rxllm_threads, wait_for

import rxllm
from rxllm.loop import THREAD_NAME
from rxllm.streams import live_pump_tasks

# The tests exercise the installed package. A subprocess started from the repository root
# (python -m rxllm, python -c, the notebook kernel) would otherwise put the source tree first on
# sys.path, where operators/ is not mapped to rxllm.operators: PYTHONSAFEPATH (3.11+) stops that.
os.environ["PYTHONSAFEPATH"] = "1"


@pytest.fixture
def no_leaks() -> Iterator[None]:
    """Fail the test if it leaves a pump task running or starts a thread that outlives it."""
    before = {t.ident for t in rxllm_threads()}
    yield
    gc.collect()
    assert wait_for(lambda: live_pump_tasks() == 0), f"{live_pump_tasks()} pump task(s) still running"
    extra = [t for t in rxllm_threads() if t.ident not in before]
    assert not extra, f"threads outlived the test: {extra}"
    loop_threads = [t for t in threading.enumerate() if t.name == THREAD_NAME]
    assert len(loop_threads) <= 1, "rxllm started more than one loop thread"


@pytest.fixture(autouse=True)
def _restore_providers() -> Iterator[None]:
    """register_provider() is global: a test's custom providers must not leak into the next test."""
    from rxllm import providers

    custom, cache = dict(providers._CUSTOM), dict(providers._CACHE)
    yield
    providers._CUSTOM.clear()
    providers._CUSTOM.update(custom)
    providers._CACHE.clear()
    providers._CACHE.update(cache)


@pytest.fixture(autouse=True)
def _restore_prices() -> Iterator[None]:
    """register_model() changes the process's price table: restore it after each test."""
    from rxllm import pricing

    saved = {name: dict(entry) for name, entry in pricing.model_cost.items()}
    yield
    pricing.model_cost.clear()
    pricing.model_cost.update(saved)


@pytest.fixture(autouse=True)
def _reset_settings() -> Iterator[None]:
    """Module-level settings are global: restore them after every test."""
    limit = rxllm.REPEATED_STREAMING_CHUNK_LIMIT
    success, failure = list(rxllm.success_callback), list(rxllm.failure_callback)
    yield
    rxllm.REPEATED_STREAMING_CHUNK_LIMIT = limit
    rxllm.success_callback[:] = success
    rxllm.failure_callback[:] = failure


@pytest.fixture(autouse=True)
def _unconfigure_structlog() -> Iterator[None]:
    """A test that configures structlog (an in-process ``rxllm serve``/``chat``, a README example)
    must not leave it configured: rxllm logs through structlog only where the application did."""
    import structlog

    was_configured = structlog.is_configured()
    yield
    if not was_configured and structlog.is_configured():
        structlog.reset_defaults()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server for this test session (skipped, or failed in CI, when absent)."""
    server = start_redis_server()
    if isinstance(server, str):
        missing_redis(server)
        return
    try:
        yield server
    finally:
        remove(server)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, running and empty at the start of the test."""
    redis_server.flush()
    return redis_server.url
