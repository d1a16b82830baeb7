"""Stream logs (memory and a real Redis), tee_to and resume: nothing lost, nothing twice."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reactivex import Observable
from reactivex.testing import ReactiveTest, TestScheduler
from redis_support import RedisServer

import rxllm
from rxllm import operators as ops
from rxllm.errors import BadRequestError, RateLimitError
from rxllm.stream_log import (
    LogEvent,
    LogWrite,
    LogWriter,
    MemoryStreamLog,
    ResumptionLostError,
    StreamCancelledError,
    StreamEnd,
    StreamInfo,
    StreamLog,
    StreamLogError,
    StreamNotFoundError,
)
from tests.strategies import content_chunk

on_next = ReactiveTest.on_next
on_completed = ReactiveTest.on_completed
on_error = ReactiveTest.on_error
subscribe = ReactiveTest.subscribe


async def collect(source: Observable[Any], count: int | None = None) -> tuple[list[Any], BaseException | None]:
    """Subscribe; return the items (the first ``count``, then dispose) and the error, if any."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    items: list[Any] = []
    failure: list[BaseException] = []
    subscription: list[Any] = []

    def next_(item: Any) -> None:
        items.append(item)
        if count is not None and len(items) >= count and not done.done():
            done.set_result(None)
            if subscription:
                subscription[0].dispose()

    def error(exc: BaseException) -> None:
        failure.append(exc)
        if not done.done():
            done.set_result(None)

    def completed() -> None:
        if not done.done():
            done.set_result(None)

    subscription.append(source.subscribe(next_, error, completed))
    if count is not None and len(items) >= count:
        subscription[0].dispose()
    else:
        async with asyncio.timeout(10):  # a hang guard, not a timing assumption
            await done
    return items, failure[0] if failure else None


def chunks(n: int) -> list[rxllm.ChatCompletionChunk]:
    return [content_chunk(f"t{i} ") for i in range(n)]


@pytest.fixture(params=["memory", "redis"])
async def log(request: pytest.FixtureRequest) -> AsyncIterator[StreamLog]:
    """Each contract test runs against both implementations (Redis: the session's server)."""
    if request.param == "memory":
        yield MemoryStreamLog(maxlen=50)
        return
    from rxllm.integrations.redis_log import RedisStreamLog

    url = request.getfixturevalue("redis_url")
    redis_log = RedisStreamLog(url, maxlen=50, block=0.2)
    try:
        yield redis_log
    finally:
        await redis_log.aclose()


def key() -> str:
    return "s-" + uuid.uuid4().hex[:12]


class TestContract:
    async def test_ids_are_positions_and_reads_replay_then_follow(self, log: StreamLog) -> None:
        """Appended ids are "1", "2", ...; a reader gets the stored events, then live ones, then the end."""
        k = key()
        ids = await log.append_many(k, [b"a", b"b"])
        assert ids == ["1", "2"]
        reader = asyncio.ensure_future(collect(log.read(k, after=1)))
        assert await log.append(k, b"c") == "3"
        await log.finish(k)

        items, error = await reader

        assert error is None
        assert items == [LogEvent("2", b"b"), LogEvent("3", b"c")]

    async def test_open_lets_readers_wait_for_the_first_event(self, log: StreamLog) -> None:
        """After open(), a reader subscribes before anything is appended and still gets it all."""
        k = key()
        await log.open(k)
        reader = asyncio.ensure_future(collect(log.read(k)))
        await asyncio.sleep(0)
        await log.append_many(k, [b"x", b"y"])
        await log.finish(k)

        items, error = await reader

        assert [e.data for e in items] == [b"x", b"y"] and error is None
        with pytest.raises(StreamLogError, match="already exists"):
            await log.open(k)

    async def test_failure_ends_every_reader_with_the_same_typed_error(self, log: StreamLog) -> None:
        """finish(error) makes readers fail with an error of that class, status and message."""
        k = key()
        await log.append(k, b"a")
        await log.finish(k, RateLimitError("slow down", status_code=429))

        items, error = await collect(log.read(k))
        info = await log.info(k)

        assert [e.data for e in items] == [b"a"]
        assert isinstance(error, RateLimitError) and error.status_code == 429 and error.message == "slow down"
        assert info is not None and info.finished and info.last_id == "1"
        assert info.end is not None and info.end.error_type == "RateLimitError"

    async def test_unknown_key_is_not_found(self, log: StreamLog) -> None:
        """Reading a key nobody wrote fails at once with StreamNotFoundError (404)."""
        items, error = await collect(log.read(key()))

        assert items == [] and isinstance(error, StreamNotFoundError) and error.status_code == 404
        assert await log.info(key()) is None

    async def test_appending_after_the_end_or_after_cancel_is_refused(self, log: StreamLog) -> None:
        """A finished stream takes no more events; a cancelled one raises StreamCancelledError."""
        done, cancelled = key(), key()
        await log.append(done, b"a")
        await log.finish(done)
        await log.finish(done, RateLimitError("ignored: already ended"))
        await log.append(cancelled, b"a")

        assert await log.cancel(cancelled) is True
        assert await log.cancel(key()) is False
        with pytest.raises(StreamLogError, match="finished"):
            await log.append(done, b"b")
        with pytest.raises(StreamCancelledError):
            await log.append(cancelled, b"b")
        info = await log.info(done)
        assert info is not None and info.end is not None and info.end.error_type is None

    async def test_trimmed_events_are_reported_never_skipped(self, log: StreamLog) -> None:
        """With maxlen 50, a reader that needs event 1 after 60 appends gets ResumptionLostError."""
        k = key()
        await log.append_many(k, [str(i).encode() for i in range(60)])
        await log.finish(k)

        lost, lost_error = await collect(log.read(k, after=0))
        tail, tail_error = await collect(log.read(k, after=10))

        assert lost == [] and isinstance(lost_error, ResumptionLostError)
        assert tail_error is None and [e.id for e in tail] == [str(i) for i in range(11, 61)]

    async def test_fan_out_each_reader_at_its_own_position(self, log: StreamLog) -> None:
        """Three readers at positions 0, 2 and 4 each get exactly the events after their position."""
        k = key()
        await log.append_many(k, [b"a", b"b", b"c", b"d"])
        readers = [asyncio.ensure_future(collect(log.read(k, after=p))) for p in (0, 2, 4)]
        await asyncio.sleep(0)
        await log.append(k, b"e")
        await log.finish(k)

        results = [await r for r in readers]

        assert [[e.data for e in items] for items, _ in results] == [
            [b"a", b"b", b"c", b"d", b"e"],
            [b"c", b"d", b"e"],
            [b"e"],
        ]
        assert all(error is None for _, error in results)

    async def test_delete_ends_live_readers_with_resumption_lost(self, log: StreamLog) -> None:
        """A key deleted under a waiting reader ends it with ResumptionLostError (never a hang)."""
        k = key()
        await log.append(k, b"a")
        loop = asyncio.get_running_loop()
        got_first: asyncio.Future[None] = loop.create_future()
        ended: asyncio.Future[BaseException] = loop.create_future()
        items: list[LogEvent] = []

        def next_(event: LogEvent) -> None:
            items.append(event)
            got_first.set_result(None)

        subscription = log.read(k).subscribe(next_, ended.set_result)
        async with asyncio.timeout(10):  # hang guard
            await got_first
            await log.delete(k)
            error = await ended
        subscription.dispose()

        assert [e.data for e in items] == [b"a"] and isinstance(error, ResumptionLostError)

    async def test_bad_position_is_a_bad_request(self, log: StreamLog) -> None:
        """after must be a non-negative integer (or its decimal string)."""
        for bad in ("x", "-1", -1, "1.5"):
            with pytest.raises(BadRequestError):
                log.read(key(), after=bad)


class TestMemoryLog:
    def test_readers_are_called_synchronously(self) -> None:
        """A live event reaches a memory-log reader before append_now returns (no task switch)."""
        log = MemoryStreamLog()
        seen: list[str] = []
        log.append_now("k", [b"a"])
        disposable = log.read("k").subscribe(lambda e: seen.append(e.id))

        log.append_now("k", [b"b"])
        assert seen == ["1", "2"]
        disposable.dispose()
        log.append_now("k", [b"c"])

        assert seen == ["1", "2"]

    def test_read_batches_delivers_positions_and_data_in_batches(self) -> None:
        """read_batches: (first position, [data...]) per delivery, the same events as read, then the end."""
        log = MemoryStreamLog()
        log.append_now("k", [b"a", b"b", b"c"])
        got: list[tuple[int, list[bytes]]] = []
        done: list[bool] = []
        log.read_batches("k", 1).subscribe(got.append, on_completed=lambda: done.append(True))
        log.append_now("k", [b"d", b"e"])
        log.finish_now("k")

        assert got == [(2, [b"b", b"c"]), (4, [b"d", b"e"])] and done == [True]

    def test_keys_expire_after_their_ttl(self) -> None:
        """A key not written for ttl seconds is gone: info is None, reads are not found."""
        now = [100.0]
        log = MemoryStreamLog(ttl=10, clock=lambda: now[0])
        log.append_now("k", [b"a"])
        errors: list[BaseException] = []

        now[0] = 109.0
        log.read("k").subscribe(on_error=errors.append, on_completed=lambda: None)
        now[0] = 120.0
        log.read("k").subscribe(on_error=errors.append)

        assert errors and isinstance(errors[-1], StreamNotFoundError)
        assert len(errors) == 1
        assert "streams=0" in repr(log)


class TestTeeTo:
    def test_passes_chunks_through_and_logs_them_in_virtual_time(self) -> None:
        """Chunks go downstream unchanged at their time; the log then holds them and the end."""
        scheduler = TestScheduler()
        a, b = chunks(2)
        xs = scheduler.create_hot_observable(on_next(210, a), on_next(220, b), on_completed(230))
        log = MemoryStreamLog()

        results = scheduler.start(lambda: xs.pipe(ops.tee_to(log, "k")))

        assert results.messages == [on_next(210, a), on_next(220, b), on_completed(230)]
        assert xs.subscriptions == [subscribe(200, 230)]
        replay: list[Any] = []
        rxllm.resume(log, "k").subscribe(replay.append)
        assert replay == [a, b]

    def test_disposal_reaches_the_upstream_and_ends_the_logged_stream(self) -> None:
        """Disposing the tee disposes the source; readers end with StreamCancelledError."""
        scheduler = TestScheduler()
        xs = scheduler.create_hot_observable(on_next(210, chunks(1)[0]), on_next(400, chunks(2)[1]))
        log = MemoryStreamLog()

        scheduler.start(lambda: xs.pipe(ops.tee_to(log, "k")), disposed=300)

        assert xs.subscriptions == [subscribe(200, 300)]
        errors: list[BaseException] = []
        rxllm.resume(log, "k").subscribe(on_error=errors.append)
        assert len(errors) == 1 and isinstance(errors[0], StreamCancelledError)

    def test_upstream_error_is_logged_then_passed_on(self) -> None:
        """An upstream failure ends the log with the same typed error and reaches the subscriber."""
        scheduler = TestScheduler()
        failure = RateLimitError("quota", status_code=429)
        xs = scheduler.create_hot_observable(on_next(210, chunks(1)[0]), on_error(220, failure))
        log = MemoryStreamLog()

        results = scheduler.start(lambda: xs.pipe(ops.tee_to(log, "k")))

        assert results.messages[-1] == on_error(220, failure)
        errors: list[BaseException] = []
        rxllm.resume(log, "k", after=1).subscribe(on_error=errors.append)
        assert isinstance(errors[0], RateLimitError) and errors[0].message == "quota"

    def test_cancel_stops_the_producer(self) -> None:
        """log.cancel(key) makes the next write fail: the upstream is disposed, the tee fails typed."""
        scheduler = TestScheduler()
        xs = scheduler.create_hot_observable(on_next(210, chunks(1)[0]), on_next(230, chunks(2)[1]))
        log = MemoryStreamLog()
        scheduler.schedule_absolute(220, lambda *_: asyncio.run(log.cancel("k")))

        results = scheduler.start(lambda: xs.pipe(ops.tee_to(log, "k")))

        assert results.messages[0].time == 210
        assert results.messages[1].time == 230 and isinstance(results.messages[1].value.exception, StreamCancelledError)
        assert xs.subscriptions == [subscribe(200, 230)]

    def test_existing_key_is_refused_before_subscribing(self) -> None:
        """Teeing into a key that already exists fails at once and never subscribes the source."""
        log = MemoryStreamLog()
        log.append_now("k", [b"x"])
        scheduler = TestScheduler()
        xs = scheduler.create_hot_observable(on_next(210, chunks(1)[0]))

        results = scheduler.start(lambda: xs.pipe(ops.tee_to(log, "k")))

        assert isinstance(results.messages[0].value.exception, StreamLogError)
        assert xs.subscriptions == []

    async def test_mock_stream_through_redis_resumes_from_the_log(self, redis_url: str) -> None:
        """A real rxllm.stream teed into Redis: resume(after=2) is the tail of what the producer saw."""
        from rxllm.integrations.redis_log import RedisStreamLog

        log = RedisStreamLog(redis_url, block=0.2)
        try:
            produced, error = await collect(
                rxllm.stream("mock/x", [{"role": "user", "content": "hi"}], mock_response="one two three four").pipe(
                    ops.tee_to(log, "run-1")
                )
            )
            resumed, resumed_error = await collect(rxllm.resume(log, "run-1", after=2))
        finally:
            await log.aclose()

        assert error is None and resumed_error is None and len(produced) > 3
        assert [c.to_dict() for c in resumed] == [c.to_dict() for c in produced[2:]]


class TestResumeProperty:
    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(n=st.integers(0, 12), k=st.integers(0, 14), failed=st.booleans(), live=st.booleans())
    def test_first_k_then_resume_is_the_whole_stream_in_memory(self, n: int, k: int, failed: bool, live: bool) -> None:
        """Read k events, resume after k: concatenated, exactly the stream (finished, failed or still live)."""
        k = min(k, n)
        asyncio.run(_scenario(MemoryStreamLog(), n, k, failed, live))

    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(n=st.integers(0, 12), k=st.integers(0, 14), failed=st.booleans(), live=st.booleans())
    def test_first_k_then_resume_is_the_whole_stream_in_redis(
        self, redis_server: RedisServer, n: int, k: int, failed: bool, live: bool
    ) -> None:
        """The same property against a real Redis (the consumers share nothing but the server)."""
        from rxllm.integrations.redis_log import RedisStreamLog

        k = min(k, n)

        async def run() -> None:
            log = RedisStreamLog(redis_server.url, block=0.2)
            try:
                await _scenario(log, n, k, failed, live)
            finally:
                await log.aclose()

        asyncio.run(run())


async def _scenario(log: StreamLog, n: int, k: int, failed: bool, live: bool) -> None:
    """Produce n chunks through tee_to; one consumer reads k, disposes, and resumes after k."""
    name = key()
    whole = chunks(n)
    gate = asyncio.Event()

    async def produce() -> AsyncIterator[rxllm.ChatCompletionChunk]:
        for i, c in enumerate(whole):
            if live and i == k:
                await gate.wait()  # the rest arrives only after the consumer has resumed
            yield c
        if failed:
            raise RateLimitError("boom", status_code=429)

    await log.open(name)  # so that the readers below may subscribe before the producer does
    teed = rxllm.from_async_iterable(produce).pipe(ops.tee_to(log, name, create=False))
    producer = asyncio.ensure_future(collect(teed))
    first, first_error = await collect(rxllm.resume(log, name), count=k) if k else ([], None)
    rest_future = asyncio.ensure_future(collect(rxllm.resume(log, name, after=k)))
    gate.set()
    rest, error = await rest_future
    produced, produced_error = await producer

    assert first_error is None
    assert [c.to_dict() for c in first + rest] == [c.to_dict() for c in whole]
    assert len(produced) == n
    if failed:
        assert isinstance(error, RateLimitError) and isinstance(produced_error, RateLimitError)
    else:
        assert error is None and produced_error is None


class TestImport:
    def test_import_rxllm_does_not_import_redis(self) -> None:
        """`import rxllm` (and the memory log) never imports redis; the Redis log is an extra."""
        import subprocess

        code = "import rxllm, rxllm.stream_log, rxllm.operators, sys; print('redis' in sys.modules)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

        assert out.stdout.strip() == "False"


class TestRedisFaults:
    async def test_reader_ends_typed_when_redis_dies(self, redis_server: RedisServer, redis_url: str) -> None:
        """A live reader whose Redis is killed ends with ResumptionLostError, not a hang."""
        from rxllm.integrations.redis_log import RedisStreamLog

        log = RedisStreamLog(redis_url, block=0.2)
        loop = asyncio.get_running_loop()
        got_first: asyncio.Future[None] = loop.create_future()
        ended: asyncio.Future[BaseException] = loop.create_future()
        try:
            await log.append("k", b"a")
            subscription = log.read("k").subscribe(lambda _: got_first.set_result(None), ended.set_result)
            async with asyncio.timeout(10):  # hang guard
                await got_first
                redis_server.kill()
                error = await ended
            subscription.dispose()
        finally:
            redis_server.start()
            await log.aclose()

        assert isinstance(error, ResumptionLostError) and "unreachable" in error.message

    async def test_unreachable_redis_is_typed_and_never_shows_the_password(self) -> None:
        """Writes to a Redis nobody runs fail with ResumptionLostError; the URL's password stays hidden."""
        from redis_support import free_port

        from rxllm.integrations.redis_log import RedisStreamLog

        log = RedisStreamLog(f"redis://:sekret-pw@127.0.0.1:{free_port()}/0")
        try:
            with pytest.raises(ResumptionLostError) as caught:
                await log.append("k", b"a")
        finally:
            await log.aclose()

        assert "sekret-pw" not in str(caught.value) and "sekret-pw" not in repr(log)
        assert "127.0.0.1" in caught.value.message


class _CountingLog(MemoryStreamLog):
    """A memory log that the writers treat as remote (async), counting batched writes."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[LogWrite]] = []

    async def write_many(self, writes: Sequence[LogWrite]) -> list[StreamLogError | None]:
        self.batches.append(list(writes))
        return await super().write_many(writes)


class _Remote(StreamLog):
    """Any non-memory log: delegates to a memory log, so the writers batch through the flusher."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = _CountingLog()

    async def _open(self, key: str) -> None:
        await self.inner.open(key)

    async def append_many(self, key: str, items: Sequence[bytes]) -> list[str]:
        return await self.inner.append_many(key, items)

    async def write_many(self, writes: Sequence[LogWrite]) -> list[StreamLogError | None]:
        return await self.inner.write_many(writes)

    async def finish(self, key: str, error: BaseException | None = None) -> None:
        await self.inner.finish(key, error)

    async def info(self, key: str) -> StreamInfo | None:
        return await self.inner.info(key)

    async def cancel(self, key: str) -> bool:
        return await self.inner.cancel(key)

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    def read(self, key: str, after: int | str | None = None) -> Observable[LogEvent]:
        return self.inner.read(key, after)


class TestBatchedWrites:
    async def test_writers_of_one_loop_share_one_batch_per_turn(self) -> None:
        """Three writers writing in the same turn of the loop: one write_many carries all of it, ends included."""
        log = _Remote()
        writers = [LogWriter(log, f"w{i}") for i in range(3)]
        for i, writer in enumerate(writers):
            for j in range(4):
                writer.write(f"{i}:{j}".encode())
            writer.close()
        for writer in writers:
            await writer.wait_closed()
        events = [await collect(log.read(f"w{i}")) for i in range(3)]

        assert len(log.inner.batches) == 1 and len(log.inner.batches[0]) == 3
        assert all(w.create and w.end == StreamEnd() and len(w.items) == 4 for w in log.inner.batches[0])
        assert [[e.data for e in items] for items, _ in events] == [
            [f"{i}:{j}".encode() for j in range(4)] for i in range(3)
        ]
        assert all(error is None for _, error in events) and all(w.written == 4 for w in writers)
        assert not log._flushers  # nothing left running

    async def test_writes_during_a_batch_go_in_the_next_one_in_order(self) -> None:
        """Events written while a batch is in flight follow in the next batch; the order is kept."""
        log = _Remote()
        writer = LogWriter(log, "k")
        writer.write(b"1")
        await asyncio.sleep(0)  # the first batch leaves
        writer.write(b"2")
        writer.write(b"3")
        writer.close(RateLimitError("slow down"))
        await writer.wait_closed()
        items, error = await collect(log.read("k"))

        assert [e.data for e in items] == [b"1", b"2", b"3"] and [e.id for e in items] == ["1", "2", "3"]
        assert isinstance(error, RateLimitError) and len(log.inner.batches) == 2

    async def test_a_lazy_creation_rides_with_the_first_events_or_goes_when_asked(self) -> None:
        """lazy_create: the key is created in the batch of the first events; wait_opened sends it alone if none."""
        log = _Remote()
        with_events = LogWriter(log, "a", lazy_create=True)
        await asyncio.sleep(0)
        with_events.write(b"1")
        await with_events.wait_opened()
        alone = LogWriter(log, "b", lazy_create=True)
        await alone.wait_opened()
        info = await log.info("b")

        assert [[(w.key, w.create, list(w.items)) for w in b] for b in log.inner.batches] == [
            [("a", True, [b"1"])],
            [("b", True, [])],
        ]
        assert with_events.error is None and alone.error is None and info == StreamInfo("0")

    async def test_a_cancelled_stream_refuses_its_writer_and_ends_its_readers(self) -> None:
        """write_many on a cancelled key: StreamCancelledError for it, the readers end with it, others go on."""
        log = MemoryStreamLog()
        log.open_now("a")
        log.open_now("b")
        await log.cancel("a")
        results = await log.write_many([LogWrite("a", [b"x"]), LogWrite("b", [b"y"], StreamEnd())])
        _, a_error = await collect(log.read("a"))
        b_items, b_error = await collect(log.read("b"))

        assert isinstance(results[0], StreamCancelledError) and results[1] is None
        assert isinstance(a_error, StreamCancelledError)
        assert [e.data for e in b_items] == [b"y"] and b_error is None

    async def test_create_on_an_existing_key_is_refused(self, log: StreamLog) -> None:
        """A write with create=True on a key that exists fails for that key only."""
        name = key()
        await log.append(name, b"x")
        results = await log.write_many([LogWrite(name, [b"y"], create=True), LogWrite(key(), [b"z"], create=True)])

        assert isinstance(results[0], StreamLogError) and "already exists" in results[0].message
        assert results[1] is None
        assert (await log.info(name)) == StreamInfo("1")


class TestRedisBatches:
    async def test_redis_writes_many_keys_in_one_call_with_their_ends(self, redis_url: str) -> None:
        """RedisStreamLog.write_many: every key's items and end land; ids are positions; finishing twice is a no-op."""
        from rxllm.integrations.redis_log import RedisStreamLog

        log = RedisStreamLog(redis_url, block=0.2)
        names = [key() for _ in range(3)]
        try:
            results = await log.write_many(
                [LogWrite(n, [b"a", b"b"], StreamEnd() if i else None, create=True) for i, n in enumerate(names)]
            )
            again = await log.write_many([LogWrite(names[1], end=StreamEnd())])
            more = await log.append_many(names[0], [b"c"])
            await log.finish(names[0])
            read = [await collect(log.read(n)) for n in names]
        finally:
            await log.aclose()

        assert results == [None, None, None] and again == [None] and more == ["3"]
        assert [[e.data for e in items] for items, _ in read] == [[b"a", b"b", b"c"], [b"a", b"b"], [b"a", b"b"]]
        assert [e.id for e in read[0][0]] == ["1", "2", "3"]

    async def test_the_script_is_loaded_again_after_script_flush(
        self, redis_server: RedisServer, redis_url: str
    ) -> None:
        """SCRIPT FLUSH (or a fresh server) between writes: the next batch loads the script and lands once."""
        from redis_support import command

        from rxllm.integrations.redis_log import RedisStreamLog

        log = RedisStreamLog(redis_url, block=0.2)
        a, b = key(), key()
        try:
            await log.append(a, b"1")
            command(redis_server.port, "SCRIPT", "FLUSH")
            results = await log.write_many([LogWrite(a, [b"2"]), LogWrite(b, [b"x"], StreamEnd())])
            info = await log.info(a)
        finally:
            await log.aclose()

        assert results == [None, None] and info == StreamInfo("2")

    async def test_a_restarted_redis_is_reconnected_to_without_an_error(
        self, redis_server: RedisServer, redis_url: str
    ) -> None:
        """Redis restarted between two writes: the pooled connection is replaced and the write lands."""
        from rxllm.integrations.redis_log import RedisStreamLog

        log = RedisStreamLog(redis_url, block=0.2)
        name = key()
        try:
            await log.append(name, b"before")
            redis_server.kill()
            redis_server.start()
            ids = await log.append_many(name, [b"after"])
        finally:
            await log.aclose()

        assert ids == ["1"]  # the restarted server (no persistence) has a fresh stream


class TestRedisPacking:
    @settings(max_examples=60, deadline=None)
    @given(
        commands=st.lists(
            st.tuples(
                st.sampled_from(["EVALSHA", "XADD", "PING"]),
                st.lists(st.one_of(st.binary(max_size=40), st.text(max_size=20), st.integers(0, 10**12))),
            ),
            min_size=1,
            max_size=4,
        )
    )
    def test_the_packed_commands_are_what_redis_py_sends(self, commands: list[tuple[str, list[Any]]]) -> None:
        """The log's own RESP packing is byte for byte redis-py's, for the argument types the log sends."""
        from redis.asyncio.connection import Connection

        from rxllm.integrations.redis_log import _pack

        flat = [[name, *args] for name, args in commands]
        assert _pack(flat) == b"".join(Connection().pack_commands(flat))
