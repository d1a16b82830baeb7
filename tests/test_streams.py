"""from_async_iterable: cold, one pump per subscription, disposal cancels and closes."""

from __future__ import annotations

import asyncio
import threading

import pytest
import reactivex
from reactivex import operators as rx_ops
from support import settle, wait_for

from rxllm.loop import get_loop
from rxllm.streams import from_async_iterable, live_pump_tasks


class Probe:
    """An async generator factory that records what happened to each iterator it made."""

    def __init__(self, items: list[int], *, block_after: int | None = None, fail_after: int | None = None):
        self.items = items
        self.block_after = block_after
        self.fail_after = fail_after
        self.started = 0
        self.closed = 0
        self.cancelled = 0
        self.threads: set[int] = set()
        self.blocked = asyncio.Event() if False else None

    def __call__(self):  # type: ignore[no-untyped-def]
        async def gen():  # type: ignore[no-untyped-def]
            self.started += 1
            self.threads.add(threading.get_ident())
            try:
                for i, item in enumerate(self.items):
                    if self.fail_after is not None and i == self.fail_after:
                        raise ValueError(f"failed at {i}")
                    if self.block_after is not None and i == self.block_after:
                        await asyncio.Event().wait()
                    yield item
                    await asyncio.sleep(0)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
            finally:
                self.closed += 1

        return gen()


class TestFromAsyncIterable:
    async def test_emits_items_then_completes(self) -> None:
        """Every item arrives in order, then completion."""
        probe = Probe([1, 2, 3])
        got: list[object] = []
        done = asyncio.Event()
        from_async_iterable(probe).subscribe(got.append, lambda e: got.append(e), done.set)
        await asyncio.wait_for(done.wait(), 2)

        assert got == [1, 2, 3]
        assert probe.closed == 1

    async def test_cold_one_iterator_per_subscription(self) -> None:
        """Each subscription calls the factory once; nothing happens before subscribing."""
        probe = Probe([1, 2])
        source = from_async_iterable(probe)
        await settle()
        assert probe.started == 0

        results = [await source.pipe(rx_ops.to_list()) for _ in range(2)]

        assert results == [[1, 2], [1, 2]]
        assert probe.started == 2

    async def test_error_arrives_as_on_error(self) -> None:
        """An exception from the iterator is delivered to on_error, not raised."""
        probe = Probe([1, 2, 3], fail_after=2)
        with pytest.raises(ValueError, match="failed at 2"):
            await from_async_iterable(probe)
        assert probe.closed == 1

    async def test_dispose_cancels_and_closes(self) -> None:
        """Disposing mid-stream cancels the pump and closes the iterator, silently."""
        probe = Probe([1, 2, 3], block_after=1)
        got: list[object] = []
        subscription = from_async_iterable(probe).subscribe(got.append, got.append, lambda: got.append("done"))
        assert await asyncio.wait_for(_until(lambda: got == [1]), 2)

        subscription.dispose()
        await settle()

        assert probe.cancelled == 1
        assert probe.closed == 1
        assert got == [1]
        assert live_pump_tasks() == 0

    async def test_take_disposes_from_inside_emission(self) -> None:
        """Disposal during on_next (take) stops the pump without another item."""
        probe = Probe(list(range(100)))
        got = await from_async_iterable(probe).pipe(rx_ops.take(2), rx_ops.to_list())
        await settle()

        assert got == [0, 1]
        assert probe.closed == 1
        assert live_pump_tasks() == 0

    def test_sync_subscriber_is_served_by_rxllm_loop(self, no_leaks: None) -> None:
        """Without a running loop, the pump runs on rxllm's loop thread."""
        probe = Probe([1, 2])
        got: list[object] = []
        done = threading.Event()
        from_async_iterable(probe).subscribe(got.append, got.append, done.set)

        assert done.wait(2)
        assert got == [1, 2]
        assert probe.threads and threading.get_ident() not in probe.threads

    def test_dispose_from_another_thread(self, no_leaks: None) -> None:
        """Disposing from a foreign thread cancels the pump on its loop."""
        probe = Probe([1, 2], block_after=1)
        got: list[object] = []
        subscription = from_async_iterable(probe).subscribe(got.append)
        assert wait_for(lambda: got == [1])

        subscription.dispose()

        assert wait_for(lambda: probe.closed == 1)
        assert probe.cancelled == 1

    def test_dispose_before_start_never_starts(self, no_leaks: None) -> None:
        """A subscription disposed before its pump started never calls the factory."""
        probe = Probe([1])
        loop = get_loop()
        release = threading.Event()
        loop.call_soon_threadsafe(release.wait)  # hold rxllm's loop busy
        result: list[object] = []

        from_async_iterable(probe).subscribe(result.append).dispose()
        release.set()
        done = threading.Event()
        loop.call_soon_threadsafe(done.set)

        assert done.wait(2)
        assert probe.started == 0
        assert result == []

    async def test_works_with_rx_operators(self) -> None:
        """The Observable composes with ordinary reactivex operators."""
        source = from_async_iterable(Probe([1, 2, 3, 4]))
        got = await source.pipe(rx_ops.filter(lambda x: x % 2 == 0), rx_ops.map(lambda x: x * 10), rx_ops.to_list())

        assert got == [20, 40]
        assert isinstance(source, reactivex.Observable)


async def _until(predicate) -> bool:  # type: ignore[no-untyped-def]
    while not predicate():
        await asyncio.sleep(0.001)
    return True
