"""split_think_tags and reasoning(): think tags out of content at every split, missing opening tag, fixtures."""

from __future__ import annotations

import itertools
from typing import Any

import reactivex
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import content_chunk, finish_chunk, load_fixture_chunks

from rxllm import operators as ops
from rxllm.builder import stream_chunk_builder


def split(pieces: list[str], **kw: Any) -> tuple[str, str, list[Any]]:
    """(content, reasoning, chunks) after split_think_tags over one content chunk per piece."""
    out: list[Any] = []
    reactivex.from_iterable([content_chunk(p) for p in pieces]).pipe(ops.split_think_tags(**kw)).subscribe(out.append)
    response = stream_chunk_builder(out)
    assert response is not None
    msg = response.choices[0].message
    return msg.content or "", msg.reasoning_content or "", out


def cut(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    bounds = [0, *points, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds) if b > a]


class TestSplitThinkTags:
    def test_every_byte_position(self) -> None:
        """Cutting the text in two at every position gives the same reasoning and content."""
        text = "<think>Let me see: 2 < 3.</think>The answer is <b>yes</b>."
        for i in range(len(text) + 1):
            content, reasoning, _ = split([text[:i], text[i:]])

            assert (content, reasoning) == ("The answer is <b>yes</b>.", "Let me see: 2 < 3."), i

    @settings(max_examples=60, deadline=None)
    @given(
        st.text(alphabet="ab<>/thinkx ", max_size=15).filter(lambda s: "<think>" not in s and "</think>" not in s),
        st.text(alphabet="ab<>/thinkx ", max_size=15).filter(lambda s: "<think>" not in s),
        st.booleans(),
        st.lists(st.integers(0, 100), max_size=10),
    )
    def test_any_split_and_a_missing_opening_tag(
        self, thought: str, answer: str, opened: bool, cuts: list[int]
    ) -> None:
        """With or without the opening tag, however the bytes were split, reasoning and content come out whole."""
        text = ("<think>" if opened else "") + thought + "</think>" + answer
        content, reasoning, _ = split(cut(text, cuts))

        assert reasoning == thought
        assert content == answer

    @settings(max_examples=40, deadline=None)
    @given(
        st.text(alphabet="ab<>/thinkx \n", min_size=1, max_size=25).filter(
            lambda s: "<think>" not in s and "</think>" not in s
        ),
        st.lists(st.integers(0, 100), max_size=10),
    )
    def test_text_without_tags_is_left_as_content(self, text: str, cuts: list[int]) -> None:
        """By default an answer with no think tag at all stays content, however it is split."""
        content, reasoning, _ = split(cut(text, cuts))

        assert (content, reasoning) == (text, "")

    def test_how_each_mode_streams_a_missing_opening_tag(self) -> None:
        """implicit_open=True streams the reasoning at once; the default holds it until </think> decides."""
        pieces = ["Let me ", "see.</think>", "Yes."]

        _c, _r, assumed = split(pieces, implicit_open=True)
        _c, _r, decided = split(pieces)

        assert [c.choices[0].delta.reasoning_content for c in assumed] == ["Let me ", "see.", None]
        assert [c.choices[0].delta.reasoning_content for c in decided] == [None, "Let me see.", None]
        assert [c.choices[0].delta.content for c in decided] == [None, None, "Yes."]

    def test_explicit_opening_tag_mode(self) -> None:
        """implicit_open=False leaves text before <think> as content and moves only tagged text."""
        content, reasoning, _ = split(["Hi <th", "ink>hm</think> there"], implicit_open=False)

        assert (content, reasoning) == ("Hi  there", "hm")

    def test_held_text_is_released_at_finish_and_completion(self) -> None:
        """Text that only looked like the start of a tag is released at the finish chunk or at the end."""
        out: list[Any] = []
        chunks = [content_chunk("</think>a <"), finish_chunk()]
        reactivex.from_iterable(chunks).pipe(ops.split_think_tags()).subscribe(out.append)
        tail: list[Any] = []
        reactivex.from_iterable([content_chunk("</think>x <th")]).pipe(ops.split_think_tags()).subscribe(tail.append)

        assert stream_chunk_builder(out).choices[0].message.content == "a <"  # type: ignore[union-attr]
        assert len(out) == 2
        assert len(tail) == 2
        assert stream_chunk_builder(tail).choices[0].message.content == "x <th"  # type: ignore[union-attr]

    def test_together_r1_fixture(self) -> None:
        """DeepSeek-R1 on Together: the think block ends up in reasoning_content, no tag leaks into content."""
        chunks = load_fixture_chunks("together/deepseek_r1_think_tags.sse")
        out: list[Any] = []
        reactivex.from_iterable(chunks).pipe(ops.split_think_tags()).subscribe(out.append)
        before = stream_chunk_builder(chunks)
        after = stream_chunk_builder(out)

        assert before is not None and after is not None
        raw = before.choices[0].message.content or ""
        msg = after.choices[0].message
        assert "<think>" not in (msg.content or "") and "</think>" not in (msg.content or "")
        assert msg.reasoning_content and len(msg.reasoning_content) > 100
        assert raw.replace("<think>", "", 1).replace("</think>", "", 1) == msg.reasoning_content + (msg.content or "")
        assert len(out) == len(chunks)


class TestReasoningText:
    def test_reasoning_emits_reasoning_content_only(self) -> None:
        """reasoning() emits reasoning strings of choice 0, as text() does for content."""
        from strategies import make_chunk

        chunks = [
            make_chunk({"index": 0, "delta": {"reasoning_content": "Hm"}}),
            content_chunk("Hi"),
            make_chunk({"index": 1, "delta": {"reasoning_content": "other"}}),
            make_chunk({"index": 0, "delta": {"reasoning_content": "."}}),
        ]
        out: list[str] = []
        every: list[str] = []
        reactivex.from_iterable(chunks).pipe(ops.reasoning()).subscribe(out.append)
        reactivex.from_iterable(chunks).pipe(ops.reasoning(None)).subscribe(every.append)

        assert out == ["Hm", "."]
        assert every == ["Hm", "other", "."]
