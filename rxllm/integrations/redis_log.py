"""A :class:`~rxllm.stream_log.StreamLog` on Redis Streams: resumable from any process or machine.

Each stream key is one Redis Stream, ``rxllm:stream:{key}``. Entry ids carry the positions
that :mod:`rxllm.stream_log` promises: ``0-1`` marks the stream's creation, and the n-th
event is ``0-(n+1)``, so a reader's ``after=k`` is an ``XREAD`` from ``0-(k+1)`` and a gap in
the sequence (events trimmed by ``MAXLEN``) is noticed, never skipped silently. The end is one
more entry (field ``e``: how it ended). Appends are one Lua script per batch (atomic: the
cancelled and finished checks, the ``XADD``\\ s with an exact ``MAXLEN`` and the ``PEXPIRE``
cannot interleave with another writer). Readers use blocking ``XREAD``; one that waits past
a block period checks that the key still exists, so a stream whose producer vanished ends at
its TTL with :class:`~rxllm.stream_log.ResumptionLostError` rather than hanging.

Needs Redis 7 (``XADD`` with an ``<ms>-*`` id) and ``pip install 'rxllm[redis]'``; redis-py
is imported when the log first connects, never by ``import rxllm``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, Final

from reactivex import Observable

from rxllm.integrations._redis import RedisClients, redis_errors, unreachable
from rxllm.stream_log import (
    DEFAULT_MAXLEN,
    DEFAULT_TTL,
    LogEvent,
    ResumptionLostError,
    StreamCancelledError,
    StreamEnd,
    StreamInfo,
    StreamLog,
    StreamLogError,
    StreamNotFoundError,
    parse_event_id,
)
from rxllm.streams import from_async_iterable

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["DEFAULT_PREFIX", "RedisStreamLog"]

#: The prefix of every stream key this log writes.
DEFAULT_PREFIX: Final = "rxllm:stream:"

# KEYS: stream, cancel flag. ARGV: maxlen, ttl ms, data... Returns the new entry ids, or
# {-1} (cancelled) / {-2} (finished).
_APPEND: Final = """
if redis.call('EXISTS', KEYS[2]) == 1 then return {-1} end
local maxlen = ARGV[1]
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('XADD', KEYS[1], 'MAXLEN', maxlen, '0-1', 'o', '')
else
  local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
  if #last > 0 and last[1][2][1] == 'e' then return {-2} end
end
local ids = {}
for i = 3, #ARGV do
  ids[#ids + 1] = redis.call('XADD', KEYS[1], 'MAXLEN', maxlen, '0-*', 'd', ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return ids
"""

# KEYS: stream. ARGV: maxlen, ttl ms, end record. Returns 1 when written, 0 if already ended.
_FINISH: Final = """
local maxlen = ARGV[1]
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('XADD', KEYS[1], 'MAXLEN', maxlen, '0-1', 'o', '')
else
  local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
  if #last > 0 and last[1][2][1] == 'e' then return 0 end
end
redis.call('XADD', KEYS[1], 'MAXLEN', maxlen, '0-*', 'e', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS: stream. ARGV: maxlen, ttl ms. Returns 1 when created, 0 if it exists.
_OPEN: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '0-1', 'o', '')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

_PAGE: Final = 512


def _seq(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.rpartition("-")[2])


class RedisStreamLog(StreamLog):
    """Stream logs in Redis Streams, shared by every process that reaches the server.

    Args:
        url: ``redis://[:password@]host:port/db``; the password is never shown.
        client: A ready ``redis.asyncio.Redis`` to use instead of ``url`` (its owner closes it).
        maxlen: Events kept per key (exact ``MAXLEN``).
        ttl: Seconds a key lives after its last write.
        prefix: Prepended to every key (``rxllm:stream:``).
        block: Seconds a reader's ``XREAD`` blocks before it checks the key still exists.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | None = None,
        maxlen: int = DEFAULT_MAXLEN,
        ttl: float = DEFAULT_TTL,
        prefix: str = DEFAULT_PREFIX,
        block: float = 1.0,
    ) -> None:
        super().__init__(maxlen=maxlen, ttl=ttl)
        self._clients = RedisClients(url, client=client, socket_timeout=max(5.0, block + 5.0))
        self._prefix = prefix
        self._block_ms = max(1, int(block * 1000))
        self._scripts: dict[int, dict[str, Any]] = {}

    def __repr__(self) -> str:
        return f"RedisStreamLog({self._clients.where}, maxlen={self.maxlen}, ttl={self.ttl})"

    def _key(self, key: str) -> str:
        return f"{self._prefix}{{{key}}}"

    def _script(self, client: Redis, name: str, source: str) -> Any:
        scripts = self._scripts.setdefault(id(client), {})
        script = scripts.get(name)
        if script is None:
            script = scripts[name] = client.register_script(source)
        return script

    def _lost(self, exc: BaseException) -> StreamLogError:
        error = unreachable(self._clients.where, exc, ResumptionLostError)
        assert isinstance(error, StreamLogError)
        return error

    @property
    def _args(self) -> list[int]:
        # two entries more than maxlen: the creation marker and the end marker
        return [self.maxlen + 2, max(1, int(self.ttl * 1000))]

    async def _open(self, key: str) -> None:
        client = self._clients.get()
        try:
            created = await self._script(client, "open", _OPEN)(keys=[self._key(key)], args=self._args)
        except redis_errors() as exc:
            raise self._lost(exc) from None
        if not created:
            raise StreamLogError(f"a stream with key {key!r} already exists")

    async def append_many(self, key: str, items: Sequence[bytes]) -> list[str]:
        """Append events to ``key`` in one atomic script (see :meth:`StreamLog.append_many`)."""
        if not items:
            return []
        client = self._clients.get()
        stream = self._key(key)
        try:
            reply = await self._script(client, "append", _APPEND)(
                keys=[stream, stream + ":cancel"], args=[*self._args, *items]
            )
        except redis_errors() as exc:
            raise self._lost(exc) from None
        if reply and reply[0] == -1:
            raise StreamCancelledError(f"the stream {key!r} was cancelled")
        if reply and reply[0] == -2:
            raise StreamLogError(f"the stream {key!r} has finished; nothing can be appended")
        return [str(_seq(entry) - 1) for entry in reply]

    async def finish(self, key: str, error: BaseException | None = None) -> None:
        """Write the end marker (see :meth:`StreamLog.finish`)."""
        client = self._clients.get()
        record = StreamEnd.of(error).encode()
        try:
            await self._script(client, "finish", _FINISH)(keys=[self._key(key)], args=[*self._args, record])
        except redis_errors() as exc:
            raise self._lost(exc) from None

    async def info(self, key: str) -> StreamInfo | None:
        """The last event id, the end and the cancel flag of ``key``."""
        client = self._clients.get()
        stream = self._key(key)
        try:
            async with client.pipeline(transaction=False) as pipe:
                pipe.xrevrange(stream, "+", "-", count=1)
                pipe.exists(stream + ":cancel")
                last, cancelled = await pipe.execute()
        except redis_errors() as exc:
            raise self._lost(exc) from None
        if not last:
            return None
        entry_id, fields = last[0]
        seq = _seq(entry_id)
        raw_end = fields.get(b"e")
        if raw_end is not None:
            return StreamInfo(str(max(0, seq - 2)), StreamEnd.decode(raw_end), bool(cancelled))
        return StreamInfo(str(seq - 1), None, bool(cancelled))

    async def cancel(self, key: str) -> bool:
        """Set ``key``'s cancel flag (its producer's next append raises)."""
        client = self._clients.get()
        stream = self._key(key)
        try:
            if not await client.exists(stream):
                return False
            await client.set(stream + ":cancel", b"1", px=max(1, int(self.ttl * 1000)))
        except redis_errors() as exc:
            raise self._lost(exc) from None
        return True

    async def delete(self, key: str) -> None:
        """Delete ``key`` and its cancel flag (live readers end with ResumptionLostError)."""
        client = self._clients.get()
        stream = self._key(key)
        try:
            await client.delete(stream, stream + ":cancel")
        except redis_errors() as exc:
            raise self._lost(exc) from None

    def read(self, key: str, after: int | str | None = None) -> Observable[LogEvent]:
        """A cold Observable of ``key``'s events after ``after``, then the live ones."""
        position = parse_event_id(after)
        return from_async_iterable(lambda: self._events(key, position))

    async def _events(self, key: str, position: int) -> AsyncIterator[LogEvent]:
        stream = self._key(key)
        errors = redis_errors()
        try:
            client = self._clients.get()
            if not await client.exists(stream):
                raise StreamNotFoundError(f"no stream with key {key!r} (it never existed or it expired)")
        except errors as exc:
            raise self._lost(exc) from None
        expect = position + 2  # the entry seq of event position+1 (0-1 is the creation marker)
        cursor = f"0-{position + 1}"
        while True:
            try:
                reply = await client.xread({stream: cursor}, count=_PAGE, block=self._block_ms)
            except errors as exc:
                raise self._lost(exc) from None
            if not reply:
                # quiet: the key may have expired, or we may be past a finished stream's end
                try:
                    info = await self.info(key)
                except StreamLogError:
                    raise
                if info is None:
                    raise ResumptionLostError(f"the stream {key!r} expired or was deleted while being read")
                if info.end is not None and int(info.last_id) <= position:
                    end_error = info.end.to_error()
                    if end_error is not None:
                        raise end_error
                    return
                continue
            for entry_id, fields in reply[0][1]:
                seq = _seq(entry_id)
                if seq > expect:
                    raise ResumptionLostError(
                        f"events {expect - 1}..{seq - 2} of stream {key!r} were trimmed "
                        f"(the log keeps the last {self.maxlen}); they cannot be resumed"
                    )
                expect = seq + 1
                cursor = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                data = fields.get(b"d")
                if data is not None:
                    yield LogEvent(str(seq - 1), data)
                    continue
                raw_end = fields.get(b"e")
                if raw_end is not None:
                    end_error = StreamEnd.decode(raw_end).to_error()
                    if end_error is not None:
                        raise end_error
                    return

    async def aclose(self) -> None:
        """Close this loop's Redis connections."""
        await self._clients.aclose()
