"""Issue 11 (library side): secrets, redirects, timeouts, sessions, backpressure, and the small faults.

Real local servers throughout (one on its own thread and loop, so ``completion``,
``asyncio.run(acompletion(...))`` and ``stream()`` can all reach it), explicit events or
bounded polls instead of sleeps, and virtual time for the retry delays.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import warnings
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from providers.hardening_support import Answer, ThreadedServer
from reactivex.testing import ReactiveTest, TestScheduler

import rxllm
from rxllm import operators as ops
from rxllm._secrets import register_secret, safe_url, scrub
from rxllm.builder import ResponseBuilder
from rxllm.errors import RateLimitError
from rxllm.providers import _http
from rxllm.retry_policy import DEFAULT_RETRY_ON
from tests.strategies import content_chunk, finish_chunk, kinds, make_chunk, tool_chunk, tool_fragment

MESSAGES = [{"role": "user", "content": "hi"}]
KEY = "sk-hardening-KEY-never-shown-0042"
GUARD = 30.0  # an outer hang detector only

#: (model, the auth header its provider sends, the env variable it reads the key from)
AUTH = [
    ("openai/gpt-4o", "Authorization", "OPENAI_API_KEY"),
    ("anthropic/claude-sonnet-4-5", "x-api-key", "ANTHROPIC_API_KEY"),
    ("gemini/gemini-2.5-flash", "x-goog-api-key", "GEMINI_API_KEY"),
    ("azure_openai/my-deployment", "api-key", "AZURE_OPENAI_API_KEY"),
]

FIRST_EVENT_END = 165  # OPENAI_OK's first event ends here (blank line included)

OPENAI_OK = (
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
    b'"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]}\n\n'
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
    b'"delta":{},"finish_reason":"stop"}]}\n\n'
    b"data: [DONE]\n\n"
)

on_next, on_error, on_completed = ReactiveTest.on_next, ReactiveTest.on_error, ReactiveTest.on_completed


@pytest.fixture(scope="module")
def shared_server() -> Iterator[ThreadedServer]:
    """One threaded server for the module."""
    server = ThreadedServer()
    yield server
    server.close()


@pytest.fixture
def srv(shared_server: ThreadedServer) -> ThreadedServer:
    """The threaded server, with a fresh answer and request log."""
    shared_server.answer = Answer(body=OPENAI_OK)
    shared_server.requests.clear()
    shared_server.bytes_written = shared_server.bodies_done = 0
    return shared_server


def chain(exc: BaseException | None) -> Iterator[BaseException]:
    """An exception and everything in its ``__cause__``/``__context__`` chains."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo.extend([e.__cause__, e.__context__])


def assert_clean(exc: BaseException, *secrets: str) -> None:
    """No secret in the error's text, body or chain, and no aiohttp object anywhere in the chain."""
    for e in chain(exc):
        assert type(e).__module__.split(".")[0] != "aiohttp", f"aiohttp object in the chain: {e!r}"
        for secret in secrets:
            assert secret not in str(e) and secret not in repr(e)
            assert secret not in repr(getattr(e, "body", None))


def error_of(fn: Any) -> BaseException:
    """The exception ``fn()`` raises (failing when it returns)."""
    try:
        fn()
    except BaseException as exc:
        return exc
    raise AssertionError("no error raised")


def run(coro: Any) -> Any:
    """Run a coroutine on a fresh loop, with the hang guard."""
    return asyncio.run(asyncio.wait_for(coro, GUARD))


async def drain_async(model: str, **params: Any) -> BaseException | None:
    try:
        stream = await rxllm.acompletion(model, MESSAGES, stream=True, **params)
        async for _ in stream:
            pass
    except BaseException as exc:
        return exc
    return None


class TestRedirects:
    @pytest.mark.parametrize(("model", "header", "env"), AUTH)
    def test_a_redirect_is_a_typed_error_and_not_followed(
        self, srv: ThreadedServer, model: str, header: str, env: str
    ) -> None:
        """A 302/307 to another origin is an APIError naming the status and origin (no query); the key stays home."""
        for status in (302, 307):
            srv.requests.clear()
            srv.answer = Answer(status=status, headers={"Location": "http://evil.example:8443/steal?token=abc123xyz"})

            exc = error_of(lambda: rxllm.completion(model, MESSAGES, api_base=srv.url, api_key=KEY))

            assert isinstance(exc, rxllm.APIError)
            assert str(status) in str(exc) and "http://evil.example:8443" in str(exc)
            assert "abc123xyz" not in str(exc) and "/steal" not in str(exc)
            assert len(srv.requests) == 1 and srv.requests[0]["method"] == "POST"
            assert srv.requests[0]["headers"].get(header, "").endswith(KEY)
            assert_clean(exc, KEY)


class TestSecrets:
    @pytest.mark.parametrize(("model", "header", "env"), AUTH)
    def test_an_echoed_key_never_reaches_the_caller(
        self, srv: ThreadedServer, model: str, header: str, env: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An error body echoing the caller's key, the env key or an extra header value is scrubbed everywhere."""
        env_key = f"env-{KEY}-{env}"
        extra = f"extra-secret-value-{env}"
        monkeypatch.setenv(env, env_key)
        for key, params in (
            (KEY, {"api_key": KEY}),
            (env_key, {}),
            (extra, {"api_key": KEY, "extra_headers": {"X-Custom-Auth": extra}}),
        ):
            body = f'{{"error": {{"message": "invalid key {key}", "type": "authentication_error"}}}}'
            srv.answer = Answer(status=401, body=body.encode())
            records: list[logging.LogRecord] = []
            handler = logging.Handler()
            handler.emit = records.append  # type: ignore[method-assign]
            logging.getLogger("rxllm").addHandler(handler)
            logging.getLogger("rxllm").setLevel(logging.DEBUG)
            try:
                exc = error_of(lambda p=params: rxllm.completion(model, MESSAGES, api_base=srv.url, **p))
                piped = run(_piped_error(model, srv.url, params))
            finally:
                logging.getLogger("rxllm").removeHandler(handler)

            assert isinstance(exc, rxllm.AuthenticationError)
            assert "***" in str(exc)
            assert_clean(exc, key)
            assert_clean(piped, key)
            assert all(key not in r.getMessage() for r in records)

    def test_a_key_in_the_api_base_query_is_never_printed(self) -> None:
        """api_base with ?key=... : the connection error names the endpoint without the query string."""
        exc = error_of(
            lambda: rxllm.completion("openai/gpt-4o", MESSAGES, api_base=f"http://127.0.0.1:1/v1?key={KEY}", timeout=5)
        )

        assert isinstance(exc, rxllm.APIConnectionError)
        assert_clean(exc, KEY)

    def test_credentials_in_api_base_are_a_bad_request_without_the_password(self) -> None:
        """api_base with user:pw@ is refused before any I/O, and the password is not printed."""
        exc = error_of(
            lambda: rxllm.completion("openai/gpt-4o", MESSAGES, api_base="http://user:hunter2secret@localhost/v1")
        )

        assert isinstance(exc, rxllm.BadRequestError)
        assert "hunter2secret" not in str(exc)

    def test_the_scrubber_masks_registered_values_and_key_shapes(self) -> None:
        """register_secret + scrub: registered values, bearer tokens, URL passwords and key query values."""
        register_secret("registered-value-123456")

        text = scrub("a registered-value-123456 b Bearer abcdefghijkl c https://u:pw123456@h/x?api-key=zzz999&ok=1")

        assert "registered-value-123456" not in text and "abcdefghijkl" not in text
        assert "pw123456" not in text and "zzz999" not in text and "ok=1" in text
        assert safe_url("https://u:p@host:8080/v1?key=s") == "https://host:8080/v1"

    def test_no_aiohttp_object_in_the_chain_of_transport_errors(self, srv: ThreadedServer) -> None:
        """Connection refused, a cut body and a read timeout: typed errors whose chains hold no aiohttp object."""
        refused = error_of(
            lambda: rxllm.completion("openai/gpt-4o", MESSAGES, api_base="http://127.0.0.1:1", api_key=KEY)
        )
        srv.answer = Answer(body=OPENAI_OK, stall_after=40)
        stalled = error_of(
            lambda: rxllm.completion("openai/gpt-4o", MESSAGES, api_base=srv.url, api_key=KEY, stream_timeout=0.3)
        )

        assert isinstance(refused, rxllm.APIConnectionError)
        assert isinstance(stalled, rxllm.Timeout)
        for exc in (refused, stalled):
            assert_clean(exc, KEY)


async def _piped_error(model: str, url: str, params: dict[str, Any]) -> BaseException:
    source = rxllm.stream(model, MESSAGES, api_base=url, **params).pipe(ops.tap_cost(lambda r: None), ops.log_stream())
    try:
        async for _ in rxllm.to_async_iterator(source):
            pass
    except BaseException as exc:
        return exc
    raise AssertionError("no error")


class TestTimeouts:
    def test_timeout_bounds_every_read(self, srv: ThreadedServer) -> None:
        """timeout= alone: a server that sends a chunk and stalls raises Timeout naming 'timeout'."""
        srv.answer = Answer(body=OPENAI_OK, stall_after=FIRST_EVENT_END)

        exc = error_of(
            lambda: list(rxllm.completion("openai/gpt-4o", MESSAGES, stream=True, api_base=srv.url, timeout=0.3))
        )

        assert isinstance(exc, rxllm.Timeout)
        assert "(timeout)" in exc.message

    def test_a_header_wait_names_the_limit_not_connecting(self, srv: ThreadedServer) -> None:
        """stream_timeout firing while waiting for headers says so, not 'could not connect'."""
        srv.answer = Answer(hold_headers=True)

        exc = error_of(lambda: rxllm.completion("openai/gpt-4o", MESSAGES, api_base=srv.url, stream_timeout=0.3))

        assert isinstance(exc, rxllm.Timeout)
        assert "response headers" in exc.message and "stream_timeout" in exc.message
        assert "connect" not in exc.message

    @pytest.mark.parametrize("operator", ["stall_timeout", "deadline", "first_chunk_timeout"])
    def test_timeout_operators_fire_in_pull_mode(self, srv: ThreadedServer, operator: str) -> None:
        """to_async_iterator(pull=True), silent upstream: the operator's Timeout arrives, the request is closed."""
        srv.answer = Answer(body=OPENAI_OK, stall_after=FIRST_EVENT_END if operator != "first_chunk_timeout" else 0)

        async def main() -> BaseException:
            source = rxllm.stream("openai/gpt-4o", MESSAGES, api_base=srv.url, stream_timeout=60).pipe(
                getattr(ops, operator)(0.2)
            )
            it = rxllm.to_async_iterator(source, pull=True)
            try:
                async for _ in it:
                    pass
            except BaseException as exc:
                return exc
            finally:
                await rxllm.aclose()
            raise AssertionError("no error")

        exc = run(main())

        assert isinstance(exc, rxllm.Timeout) and operator in exc.message
        assert srv.connections() == 0


class TestRetryAfter:
    @pytest.mark.parametrize(
        ("hint", "expected"), [(3600.0, 60.0), (float("inf"), 0.5), (float("nan"), 0.5), (1e308, 0.5), (2.0, 2.0)]
    )
    def test_retry_after_is_capped_and_nonsense_ignored(self, hint: float, expected: float) -> None:
        """Retry-After: at most max_retry_after (60 s); inf, nan and absurd values fall back to the backoff."""
        scheduler = TestScheduler()
        attempts: list[float] = []

        def factory(_: Any = None) -> Any:
            import reactivex

            def subscribe(observer: Any, _s: Any = None) -> Any:
                attempts.append(scheduler.clock)
                observer.on_error(RateLimitError("slow down", retry_after=hint))
                return None

            return reactivex.create(subscribe)

        scheduler.start(lambda: factory().pipe(ops.retry_stream(2, backoff=0.5, scheduler=scheduler)), disposed=10_000)

        assert attempts[1] - attempts[0] == pytest.approx(expected)

    def test_no_retry_past_the_deadline(self) -> None:
        """A retry whose wait would end past deadline= is not made: the error propagates at once."""
        scheduler = TestScheduler()
        xs = scheduler.create_cold_observable(on_error(10, RateLimitError("later", retry_after=30)))

        results = scheduler.start(lambda: xs.pipe(ops.retry_stream(3, scheduler=scheduler, deadline=20)))

        assert kinds(results.messages) == [(210, "E")]

    def test_retry_after_header_parsing(self) -> None:
        """parse_retry_after: numbers and HTTP dates; inf, nan, negatives and absurd values are None."""
        from rxllm.errors import parse_retry_after

        assert parse_retry_after("3") == 3.0
        assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
        assert [parse_retry_after(v) for v in ("inf", "nan", "-1", "1e308", "soon", True)] == [None] * 6


def _live_sessions() -> int:
    """Open aiohttp sessions in the process (rxllm's own loop may hold one)."""
    return sum(1 for o in gc.get_objects() if isinstance(o, aiohttp.ClientSession) and not o.closed)


class TestSessions:
    def test_repeated_asyncio_run_leaves_nothing_behind(self, srv: ThreadedServer) -> None:
        """50 x asyncio.run(acompletion(...)): no live session, no extra fd, no server connection, no warning."""
        run(drain_async("openai/gpt-4o", api_base=srv.url, api_key=KEY))  # warm up imports
        gc.collect()
        fds_before = len(os.listdir("/proc/self/fd"))
        sessions_before = _live_sessions()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(50):
                assert run(drain_async("openai/gpt-4o", api_base=srv.url, api_key=KEY)) is None
            gc.collect()

        assert _live_sessions() <= sessions_before
        assert len(os.listdir("/proc/self/fd")) <= fds_before
        assert srv.connections() == 0
        assert not [w for w in caught if "Unclosed" in str(w.message)]

    def test_aclose_closes_the_running_loops_session(self, srv: ThreadedServer) -> None:
        """await rxllm.aclose() releases the session and its connections at once."""

        async def main() -> bool:
            await drain_async("openai/gpt-4o", api_base=srv.url, api_key=KEY)
            session = _http._sessions.get(asyncio.get_running_loop())
            await rxllm.aclose()
            return session is not None and session.closed

        assert run(main())
        assert srv.connections() == 0


class TestBackpressure:
    def _big_body(self, n: int = 20000) -> bytes:
        chunk = (
            b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
            b'"delta":{"content":"' + b"x" * 900 + b'"},"finish_reason":null}]}\n\n'
        )
        return chunk * n + b"data: [DONE]\n\n"

    def test_a_slow_async_consumer_stops_the_upstream(self, srv: ThreadedServer) -> None:
        """to_async_iterator holds at most ~max_buffer; the pump pauses and the server cannot finish its 20 MB."""
        srv.answer = Answer(body=self._big_body(), piece_size=64 * 1024)

        async def main() -> tuple[int, int]:
            it = rxllm.to_async_iterator(
                rxllm.stream("openai/gpt-4o", MESSAGES, api_base=srv.url), max_buffer=64 * 1024
            )
            await it.__anext__()
            channel = it._channel
            assert channel is not None
            for _ in range(2000):  # bounded poll for the explicit event "the pump is waiting"
                if channel.flow._waiter is not None:
                    break
                await asyncio.sleep(0.005)
            held = channel.flow.size
            await it.aclose()
            await rxllm.aclose()
            return held, srv.bodies_done

        held, done = run(main())

        assert 0 < held <= 64 * 1024 + 2048
        assert done == 0
        assert srv.bytes_written < len(self._big_body())

    def test_a_slow_blocking_consumer_stops_the_upstream(self, srv: ThreadedServer) -> None:
        """to_iterator too: the buffer stays bounded while the consumer does not read."""
        srv.answer = Answer(body=self._big_body(), piece_size=64 * 1024)

        it = rxllm.to_iterator(rxllm.stream("openai/gpt-4o", MESSAGES, api_base=srv.url), max_buffer=64 * 1024)
        next(it)
        for _ in range(2000):
            if it._flow._waiter is not None:
                break
            import time

            time.sleep(0.005)
        held = it._flow.size
        it.close()

        assert 0 < held <= 64 * 1024 + 2048
        assert srv.bodies_done == 0


class TestSmallFaults:
    def test_interleaved_tool_call_fragments_are_assembled(self) -> None:
        """accumulate_tool_calls with two calls' fragments interleaved emits each call's full arguments."""
        chunks = [
            tool_chunk(tool_fragment(0, id="call_a", name="f", arguments="")),
            tool_chunk(tool_fragment(1, id="call_b", name="g", arguments="")),
            tool_chunk(tool_fragment(0, arguments='{"x": ')),
            tool_chunk(tool_fragment(1, arguments='{"y": 2}')),
            tool_chunk(tool_fragment(0, arguments="1}")),
            finish_chunk("tool_calls"),
        ]
        import reactivex
        from reactivex import operators as rx

        calls = reactivex.from_iterable(chunks).pipe(ops.accumulate_tool_calls(), rx.to_list()).run()

        assert sorted((c.id, c.function.arguments) for c in calls) == [("call_a", '{"x": 1}'), ("call_b", '{"y": 2}')]

    def test_mid_stream_snapshot_has_no_finish_reason_for_unfinished_choices(self) -> None:
        """ResponseSnapshot.response mid-stream: finish_reason None until the choice finishes."""
        builder = ResponseBuilder()
        builder.add(content_chunk("Hel"))
        mid = builder.snapshot()
        builder.add(finish_chunk("stop"))

        assert mid.response.choices[0].finish_reason is None
        assert builder.snapshot().response.choices[0].finish_reason == "stop"

    def test_api_base_with_a_query_string(self, srv: ThreadedServer) -> None:
        """api_base '.../v1?api-version=X' posts to /v1/chat/completions?api-version=X."""
        rxllm.completion("openai/gpt-4o", MESSAGES, api_base=srv.url + "/v1?api-version=2024-10", api_key=KEY)

        assert srv.requests[-1]["path"] == "/v1/chat/completions?api-version=2024-10"

    def test_a_body_cut_inside_its_first_event_is_a_cut_stream(self, srv: ThreadedServer) -> None:
        """A body that ends inside its first event is APIConnectionError (retryable), not MalformedStreamError."""
        srv.answer = Answer(body=OPENAI_OK[:30])

        exc = error_of(lambda: rxllm.completion("openai/gpt-4o", MESSAGES, api_base=srv.url, api_key=KEY))

        assert type(exc) is rxllm.APIConnectionError
        assert isinstance(exc, DEFAULT_RETRY_ON)

    def test_gemini_second_candidate_cut_is_a_cut_stream(self, srv: ThreadedServer) -> None:
        """Two candidates, body cut after candidate 0 finished: APIConnectionError, not 'stop'."""
        srv.answer = Answer(
            body=(
                b'data: {"candidates":[{"index":0,"content":{"parts":[{"text":"Done."}]},"finishReason":"STOP"},'
                b'{"index":1,"content":{"parts":[{"text":"Half an ans"}]}}]}\n\n'
            )
        )

        exc = error_of(
            lambda: rxllm.completion("gemini/gemini-2.5-flash", MESSAGES, n=2, api_base=srv.url, api_key=KEY)
        )

        assert isinstance(exc, rxllm.APIConnectionError) and "candidate 1" in exc.message


class TestPipelineErrors:
    def test_a_raising_map_reaches_every_edge_typed(self, srv: ThreadedServer) -> None:
        """A user's map that raises: a typed APIError at the blocking and the async edge (cause kept)."""
        from reactivex import operators as rx

        def boom(chunk: Any) -> Any:
            raise TypeError("user bug")

        source = rxllm.stream("openai/gpt-4o", MESSAGES, api_base=srv.url, api_key=KEY).pipe(rx.map(boom))

        blocking = error_of(lambda: list(rxllm.to_iterator(source)))

        async def main() -> BaseException:
            try:
                async for _ in rxllm.to_async_iterator(source, pull=True):
                    pass
            except BaseException as exc:
                return exc
            raise AssertionError("no error")

        pulled = run(main())
        for exc in (blocking, pulled):
            assert isinstance(exc, rxllm.APIError) and isinstance(exc.__cause__, TypeError)

    def test_errors_are_not_mutated_for_shared_subscribers(self) -> None:
        """to_response attaches the partial response to a copy: with share(), the upstream error is unchanged."""
        scheduler = TestScheduler()
        err = rxllm.InternalServerError("boom")
        xs = scheduler.create_hot_observable(on_next(210, make_chunk()), on_error(220, err))

        results = scheduler.start(lambda: xs.pipe(ops.to_response()))

        delivered = results.messages[-1].value.exception
        assert delivered is not err and delivered.partial_response is not None
        assert err.partial_response is None

    def test_a_raising_on_next_in_push_mode_is_delivered_not_lost(self, srv: ThreadedServer) -> None:
        """An operator that raises inside on_next during a push subscription: on_error arrives, no task error."""
        got: list[BaseException] = []
        done = asyncio.Event()

        class Exploding:
            def __call__(self, source: Any) -> Any:
                import reactivex

                def subscribe(observer: Any, scheduler: Any = None) -> Any:
                    def on_next_(chunk: Any) -> None:
                        raise KeyError("operator bug")

                    return source.subscribe(on_next_, observer.on_error, observer.on_completed, scheduler=scheduler)

                return reactivex.create(subscribe)

        async def main() -> None:
            source = rxllm.stream("openai/gpt-4o", MESSAGES, api_base=srv.url, api_key=KEY).pipe(Exploding())
            source.subscribe(on_error=lambda e: (got.append(e), done.set()), on_completed=done.set)
            await done.wait()
            await rxllm.aclose()

        run(main())

        assert len(got) == 1 and isinstance(got[0], rxllm.APIError)


def _event(name: str, data: str) -> bytes:
    return f"event: {name}\ndata: {data}\n\n".encode()


_START = _event("message_start", '{"type":"message_start","message":{"id":"m","usage":{"input_tokens":1}}}')

#: (model, body, the field the error must name): the issue's examples, one per provider shape.
MALFORMED = [
    ("openai/gpt-4o", b'data: {"id":"x","choices":5}\n\n', "choices"),
    ("openai/gpt-4o", b'data: {"id":"x","choices":[{"index":0,"delta":[1]}]}\n\n', "choices[0].delta"),
    ("openai/gpt-4o", b'data: {"id":"x","choices":[{"index":0,"delta":{"tool_calls":5}}]}\n\n', "tool_calls"),
    ("openai/gpt-4o", b'data: {"id":"x","choices":[{"index":[1],"delta":{"content":"a"}}]}\n\n', "index"),
    ("openai/gpt-4o", b'data: {"id":"x","choices":[],"usage":{"prompt_tokens":"3"}}\n\n', "usage.prompt_tokens"),
    ("openai/gpt-4o", b'data: {"id":"x","choices":[{"index":0,"delta":{"content":5}}]}\n\n', "delta.content"),
    (
        "anthropic/claude-sonnet-4-5",
        _START + _event("content_block_delta", '{"type":"content_block_delta","index":0,"delta":[1]}'),
        "delta",
    ),
    ("anthropic/claude-sonnet-4-5", _event("message_start", '{"type":"message_start","message":"hi"}'), "message"),
    (
        "anthropic/claude-sonnet-4-5",
        _START + _event("message_delta", '{"type":"message_delta","delta":{},"usage":{"output_tokens":"5"}}'),
        "usage.output_tokens",
    ),
    ("gemini/gemini-2.5-flash", b'data: {"candidates":["x"]}\n\n', "candidates[0]"),
    ("gemini/gemini-2.5-flash", b'data: {"candidates":[{"content":{"parts":[5]}}]}\n\n', "parts[0]"),
    (
        "gemini/gemini-2.5-flash",
        b'data: {"candidates":[{"content":{"parts":[{"text":"a"}]},"finishReason":"STOP"}],"usageMetadata":"x"}\n\n',
        "usageMetadata",
    ),
]


class TestMalformedFields:
    @pytest.mark.parametrize(("model", "body", "field"), MALFORMED)
    def test_a_malformed_field_is_named(self, srv: ThreadedServer, model: str, body: bytes, field: str) -> None:
        """A payload field of the wrong type: MalformedStreamError naming the field and the provider."""
        srv.answer = Answer(body=body)

        exc = error_of(lambda: rxllm.completion(model, MESSAGES, api_base=srv.url, api_key=KEY))

        assert isinstance(exc, rxllm.MalformedStreamError)
        assert field in exc.message and exc.llm_provider == model.split("/")[0]
