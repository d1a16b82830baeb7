"""The incremental SSE decoder: WHATWG line and field rules, split reads, limits, real bodies."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import fixture_path, fixtures_root, missing_fixture

from rxllm.errors import MalformedStreamError
from rxllm.sse import SSE_PING, ServerSentEvent, SSEDecoder, SSEEventTooLargeError, encode_comment

FIXTURES = fixtures_root()


def decode(body: bytes, sizes: list[int] | None = None) -> list[ServerSentEvent]:
    """Feed ``body`` in pieces of the given sizes (cycled), or whole."""
    decoder = SSEDecoder()
    out: list[ServerSentEvent] = []
    if not sizes:
        out.extend(decoder.feed(body))
    else:
        i = k = 0
        while i < len(body):
            n = sizes[k % len(sizes)]
            out.extend(decoder.feed(body[i : i + n]))
            i += n
            k += 1
    decoder.close()
    return out


def reference(body: bytes) -> list[ServerSentEvent]:
    """A deliberately naive whole-body reading of the WHATWG rules, as an oracle."""
    text = body.decode("utf-8", "replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = re.split("\r\n|\r|\n", text)[:-1]  # the last piece has no line end: discarded
    out: list[ServerSentEvent] = []
    data: list[str] = []
    event, last_id, retry = "", "", None
    for line in lines:
        if line == "":
            if data:
                out.append(ServerSentEvent("\n".join(data), event or "message", last_id, retry))
            data, event, retry = [], "", None
            continue
        if line.startswith(":"):
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id" and "\0" not in value:
            last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            retry = int(value)
    return out


def bytewise(body: bytes) -> list[ServerSentEvent]:
    return decode(body, [1])


def ev(data: str, event: str = "message", id: str = "", retry: int | None = None) -> ServerSentEvent:
    return ServerSentEvent(data, event, id, retry)


class TestLines:
    def test_lf_crlf_and_lone_cr_are_all_line_ends(self) -> None:
        """The three line-end styles give the same events."""
        lf = b"data: a\n\ndata: b\n\n"
        crlf = b"data: a\r\n\r\ndata: b\r\n\r\n"
        cr = b"data: a\r\rdata: b\r\r"
        mixed = b"data: a\r\n\rdata: b\n\r\n"

        for body in (lf, crlf, cr, mixed):
            assert decode(body) == [ev("a"), ev("b")], body

    def test_crlf_split_across_reads_is_one_line_end(self) -> None:
        """A CR at the end of one read and LF at the start of the next are a single line end."""
        decoder = SSEDecoder()

        assert decoder.feed(b"data: a\r") == []
        assert decoder.feed(b"\n\r") == [ev("a")]
        assert decoder.feed(b"\ndata: b\r\n\r\n") == [ev("b")]

    def test_lone_cr_at_end_of_read_then_data(self) -> None:
        """A CR ending a read followed by a non-LF byte is still a line end."""
        assert decode(b"data: a\r\rdata: b\r\r", [8, 1, 1, 100]) == [ev("a"), ev("b")]

    def test_every_split_of_a_crlf_body_gives_the_same_events(self) -> None:
        """Splitting a CRLF body at any offset does not change the events."""
        body = b"event: x\r\ndata: one\r\ndata: two\r\n\r\n: c\r\ndata: \xc3\xa9\r\n\r\n"
        expected = [ev("one\ntwo", "x"), ev("é")]

        for cut in range(len(body) + 1):
            decoder = SSEDecoder()
            got = decoder.feed(body[:cut]) + decoder.feed(body[cut:])
            assert got == expected, cut

    def test_utf8_split_across_reads(self) -> None:
        """A multi-byte character split between reads decodes whole."""
        body = "data: Hi — 😊\n\n".encode()

        assert bytewise(body) == [ev("Hi — 😊")]

    def test_leading_bom_is_dropped_even_split(self) -> None:
        """A UTF-8 BOM at the start of the stream is skipped, also when it arrives byte by byte."""
        body = b"\xef\xbb\xbfdata: a\n\n"

        assert decode(body) == [ev("a")]
        assert bytewise(body) == [ev("a")]

    def test_only_the_first_bom_is_dropped(self) -> None:
        """A BOM later in the stream is data, not framing."""
        assert decode(b"\xef\xbb\xbfdata: \xef\xbb\xbfx\n\n") == [ev("\ufeffx")]


class TestFields:
    def test_comments_are_ignored(self) -> None:
        """Lines starting with ':' (keep-alives) produce nothing."""
        assert decode(b": keep-alive\n\n: OPENROUTER PROCESSING\n\ndata: a\n: mid\n\n") == [ev("a")]

    def test_multiple_data_lines_join_with_newline(self) -> None:
        """Several data lines in one event are joined with '\\n'."""
        assert decode(b"data: a\ndata: b\ndata:\ndata: c\n\n") == [ev("a\nb\n\nc")]

    def test_one_space_after_colon_is_stripped(self) -> None:
        """Only a single leading space is removed from the value; no space is fine too."""
        assert decode(b"data:x\n\ndata:  y\n\n") == [ev("x"), ev(" y")]

    def test_event_id_and_retry(self) -> None:
        """event, id and retry fields are reported; the id persists to later events."""
        body = b"event: error\nid: 7\nretry: 1500\ndata: boom\n\ndata: next\n\n"

        assert decode(body) == [ev("boom", "error", "7", 1500), ev("next", "message", "7")]

    def test_id_without_data_applies_to_later_events(self) -> None:
        """An id-only event dispatches nothing but sets the id the next events carry."""
        assert decode(b"id: 5\n\ndata: x\n\ndata: y\n\n") == [ev("x", id="5"), ev("y", id="5")]

    def test_invalid_retry_and_id_with_nul_are_ignored(self) -> None:
        """A non-numeric retry and an id containing NUL do not change anything."""
        decoder = SSEDecoder()

        events = decoder.feed(b"retry: 1.5\nid: a\x00b\ndata: x\n\n")

        assert events == [ev("x")]
        assert decoder.retry is None
        assert decoder.last_event_id == ""

    def test_field_without_colon_is_a_name_with_empty_value(self) -> None:
        """'data' alone is a data line with an empty value (the event is still dispatched)."""
        assert decode(b"data\n\n") == [ev("")]

    def test_event_without_data_is_not_dispatched(self) -> None:
        """An event with only an event name (no data line) is dropped, and its name does not leak."""
        assert decode(b"event: ping\n\ndata: a\n\n") == [ev("a")]

    def test_unknown_fields_are_ignored(self) -> None:
        """Fields the spec does not define are skipped."""
        assert decode(b"foo: bar\ndata: a\nbaz\n\n") == [ev("a")]

    def test_extra_blank_lines_between_events(self) -> None:
        """Runs of blank lines dispatch nothing extra."""
        assert decode(b"\n\n\ndata: a\n\n\n\n\ndata: b\n\n", [3]) == [ev("a"), ev("b")]


class TestEndOfStream:
    def test_unterminated_final_event_is_discarded(self) -> None:
        """An event the body does not end with a blank line is not dispatched."""
        decoder = SSEDecoder()

        assert decoder.feed(b"data: a\n\ndata: b\n") == [ev("a")]
        assert decoder.close() is True

    def test_close_reports_nothing_left(self) -> None:
        """A body ending on an event boundary leaves nothing behind."""
        decoder = SSEDecoder()
        decoder.feed(b"data: a\n\n")

        assert decoder.close() is False

    def test_flush_returns_the_unterminated_event_for_lenient_callers(self) -> None:
        """flush() hands back the cut final event (used to accept a terminator missing its blank line)."""
        decoder = SSEDecoder()
        decoder.feed(b"event: message_stop\ndata: {}")

        assert decoder.flush() == ev("{}", "message_stop")
        assert decoder.flush() is None


class TestLimits:
    @given(size=st.integers(101, 400))
    def test_the_error_names_the_size_of_a_complete_oversized_event(self, size: int) -> None:
        """A complete one-line event over the limit, after a small one, is reported with its own size in bytes."""
        line = b"data: " + b"y" * (size - 6)

        with pytest.raises(SSEEventTooLargeError, match=f"at least {size} bytes exceeds max_event_size=100"):
            SSEDecoder(max_event_size=100).feed(b"data: small\n\n" + line + b"\n\n")

    def test_event_over_max_size_raises_typed_error(self) -> None:
        """A body that never ends an event raises instead of growing without bound."""
        decoder = SSEDecoder(max_event_size=1000)

        with pytest.raises(SSEEventTooLargeError, match="max_event_size=1000") as info:
            for _ in range(100):
                decoder.feed(b"data: " + b"x" * 50)

        assert isinstance(info.value, MalformedStreamError)

    def test_large_event_in_one_read_raises(self) -> None:
        """A complete event bigger than the limit is rejected too."""
        with pytest.raises(SSEEventTooLargeError):
            SSEDecoder(max_event_size=100).feed(b"data: " + b"y" * 200 + b"\n\n")

    def test_events_under_the_limit_pass(self) -> None:
        """Events just under the limit decode normally."""
        assert SSEDecoder(max_event_size=100).feed(b"data: " + b"z" * 90 + b"\n\n") == [ev("z" * 90)]

    def test_big_event_fed_byte_by_byte_is_linear(self) -> None:
        """A 300 KB event fed one byte at a time decodes (pending bytes are not re-joined per read)."""
        payload = b"q" * 300_000
        decoder = SSEDecoder()
        body = b"data: " + payload + b"\n\n"
        out: list[ServerSentEvent] = []

        for i in range(len(body)):
            out.extend(decoder.feed(body[i : i + 1]))

        assert len(out) == 1
        assert out[0].data == payload.decode()


# a small alphabet that exercises every framing rule
_atoms = st.sampled_from(
    [b"data: a", b"data:b", b"data", b"event: e", b"id: 1", b"retry: 5", b": c", b"\n", b"\r", b"\r\n", b"\xc3\xa9"]
)


class TestSplitInvariance:
    @settings(max_examples=200, deadline=None)
    @given(body=st.lists(_atoms, max_size=40).map(b"".join), sizes=st.lists(st.integers(1, 7), min_size=1))
    def test_any_split_gives_the_same_events(self, body: bytes, sizes: list[int]) -> None:
        """Feeding any body in arbitrary pieces gives the same events as feeding it whole."""
        assert decode(body, sizes) == decode(body) == reference(body)

    @pytest.mark.parametrize("name", sorted(p.relative_to(FIXTURES).as_posix() for p in FIXTURES.glob("*/*.sse")))
    def test_recorded_bodies_whole_random_and_bytewise_agree(self, name: str) -> None:
        """Every recorded provider body decodes the same whole, in pieces and byte by byte."""
        body = (FIXTURES / name).read_bytes()

        whole = decode(body)

        assert whole, "a recorded body decodes to at least one event"
        assert decode(body, [7, 1, 64, 3, 300]) == whole
        assert bytewise(body) == whole
        assert whole == reference(body)
        assert all(e.data.strip() for e in whole)


def test_fixtures_present_or_skip() -> None:
    """The recorded fixtures are found (else the parametrized test above has no cases)."""
    if not FIXTURES.is_dir():
        missing_fixture(f"recorded fixtures not found under {FIXTURES} (set RXLLM_FIXTURES)")

    assert len(list(FIXTURES.glob("*/*.sse"))) >= 40


class TestRecordedFraming:
    def _body(self, name: str) -> bytes:
        return fixture_path(name).read_bytes()

    def test_gemini_crlf_events(self) -> None:
        """Gemini's CRLF-framed body gives three JSON data events."""
        events = decode(self._body("gemini/text_basic.sse"))

        assert [e.event for e in events] == ["message"] * 3
        assert events[0].data.startswith('{"candidates": [{"content": {"parts": [{"text": "The"}]')

    def test_anthropic_named_events(self) -> None:
        """Anthropic's body gives its named events in order."""
        events = decode(self._body("anthropic/text_basic.sse"))

        assert [e.event for e in events] == [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]

    def test_openrouter_comments_skipped(self) -> None:
        """OpenRouter's keep-alive comments produce no events; [DONE] is the last data."""
        events = decode(self._body("openrouter/claude_reasoning_keepalive_comments.sse"))

        assert all(not e.data.startswith(":") for e in events)
        assert events[-1].data == "[DONE]"

    def test_body_without_final_blank_line_loses_last_event(self) -> None:
        """The SDK fixture cut after message_stop: WHATWG discards it, flush() recovers it."""
        decoder = SSEDecoder()
        events = decoder.feed(self._body("anthropic/tool_use_truncated_json_max_tokens.sse"))

        assert events[-1].event == "message_delta"
        tail = decoder.flush()
        assert tail is not None
        assert tail.event == "message_stop"


class TestComments:
    @given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=40))
    def test_a_comment_is_one_ignored_line(self, text: str) -> None:
        """``encode_comment`` frames one comment line that a decoder skips; the keepalive is such a comment."""
        frame = encode_comment(text)

        assert frame == b": " + text.encode() + b"\n\n"
        assert SSEDecoder().feed(frame + b"data: x\n\n") == [ev("x")]
        assert encode_comment("ping") == SSE_PING


def decode_raw(body: bytes, sizes: list[int]) -> tuple[list[ServerSentEvent | bytes], str]:
    """``feed_raw`` over ``body`` in pieces; the items and the decoder's last event id."""
    decoder = SSEDecoder()
    out: list[ServerSentEvent | bytes] = []
    i = k = 0
    while i < len(body):
        n = sizes[k % len(sizes)]
        out.extend(decoder.feed_raw(body[i : i + n]))
        i += n
        k += 1
    return out, decoder.last_event_id


class TestFeedRaw:
    @settings(max_examples=200, deadline=None)
    @given(body=st.lists(_atoms, max_size=40).map(b"".join), sizes=st.lists(st.integers(1, 7), min_size=1))
    def test_raw_items_are_the_events_data(self, body: bytes, sizes: list[int]) -> None:
        """feed_raw gives feed's events, plain data lines as their undecoded bytes, in any split."""
        events = decode(body)
        raw, last_id = decode_raw(body, sizes)

        assert len(raw) == len(events)
        for item, event in zip(raw, events, strict=True):
            if isinstance(item, bytes):
                assert (item.decode("utf-8", "replace"), event.event, event.retry) == (event.data, "message", None)
            else:
                assert item == event
        decoder = SSEDecoder()
        decoder.feed(body)
        assert last_id == decoder.last_event_id

    def test_a_plain_data_line_is_bytes_and_others_are_events(self) -> None:
        """`data: x` comes as b"x"; a named or multi-line event stays a ServerSentEvent."""
        body = b'data: {"a":1}\n\nevent: ping\ndata: {}\n\ndata: one\ndata: two\n\ndata: [DONE]\n\n'

        assert SSEDecoder().feed_raw(body) == [b'{"a":1}', ev("{}", "ping"), ev("one\ntwo"), b"[DONE]"]

    def test_invalid_utf8_is_left_to_the_consumer(self) -> None:
        """The raw bytes are not decoded: invalid UTF-8 stays as sent (feed replaces it)."""
        assert SSEDecoder().feed_raw(b"data: \xff\n\n") == [b"\xff"]
        assert SSEDecoder().feed(b"data: \xff\n\n") == [ev("\ufffd")]


# whole reads, as a paced stream delivers them: many are exactly one plain "data: ...\n\n" event
_reads = st.sampled_from(
    [
        b'data: {"a": 1}\n\n',
        b"data: \n\n",
        b"data: \xc3\xa9\n\n",
        b"data: x\r\n\r\n",
        b"data: two\ndata: lines\n\n",
        b"id: 7\n\n",
        b"event: e\ndata: named\n\n",
        b"data: cut",
        b"\n",
        b"\r",
        b": ping\n\n",
        b"\xef\xbb\xbf",
    ]
)


def _as_raw(event: ServerSentEvent | bytes) -> ServerSentEvent:
    return ev(event.decode("utf-8", "replace")) if isinstance(event, bytes) else event


class TestOneEventReads:
    @settings(max_examples=100, deadline=None)
    @given(reads=st.lists(_reads, max_size=12))
    def test_reads_of_whole_events_decode_as_the_joined_body(self, reads: list[bytes]) -> None:
        """Feeding one event per read (feed and feed_raw) gives the events of the whole body."""
        body = b"".join(reads)
        text, raw = SSEDecoder(), SSEDecoder()
        got_text: list[ServerSentEvent] = []
        got_raw: list[ServerSentEvent] = []

        for piece in reads:
            got_text.extend(text.feed(piece))
            got_raw.extend(_as_raw(e) for e in raw.feed_raw(piece))

        expected = reference(body)
        assert got_text == expected
        # feed_raw's bytes carry neither an id nor a type: compare what they do carry
        assert [(e.data, e.event) for e in got_raw] == [(e.data, e.event) for e in expected]

    def test_a_one_event_read_keeps_the_last_event_id(self) -> None:
        """A plain data event read on its own still carries the id an earlier event set."""
        decoder = SSEDecoder()

        decoder.feed(b"id: 42\ndata: first\n\n")

        assert decoder.feed(b"data: second\n\n") == [ev("second", id="42")]

    def test_a_one_event_read_completes_a_pending_event(self) -> None:
        """After a read that ended mid-event, the next read continues that event."""
        decoder = SSEDecoder()

        assert decoder.feed(b"data: par") == []
        assert decoder.feed_raw(b"data: tial\n\n") == [b"pardata: tial"]

    def test_a_one_event_read_over_the_limit_raises(self) -> None:
        """A single read holding one event larger than max_event_size is rejected in both modes."""
        big = b"data: " + b"y" * 200 + b"\n\n"

        with pytest.raises(SSEEventTooLargeError):
            SSEDecoder(max_event_size=100).feed(big)
        with pytest.raises(SSEEventTooLargeError):
            SSEDecoder(max_event_size=100).feed_raw(big)
