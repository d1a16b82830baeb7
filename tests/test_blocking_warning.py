"""completion(stream=True) on a thread whose event loop is running warns once, pointing at acompletion."""

from __future__ import annotations

import asyncio
import warnings

import pytest
import structlog

import rxllm

MESSAGES = [{"role": "user", "content": "one two three"}]


def _events(logs: list[dict[str, object]]) -> list[dict[str, object]]:
    return [e for e in logs if e["event"] == "rxllm.api.blocking_stream_in_event_loop"]


class TestBlockingStreamWarning:
    def test_inside_a_running_loop_one_warning_and_one_log_event(self) -> None:
        """Iterating a sync stream inside async code logs one warning event and one RuntimeWarning."""

        async def handler() -> str:
            response = rxllm.completion(model="mock/echo", messages=MESSAGES, stream=True)
            return "".join(c.choices[0].delta.content or "" for c in response if c.choices)

        with structlog.testing.capture_logs() as logs, pytest.warns(RuntimeWarning, match="acompletion") as caught:
            text = asyncio.run(handler())

        assert text == "one two three"
        [event] = _events(logs)
        assert event["log_level"] == "warning" and "acompletion" in str(event["hint"])
        assert len([w for w in caught if "acompletion" in str(w.message)]) == 1

    def test_plain_synchronous_code_does_not_warn(self) -> None:
        """A script with no running loop streams silently."""
        with structlog.testing.capture_logs() as logs, warnings.catch_warnings():
            warnings.simplefilter("error")
            chunks = list(rxllm.completion(model="mock/echo", messages=MESSAGES, stream=True))

        assert chunks
        assert _events(logs) == []

    def test_acompletion_does_not_warn(self) -> None:
        """The async form, the recommended one, does not warn."""

        async def handler() -> int:
            response = await rxllm.acompletion(model="mock/echo", messages=MESSAGES, stream=True)
            return len([c async for c in response])

        with structlog.testing.capture_logs() as logs, warnings.catch_warnings():
            warnings.simplefilter("error")
            count = asyncio.run(handler())

        assert count > 0
        assert _events(logs) == []
