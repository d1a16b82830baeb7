"""Fixtures for the dialect tests: a local server that feeds encoded bytes to the official SDKs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from providers.provider_support import ReplayServer

from rxllm.providers._http import aclose_sessions
from tests.dialects.dialect_support import BodyServer


@pytest.fixture
async def body_server(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> AsyncIterator[BodyServer]:
    """A :class:`BodyServer` on a free local port."""
    bodies = BodyServer()
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", bodies.handle)
    server = await aiohttp_server(app)
    bodies.url = str(server.make_url("")).rstrip("/")
    yield bodies
    for made in bodies.clients:
        await made.close()


@pytest.fixture
async def replay(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> AsyncIterator[ReplayServer]:
    """A local server replaying recorded provider bodies (rxllm's providers read from it)."""
    server = ReplayServer()
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", server.handle)
    test_server = await aiohttp_server(app)
    server.url = str(test_server.make_url("")).rstrip("/")
    yield server
    server.release.set()
    await aclose_sessions()
