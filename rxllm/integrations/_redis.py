"""One way to reach Redis for every rxllm integration: lazy import, one client per event loop.

redis-py's asyncio client binds its connections to the loop that opened them, so a client is
kept per loop (rxllm's background loop and an application's loop each get their own). The
client fails fast when the server is away (short connect timeout, one immediate reconnect
attempt, no backoff): callers fall back rather than wait. The URL's password never appears in
a message, a log line or a repr: :func:`describe` gives ``host:port/db`` only.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from rxllm.errors import APIError

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisClients", "describe", "redis_errors", "require_redis", "unreachable"]


def require_redis() -> Any:
    """The ``redis.asyncio`` module.

    Raises:
        ImportError: redis-py is not installed; the message names the extra to install.
    """
    try:
        import redis.asyncio as aioredis
    except ImportError as exc:  # pragma: no cover - the test environment has it
        raise ImportError("rxllm's Redis integration needs the redis package: pip install 'rxllm[redis]'") from exc
    return aioredis


def redis_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "Redis is unreachable or misbehaving" (plus OS-level ones)."""
    import redis.exceptions

    return (redis.exceptions.RedisError, OSError, asyncio.TimeoutError)


def describe(url: str) -> str:
    """``host:port/db`` of a Redis URL, with no user name or password."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = parts.port or 6379
    db = parts.path.lstrip("/") or "0"
    return f"{host}:{port}/{db}"


class RedisClients:
    """A Redis client per event loop for one URL (or one given client, used as is).

    Args:
        url: ``redis://[:password@]host:port/db`` (``rediss://`` for TLS).
        client: A ready ``redis.asyncio.Redis``; the caller owns its loop and its closing.
        socket_timeout: Seconds a reply may take (blocking reads must ask for less).
        connect_timeout: Seconds to connect.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | None = None,
        socket_timeout: float = 5.0,
        connect_timeout: float = 1.0,
    ) -> None:
        if url is None and client is None:
            raise ValueError("give a Redis url or a client")
        self._url = url
        self._given = client
        self._socket_timeout = socket_timeout
        self._connect_timeout = connect_timeout
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Redis] = weakref.WeakKeyDictionary()
        self.where = describe(url) if url is not None else "the given client"

    def __repr__(self) -> str:
        return f"RedisClients({self.where})"

    def get(self) -> Any:
        """The client for the running loop (created on first use).

        Typed ``Any``: redis-py's reply types are unions callers narrow themselves.
        """
        if self._given is not None:
            return self._given
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            aioredis = require_redis()
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            assert self._url is not None
            client = aioredis.Redis.from_url(
                self._url,
                socket_timeout=self._socket_timeout,
                socket_connect_timeout=self._connect_timeout,
                retry=Retry(NoBackoff(), 1),
                health_check_interval=0,
            )
            self._clients[loop] = client
        return client

    async def aclose(self) -> None:
        """Close the running loop's client (a given client is left to its owner)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - always called from a coroutine
            return
        client = self._clients.pop(loop, None)
        if client is not None:
            await client.aclose()


def unreachable(where: str, exc: BaseException, cls: type[APIError]) -> APIError:
    """A typed error saying Redis at ``where`` failed (the exception's class, not its text)."""
    return cls(f"Redis at {where} is unreachable or failed ({type(exc).__name__})")
