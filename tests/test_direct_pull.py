"""The async edge's direct pull of rxllm's own sources: the same stream as a subscription, cheaper.

``to_async_iterator`` iterates a :class:`~rxllm.streams.PullableObservable` (what
``from_async_iterable``/``stream()`` return, and ``acompletion``'s instrumented pipeline) itself
instead of subscribing it. These tests hold it to the general path: the same items, errors,
callbacks and closing, for every way a consumer can end a stream.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
import reactivex
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import content_chunk
from support import settle

import rxllm
from rxllm._instrument import CallInfo, instrument
from rxllm.adapters import to_async_iterator
from rxllm.streams import PullableObservable, from_async_iterable, live_pump_tasks


class Source:
    """A factory of async generators over chunks that may fail, recording calls and closing."""

    def __init__(self, contents: list[str], *, fail_at: int | None = None, api_error: bool = False) -> None:
        self.contents = contents
        self.fail_at = fail_at
        self.api_error = api_error
        self.calls = 0
        self.closed = 0

    def __call__(self):  # type: ignore[no-untyped-def]
        self.calls += 1

        async def gen():  # type: ignore[no-untyped-def]
            try:
                for i, text in enumerate(self.contents):
                    if i == self.fail_at:
                        if self.api_error:
                            raise rxllm.RateLimitError("slow down", llm_provider="mock", model="m")
                        raise KeyError("mid-stream")
                    if i % 3 == 2:
                        await asyncio.sleep(0)  # let a pump and its consumer interleave
                    yield content_chunk(text, model="m")
                if self.fail_at is not None and self.fail_at >= len(self.contents):
                    raise KeyError("at the end")
            finally:
                self.closed += 1

        return gen()


def general(source: Any) -> reactivex.Observable[Any]:
    """The same stream as a plain Observable, so the edge has to subscribe it."""
    return reactivex.Observable(lambda observer, scheduler=None: source.subscribe(observer, scheduler=scheduler))


def text_of(response: Any) -> str | None:
    return response.choices[0].message.content if response is not None and response.choices else None


def describe_error(exc: BaseException) -> tuple[Any, ...]:
    return (type(exc).__name__, str(exc), type(exc.__cause__).__name__, text_of(getattr(exc, "partial_response", None)))


async def consume(observable: Any, *, pull: bool, stop_after: int | None) -> tuple[list[str], Any]:
    """Iterate; stop (aclose) after ``stop_after`` items; the contents seen and the error, described."""
    got: list[str] = []
    it = to_async_iterator(observable, pull=pull)
    error = None
    try:
        async for chunk in it:
            got.append(chunk.choices[0].delta.content)
            if stop_after is not None and len(got) >= stop_after:
                break
    except rxllm.APIError as exc:
        error = describe_error(exc)
    await it.aclose()
    await settle()
    return got, error


def run_case(
    contents: list[str], fail_at: int | None, api_error: bool, stop_after: int | None, instrumented: bool
) -> dict[str, Any]:
    """The outcome of one stream consumed in all four ways (direct/general x pulled/pumped)."""
    outcomes: dict[str, Any] = {}
    for way in ("general pumped", "general pulled", "direct pumped", "direct pulled"):
        calls: list[tuple[str, Any]] = []
        rxllm.success_callback[:] = [lambda kw, resp, *_, calls=calls: calls.append((kw["outcome"], text_of(resp)))]
        rxllm.failure_callback[:] = [
            lambda kw, *_, calls=calls: calls.append(("error", describe_error(kw["exception"])))
        ]
        source = Source(contents, fail_at=fail_at, api_error=api_error)
        observable: Any = from_async_iterable(source)
        if instrumented:
            info = CallInfo(model="m", messages=[], params={}, stream=True, is_async=True)
            observable = observable.pipe(instrument(info, detect_repeats=True))
        if way.startswith("general"):
            observable = general(observable)
        got, error = asyncio.run(consume(observable, pull=way.endswith("pulled"), stop_after=stop_after))
        outcomes[way] = (got, error, calls, source.calls, source.closed)
    return outcomes


class TestEquivalence:
    @settings(max_examples=60, deadline=None)
    @given(
        contents=st.lists(st.sampled_from(["Hello", "Hello", " world", "ab", ""]), max_size=12),
        fail_at=st.none() | st.integers(0, 13),
        api_error=st.booleans(),
        stop_after=st.none() | st.integers(1, 12),
        instrumented=st.booleans(),
    )
    def test_direct_pull_is_the_subscription(
        self, contents: list[str], fail_at: int | None, api_error: bool, stop_after: int | None, instrumented: bool
    ) -> None:
        """Items, typed errors (with partial responses), callbacks and closing match the general path."""
        rxllm.REPEATED_STREAMING_CHUNK_LIMIT = 3  # repeats of "Hello" end some streams
        outcomes = run_case(contents, fail_at, api_error, stop_after, instrumented)

        # a pump reads ahead (it may see the end before the consumer stops), a pull does not:
        # each mode is held to the general path's same mode
        assert outcomes["direct pumped"] == outcomes["general pumped"]
        assert outcomes["direct pulled"] == outcomes["general pulled"]
        for _, _, calls, factory_calls, closed in outcomes.values():
            assert factory_calls == closed == 1
            if instrumented:
                assert len(calls) == 1  # exactly one callback per stream, whatever ended it


class TestDirectPull:
    async def test_a_bare_source_is_not_subscribed(self) -> None:
        """from_async_iterable's Observable is pullable; pulled, it runs no pump task at all."""
        source = Source(["a", "b", "c"])
        observable = from_async_iterable(source)
        pumps: list[int] = []

        assert isinstance(observable, PullableObservable)
        async for _ in to_async_iterator(observable, pull=True):
            pumps.append(live_pump_tasks())

        assert pumps == [0, 0, 0]
        assert source.closed == 1

    async def test_the_default_mode_keeps_a_bounded_pump(self) -> None:
        """Without pull=True, one pump task fills the buffer (and ends with the stream)."""
        source = Source(["a", "b", "c"])
        it = to_async_iterator(from_async_iterable(source))
        first = await it.__anext__()

        assert first.choices[0].delta.content == "a"
        assert it._channel is not None
        rest = [c.choices[0].delta.content async for c in it]
        await settle()
        assert rest == ["b", "c"]
        assert live_pump_tasks() == 0

    async def test_aclose_from_another_task_reaches_a_stalled_source_at_once(self) -> None:
        """A consumer waiting on a silent source: aclose() elsewhere closes it now; the consumer just stops."""
        closed = asyncio.Event()
        outcomes: list[str] = []
        rxllm.success_callback[:] = [lambda kw, *_: outcomes.append(kw["outcome"])]

        async def stalled():  # type: ignore[no-untyped-def]
            try:
                yield content_chunk("first")
                await asyncio.Event().wait()  # the upstream goes silent
                yield content_chunk("never")
            finally:
                closed.set()

        info = CallInfo(model="m", messages=[], params={}, stream=True, is_async=True)
        it = to_async_iterator(from_async_iterable(stalled).pipe(instrument(info)), pull=True)
        got: list[str] = []

        async def consume() -> None:
            async for chunk in it:
                got.append(chunk.choices[0].delta.content)

        task = asyncio.create_task(consume())
        while not got:
            await asyncio.sleep(0)
        await it.aclose()
        await asyncio.wait_for(task, 2)

        assert closed.is_set()
        assert got == ["first"]
        assert outcomes == ["cancelled"]

    async def test_cancelling_the_consumer_closes_the_source(self) -> None:
        """Task cancellation while pulling closes the generator and reports the stream as cancelled once."""
        closed = asyncio.Event()
        outcomes: list[str] = []
        rxllm.success_callback[:] = [lambda kw, *_: outcomes.append(kw["outcome"])]

        async def stalled():  # type: ignore[no-untyped-def]
            try:
                yield content_chunk("first")
                await asyncio.Event().wait()
                yield content_chunk("never")
            finally:
                closed.set()

        info = CallInfo(model="m", messages=[], params={}, stream=True, is_async=True)
        observable = from_async_iterable(stalled).pipe(instrument(info))

        async def consume() -> None:
            async for _ in to_async_iterator(observable, pull=True):
                pass

        task = asyncio.create_task(consume())
        await settle()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await settle()

        assert closed.is_set()
        assert outcomes == ["cancelled"]

    async def test_garbage_collection_closes_the_source(self) -> None:
        """An abandoned, directly pulled iterator closes its source when collected."""
        source = Source(["a", "b", "c", "d"])
        it = to_async_iterator(from_async_iterable(source), pull=True)
        await it.__anext__()
        del it
        gc.collect()
        await settle()

        assert source.closed == 1

    async def test_a_step_that_cannot_open_makes_no_request(self) -> None:
        """A bad module limit fails the stream at the first await, before the factory is called."""
        source = Source(["a"])
        info = CallInfo(model="m", messages=[], params={}, stream=True, is_async=True)
        rxllm.REPEATED_STREAMING_CHUNK_LIMIT = 0
        it = to_async_iterator(from_async_iterable(source).pipe(instrument(info, detect_repeats=True)), pull=True)

        with pytest.raises(rxllm.APIError, match="REPEATED_STREAMING_CHUNK_LIMIT"):
            await it.__anext__()
        assert source.calls == 0

    async def test_the_pipeline_stays_composable(self) -> None:
        """Operators piped onto a pullable stream make an ordinary Observable that still works."""
        from reactivex import operators as rx_ops

        source = Source(["a", "b", "c"])
        observable = from_async_iterable(source).pipe(rx_ops.map(lambda c: c.choices[0].delta.content))

        assert not isinstance(observable, PullableObservable)
        assert [x async for x in to_async_iterator(observable, pull=True)] == ["a", "b", "c"]
        assert await from_async_iterable(Source(["x"])).pipe(rx_ops.count()) == 1

    async def test_acompletion_uses_the_direct_pull(self) -> None:
        """acompletion(stream=True) on the mock provider: chunks, one completed callback, the response."""
        outcomes: list[str] = []
        rxllm.success_callback[:] = [lambda kw, *_: outcomes.append(kw["outcome"])]
        response = await rxllm.acompletion("mock/echo", [{"role": "user", "content": "hi"}], stream=True)

        assert isinstance(response.observable, PullableObservable)
        text = "".join([c.choices[0].delta.content or "" async for c in response if c.choices])
        await settle()

        assert text == response.response.choices[0].message.content
        assert outcomes == ["completed"]
        assert live_pump_tasks() == 0
