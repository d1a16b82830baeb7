"""The compatibility surface: the seed documents' LiteLLM examples, with rxllm for litellm."""

from __future__ import annotations

import asyncio
import gc
import threading

import pytest
from support import settle, wait_for

import rxllm
from rxllm.streams import live_pump_tasks

MESSAGES = [{"role": "user", "content": "Hey, how's it going?"}]


class TestSeedExamples:
    def test_streaming_responses(self, no_leaks: None, capsys: pytest.CaptureFixture[str]) -> None:
        """completion(stream=True): iterate parts and print delta content (seed 000/001)."""
        response = rxllm.completion(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, mock_response="Mock response content"
        )
        for part in response:
            print(part.choices[0].delta.content or "")

        assert capsys.readouterr().out.split("\n")[:3] == ["Mock", " response", " content"]

    def test_stream_chunk_builder_helper(self, no_leaks: None) -> None:
        """Collect the chunks and rebuild the full response with stream_chunk_builder."""
        chunks = []
        response = rxllm.completion(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, mock_response="I am fine, thanks!"
        )
        for chunk in response:
            chunks.append(chunk)

        rebuilt = rxllm.stream_chunk_builder(chunks, messages=MESSAGES)

        assert rebuilt.choices[0].message.content == "I am fine, thanks!"
        assert rebuilt.choices[0].finish_reason == "stop"
        assert rebuilt.usage.total_tokens > 0

    def test_async_completion(self) -> None:
        """await acompletion(...) returns the whole response (seed: test_get_response)."""

        async def test_get_response():  # type: ignore[no-untyped-def]
            user_message = "Hello, how are you?"
            messages = [{"content": user_message, "role": "user"}]
            return await rxllm.acompletion(model="gpt-4o-mini", messages=messages, mock_response="Fine.")

        response = asyncio.run(test_get_response())

        assert response.choices[0].message.content == "Fine."
        assert response.object == "chat.completion"

    def test_async_streaming(self) -> None:
        """await acompletion(stream=True) then async for (seed: completion_call)."""
        received: list[str] = []

        async def completion_call() -> None:
            response = await rxllm.acompletion(
                model="gpt-4o-mini",
                messages=[{"content": "Hello, how are you?", "role": "user"}],
                stream=True,
                mock_response="Streaming hello",
            )
            async for chunk in response:
                received.append(chunk.choices[0].delta.content or "")

        asyncio.run(completion_call())

        assert "".join(received) == "Streaming hello"

    def test_infinite_loop_raises_internal_server_error(self) -> None:
        """101 identical chunks with the limit at 100 raise rxllm.InternalServerError (seed 001)."""
        rxllm.REPEATED_STREAMING_CHUNK_LIMIT = 100
        chunk = {
            "id": "chatcmpl-123",
            "object": "chat.completion.chunk",
            "created": 1694268190,
            "model": "gpt-4o-mini-0125",
            "system_fingerprint": "fp_44709d6fcb",
            "choices": [{"index": 0, "delta": {"content": "How are you?"}, "finish_reason": "stop"}],
        }
        chunks = [chunk] * (rxllm.REPEATED_STREAMING_CHUNK_LIMIT + 1)
        response = rxllm.completion(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hey"}], stream=True, mock_response=chunks
        )
        seen = 0
        with pytest.raises(rxllm.InternalServerError) as info:
            for _ in response:
                seen += 1

        assert seen == 99  # LiteLLM's count: the 100th identical chunk raises
        assert info.value.status_code == 500
        assert info.value.message == "The model is repeating the same chunk = How are you?."
        assert info.value.partial_response is not None
        assert info.value.partial_response.choices[0].message.content == "How are you?" * 99

    def test_cost_callback(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A success_callback sees response_cost once per stream (seed 001's track_cost_callback)."""
        calls: list[dict] = []

        def track_cost_callback(kwargs, completion_response, start_time, end_time):  # type: ignore[no-untyped-def]
            calls.append(kwargs)
            response_cost = kwargs.get("response_cost", 0)
            print("Streaming response cost:", response_cost)

        rxllm.success_callback = [track_cost_callback]
        response = rxllm.completion(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Hi 👋 - I'm OpenAI"}],
            stream=True,
            mock_response="Hello from the mock",
        )
        for _ in response:
            pass

        assert len(calls) == 1
        assert calls[0]["response_cost"] > 0
        assert calls[0]["complete_streaming_response"].choices[0].message.content == "Hello from the mock"
        assert calls[0]["stream"] is True and calls[0]["model"] == "gpt-4o-mini"
        assert "Streaming response cost: " in capsys.readouterr().out

    def test_collect_full_response_while_streaming(self) -> None:
        """The generator pattern that yields content and keeps the full text (seed 003)."""

        def stream_and_collect(messages):  # type: ignore[no-untyped-def]
            full_content = ""
            response = rxllm.completion(model="gpt-4o", messages=messages, stream=True, mock_response="one two three")
            for chunk in response:
                content = chunk.choices[0].delta.content
                if content:
                    full_content += content
                    yield content
            return full_content

        gen = stream_and_collect([{"role": "user", "content": "count"}])
        pieces = []
        try:
            while True:
                pieces.append(next(gen))
        except StopIteration as stop:
            full = stop.value

        assert pieces == ["one", " two", " three"]
        assert full == "one two three"

    def test_tool_calls_accumulated_by_hand(self) -> None:
        """Seed 003's hand-written tool-call accumulation works on rxllm chunks."""
        calls = [
            {"id": "call_a", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
            {"id": "call_b", "function": {"name": "get_time", "arguments": '{"tz": "CET"}'}},
        ]
        response = rxllm.completion(
            model="gpt-4o", messages=MESSAGES, stream=True, mock_response="", mock_tool_calls=calls
        )
        tool_calls: dict[int, dict] = {}
        for chunk in response:
            delta = chunk.choices[0].delta
            if delta.tool_calls:
                for tc in delta.tool_calls:
                    idx = tc.index
                    if idx not in tool_calls:
                        tool_calls[idx] = {"id": tc.id, "name": tc.function.name, "args": ""}
                    if tc.function.arguments:
                        tool_calls[idx]["args"] += tc.function.arguments

        assert tool_calls == {
            0: {"id": "call_a", "name": "get_weather", "args": '{"city": "Oslo"}'},
            1: {"id": "call_b", "name": "get_time", "args": '{"tz": "CET"}'},
        }


class TestCompletion:
    def test_non_streaming_returns_response(self) -> None:
        """Without stream, completion returns the rebuilt ModelResponse."""
        response = rxllm.completion("mock/echo", [{"role": "user", "content": "ping"}])

        assert isinstance(response, rxllm.ModelResponse)
        assert response.choices[0].message.content == "ping"
        assert response.choices[0].message.role == "assistant"

    def test_stream_exposes_observable_and_final_response(self, no_leaks: None) -> None:
        """The stream object exposes its Observable and, once done, the final response."""
        response = rxllm.completion("mock/echo", [{"role": "user", "content": "a b"}], stream=True)
        list(response)

        assert response.response is not None
        assert response.response.choices[0].message.content == "a b"
        again = list(rxllm.to_iterator(response.observable))
        assert "".join(c.choices[0].delta.content or "" for c in again) == "a b"

    def test_mid_stream_error_carries_partial_response(self, no_leaks: None) -> None:
        """An error after some chunks is raised while iterating, with what arrived so far."""
        response = rxllm.completion(
            "mock/echo", [{"role": "user", "content": "a b c d"}], stream=True, mock_fail_after=2
        )
        with pytest.raises(rxllm.APIConnectionError) as info:
            for _ in response:
                pass

        assert info.value.partial_response is not None
        assert info.value.partial_response.choices[0].message.content == "a b"

    def test_early_close_cancels_and_reports(self, no_leaks: None) -> None:
        """Closing a stream early cancels it; success_callback reports outcome 'cancelled'."""
        outcomes: list[str] = []
        rxllm.success_callback = [lambda kwargs, *_: outcomes.append(kwargs["outcome"])]
        with rxllm.completion(
            "mock/echo", [{"role": "user", "content": "a b c d e f"}], stream=True, mock_delay=0.01
        ) as response:
            next(response)

        assert wait_for(lambda: outcomes == ["cancelled"])
        assert wait_for(lambda: live_pump_tasks() == 0)

    def test_failure_callback_gets_exception(self) -> None:
        """failure_callback fires once with the exception; success_callback does not fire."""
        failures: list[BaseException] = []
        successes: list[object] = []
        rxllm.failure_callback = [lambda kwargs, *_: failures.append(kwargs["exception"])]
        rxllm.success_callback = [lambda *a: successes.append(a)]
        with pytest.raises(rxllm.APIConnectionError):
            list(rxllm.completion("mock/echo", [{"role": "user", "content": "a b c"}], stream=True, mock_fail_after=1))

        assert len(failures) == 1 and isinstance(failures[0], rxllm.APIConnectionError)
        assert successes == []

    def test_raising_callback_does_not_break_the_stream(self) -> None:
        """A callback that raises is logged and the caller still gets every chunk."""

        def broken(*_args):  # type: ignore[no-untyped-def]
            raise RuntimeError("callback bug")

        rxllm.success_callback = [broken]
        text = "".join(
            c.choices[0].delta.content or ""
            for c in rxllm.completion("mock/echo", [{"role": "user", "content": "still here"}], stream=True)
        )

        assert text == "still here"

    def test_garbage_collected_stream_is_cancelled(self, no_leaks: None) -> None:
        """Dropping an unfinished stream cancels its request."""
        response = rxllm.completion(
            "mock/echo", [{"role": "user", "content": " ".join("w" * 50)}], stream=True, mock_delay=0.01
        )
        next(response)
        del response
        gc.collect()

        assert wait_for(lambda: live_pump_tasks() == 0)

    def test_threads_are_not_leaked(self) -> None:
        """Many sync streams share the one loop thread."""
        for _ in range(5):
            list(rxllm.completion("mock/echo", [{"role": "user", "content": "x y"}], stream=True))

        assert len([t for t in threading.enumerate() if t.name == "rxllm-loop"]) == 1


class TestCallbacks:
    def test_async_callback_from_sync_code_runs_on_rxllm_loop(self) -> None:
        """An async success_callback works for a synchronous stream too (run on rxllm's loop)."""
        seen = threading.Event()

        async def callback(kwargs, response, start, end):  # type: ignore[no-untyped-def]
            assert kwargs["complete_streaming_response"] is response
            seen.set()

        rxllm.success_callback = [callback]
        list(rxllm.completion("mock/echo", [{"role": "user", "content": "sync"}], stream=True))

        assert seen.wait(2)

    def test_failing_async_callback_is_logged(self) -> None:
        """An async callback that raises is logged with its name, and nothing else breaks."""
        from structlog.testing import capture_logs

        async def bad_callback(*_args):  # type: ignore[no-untyped-def]
            raise ValueError("async bug")

        rxllm.success_callback = [bad_callback]
        with capture_logs() as logs:

            async def run() -> str:
                response = await rxllm.acompletion("mock/echo", [{"role": "user", "content": "ok"}])
                await settle()
                return response.choices[0].message.content  # type: ignore[no-any-return]

            content = asyncio.run(run())

        assert content == "ok"
        assert any(e["event"] == "rxllm.callback_failed" and e["callback"] == "bad_callback" for e in logs)


class TestAcompletion:
    async def test_error_before_first_chunk_raises_at_await(self) -> None:
        """A stream that fails before its first chunk raises at the await, like LiteLLM."""
        with pytest.raises(rxllm.APIConnectionError):
            await rxllm.acompletion("mock/echo", [{"role": "user", "content": "x"}], stream=True, mock_fail_after=0)
        await settle()
        assert live_pump_tasks() == 0

    async def test_async_callback_is_awaited_on_the_loop(self) -> None:
        """An async success_callback runs once on the caller's loop."""
        seen: list[str] = []

        async def callback(kwargs, response, start, end):  # type: ignore[no-untyped-def]
            seen.append(response.choices[0].message.content)
            assert kwargs["async_complete_streaming_response"] is response

        rxllm.success_callback = [callback]
        response = await rxllm.acompletion("mock/echo", [{"role": "user", "content": "async cb"}], stream=True)
        async for _ in response:
            pass
        await settle()

        assert seen == ["async cb"]

    async def test_break_then_aclose_cancels(self) -> None:
        """Breaking out and closing cancels the pump at once."""
        response = await rxllm.acompletion(
            "mock/echo", [{"role": "user", "content": "a b c d e f g"}], stream=True, mock_delay=0.01
        )
        async for _ in response:
            break
        await response.aclose()
        await settle()

        assert live_pump_tasks() == 0

    async def test_task_cancellation_cancels(self) -> None:
        """Cancelling the consuming task cancels the stream and leaves no task behind."""
        before = asyncio.all_tasks()

        streaming = asyncio.Event()

        async def consume() -> None:
            response = await rxllm.acompletion(
                "mock/echo", [{"role": "user", "content": "a b c d e f g"}], stream=True, mock_delay=0.05
            )
            async for _ in response:
                streaming.set()

        task = asyncio.create_task(consume())
        await streaming.wait()  # cancel mid-stream: after the first chunk, not after a guessed delay
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await settle()

        assert live_pump_tasks() == 0
        assert asyncio.all_tasks() == before


class TestValidation:
    @pytest.mark.parametrize(
        ("model", "messages", "match"),
        [
            ("", [{"role": "user", "content": "x"}], "model must be a non-empty string"),
            (None, [{"role": "user", "content": "x"}], "model must be a non-empty string"),
            ("nosuch/model", [{"role": "user", "content": "x"}], "known providers: .*anthropic"),
            ("llama-bare", [{"role": "user", "content": "x"}], "unknown provider for model"),
            ("mock/echo", "hello", "messages must be a list"),
            ("mock/echo", [], "must not be empty"),
            ("mock/echo", ["hello"], r"messages\[0\] must be a dict"),
            ("mock/echo", [{"content": "x"}], r"messages\[0\] has role None"),
            ("mock/echo", [{"role": "user"}], r"messages\[0\] \(user\) has no 'content'"),
            ("mock/echo", [{"role": "user", "content": 5}], "must be a string or a list"),
        ],
    )
    def test_bad_input_is_rejected_before_io(self, model: object, messages: object, match: str) -> None:
        """Bad arguments raise BadRequestError naming the problem, before any request."""
        with pytest.raises(rxllm.BadRequestError, match=match):
            rxllm.stream(model, messages)  # type: ignore[arg-type]
        assert live_pump_tasks() == 0

    def test_empty_model_is_rejected_even_with_a_mock_response(self) -> None:
        """mock_response does not excuse a missing model."""
        with pytest.raises(rxllm.BadRequestError, match="model must be a non-empty string"):
            rxllm.stream("", MESSAGES, mock_response="x")

    @pytest.mark.parametrize("timeout", [0, -1, "ten", True])
    def test_bad_timeouts(self, timeout: object) -> None:
        """timeout must be a positive number of seconds."""
        with pytest.raises(rxllm.BadRequestError, match="timeout must be a positive number"):
            rxllm.stream("mock/echo", MESSAGES, timeout=timeout)


class Flaky:
    """A provider that fails its first ``failures`` requests before any chunk, then echoes."""

    name = "flaky"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.requests = 0

    async def stream(self, request):  # type: ignore[no-untyped-def]
        from rxllm.providers.mock import MockProvider

        self.requests += 1
        if self.requests <= self.failures:
            raise rxllm.ServiceUnavailableError(message="overloaded", llm_provider="flaky", model=request.model)
        async for chunk in MockProvider().stream(request):
            yield chunk


class TestRetriesAndFallbacks:
    def test_num_retries_retries_before_the_first_chunk(self, no_leaks: None) -> None:
        """num_retries=2 survives two overloaded answers; the caller sees one clean stream."""
        flaky = Flaky(failures=2)
        rxllm.register_provider("flaky", flaky)
        response = rxllm.completion(
            "flaky/echo", [{"role": "user", "content": "third time"}], num_retries=2, retry_backoff=0
        )

        assert response.choices[0].message.content == "third time"
        assert flaky.requests == 3

    def test_retries_exhausted_raise_the_last_error(self) -> None:
        """With fewer retries than failures, the provider's error is raised."""
        flaky = Flaky(failures=5)
        rxllm.register_provider("flaky", flaky)
        with pytest.raises(rxllm.ServiceUnavailableError):
            rxllm.completion("flaky/echo", [{"role": "user", "content": "x"}], num_retries=1, retry_backoff=0)

        assert flaky.requests == 2

    def test_fallback_model_answers_when_the_first_fails(self, no_leaks: None) -> None:
        """fallbacks are tried in order when the model fails before its first chunk."""
        response = rxllm.completion(
            "gpt-4o-mini",
            [{"role": "user", "content": "x"}],
            stream=True,
            mock_response="rxllm.RateLimitError",
            fallbacks=[{"model": "mock/backup", "mock_response": "from the fallback"}],
        )

        assert "".join(c.choices[0].delta.content or "" for c in response) == "from the fallback"

    @pytest.mark.parametrize("fallbacks", ["mock/echo", [3], [{"no": "model"}]])
    def test_bad_fallbacks_are_rejected(self, fallbacks: object) -> None:
        """fallbacks must be model names or dicts with a model."""
        with pytest.raises(rxllm.BadRequestError, match="fallbacks"):
            rxllm.completion("mock/echo", MESSAGES, fallbacks=fallbacks)


class Recording:
    """A provider that streams words slowly and records whether its generator was closed."""

    name = "recording"

    def __init__(self) -> None:
        self.closed = asyncio.Event()
        self.sent = 0

    async def stream(self, request):  # type: ignore[no-untyped-def]
        from rxllm.providers.mock import MockProvider

        try:
            async for chunk in MockProvider().stream(request):
                self.sent += 1
                yield chunk
                await asyncio.sleep(0.005)
        finally:
            self.closed.set()


class TestAcompletionPullsInTheConsumersTask:
    async def test_no_pump_task_while_streaming(self) -> None:
        """acompletion's iterator pulls the provider itself: no pump task exists mid-stream."""
        response = await rxllm.acompletion(
            "mock/echo", [{"role": "user", "content": "a b c d"}], stream=True, mock_delay=0.001
        )
        first = await response.__anext__()
        pumps_mid_stream = live_pump_tasks()
        rest = [c async for c in response]

        assert pumps_mid_stream == 0
        assert "".join(c.choices[0].delta.content or "" for c in [first, *rest]) == "a b c d"
        assert response.response is not None and response.response.choices[0].message.content == "a b c d"

    async def test_break_and_aclose_close_the_provider(self) -> None:
        """Leaving early closes the provider's generator (the HTTP response behind it)."""
        provider = Recording()
        rxllm.register_provider("recording", provider)
        response = await rxllm.acompletion(
            "recording/echo", [{"role": "user", "content": " ".join("w" * 40)}], stream=True
        )
        async for _ in response:
            break
        await response.aclose()

        assert provider.closed.is_set()
        assert provider.sent < 10

    async def test_task_cancellation_closes_the_provider(self) -> None:
        """Cancelling the consuming task closes the provider's generator."""
        provider = Recording()
        rxllm.register_provider("recording", provider)

        streaming = asyncio.Event()

        async def consume() -> None:
            response = await rxllm.acompletion(
                "recording/echo", [{"role": "user", "content": " ".join("w" * 40)}], stream=True
            )
            async for _ in response:
                streaming.set()

        task = asyncio.create_task(consume())
        await streaming.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        assert provider.closed.is_set()
        assert provider.sent < 40

    async def test_abandoned_stream_is_closed_when_collected(self) -> None:
        """An abandoned stream closes its provider after garbage collection."""
        provider = Recording()
        rxllm.register_provider("recording", provider)
        response = await rxllm.acompletion(
            "recording/echo", [{"role": "user", "content": " ".join("w" * 40)}], stream=True
        )
        await response.__anext__()
        del response
        gc.collect()
        await asyncio.wait_for(provider.closed.wait(), 2)

        assert provider.sent < 40

    async def test_retry_after_a_pulled_failure_uses_a_pump(self) -> None:
        """A retried subscription (made later, by retry_stream) is served by a pump task."""
        flaky = Flaky(failures=1)
        rxllm.register_provider("flaky", flaky)
        response = await rxllm.acompletion(
            "flaky/echo", [{"role": "user", "content": "second try"}], stream=True, num_retries=1, retry_backoff=0
        )
        text = "".join([c.choices[0].delta.content or "" async for c in response])

        assert text == "second try"
        assert flaky.requests == 2
