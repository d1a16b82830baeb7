"""The body's read timeout (``stream_timeout``): a stalled upstream fails, a slow but live one does not.

rxllm bounds each wait for body data with one timer per stream (not aiohttp's timer re-armed on
every read). These tests drive a real local aiohttp server whose every write waits on an
explicit :class:`asyncio.Queue`, and run the client on an event loop with a virtual clock
(:class:`VirtualClockLoop`): the test moves time forward itself, so nothing sleeps and no
assertion depends on the wall clock. The one real-time test uses a small ``stream_timeout``
and a server that waits on an event set only at its end.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import attrs
import orjson
import pytest
from aiohttp import web
from aiohttp.client_proto import ResponseHandler

import rxllm
from rxllm import errors
from rxllm.providers import ChatRequest, get_provider

T = TypeVar("T")

MESSAGES = [{"role": "user", "content": "hi"}]
KEY = "sk-test-watchdog-not-a-key"
WORDS = ("one", " two", " three", " four", " five", " six")


def event(content: str) -> bytes:
    """One OpenAI chat-completion chunk event carrying ``content``."""
    chunk = {
        "id": "chatcmpl-watchdog",
        "object": "chat.completion.chunk",
        "created": 1766084439,
        "model": "gpt-4o",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


DONE = b"data: [DONE]\n\n"


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock the test moves forward (:meth:`advance`), and which records its timers."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = 0.0
        self.timers: list[asyncio.TimerHandle] = []

    def time(self) -> float:
        return super().time() + self.offset

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward: timers now due run at the loop's next turn."""
        self.offset += seconds

    def advance_on_client_read(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward in the loop turn that next sees data for an aiohttp client.

        That makes the data and a timer due in the same turn: the order the loop then runs
        them in is what the test looks at.
        """
        self.jump = seconds

    def _process_events(self, event_list: Any) -> None:
        jump = getattr(self, "jump", 0.0)
        if jump and any(_is_client_read(key, mask) for key, mask in event_list):
            self.jump = 0.0
            self.offset += jump
        super()._process_events(event_list)  # type: ignore[misc]

    def call_at(self, when: float, callback: Callable[..., object], *args: Any, context: Any = None) -> Any:
        handle = super().call_at(when, callback, *args, context=context)
        self.timers.append(handle)
        return handle

    def watchdog_timers(self) -> list[asyncio.TimerHandle]:
        """The read-timeout timers rxllm armed that are still pending (neither run nor cancelled)."""
        pending = set(map(id, self._scheduled))  # type: ignore[attr-defined]
        return [
            h
            for h in self.timers
            if id(h) in pending and not h.cancelled() and "_ReadWatch" in getattr(h._callback, "__qualname__", "")  # type: ignore[attr-defined]
        ]


def _is_client_read(key: Any, mask: int) -> bool:
    """Whether a selector event is data for an aiohttp client connection."""
    reader = key.data[0] if mask & selectors.EVENT_READ else None
    transport = getattr(getattr(reader, "_callback", None), "__self__", None)
    return isinstance(getattr(transport, "_protocol", None), ResponseHandler)


def run_virtual(main: Callable[[VirtualClockLoop], Awaitable[T]]) -> T:
    """Run ``main(loop)`` on a fresh :class:`VirtualClockLoop`, closing rxllm's session at the end."""

    async def wrapper() -> T:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualClockLoop)
        try:
            return await main(loop)
        finally:
            await rxllm.aclose()

    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        return runner.run(wrapper())


async def settle() -> None:
    """Let the loop run every callback that is ready (timers due on the virtual clock included)."""
    for _ in range(20):
        await asyncio.sleep(0)


class GatedServer:
    """A real local OpenAI-compatible server: it writes each event only when the test releases it.

    ``release(n)`` lets ``n`` more writes through; ``requests`` counts requests served and
    ``hold_headers`` makes the next request wait for ``open_headers`` before answering.
    """

    def __init__(self, events: list[bytes]) -> None:
        self.events = events
        self.gate: asyncio.Queue[None] = asyncio.Queue()
        self.written = asyncio.Queue[int]()
        self.requests = 0
        self.hold_headers = False
        self.open_headers = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> GatedServer:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.handle)
        # a client that goes away cancels the handler (else it would wait at its gate for ever)
        self.runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/v1"
        return self

    async def stop(self) -> None:
        self.open_headers.set()
        self.release(len(self.events))
        if self.runner is not None:
            await self.runner.cleanup()

    def release(self, n: int = 1) -> None:
        for _ in range(n):
            self.gate.put_nowait(None)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        await request.read()
        if self.hold_headers:
            await self.open_headers.wait()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            for i, data in enumerate(self.events):
                await self.gate.get()
                await resp.write(data)
                self.written.put_nowait(i)
            await resp.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            pass
        return resp


def request_for(url: str, stream_timeout: float | None) -> ChatRequest:
    """A chat request to the local server (OpenAI wire format)."""
    return ChatRequest(
        model="gpt-4o",
        provider="openai",
        messages=tuple(MESSAGES),
        api_base=url,
        api_key=KEY,
        stream_timeout=stream_timeout,
    )


def body_events() -> list[bytes]:
    """The server's body: one event per word, then ``[DONE]``."""
    return [*(event(w) for w in WORDS), DONE]


async def pull(it: AsyncIterator[Any]) -> Any:
    """The next chunk of ``it``."""
    return await it.__anext__()


class TestStalledUpstream:
    def test_a_silent_upstream_fails_with_timeout_after_stream_timeout(self) -> None:
        """A read that gets nothing for stream_timeout raises rxllm.Timeout naming the limit."""

        async def main(loop: VirtualClockLoop) -> BaseException:
            server = await GatedServer(body_events()).start()
            try:
                server.release(1)
                stream = get_provider("openai").stream(request_for(server.url, 10.0))
                first = await pull(stream)
                assert first.choices[0].delta.content == "one"
                waiting = asyncio.ensure_future(pull(stream))
                await settle()
                loop.advance(9.0)  # not yet: the read has waited 9 of its 10 s
                await settle()
                assert not waiting.done()
                loop.advance(1.5)
                await settle()
                with pytest.raises(errors.Timeout) as info:
                    await waiting
                assert loop.watchdog_timers() == []
                await stream.aclose()  # type: ignore[attr-defined]
                return info.value
            finally:
                await server.stop()

        exc = run_virtual(main)

        assert isinstance(exc, rxllm.Timeout)
        assert exc.message.startswith("no data from the server for 10 s while streaming (stream_timeout)")
        assert exc.status_code == 408
        assert exc.__cause__ is None and exc.__context__ is None

    def test_timeout_names_timeout_when_only_timeout_is_given(self) -> None:
        """timeout= alone bounds each body read too, and the error names 'timeout'."""

        async def main(loop: VirtualClockLoop) -> BaseException:
            server = await GatedServer(body_events()).start()
            try:
                server.release(1)
                request = attrs.evolve(request_for(server.url, None), timeout=4.0)
                stream = get_provider("openai").stream(request)
                await pull(stream)
                waiting = asyncio.ensure_future(pull(stream))
                await settle()
                loop.advance(5.0)
                await settle()
                with pytest.raises(errors.Timeout) as info:
                    await waiting
                await stream.aclose()  # type: ignore[attr-defined]
                return info.value
            finally:
                await server.stop()

        exc = run_virtual(main)

        assert "no data from the server for 4 s while streaming (timeout)" in str(exc)

    @pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
    def test_a_stalled_upstream_fails_in_real_time(self, loop_kind: str) -> None:
        """Real clock, asyncio and uvloop: an upstream waiting on an event never set fails after stream_timeout."""

        async def main() -> tuple[list[str], BaseException, set[asyncio.Task[Any]]]:
            never = asyncio.Event()
            app = web.Application()

            async def handle(request: web.Request) -> web.StreamResponse:
                await request.read()
                resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
                await resp.prepare(request)
                await resp.write(event("hello"))
                await never.wait()
                return resp

            app.router.add_post("/v1/chat/completions", handle)
            runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
            before = set(asyncio.all_tasks())
            seen: list[str] = []
            try:
                with pytest.raises(rxllm.Timeout) as info:
                    response = await rxllm.acompletion(
                        "openai/gpt-4o", MESSAGES, stream=True, api_base=url, api_key=KEY, stream_timeout=0.2
                    )
                    async for chunk in response:
                        seen.append(chunk.choices[0].delta.content or "")
                await settle()
                extra = {t for t in asyncio.all_tasks() - before if not t.done()}
                return seen, info.value, extra
            finally:
                never.set()
                await rxllm.aclose()
                await runner.cleanup()

        factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
        if loop_kind == "uvloop":
            import uvloop

            factory = uvloop.new_event_loop
        with asyncio.Runner(loop_factory=factory) as runner:
            seen, exc, extra = runner.run(main())

        assert seen == ["hello"]
        assert "no data from the server for 0.2 s while streaming (stream_timeout)" in str(exc)
        assert extra == set()


class TestSlowButAlive:
    def test_writes_within_the_limit_never_time_out_however_long_the_stream(self) -> None:
        """Each gap shorter than stream_timeout: no error, though the stream lasts three times the limit."""

        async def main(loop: VirtualClockLoop) -> tuple[str, float]:
            server = await GatedServer(body_events()).start()
            try:
                started = loop.time()
                server.release(1)
                stream = get_provider("openai").stream(request_for(server.url, 10.0))
                text = [(await pull(stream)).choices[0].delta.content]
                for _ in WORDS[1:]:
                    waiting = asyncio.ensure_future(pull(stream))
                    await settle()
                    loop.advance(6.0)  # 6 s of silence, then the next write
                    await settle()
                    assert not waiting.done()
                    server.release(1)
                    text.append((await waiting).choices[0].delta.content)
                server.release(1)  # [DONE]
                rest = [c async for c in stream]
                assert rest == []
                return "".join(text), loop.time() - started
            finally:
                await server.stop()

        text, elapsed = run_virtual(main)

        assert text == "".join(WORDS)
        assert elapsed > 3 * 10.0  # the whole stream took far longer than stream_timeout

    def test_time_the_consumer_spends_between_reads_does_not_count(self) -> None:
        """A consumer that holds the stream longer than stream_timeout, with data waiting, reads on fine."""

        async def main(loop: VirtualClockLoop) -> str:
            server = await GatedServer(body_events()).start()
            try:
                server.release(1)
                stream = get_provider("openai").stream(request_for(server.url, 10.0))
                text = [(await pull(stream)).choices[0].delta.content]
                server.release(2)  # two more events arrive while the consumer is busy
                for _ in range(3):  # the first event, then those two
                    await server.written.get()
                await settle()
                loop.advance(25.0)
                await settle()
                text.append((await pull(stream)).choices[0].delta.content)
                server.release(len(WORDS))  # the rest, and [DONE]
                text.extend([c.choices[0].delta.content async for c in stream])
                return "".join(text)
            finally:
                await server.stop()

        assert run_virtual(main) == "".join(WORDS)

    def test_data_arriving_in_the_turn_the_limit_ends_wins(self) -> None:
        """Data and the deadline in the same loop turn: the read gets the data, no Timeout."""

        async def main(loop: VirtualClockLoop) -> str:
            server = await GatedServer(body_events()).start()
            try:
                server.release(1)
                stream = get_provider("openai").stream(request_for(server.url, 10.0))
                text = [(await pull(stream)).choices[0].delta.content]
                waiting = asyncio.ensure_future(pull(stream))
                await settle()
                loop.advance(9.0)
                await settle()
                loop.advance_on_client_read(2.0)  # the next data comes as the 10 s run out
                server.release(1)
                text.append((await waiting).choices[0].delta.content)
                assert loop.offset == 11.0  # the jump happened
                server.release(len(WORDS))
                text.extend([c.choices[0].delta.content async for c in stream])
                return "".join(text)
            finally:
                await server.stop()

        assert run_virtual(main) == "".join(WORDS)

    def test_each_wait_gets_the_whole_limit_again(self) -> None:
        """A read that starts after a long quiet spell between reads still gets all of stream_timeout."""

        async def main(loop: VirtualClockLoop) -> str:
            server = await GatedServer(body_events()).start()
            try:
                server.release(2)
                stream = get_provider("openai").stream(request_for(server.url, 10.0))
                text = [(await pull(stream)).choices[0].delta.content]
                await settle()
                loop.advance(15.0)  # the consumer is away past the timer's first check
                await settle()
                text.append((await pull(stream)).choices[0].delta.content)
                waiting = asyncio.ensure_future(pull(stream))
                await settle()
                loop.advance(9.0)
                await settle()
                assert not waiting.done()
                server.release(len(WORDS))
                text.append((await waiting).choices[0].delta.content)
                text.extend([c.choices[0].delta.content async for c in stream])
                return "".join(text)
            finally:
                await server.stop()

        assert run_virtual(main) == "".join(WORDS)


class TestCleanup:
    def test_closing_a_stream_cancels_its_timer(self) -> None:
        """aclose() mid-stream: no read-timeout timer left pending, no task left running."""

        async def main(loop: VirtualClockLoop) -> tuple[int, int]:
            server = await GatedServer(body_events()).start()
            try:
                server.release(1)
                stream = get_provider("openai").stream(request_for(server.url, 10.0))
                await pull(stream)
                armed = len(loop.watchdog_timers())
                await stream.aclose()  # type: ignore[attr-defined]
                await settle()
                left = len(loop.watchdog_timers())
                return armed, left
            finally:
                await server.stop()

        armed, left = run_virtual(main)

        assert armed == 1  # one timer per stream while it is open
        assert left == 0

    def test_cancelling_the_consumer_cancels_the_timer(self) -> None:
        """Cancelling a task blocked in a read: CancelledError, then no timer and no stray task."""

        async def main(loop: VirtualClockLoop) -> tuple[int, set[asyncio.Task[Any]]]:
            server = await GatedServer(body_events()).start()
            before = set(asyncio.all_tasks())
            try:
                server.release(1)
                response = await rxllm.acompletion(
                    "openai/gpt-4o", MESSAGES, stream=True, api_base=server.url, api_key=KEY, stream_timeout=10.0
                )

                async def consume() -> None:
                    async for _ in response:
                        pass

                task = asyncio.ensure_future(consume())
                await settle()
                assert loop.watchdog_timers()
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                await settle()
                return len(loop.watchdog_timers()), set(asyncio.all_tasks()) - before
            finally:
                await server.stop()

        left, extra = run_virtual(main)

        assert left == 0
        assert {t for t in extra if not t.done()} == set()

    def test_a_finished_stream_leaves_no_timer(self) -> None:
        """A stream read to [DONE] cancels its timer."""

        async def main(loop: VirtualClockLoop) -> int:
            server = await GatedServer(body_events()).start()
            try:
                server.release(len(body_events()))
                response = await rxllm.acompletion(
                    "openai/gpt-4o", MESSAGES, stream=True, api_base=server.url, api_key=KEY, stream_timeout=10.0
                )
                text = "".join([c.choices[0].delta.content or "" async for c in response])
                assert text == "".join(WORDS)
                await settle()
                return len(loop.watchdog_timers())
            finally:
                await server.stop()

        assert run_virtual(main) == 0


class TestHeaderTimeoutOnAReusedConnection:
    def test_the_next_request_on_a_pooled_connection_still_times_its_headers(self) -> None:
        """After a streamed body, the same pooled connection's next request still has its header timeout."""

        async def main(loop: VirtualClockLoop) -> tuple[BaseException, int]:
            server = await GatedServer(body_events()).start()
            try:
                server.release(len(body_events()))
                request = request_for(server.url, 10.0)
                chunks = [c async for c in get_provider("openai").stream(request)]
                assert len(chunks) == len(WORDS)
                server.hold_headers = True
                stream = get_provider("openai").stream(request)
                waiting = asyncio.ensure_future(pull(stream))
                await settle()
                loop.advance(11.0)
                await settle()
                with pytest.raises(errors.Timeout) as info:
                    await waiting
                return info.value, server.requests
            finally:
                await server.stop()

        exc, requests = run_virtual(main)

        assert requests == 2
        assert "sent no response headers within 10 s of the request (stream_timeout)" in str(exc)
