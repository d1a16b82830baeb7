"""rxllm.display: throttled frames in virtual time, their text and HTML, and the plain-text view."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import reactivex
from _chunks import chunk, usage_chunk
from reactivex.testing import ReactiveTest, TestScheduler

import rxllm
import rxllm.display
from rxllm.display import Frame, LiveDisplay, display_async, displayed, frames
from rxllm.errors import RateLimitError

on_next, on_completed, on_error = ReactiveTest.on_next, ReactiveTest.on_completed, ReactiveTest.on_error
subscribe = ReactiveTest.subscribe

MESSAGES = [{"role": "user", "content": "one two three"}]


def run_frames(*messages: Any, interval: float = 10, disposed: int = 1000) -> tuple[Any, list[tuple[int, Frame]]]:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(*messages)
    results = scheduler.start(lambda: xs.pipe(frames(interval)), disposed=disposed)
    shown = [(m.time, m.value.value) for m in results.messages if m.value.kind == "N"]
    return xs, shown


class TestFrames:
    def test_redraws_are_throttled_to_the_interval_in_virtual_time(self) -> None:
        """First chunk at once, then at most one frame per interval, then the final frame at the end."""
        xs, shown = run_frames(
            on_next(201, chunk("a")),
            on_next(202, chunk("b")),
            on_next(203, chunk("c")),
            on_next(215, chunk("d")),
            on_next(240, chunk("e", finish="stop")),
            on_completed(241),
        )

        assert [t for t, _ in shown] == [201, 211, 221, 240, 241]
        assert [f.response.choices[0].message.content for _, f in shown] == ["a", "abc", "abcd", "abcde", "abcde"]
        assert [f.done for _, f in shown] == [False, False, False, False, True]
        assert xs.subscriptions == [subscribe(200, 241)]

    def test_a_quiet_stream_draws_nothing_extra(self) -> None:
        """Without new chunks no timer redraws: frames count chunks bursts, not ticks."""
        _, shown = run_frames(on_next(201, chunk("a")), on_next(500, chunk("b")), on_completed(501))

        assert [t for t, _ in shown] == [201, 500, 501]

    def test_final_frame_carries_the_report_and_footer(self) -> None:
        """The last frame has usage, cost, TTFT and tokens/s from the stream's cost report."""
        _, shown = run_frames(
            on_next(210, chunk("Hello", model="gpt-4o")),
            on_next(220, chunk(" world", finish="stop")),
            on_next(221, usage_chunk(10, 2)),
            on_completed(230),
        )
        final = shown[-1][1]

        assert final.done and final.report is not None and final.report.outcome == "completed"
        footer = final.footer()
        assert "10 prompt + 2 completion tokens" in footer
        assert "$" in footer and "TTFT 10.000 s" in footer and "tokens/s" in footer
        assert footer in final.to_text() and footer in final.to_html()

    def test_an_error_is_drawn_not_raised(self) -> None:
        """A failing stream's last frame shows the error; the frames Observable completes."""
        error = RateLimitError("slow down", llm_provider="openai", model="gpt-4o")
        scheduler = TestScheduler()
        xs = scheduler.create_hot_observable(on_next(210, chunk("part")), on_error(220, error))
        results = scheduler.start(lambda: xs.pipe(frames(10)))

        assert results.messages[-1].value.kind == "C"
        final = results.messages[-2].value.value
        assert final.error is error
        assert "error: RateLimitError: slow down" in final.to_text()
        assert "RateLimitError" in final.to_html()
        assert final.response.choices[0].message.content == "part"

    def test_disposal_stops_the_timer_and_the_upstream(self) -> None:
        """Disposing mid-stream disposes the source; no frame follows."""
        xs, shown = run_frames(on_next(201, chunk("a")), on_next(202, chunk("b")), disposed=205)

        assert xs.subscriptions == [subscribe(200, 205)]
        assert [t for t, _ in shown] == [201]

    def test_interval_zero_draws_every_chunk(self) -> None:
        """interval=0 turns throttling off."""
        _, shown = run_frames(on_next(201, chunk("a")), on_next(202, chunk("b")), on_completed(203), interval=0)

        assert [t for t, _ in shown] == [201, 202, 203]


class TestRendering:
    def test_reasoning_is_collapsed_and_tool_calls_show_as_they_assemble(self) -> None:
        """Reasoning sits in a closed <details> (text: its length); partial tool-call arguments are shown."""
        call = [{"index": 0, "id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"ci'}}]
        _, shown = run_frames(
            on_next(201, chunk(reasoning="Let me think <carefully>")),
            on_next(202, chunk("It is", tools=call)),
            on_completed(203),
            interval=0,
        )
        frame = shown[1][1]

        html = frame.to_html()
        assert "<details><summary>reasoning (24 characters)</summary>" in html
        assert "&lt;carefully&gt;" in html and "<details open" not in html
        assert "tool call: get_weather({&quot;ci)" in html
        text = frame.to_text()
        assert "[reasoning: 24 characters]" in text and "carefully" not in text
        assert 'tool call: get_weather({"ci)' in text

    def test_several_choices_are_labelled(self) -> None:
        """n > 1: each choice is shown under its index."""
        second = {"index": 1, "delta": {"content": "B"}, "finish_reason": None}
        _, shown = run_frames(on_next(201, chunk("A", more=[second])), on_completed(202), interval=0)

        text = shown[-1][1].to_text()
        assert "[choice 0]\nA" in text and "[choice 1]\nB" in text


class TestDisplay:
    def test_plain_text_outside_ipython(self) -> None:
        """Outside a notebook the view is the streamed text, then the footer, written to the file."""
        out = io.StringIO()
        view = rxllm.display.display(
            rxllm.stream("mock/echo", MESSAGES, stream_options={"include_usage": True}), file=out
        )

        lines = out.getvalue().splitlines()
        assert lines[0] == "one two three"
        assert "completion tokens" in lines[1] and lines[1].endswith("completed")
        assert isinstance(view, LiveDisplay) and view.frames == view.updates + 1 >= 2
        assert view.response is not None and view.response.choices[0].message.content == "one two three"
        assert view.report is not None and view.report.outcome == "completed" and view.error is None

    def test_the_module_is_callable_and_lazily_exported(self) -> None:
        """rxllm.display(source) works, imported as a module or not."""
        out = io.StringIO()
        view = rxllm.display(rxllm.stream("mock/echo", MESSAGES), file=out)

        assert "display" in rxllm.__all__
        assert out.getvalue().startswith("one two three")
        assert view.final is not None and view.final.done

    def test_a_completion_stream_and_an_error(self) -> None:
        """An iterable of chunks works too; a mid-stream error is shown and kept, not raised."""
        out = io.StringIO()
        stream = rxllm.completion(model="mock/echo", messages=MESSAGES, stream=True, mock_fail_after=2)
        view = rxllm.display(stream, file=out)

        assert out.getvalue().startswith("one two\nerror: APIConnectionError")
        assert isinstance(view.error, rxllm.APIConnectionError)

    def test_display_async_and_an_async_completion(self) -> None:
        """display_async draws an Observable or an acompletion stream on the running loop."""

        async def main() -> tuple[str, str]:
            first, second = io.StringIO(), io.StringIO()
            await display_async(rxllm.stream("mock/echo", MESSAGES), file=first)
            response = await rxllm.acompletion(model="mock/echo", messages=MESSAGES, stream=True)
            await display_async(response, file=second)
            return first.getvalue(), second.getvalue()

        first, second = asyncio.run(main())

        assert first.startswith("one two three\n") and second.startswith("one two three\n")

    def test_without_a_scheduler_or_loop_frames_follow_the_chunks(self) -> None:
        """A plain synchronous subscription (no scheduler, no loop) still draws, paced on arrival."""
        out = io.StringIO()
        ended: list[LiveDisplay] = []
        chunks = [chunk("a"), chunk("b"), chunk("c", finish="stop")]
        reactivex.from_iterable(chunks).pipe(displayed(60, file=out, on_end=ended.append)).subscribe()

        [view] = ended
        assert out.getvalue().startswith("abc\n")
        assert view.frames == 2  # the first chunk, then nothing within 60 s, then the final frame

    def test_the_operator_is_in_rxllm_operators(self) -> None:
        """ops.display and ops.display_frames are the operator forms rxllm.display builds on."""
        from rxllm import operators as ops

        assert ops.display is displayed and ops.display_frames is frames
        assert "display" in ops.__all__ and "display_frames" in ops.__all__

    def test_operator_form_passes_chunks_through(self) -> None:
        """displayed() leaves the chunks alone and draws the view on the side, once per subscription."""
        out = io.StringIO()
        ended: list[LiveDisplay] = []
        source = reactivex.of(chunk("a"), chunk("b", finish="stop"))
        seen = []
        source.pipe(displayed(0, file=out, on_end=ended.append)).subscribe(seen.append)

        assert [c.choices[0].delta.content for c in seen] == ["a", "b"]
        assert out.getvalue().startswith("ab\n")
        [view] = ended
        assert view.final is not None and view.final.done
