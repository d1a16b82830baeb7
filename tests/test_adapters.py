"""The edges: blocking and async iterators over Observables, with disposal on every exit."""

from __future__ import annotations

import asyncio
import gc
import threading

import pytest
import reactivex
from support import settle, wait_for

import rxllm
from rxllm.adapters import to_async_iterator, to_iterator
from rxllm.streams import from_async_iterable, live_pump_tasks


class Endless:
    """An endless async source that records closing (like an open HTTP response)."""

    def __init__(self) -> None:
        self.closed = threading.Event()
        self.produced = 0

    def __call__(self):  # type: ignore[no-untyped-def]
        async def gen():  # type: ignore[no-untyped-def]
            try:
                while True:
                    self.produced += 1
                    yield self.produced
                    await asyncio.sleep(0.001)
            finally:
                self.closed.set()

        return gen()


def failing(after: int):  # type: ignore[no-untyped-def]
    async def gen():  # type: ignore[no-untyped-def]
        for i in range(after):
            yield i
        raise KeyError("mid-stream")

    return gen


class TestToIterator:
    def test_iterates_all_items(self, no_leaks: None) -> None:
        """A finite Observable becomes a finite blocking iterator."""
        assert list(to_iterator(reactivex.of(1, 2, 3))) == [1, 2, 3]

    def test_error_is_raised_at_next(self, no_leaks: None) -> None:
        """An error after some items is raised, typed, where the consumer iterates (the original as its cause)."""
        it = to_iterator(from_async_iterable(failing(2)))
        got = [next(it), next(it)]

        with pytest.raises(rxllm.APIError, match=r"KeyError.*mid-stream") as info:
            next(it)
        assert isinstance(info.value.__cause__, KeyError)
        assert got == [0, 1]
        with pytest.raises(StopIteration):
            next(it)

    def test_break_with_close_cancels_upstream(self, no_leaks: None) -> None:
        """close() after an early break cancels the source."""
        source = Endless()
        it = to_iterator(from_async_iterable(source))
        for item in it:
            if item == 3:
                break
        it.close()

        assert source.closed.wait(2)

    def test_context_manager_cancels(self, no_leaks: None) -> None:
        """Leaving a with block cancels the source."""
        source = Endless()
        with to_iterator(from_async_iterable(source)) as it:
            assert next(it) == 1

        assert source.closed.wait(2)

    def test_garbage_collection_cancels(self, no_leaks: None) -> None:
        """Dropping the last reference to an unfinished iterator cancels the source."""
        source = Endless()
        it = to_iterator(from_async_iterable(source))
        next(it)
        del it
        gc.collect()

        assert source.closed.wait(2)

    def test_works_from_worker_threads(self, no_leaks: None) -> None:
        """Several threads iterate at once; all are served by the one loop thread."""
        results: dict[int, list[int]] = {}

        def work(n: int) -> None:
            results[n] = list(to_iterator(from_async_iterable(failing(n + 1)).pipe(_catch_key_error())))

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(5)

        assert results == {n: list(range(n + 1)) for n in range(4)}
        assert len([t for t in threading.enumerate() if t.name == "rxllm-loop"]) == 1

    async def test_works_while_a_loop_runs_on_this_thread(self) -> None:
        """Inside a running loop (a Jupyter cell), the sync edge still works: rxllm's own loop serves it."""
        assert list(to_iterator(from_async_iterable(failing(3)).pipe(_catch_key_error()))) == [0, 1, 2]


class TestToAsyncIterator:
    async def test_iterates_all_items(self) -> None:
        """A finite Observable becomes a finite async iterator."""
        got = [x async for x in to_async_iterator(from_async_iterable(failing(3)).pipe(_catch_key_error()))]

        assert got == [0, 1, 2]

    async def test_error_is_raised_at_await(self) -> None:
        """An error is raised, typed, at the await of the item it replaces."""
        it = to_async_iterator(from_async_iterable(failing(1)))
        assert await it.__anext__() == 0

        with pytest.raises(rxllm.APIError) as info:
            await it.__anext__()
        assert isinstance(info.value.__cause__, KeyError)
        with pytest.raises(StopAsyncIteration):
            await it.__anext__()

    async def test_aclose_cancels_upstream(self) -> None:
        """aclose() after a break cancels the source at once."""
        source = Endless()
        it = to_async_iterator(from_async_iterable(source))
        async for item in it:
            if item == 2:
                break
        await it.aclose()
        await settle()

        assert source.closed.is_set()
        assert live_pump_tasks() == 0

    async def test_async_with_cancels(self) -> None:
        """Leaving an async with block cancels the source."""
        source = Endless()
        async with to_async_iterator(from_async_iterable(source)) as it:
            await it.__anext__()
        await settle()

        assert source.closed.is_set()

    async def test_task_cancellation_disposes(self) -> None:
        """Cancelling the consuming task while it waits disposes the subscription."""
        gate = asyncio.Event()
        closed = asyncio.Event()

        async def slow():  # type: ignore[no-untyped-def]
            try:
                yield 1
                await gate.wait()
                yield 2
            finally:
                closed.set()

        async def consume() -> None:
            async for _ in to_async_iterator(from_async_iterable(slow)):
                pass

        task = asyncio.create_task(consume())
        await settle()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await settle()

        assert closed.is_set()
        assert live_pump_tasks() == 0

    async def test_garbage_collection_cancels(self) -> None:
        """An abandoned async iterator cancels its source when collected."""
        source = Endless()
        it = to_async_iterator(from_async_iterable(source))
        await it.__anext__()
        del it
        gc.collect()
        await settle()

        assert source.closed.is_set()

    async def test_items_from_a_foreign_thread_arrive_on_the_loop(self) -> None:
        """Emissions on another thread are handed to the consumer's loop safely."""
        source = reactivex.from_iterable(range(50), scheduler=reactivex.scheduler.NewThreadScheduler())

        got = [x async for x in to_async_iterator(source)]

        assert got == list(range(50))

    async def test_no_tasks_left_behind(self) -> None:
        """After a complete iteration, no task but the test's own is alive."""
        before = asyncio.all_tasks()
        [x async for x in to_async_iterator(from_async_iterable(failing(5)).pipe(_catch_key_error()))]
        await settle()

        assert asyncio.all_tasks() == before


def _catch_key_error():  # type: ignore[no-untyped-def]
    from reactivex import operators as rx_ops

    return rx_ops.catch(lambda exc, _source: reactivex.empty())


def test_wait_for_helper_reports_timeouts() -> None:
    """The polling helper gives up and returns False when the condition never holds."""
    assert wait_for(lambda: False, timeout=0.01) is False


class TestPullMode:
    async def test_single_source_is_pulled_without_a_pump(self) -> None:
        """pull=True: the consumer drives the source; no pump task runs."""
        counts: list[int] = []

        async def gen():  # type: ignore[no-untyped-def]
            for i in range(3):
                counts.append(live_pump_tasks())
                yield i

        got = [x async for x in to_async_iterator(from_async_iterable(gen), pull=True)]

        assert got == [0, 1, 2]
        assert counts == [0, 0, 0]

    async def test_a_second_source_falls_back_to_a_pump(self) -> None:
        """Two merged sources: one is pulled, the other pumped; every item arrives."""
        a = from_async_iterable(failing(3)).pipe(_catch_key_error())
        b = from_async_iterable(failing(2)).pipe(_catch_key_error())

        got = [x async for x in to_async_iterator(reactivex.merge(a, b), pull=True)]

        assert sorted(got) == [0, 0, 1, 1, 2]

    async def test_error_from_a_pulled_source_is_raised(self) -> None:
        """An error raised by the pulled iterator is raised, typed, at the await."""
        it = to_async_iterator(from_async_iterable(failing(1)), pull=True)
        assert await it.__anext__() == 0

        with pytest.raises(rxllm.APIError) as info:
            await it.__anext__()
        assert isinstance(info.value.__cause__, KeyError)

    async def test_downstream_disposal_closes_the_pulled_source(self) -> None:
        """take(2) downstream of a pulled source closes it after the second item."""
        from reactivex import operators as rx_ops

        source = Endless()
        got = [x async for x in to_async_iterator(from_async_iterable(source).pipe(rx_ops.take(2)), pull=True)]

        assert got == [1, 2]
        assert source.closed.is_set()
