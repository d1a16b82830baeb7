"""The router's bookkeeping behind one interface: per worker in memory, or shared in Redis.

The router asks four things per request: is a deployment under its limits (rpm, tpm), is it
cooling down after a failure, how busy is it (in-flight attempts, for least-busy routing),
and is the proxy under its global concurrency limit. :class:`RouterState` answers them.

- :class:`LocalState` is what the router always did: a few integers and deques per deployment
  in this process. **It is per worker**: four workers with ``rpm: 100`` let through 400.
- :class:`RedisState` (``router_settings.redis_url``) makes every answer global, exact across
  workers and instances: admission to a deployment with an rpm/tpm limit and to the global
  concurrency limit is one atomic Lua script (check and count cannot interleave with another
  instance's). Nothing else waits on Redis: in-flight counts, releases, cooldowns and token
  counts are written by one background writer per instance, in order, batched into one round
  trip; cooldowns and other instances' in-flight counts are read into a short in-process
  cache (``router_settings.redis_cache_ttl``, 0.1 s) that ``plan`` consults. Each instance
  keeps its own in-flight counts under its own key and rewrites their absolute values every
  heartbeat, so a Redis restart (which forgets everything) converges to the truth within one
  heartbeat, and a dead instance's counts expire with its key.

When Redis is unreachable, at start or mid-run, :class:`RedisState` falls back to its
in-process counters (logging ``rxllm.proxy.shared_state_unavailable`` once, a warning): every
request that would have been served without Redis is served, with per-worker limits. It
probes Redis every heartbeat and, once it answers, logs ``rxllm.proxy.shared_state_recovered``,
rewrites this instance's counts and goes back to shared state by itself.

Redis keys (prefix ``rxllm:router:``): ``rpm:{id}`` / ``tpm:{id}`` sorted sets (sliding
one-minute windows on the Redis server's clock), ``cool:{id}`` (a key with the cooldown as
its TTL), ``inst:{instance}`` (a hash of this instance's in-flight counts) and ``instances``.
The scripts read the instance hashes by name, so this needs a single Redis (not a cluster).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

from rxllm._log import get_logger
from rxllm.integrations._redis import RedisClients, redis_errors
from rxllm.proxy.config import Deployment

__all__ = ["WINDOW", "Counters", "LocalState", "RedisState", "RouterState"]

_log = get_logger("rxllm.proxy")

#: The rate windows' length in seconds.
WINDOW: Final = 60.0


class Counters(Protocol):
    """What the state keeps per deployment in this process (the router's DeploymentState)."""

    deployment: Deployment
    in_flight: int
    starts: deque[float]
    tokens: deque[tuple[float, int]]
    failed_at: float | None


def _prune(counters: Counters, now: float) -> None:
    starts = counters.starts
    while starts and now - starts[0] >= WINDOW:
        starts.popleft()
    tokens = counters.tokens
    while tokens and now - tokens[0][0] >= WINDOW:
        tokens.popleft()


def _local_wait(counters: Counters, now: float) -> float | None:
    """Seconds until ``counters`` is under its limits again; ``None`` if it is now."""
    _prune(counters, now)
    deployment = counters.deployment
    waits: list[float] = []
    if deployment.rpm is not None and len(counters.starts) >= deployment.rpm:
        waits.append(WINDOW - (now - counters.starts[0]) if counters.starts else WINDOW)
    if deployment.tpm is not None and sum(n for _, n in counters.tokens) >= deployment.tpm:
        waits.append(WINDOW - (now - counters.tokens[0][0]) if counters.tokens else WINDOW)
    return max(waits) if waits else None


class RouterState:
    """Rate windows, cooldowns, in-flight counts and the global concurrency count.

    The synchronous methods answer from memory (the hot path never waits on them); the
    ``async`` ones may ask a shared store. Every method is called on the proxy's loop.

    Args:
        clock: Monotonic seconds (tests pass a fake one).
    """

    #: Whether the limits hold per worker (in-process state) rather than across all of them.
    per_worker: bool = True

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.global_in_flight = 0

    # -- what plan() reads (memory only)

    def in_flight(self, counters: Counters) -> int:
        """Attempts in flight on the deployment (everywhere, when shared)."""
        return counters.in_flight

    def cooling(self, counters: Counters, now: float, cooldown: float) -> bool:
        """Whether the deployment failed less than ``cooldown`` seconds ago (anywhere, when shared)."""
        return counters.failed_at is not None and now - counters.failed_at < cooldown

    def wait(self, counters: Counters, now: float) -> float | None:
        """Seconds until the deployment is under its rpm/tpm limits; ``None``: it is now."""
        return _local_wait(counters, now)

    # -- admission and release

    async def refresh(self, group: Sequence[Counters]) -> None:
        """Bring the cached view of ``group`` up to date (before a plan)."""

    def start_now(self, counters: Counters) -> bool:
        """Count an attempt in this process if it fits under the local limits."""
        now = self.clock()
        if _local_wait(counters, now) is not None:
            return False
        if counters.deployment.rpm is not None:
            counters.starts.append(now)
        counters.in_flight += 1
        return True

    async def start(self, counters: Counters) -> bool:
        """Count an attempt if the deployment is under its limits (atomically, when shared)."""
        return self.start_now(counters)

    def finish(self, counters: Counters, *, failed: bool) -> None:
        """An attempt ended; a failure starts the deployment's cooldown (a success ends it)."""
        counters.in_flight -= 1
        counters.failed_at = self.clock() if failed else None

    def add_tokens(self, counters: Counters, tokens: int) -> None:
        """Count ``tokens`` against the deployment's tpm window."""
        if counters.deployment.tpm is not None and tokens > 0:
            counters.tokens.append((self.clock(), tokens))

    async def enter(self, limit: int) -> bool:
        """Take a global concurrency slot if fewer than ``limit`` are taken (everywhere, when shared)."""
        if self.global_in_flight >= limit:
            return False
        self.global_in_flight += 1
        return True

    def leave(self) -> None:
        """Give a global concurrency slot back."""
        self.global_in_flight -= 1

    # -- lifecycle

    async def start_background(self, deployments: Sequence[Counters]) -> None:
        """Start whatever runs in the background (the Redis heartbeat)."""

    async def flush(self) -> None:
        """Wait until every write issued so far has reached the shared store (tests, shutdown)."""

    async def aclose(self) -> None:
        """Stop the background work and close connections."""


class LocalState(RouterState):
    """Today's bookkeeping in this process's memory: limits and counts hold **per worker**.

    With ``--workers 4`` (or four instances), ``rpm: 100`` lets through up to 400 a minute and
    each worker balances only its own requests; configure ``router_settings.redis_url`` for
    limits that hold across all of them (:class:`RedisState`).
    """


# --------------------------------------------------------------------------- Redis

_ACQUIRE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2])
if rpm >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 60000)
  if redis.call('ZCARD', KEYS[1]) >= rpm then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    if #oldest == 0 then return {0, 60000} end
    return {0, 60000 - (now - tonumber(oldest[2]))}
  end
end
if tpm >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 60000)
  local used = 0
  for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    used = used + tonumber(string.match(m, ':(%d+)$'))
  end
  if used >= tpm then
    local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    if #oldest == 0 then return {0, 60000} end
    return {0, 60000 - (now - tonumber(oldest[2]))}
  end
end
if rpm >= 0 then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], 61000)
end
redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
redis.call('PEXPIRE', KEYS[3], ARGV[5])
redis.call('SADD', KEYS[4], ARGV[6])
return {1, 0}
"""

_ENTER: Final = """
local total = 0
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local v = redis.call('HGET', ARGV[3] .. id, 'g')
  if v then
    total = total + tonumber(v)
  elseif redis.call('EXISTS', ARGV[3] .. id) == 0 then
    redis.call('SREM', KEYS[1], id)
  end
end
if total >= tonumber(ARGV[1]) then return 0 end
redis.call('HINCRBY', KEYS[2], 'g', 1)
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('SADD', KEYS[1], ARGV[2])
return 1
"""

_RELEASE: Final = """
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) < 0 then redis.call('HSET', KEYS[1], ARGV[1], 0) end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if ARGV[2] == '1' then
  if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[2], '1', 'PX', ARGV[3]) end
elseif ARGV[2] == '0' then
  redis.call('DEL', KEYS[2])
end
return 1
"""

_TOKENS: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], 61000)
return 1
"""

_SYNC: Final = """
redis.call('DEL', KEYS[1])
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
return 1
"""

_READ: Final = """
local ids = redis.call('SMEMBERS', KEYS[1])
local out = {}
for i = 3, #ARGV do
  local total = 0
  for _, id in ipairs(ids) do
    local v = redis.call('HGET', ARGV[1] .. id, 'd:' .. ARGV[i])
    if v then total = total + tonumber(v) end
  end
  out[#out + 1] = total
  out[#out + 1] = redis.call('PTTL', ARGV[2] .. ARGV[i])
end
return out
"""


class _Op:
    """One queued Redis call: a script, its keys and args, and (if awaited) its future."""

    __slots__ = ("args", "future", "keys", "script")

    def __init__(self, script: str, keys: list[str], args: list[Any], future: asyncio.Future[Any] | None) -> None:
        self.script = script
        self.keys = keys
        self.args = args
        self.future = future


class _Cached:
    """The cached shared view of one deployment."""

    __slots__ = ("cooling_until", "full_until", "others")

    def __init__(self) -> None:
        self.others = 0  # attempts in flight on other instances
        self.cooling_until = 0.0
        self.full_until = 0.0


class RedisState(RouterState):
    """Router state shared through Redis, exact across workers and instances.

    Args:
        url: ``redis://[:password@]host:port/db`` (never shown).
        cooldown: Seconds a failed deployment cools down (``cooldown_time``).
        cache_ttl: Seconds the cached shared view is trusted before ``plan`` reads it again.
        heartbeat: Seconds between rewrites of this instance's counts (and recovery probes).
        prefix: Prepended to every key.
        clock: Monotonic seconds.
        client: A ready ``redis.asyncio.Redis`` instead of ``url``.
    """

    per_worker = False

    def __init__(
        self,
        url: str | None = None,
        *,
        cooldown: float = 5.0,
        cache_ttl: float = 0.1,
        heartbeat: float = 1.0,
        prefix: str = "rxllm:router:",
        clock: Callable[[], float] = time.monotonic,
        client: Any = None,
    ) -> None:
        super().__init__(clock)
        self._clients = RedisClients(url, client=client, socket_timeout=2.0, connect_timeout=0.5)
        self._cooldown_ms = int(cooldown * 1000)
        self._cache_ttl = cache_ttl
        self._heartbeat = heartbeat
        self._prefix = prefix
        self.instance = uuid.uuid4().hex[:16]
        self._own = f"{prefix}inst:{self.instance}"
        self._instances = f"{prefix}instances"
        self._ttl_ms = max(3000, int(heartbeat * 3000))
        self._cache: dict[str, _Cached] = {}
        self._refreshed: dict[int, float] = {}
        self._known: dict[str, Counters] = {}
        self._queue: list[_Op] = []
        self._wake: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._beat: asyncio.Task[None] | None = None
        self._idle: asyncio.Event | None = None
        self._scripts: dict[str, Any] = {}
        #: Whether Redis answered the last call (False: the in-process fallback is in use).
        self.healthy = True
        self._down_since: float | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"RedisState({self._clients.where}, instance={self.instance!r}, healthy={self.healthy})"

    # -- the writer: one ordered queue per instance, batched into one round trip

    def _ensure_writer(self) -> None:
        if self._writer is None or self._writer.done():
            self._wake = asyncio.Event()
            self._idle = asyncio.Event()
            self._writer = asyncio.get_running_loop().create_task(self._write_loop(), name="rxllm-router-state")

    def _submit(self, script: str, keys: list[str], args: list[Any], *, wait: bool) -> asyncio.Future[Any] | None:
        self._ensure_writer()
        future = asyncio.get_running_loop().create_future() if wait else None
        self._queue.append(_Op(script, keys, args, future))
        assert self._wake is not None and self._idle is not None
        self._idle.clear()
        self._wake.set()
        return future

    def _script(self, client: Any, source: str) -> Any:
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = client.register_script(source)
        return script

    async def _write_loop(self) -> None:
        assert self._wake is not None and self._idle is not None
        errors = redis_errors()
        task = asyncio.current_task()
        while not self._closed:
            if task is not None and task.cancelling():
                raise asyncio.CancelledError  # redis-py may turn a cancellation into an error
            if not self._queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            batch, self._queue = self._queue, []
            try:
                client = self._clients.get()
                async with client.pipeline(transaction=False) as pipe:
                    for op in batch:
                        await self._script(client, op.script)(keys=op.keys, args=op.args, client=pipe)
                    results = await pipe.execute(raise_on_error=False)
                if len(results) != len(batch):  # pragma: no cover - a redis-py contract
                    raise RuntimeError(f"{len(results)} replies for {len(batch)} calls")
            except BaseException as exc:
                for op in batch:
                    if op.future is not None and not op.future.done():
                        op.future.set_exception(_Down())
                if isinstance(exc, asyncio.CancelledError):
                    raise
                if isinstance(exc, errors):
                    self._unavailable(exc)
                else:  # never a silent hang: say so, keep writing
                    _log.error("rxllm.proxy.shared_state_error", error=type(exc).__name__)
                continue
            for op, result in zip(batch, results, strict=True):
                if op.future is not None and not op.future.done():
                    if isinstance(result, BaseException):
                        op.future.set_exception(_Down())
                    else:
                        op.future.set_result(result)
            self._recovered()

    def _unavailable(self, exc: BaseException) -> None:
        if self.healthy:
            self.healthy = False
            self._down_since = self.clock()
            _log.warning(
                "rxllm.proxy.shared_state_unavailable",
                redis=self._clients.where,
                error=type(exc).__name__,
                fallback="in-process limits (per worker) until Redis answers again",
            )

    def _recovered(self) -> None:
        if not self.healthy:
            self.healthy = True
            down = self._down_since
            self._down_since = None
            _log.warning(
                "rxllm.proxy.shared_state_recovered",
                redis=self._clients.where,
                down_for=None if down is None else round(self.clock() - down, 3),
            )

    async def flush(self) -> None:
        """Wait until every queued write has been sent (or failed)."""
        if self._writer is None or self._idle is None:
            return
        while self._queue or not self._idle.is_set():
            await self._idle.wait()

    # -- the heartbeat: absolute counts (convergence after a restart) and recovery probes

    def _sync_args(self) -> list[Any]:
        args: list[Any] = [self._ttl_ms, self.instance, "g", self.global_in_flight]
        for deployment_id, counters in self._known.items():
            args += [f"d:{deployment_id}", counters.in_flight]
        return args

    def sync(self) -> asyncio.Future[Any] | None:
        """Queue a rewrite of this instance's absolute counts; the future resolves when done."""
        return self._submit(_SYNC, [self._own, self._instances], self._sync_args(), wait=True)

    async def start_background(self, deployments: Sequence[Counters]) -> None:
        """Remember the deployments, write this instance's counts, start the heartbeat."""
        for counters in deployments:
            self._known[counters.deployment.id] = counters
        future = self.sync()
        if future is not None:
            try:
                await future
            except _Down:
                pass
        if self._beat is None:
            self._beat = asyncio.get_running_loop().create_task(self._beat_loop(), name="rxllm-router-heartbeat")

    async def _beat_loop(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat)
            future = self.sync()
            if future is not None:
                try:
                    await future
                except _Down:
                    pass

    async def aclose(self) -> None:
        """Stop the heartbeat and the writer (pending writes are sent first), close connections."""
        beat, self._beat = self._beat, None
        if beat is not None:
            beat.cancel()
            try:
                await beat
            except asyncio.CancelledError:
                pass
        if self._writer is not None and self.healthy:
            errors: tuple[type[BaseException], ...] = (TimeoutError, *redis_errors())
            try:
                async with asyncio.timeout(2.0):
                    # this instance's counts go now, not at their key's expiry
                    await self.flush()
                    client = self._clients.get()
                    await client.delete(self._own)
                    await client.srem(self._instances, self.instance)
            except errors:
                pass
        self._closed = True
        if self._wake is not None:
            self._wake.set()
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
            try:
                await writer
            except asyncio.CancelledError:
                pass
        await self._clients.aclose()

    # -- the cached view

    def _view(self, deployment_id: str) -> _Cached:
        cached = self._cache.get(deployment_id)
        if cached is None:
            cached = self._cache[deployment_id] = _Cached()
        return cached

    def in_flight(self, counters: Counters) -> int:
        """This instance's attempts plus the others' (as last read)."""
        if not self.healthy:
            return counters.in_flight
        return counters.in_flight + self._view(counters.deployment.id).others

    def cooling(self, counters: Counters, now: float, cooldown: float) -> bool:
        """Cooling here, or (as last read) anywhere."""
        if super().cooling(counters, now, cooldown):
            return True
        return self.healthy and self._view(counters.deployment.id).cooling_until > now

    def wait(self, counters: Counters, now: float) -> float | None:
        """Local windows while Redis is away; else what Redis last said (admission decides)."""
        if not self.healthy:
            return _local_wait(counters, now)
        full_until = self._view(counters.deployment.id).full_until
        return full_until - now if full_until > now else None

    async def refresh(self, group: Sequence[Counters]) -> None:
        """Read the group's cooldowns and in-flight counts if the cache is older than ``cache_ttl``."""
        if not self.healthy or not group:
            return
        now = self.clock()
        token = id(group)
        if now - self._refreshed.get(token, -1e18) < self._cache_ttl:
            return
        self._refreshed[token] = now
        ids = [c.deployment.id for c in group]
        mine = [c.in_flight for c in group]
        future = self._submit(
            _READ, [self._instances], [f"{self._prefix}inst:", f"{self._prefix}cool:", *ids], wait=True
        )
        assert future is not None
        try:
            reply = await future
        except _Down:
            return
        now = self.clock()
        for i, counters in enumerate(group):
            cached = self._view(counters.deployment.id)
            total, pttl = int(reply[2 * i]), int(reply[2 * i + 1])
            cached.others = max(0, total - mine[i])
            cached.cooling_until = now + pttl / 1000 if pttl > 0 else 0.0

    # -- admission and release

    def _key(self, kind: str, deployment_id: str) -> str:
        return f"{self._prefix}{kind}:{deployment_id}"

    async def start(self, counters: Counters) -> bool:
        """Admit atomically in Redis when the deployment has a limit; count locally either way."""
        deployment = counters.deployment
        self._known.setdefault(deployment.id, counters)
        if not self.healthy:
            return self.start_now(counters)
        limited = deployment.rpm is not None or deployment.tpm is not None
        args = [
            -1 if deployment.rpm is None else deployment.rpm,
            -1 if deployment.tpm is None else deployment.tpm,
            f"d:{deployment.id}",
            uuid.uuid4().hex,
            self._ttl_ms,
            self.instance,
        ]
        keys = [self._key("rpm", deployment.id), self._key("tpm", deployment.id), self._own, self._instances]
        if not limited:
            # nothing to check: count it without waiting (the writer sends it in order)
            self._submit(_ACQUIRE, keys, args, wait=False)
            counters.in_flight += 1
            return True
        future = self._submit(_ACQUIRE, keys, args, wait=True)
        assert future is not None
        try:
            admitted, wait_ms = await future
        except _Down:
            return self.start_now(counters)
        now = self.clock()
        if not admitted:
            self._view(deployment.id).full_until = now + max(0.0, float(wait_ms)) / 1000
            return False
        if deployment.rpm is not None:
            counters.starts.append(now)  # the local window stays warm for a fallback
        counters.in_flight += 1
        return True

    def finish(self, counters: Counters, *, failed: bool) -> None:
        """Release locally now; the shared count and cooldown follow through the writer."""
        super().finish(counters, failed=failed)
        if not self.healthy:
            return
        deployment_id = counters.deployment.id
        cached = self._view(deployment_id)
        if failed:
            cached.cooling_until = max(cached.cooling_until, self.clock() + self._cooldown_ms / 1000)
        else:
            cached.cooling_until = 0.0
        self._submit(
            _RELEASE,
            [self._own, self._key("cool", deployment_id)],
            [f"d:{deployment_id}", "1" if failed else "0", self._cooldown_ms, self._ttl_ms],
            wait=False,
        )

    def add_tokens(self, counters: Counters, tokens: int) -> None:
        """Count tokens locally and (without waiting) in the shared tpm window."""
        super().add_tokens(counters, tokens)
        if self.healthy and counters.deployment.tpm is not None and tokens > 0:
            member = f"{uuid.uuid4().hex}:{int(tokens)}"
            self._submit(_TOKENS, [self._key("tpm", counters.deployment.id)], [member], wait=False)

    async def enter(self, limit: int) -> bool:
        """Take a global slot: atomically across every instance, or locally while Redis is away."""
        if not self.healthy:
            return await super().enter(limit)
        future = self._submit(
            _ENTER,
            [self._instances, self._own],
            [limit, self.instance, f"{self._prefix}inst:", self._ttl_ms],
            wait=True,
        )
        assert future is not None
        try:
            admitted = await future
        except _Down:
            return await super().enter(limit)
        if not admitted:
            return False
        self.global_in_flight += 1
        return True

    def leave(self) -> None:
        """Give the slot back here and (without waiting) in Redis."""
        super().leave()
        if self.healthy:
            self._submit(_RELEASE, [self._own, self._key("none", "")], ["g", "-", 0, self._ttl_ms], wait=False)


class _Down(Exception):
    """Internal: the Redis call did not happen (the caller falls back to local state)."""
