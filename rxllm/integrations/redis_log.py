"""A :class:`~rxllm.stream_log.StreamLog` on Redis Streams: resumable from any process or machine.

Each stream key is one Redis Stream, ``rxllm:stream:{key}``. Entry ids carry the positions
that :mod:`rxllm.stream_log` promises: ``0-1`` marks the stream's creation, and the n-th
event is ``0-(n+1)``, so a reader's ``after=k`` is an ``XREAD`` from ``0-(k+1)`` and a gap in
the sequence (events trimmed by ``MAXLEN``) is noticed, never skipped silently. The end is one
more entry (field ``e``: how it ended). Every write is one Lua script per key (atomic: the
existence, cancelled and finished checks, the ``XADD`` calls with an exact ``MAXLEN``, the end
marker and the ``PEXPIRE`` cannot interleave with another writer), and
:meth:`RedisStreamLog.write_many` pipelines one per key, so the writers of one loop share one
round trip per batch. Readers use blocking ``XREAD``; one that waits past a block period
checks that the key still exists, so a stream whose producer vanished ends at its TTL with
:class:`~rxllm.stream_log.ResumptionLostError` rather than hanging.

Needs Redis 7 (``XADD`` with an ``<ms>-*`` id) and ``pip install 'rxllm[redis]'``; redis-py
is imported when the log first connects, never by ``import rxllm``.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, Final

from reactivex import Observable

from rxllm.integrations._redis import RedisClients, redis_errors, unreachable
from rxllm.stream_log import (
    DEFAULT_MAXLEN,
    DEFAULT_TTL,
    LogEvent,
    LogWrite,
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

# One key's write: create (optional), append, end (optional), in one atomic step.
# KEYS: stream, cancel flag. ARGV: maxlen, ttl ms, create ('1' or ''), end record ('' for none),
# cancel record (the end written when the stream was cancelled), data...
# Returns {0, seq of the first event appended (0: none)}, {-1, 0} cancelled (the cancel end
# is written), {-2, 0} already finished, {-3, 0} exists (create asked).
_WRITE: Final = """
local maxlen = ARGV[1]
local stream = KEYS[1]
if redis.call('EXISTS', stream) == 0 then
  redis.call('XADD', stream, 'MAXLEN', maxlen, '0-1', 'o', '')
else
  if ARGV[3] == '1' then return {-3, 0} end
  local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
  if #last > 0 and last[1][2][1] == 'e' then
    if #ARGV < 6 then return {0, 0} end
    return {-2, 0}
  end
end
if #ARGV >= 6 and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('XADD', stream, 'MAXLEN', maxlen, '0-*', 'e', ARGV[5])
  redis.call('PEXPIRE', stream, ARGV[2])
  return {-1, 0}
end
local first = 0
for i = 6, #ARGV do
  local id = redis.call('XADD', stream, 'MAXLEN', maxlen, '0-*', 'd', ARGV[i])
  if first == 0 then first = tonumber(string.match(id, '%-(%d+)$')) end
end
if ARGV[4] ~= '' then
  redis.call('XADD', stream, 'MAXLEN', maxlen, '0-*', 'e', ARGV[4])
end
redis.call('PEXPIRE', stream, ARGV[2])
return {0, first}
"""

#: The script's id for EVALSHA (Redis names scripts by their SHA-1; not a security use).
_WRITE_SHA: Final = hashlib.sha1(_WRITE.encode(), usedforsecurity=False).hexdigest()

_PAGE: Final = 512


def _pack(commands: Sequence[Sequence[Any]]) -> bytes:
    """Commands in RESP (what redis-py's ``pack_commands`` makes, at a third of its cost).

    Arguments are ``bytes``, ``str`` (UTF-8) or ``int``: all the write script is given.
    """
    out: list[bytes] = []
    append = out.append
    for args in commands:
        append(b"*%d\r\n" % len(args))
        for arg in args:
            if isinstance(arg, str):
                arg = arg.encode()
            elif isinstance(arg, int):
                arg = b"%d" % arg
            append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


@functools.lru_cache(maxsize=1024)
def _cancel_record(key: str) -> bytes:
    """The end a cancelled stream gets (one per key: the same bytes every flush)."""
    return StreamEnd.of(StreamCancelledError(f"the stream {key!r} was cancelled")).encode()


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

    def __repr__(self) -> str:
        return f"RedisStreamLog({self._clients.where}, maxlen={self.maxlen}, ttl={self.ttl})"

    def _key(self, key: str) -> str:
        return f"{self._prefix}{{{key}}}"

    def _lost(self, exc: BaseException) -> StreamLogError:
        error = unreachable(self._clients.where, exc, ResumptionLostError)
        assert isinstance(error, StreamLogError)
        return error

    @property
    def _args(self) -> list[int]:
        # two entries more than maxlen: the creation marker and the end marker
        return [self.maxlen + 2, max(1, int(self.ttl * 1000))]

    async def _open(self, key: str) -> None:
        write = LogWrite(key, create=True)
        try:
            (reply,) = await self._run_writes([write])
        except redis_errors() as exc:
            raise self._lost(exc) from None
        outcome = self._outcome(write, reply)
        if isinstance(outcome, StreamLogError):
            raise outcome

    def _write_args(self, write: LogWrite) -> list[Any]:
        stream = self._key(write.key)
        end = write.end.encode() if write.end is not None else b""
        cancel = _cancel_record(write.key) if write.items else b""
        return [
            "EVALSHA",
            _WRITE_SHA,
            2,
            stream,
            stream + ":cancel",
            *self._args,
            b"1" if write.create else b"",
            end,
            cancel,
            *write.items,
        ]

    async def _run_writes(self, writes: Sequence[LogWrite]) -> list[Any]:
        """One ``EVALSHA`` per write, all in one round trip (the script is loaded if Redis lacks it).

        The commands go out on one pooled connection as one packed buffer and their replies
        are read in order: redis-py's pipeline object would cost more than the writes
        themselves. Raises what redis-py raises (connection errors, a script error).
        """
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import NoScriptError, ResponseError

        client = self._clients.get()
        pool = client.connection_pool
        commands = [self._write_args(write) for write in writes]
        reconnected = loaded = False
        for _ in range(3):
            replies: list[Any] = []
            conn = await pool.get_connection()
            try:
                await conn.send_packed_command(_pack(commands))
                for _ in commands:
                    try:
                        replies.append(await conn.read_response())
                    except ResponseError as exc:  # this script's error; the next replies follow
                        replies.append(exc)
            except (RedisConnectionError, OSError):
                await conn.disconnect(nowait=True)
                if replies or reconnected:
                    raise
                reconnected = True
                continue  # a pooled connection the server had closed (a restart): once more
            except BaseException:
                await conn.disconnect(nowait=True)  # replies may be pending on it
                raise
            finally:
                await pool.release(conn)
            if not loaded and any(isinstance(reply, NoScriptError) for reply in replies):
                # none of them ran (NOSCRIPT fails before the script starts): load, send again
                await client.script_load(_WRITE)
                loaded = True
                continue
            for reply in replies:
                if isinstance(reply, BaseException):
                    raise reply
            return replies
        raise AssertionError("unreachable")  # pragma: no cover

    def _outcome(self, write: LogWrite, reply: Any) -> StreamLogError | int:
        code = int(reply[0])
        if code == 0:
            return int(reply[1])
        key = write.key
        if code == -1:
            return StreamCancelledError(f"the stream {key!r} was cancelled")
        if code == -2:
            return StreamLogError(f"the stream {key!r} has finished; nothing can be appended")
        return StreamLogError(f"a stream with key {key!r} already exists")

    async def write_many(self, writes: Sequence[LogWrite]) -> list[StreamLogError | None]:
        """Every write in one round trip: one atomic script per key, pipelined (see :meth:`StreamLog.write_many`)."""
        if not writes:
            return []
        try:
            replies = await self._run_writes(writes)
        except redis_errors() as exc:
            lost = self._lost(exc)
            return [lost] * len(writes)
        results: list[StreamLogError | None] = []
        for write, reply in zip(writes, replies, strict=True):
            outcome = self._outcome(write, reply)
            results.append(outcome if isinstance(outcome, StreamLogError) else None)
        return results

    async def append_many(self, key: str, items: Sequence[bytes]) -> list[str]:
        """Append events to ``key`` in one atomic script (see :meth:`StreamLog.append_many`)."""
        if not items:
            return []
        write = LogWrite(key, items)
        try:
            (reply,) = await self._run_writes([write])
        except redis_errors() as exc:
            raise self._lost(exc) from None
        outcome = self._outcome(write, reply)
        if isinstance(outcome, StreamLogError):
            raise outcome
        # entry seq s is event s - 1 (0-1 is the creation marker)
        return [str(outcome - 1 + i) for i in range(len(items))]

    async def finish(self, key: str, error: BaseException | None = None) -> None:
        """Write the end marker (see :meth:`StreamLog.finish`)."""
        try:
            await self._run_writes([LogWrite(key, end=StreamEnd.of(error))])
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
