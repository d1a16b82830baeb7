"""Field-level fuzzing: any one field of a recorded stream replaced by any JSON value.

Every provider's recorded bodies, one field of one event changed (hypothesis), served by a
real local aiohttp server, and read through ``completion(stream=True)``,
``acompletion(stream=True)`` and ``stream()`` piped through an operator. The promise: the
right result or a typed rxllm error, never an untyped exception, never a hang (each read is
bounded by ``stream_timeout``; an outer guard only detects hangs), and no task exception
logged by asyncio.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from providers.hardening_support import ThreadedServer, get_at, join_events, paths, replaced, split_events
from providers.provider_support import SECRET, fixture_bytes

import rxllm
from rxllm import operators as ops
from tests.strategies import json_values

#: Recorded bodies per provider: text, tools (parallel), several choices, reasoning.
FIXTURES: dict[str, tuple[str, ...]] = {
    "openai/gpt-4o": (
        "openai/tool_calls_parallel_2.sse",
        "openai/n3_choices.sse",
        "openai/logprobs_content.sse",
    ),
    "anthropic/claude-sonnet-4-5": (
        "anthropic/text_then_tool_use_parallel_2.sse",
        "anthropic/thinking_then_text.sse",
    ),
    "gemini/gemini-2.5-flash": (
        "gemini/function_calls_parallel_2.sse",
        "gemini/thinking_thought_parts.sse",
    ),
}

#: Every operator that takes chunks, built fresh per use; each result is consumed fully.
OPERATORS: dict[str, Callable[[], Any]] = {
    "to_response": lambda: ops.to_response(),
    "snapshots": lambda: ops.snapshots(),
    "accumulate_tool_calls": lambda: ops.accumulate_tool_calls(),
    "tool_call_snapshots": lambda: ops.tool_call_snapshots(),
    "text": lambda: ops.text(),
    "detect_repeated_chunks": lambda: ops.detect_repeated_chunks(3),
    "tap_cost": lambda: ops.tap_cost(lambda report: None),
    "log_stream": lambda: ops.log_stream(),
    "first_chunk_timeout": lambda: ops.first_chunk_timeout(30),
    "stall_timeout": lambda: ops.stall_timeout(30),
    "deadline": lambda: ops.deadline(30),
    "retry_stream": lambda: ops.retry_stream(2, backoff=0),
    "to_sse": lambda: ops.to_sse(),
}

MESSAGES = [{"role": "user", "content": "hi"}]
GUARD = 60.0  # seconds: only a hang detector; every read is bounded by stream_timeout below
replacements = json_values | st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**63), 2**64 - 1)


class _TaskErrors(logging.Handler):
    """Collects what asyncio logs at ERROR ("Task exception was never retrieved", ...)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def threaded_server() -> Iterator[ThreadedServer]:
    """One server for the module, on its own thread and loop."""
    server = ThreadedServer()
    yield server
    server.close()


@pytest.fixture
def task_errors() -> Iterator[_TaskErrors]:
    """asyncio's error log, captured."""
    handler = _TaskErrors()
    logger = logging.getLogger("asyncio")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def _params(url: str) -> dict[str, Any]:
    return {"api_base": url, "api_key": SECRET, "stream_timeout": 10}


def _typed(exc: BaseException) -> None:
    assert isinstance(exc, rxllm.APIError), f"untyped {type(exc).__name__}: {exc!r}"
    assert SECRET not in str(exc) and SECRET not in repr(exc)


def _via_completion(model: str, url: str) -> Any:
    try:
        stream = rxllm.completion(model, MESSAGES, stream=True, **_params(url))
        for _ in stream:
            pass
        return stream.response
    except Exception as exc:
        _typed(exc)
        return exc


async def _via_acompletion(model: str, url: str) -> Any:
    try:
        stream = await rxllm.acompletion(model, MESSAGES, stream=True, **_params(url))
        async for _ in stream:
            pass
        return stream.response
    except Exception as exc:
        _typed(exc)
        return exc


async def _via_operator(model: str, url: str, name: str) -> Any:
    items: list[Any] = []
    try:
        source = rxllm.stream(model, MESSAGES, **_params(url)).pipe(OPERATORS[name]())
        async for item in rxllm.to_async_iterator(source):
            if isinstance(item, rxllm.builder.ResponseSnapshot):
                item = item.response
            items.append(item)
        return items
    except Exception as exc:
        _typed(exc)
        return exc


def _run_all(model: str, url: str, operator: str) -> tuple[Any, Any, Any]:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        sync = pool.submit(_via_completion, model, url).result(GUARD)

    async def both() -> tuple[Any, Any]:
        a = await asyncio.wait_for(_via_acompletion(model, url), GUARD)
        b = await asyncio.wait_for(_via_operator(model, url, operator), GUARD)
        return a, b

    a, b = asyncio.run(both())
    return sync, a, b


def _gist(response: rxllm.ModelResponse) -> list[Any]:
    """What a response says, without generated ids (Gemini's tool-call ids are made up per call)."""
    return [
        (
            c.index,
            c.finish_reason,
            c.message.content,
            [(t.function.name, t.function.arguments) for t in c.message.tool_calls or ()],
        )
        for c in response.choices
    ]


@st.composite
def mutations(draw: st.DrawFn) -> tuple[str, bytes, bool]:
    """A model, a recorded body with one field of one event replaced, and whether it is unchanged."""
    model = draw(st.sampled_from(sorted(FIXTURES)))
    name = draw(st.sampled_from(FIXTURES[model]))
    events = split_events(fixture_bytes(name))
    candidates = [(i, p) for i, (_, data) in enumerate(events) if not isinstance(data, str) for p in paths(data)]
    i, path = draw(st.sampled_from(candidates))
    original = get_at(events[i][1], path)
    new = draw(st.just(original) | replacements)
    events[i] = (events[i][0], replaced(events[i][1], path, new))
    return model, join_events(events), new == original and type(new) is type(original)


class TestFieldFuzzing:
    @settings(max_examples=90, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(case=mutations(), operator=st.sampled_from(sorted(OPERATORS)))
    def test_any_field_any_value_is_a_result_or_a_typed_error(
        self, threaded_server: ThreadedServer, task_errors: _TaskErrors, case: tuple[str, bytes, bool], operator: str
    ) -> None:
        """One field replaced by any JSON value: a result or a typed rxllm error everywhere, no hang, no task error."""
        model, body, unchanged = case
        threaded_server.answer.body = body

        sync, async_, piped = _run_all(model, threaded_server.url, operator)
        gc.collect()

        assert not task_errors.records, [r.getMessage() for r in task_errors.records]
        if unchanged:
            # the same value written back: the stream is the recorded one, and it succeeds
            assert isinstance(sync, rxllm.ModelResponse) and isinstance(async_, rxllm.ModelResponse)
            assert _gist(sync) == _gist(async_)
            assert not isinstance(piped, BaseException)
        for outcome in (sync, async_):
            assert isinstance(outcome, rxllm.ModelResponse | rxllm.APIError)
