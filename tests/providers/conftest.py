"""Fixtures for provider tests: a real local aiohttp server replaying recorded bodies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from providers.provider_support import ReplayServer, connections_in_use

from rxllm.providers._http import aclose_sessions


@pytest.fixture
async def server(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> AsyncIterator[ReplayServer]:
    """A local server answering every POST with the queued replies; checks for leaks afterwards.

    After the test: no connection is still checked out of rxllm's session, and once the
    session is closed no task but the test's own is left on the loop.
    """
    replay = ReplayServer()
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", replay.handle)
    test_server = await aiohttp_server(app)
    replay.url = str(test_server.make_url("")).rstrip("/")
    yield replay
    in_use = connections_in_use()
    replay.release.set()
    await aclose_sessions()
    await test_server.close()
    await asyncio.sleep(0)
    current = asyncio.current_task()
    leftover: list[Any] = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert in_use == 0, f"{in_use} HTTP connection(s) still checked out after the test"
    assert not leftover, f"tasks left running after the test: {leftover}"
