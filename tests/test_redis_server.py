"""The test Redis itself: a private server that answers, forgets between tests, dies and returns."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from redis_support import RedisServer, command


class TestRedisServer:
    def test_answers_ping_on_loopback_without_persistence(self, redis_server: RedisServer) -> None:
        """The session's server answers PING and saves nothing to disk."""
        assert command(redis_server.port, "PING").startswith(b"+PONG")
        save = command(redis_server.port, "CONFIG", "GET", "save")
        assert save.startswith(b"*2")
        assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"

    async def test_each_test_starts_empty(self, redis_url: str) -> None:
        """The function fixture hands out an empty database."""
        client = aioredis.from_url(redis_url)
        try:
            assert await client.dbsize() == 0
            await client.set("left-behind", "1")
        finally:
            await client.aclose()

    async def test_killed_server_refuses_then_returns_on_the_same_port(
        self, redis_server: RedisServer, redis_url: str
    ) -> None:
        """kill() makes connections fail; start() brings the server back on the same port."""
        client = aioredis.from_url(redis_url, socket_connect_timeout=1)
        port = redis_server.port
        try:
            assert await client.ping()
            redis_server.kill()

            assert not redis_server.running
            with pytest.raises((aioredis.ConnectionError, OSError)):
                await client.ping()

            redis_server.start()

            assert redis_server.port == port
            assert await client.ping()
        finally:
            await client.aclose()
            redis_server.start()


class TestAbsence:
    def test_missing_executable_gives_a_reason(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without redis-server on PATH there is no server, and the reason says what to install."""
        import redis_support

        monkeypatch.setattr(redis_support.shutil, "which", lambda name: None)

        reason = redis_support.start_redis_server()

        assert isinstance(reason, str) and "apt-get install redis-server" in reason

    def test_absence_skips_locally_and_fails_in_ci(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """missing_redis() skips; with RXLLM_REQUIRE_REDIS=1 (what .ci/run sets) it fails."""
        import redis_support

        monkeypatch.delenv("RXLLM_REQUIRE_REDIS", raising=False)
        with pytest.raises(pytest.skip.Exception):
            redis_support.missing_redis("no redis")
        monkeypatch.setenv("RXLLM_REQUIRE_REDIS", "1")
        with pytest.raises(pytest.fail.Exception):
            redis_support.missing_redis("no redis")
