"""Server-sent events: encoding chunks for browsers and OpenAI clients, and decoding provider bodies.

The encoder writes what OpenAI's endpoint writes: ``data: {json}\\n\\n`` per chunk and
``data: [DONE]\\n\\n`` at the end. Every SSE writer in rxllm (the ``to_sse`` operator, the
dialect encoders, the proxy) frames events with these functions, so there is one framing.
"""

from __future__ import annotations

from typing import Final

import orjson

from rxllm.errors import MalformedStreamError

__all__ = [
    "DEFAULT_MAX_EVENT_SIZE",
    "SSE_DONE",
    "SSE_PING",
    "SSEDecoder",
    "SSEEventTooLargeError",
    "ServerSentEvent",
    "encode_comment",
    "encode_data",
    "encode_json",
]

#: The event OpenAI-compatible streams end with.
SSE_DONE: Final = b"data: [DONE]\n\n"

#: A keepalive comment: every SSE parser ignores it; proxies and load balancers see traffic.
SSE_PING: Final = b": ping\n\n"


def encode_comment(text: str) -> bytes:
    """One SSE comment line (ignored by parsers), for keepalives; ``text`` must not contain newlines."""
    return b": " + text.encode() + b"\n\n"


def encode_data(payload: bytes, *, event: str | None = None) -> bytes:
    """One SSE event carrying ``payload`` (which must not contain newlines) as its data."""
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + payload + b"\n\n"


def encode_json(obj: object, *, event: str | None = None) -> bytes:
    """One SSE event whose data is ``obj`` as compact JSON (orjson never emits newlines)."""
    return encode_data(orjson.dumps(obj), event=event)


# --------------------------------------------------------------------------- decoding

#: Default cap on one event's size: far above any real chunk, small enough to stop a runaway body.
DEFAULT_MAX_EVENT_SIZE: Final = 16 * 1024 * 1024

_BOM: Final = b"\xef\xbb\xbf"


class SSEEventTooLargeError(MalformedStreamError):
    """One server-sent event grew past the decoder's ``max_event_size`` without ending."""


class ServerSentEvent:
    """One dispatched event: its type, its data (lines joined with ``\\n``), last id and retry.

    A plain slotted class rather than attrs: one is built per chunk on the hot path.
    """

    __slots__ = ("data", "event", "id", "retry")

    def __init__(self, data: str, event: str = "message", id: str = "", retry: int | None = None) -> None:
        self.data = data
        self.event = event
        self.id = id
        self.retry = retry

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ServerSentEvent):
            return NotImplemented
        mine = (self.data, self.event, self.id, self.retry)
        return mine == (other.data, other.event, other.id, other.retry)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = self.data if len(self.data) <= 80 else self.data[:80] + "..."
        return f"ServerSentEvent(event={self.event!r}, data={shown!r}, id={self.id!r}, retry={self.retry!r})"


class SSEDecoder:
    """Incremental WHATWG ``text/event-stream`` decoder: feed it bytes as they arrive.

    Line ends may be CRLF, LF or a lone CR, and any of them (and any UTF-8 sequence) may be
    split across reads; feeding a body whole, in pieces or byte by byte yields the same
    events. Work is done per complete event with ``bytes.find``/``split`` over whole buffers;
    the common ``data: {...}\\n\\n`` event takes a short fast path, and a read that is exactly
    one such event (the usual read of a live, paced stream) skips the buffer work altogether.
    Bytes are decoded to text only per field value, so a multi-byte character split across
    reads is never cut.

    Args:
        max_event_size: Largest number of bytes one event may span before
            :class:`SSEEventTooLargeError` is raised (a body that never ends an event would
            otherwise grow memory without bound).
    """

    __slots__ = (
        "_bom_pending",
        "_last_id",
        "_max",
        "_pending",
        "_pending_size",
        "_skip_lf",
        "_tail_nl",
        "retry",
    )

    def __init__(self, *, max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        self._max = max_event_size
        self._pending: list[bytes] = []  # the unfinished event, already LF-normalized
        self._pending_size = 0
        self._tail_nl = False  # whether the pending bytes end with "\n"
        self._skip_lf = False  # the last read ended in "\r": a leading "\n" next completes a CRLF
        self._bom_pending = True
        self._last_id = ""
        #: The last ``retry`` value the stream set (milliseconds), or None.
        self.retry: int | None = None

    @property
    def last_event_id(self) -> str:
        """The last event id the stream set (WHATWG keeps it across events)."""
        return self._last_id

    def _one_plain_event(self, chunk: bytes) -> bool:
        """Whether ``chunk`` is exactly one complete ``data: ...\\n\\n`` event with nothing pending.

        The common read on a live (paced) stream: such a read skips the buffer work.
        """
        return (
            not self._pending
            and not self._skip_lf
            and not self._bom_pending
            and chunk.startswith(b"data: ")
            and chunk.find(b"\n") == len(chunk) - 2
            and chunk[-1] == 10
            and len(chunk) - 2 <= self._max
            and b"\r" not in chunk
        )

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Decode one read's worth of bytes; return the events it completed (often none or one).

        Raises:
            SSEEventTooLargeError: When an unfinished event exceeds ``max_event_size``.
        """
        if self._one_plain_event(chunk):
            return [ServerSentEvent(chunk[6:-2].decode("utf-8", "replace"), "message", self._last_id)]
        return self._feed(chunk, False)  # type: ignore[return-value]

    def feed_raw(self, chunk: bytes) -> list[ServerSentEvent | bytes]:
        """As :meth:`feed`, but a plain one-line ``data: ...`` event comes as its data's raw bytes.

        For consumers that parse the data themselves (``orjson.loads`` takes bytes) and need
        neither the text nor the event's type and id (a plain ``data:`` line is always a
        ``message``): no decoding to ``str`` and no :class:`ServerSentEvent` per event. Every
        other event (named, multi-line, with an ``id``...) still comes as a
        :class:`ServerSentEvent`. The bytes are the line after ``"data: "``, undecoded (invalid
        UTF-8 is the consumer's to handle; :meth:`feed` replaces it).

        Raises:
            SSEEventTooLargeError: When an unfinished event exceeds ``max_event_size``.
        """
        if self._one_plain_event(chunk):
            return [chunk[6:-2]]
        return self._feed(chunk, True)

    def _feed(self, chunk: bytes, raw: bool) -> list[ServerSentEvent | bytes]:
        if self._bom_pending:
            if self._pending:
                chunk = b"".join(self._pending) + chunk
                self._pending.clear()
                self._pending_size = 0
            if len(chunk) < 3 and _BOM.startswith(chunk):
                if chunk:
                    self._pending.append(chunk)
                    self._pending_size = len(chunk)
                return []
            self._bom_pending = False
            if chunk.startswith(_BOM):
                chunk = chunk[3:]
        if not chunk:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[0] == 10:
                chunk = chunk[1:]
                if not chunk:
                    return []
        if b"\r" in chunk:
            self._skip_lf = chunk[-1] == 13
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")

        if self._pending:
            if not (self._tail_nl and chunk[0] == 10) and b"\n\n" not in chunk:
                self._pending.append(chunk)
                self._pending_size += len(chunk)
                self._tail_nl = chunk[-1] == 10
                if self._pending_size > self._max:
                    self._too_large(self._pending_size)
                return []
            self._pending.append(chunk)
            buf = b"".join(self._pending)
            self._pending.clear()
        else:
            buf = chunk

        events: list[ServerSentEvent | bytes] = []
        append = events.append
        find = buf.find
        size = len(buf)
        limit = self._max
        last_id = self._last_id
        pos = 0
        while True:
            nl = find(b"\n", pos)
            if nl < 0 or nl + 1 >= size:
                break  # no complete line, or cannot yet tell whether the event ends here
            if buf[nl + 1] == 10:
                # a one-line event (the common case); the fast path is "data: ..."
                if nl - pos > limit:
                    self._too_large(nl - pos)
                if buf.startswith(b"data: ", pos):
                    if raw:
                        append(buf[pos + 6 : nl])
                    else:
                        append(ServerSentEvent(buf[pos + 6 : nl].decode("utf-8", "replace"), "message", last_id))
                elif nl > pos:
                    event = self._parse_block(buf[pos:nl])
                    if event is not None:
                        append(event)
                    last_id = self._last_id  # an id field applies even without data
                pos = nl + 2
                continue
            end = find(b"\n\n", nl)
            if end < 0:
                break
            if end - pos > limit:
                self._too_large(end - pos)
            event = self._parse_block(buf[pos:end])
            if event is not None:
                append(event)
            last_id = self._last_id
            pos = end + 2
        if pos < len(buf):
            rest = buf[pos:] if pos else buf
            self._pending.append(rest)
            self._pending_size = len(rest)
            self._tail_nl = rest[-1] == 10
            if self._pending_size > self._max:
                self._too_large(self._pending_size)
        else:
            self._pending_size = 0
            self._tail_nl = False
        return events

    def flush(self) -> ServerSentEvent | None:
        """End of stream, leniently: the unterminated final event, if it carries data.

        WHATWG discards an event the body did not end with a blank line, and :meth:`close`
        does so. Some real bodies are cut right after their last line (``data: [DONE]`` or
        Anthropic's ``message_stop`` without the blank line); providers use this to recognise
        such a terminator instead of reporting a truncated stream.
        """
        if not self._pending:
            return None
        block = b"".join(self._pending).strip(b"\n")
        self._pending.clear()
        self._pending_size = 0
        return self._parse_block(block) if block else None

    def close(self) -> bool:
        """End of stream: discard any unterminated event; return whether there was one."""
        had = any(p.strip(b"\n") for p in self._pending)
        self._pending.clear()
        self._pending_size = 0
        return had

    def _parse_block(self, block: bytes) -> ServerSentEvent | None:
        """The general path: one event's lines with every field kind."""
        data: list[bytes] | None = None
        event = "message"
        retry: int | None = None
        for line in block.split(b"\n"):
            if not line or line[0] == 58:  # blank (leading) or ":" comment
                continue
            colon = line.find(b":")
            if colon < 0:
                name, value = line, b""
            else:
                name, value = line[:colon], line[colon + 1 :]
                if value[:1] == b" ":
                    value = value[1:]
            if name == b"data":
                if data is None:
                    data = [value]
                else:
                    data.append(value)
            elif name == b"event":
                event = value.decode("utf-8", "replace") or "message"
            elif name == b"id":
                if b"\0" not in value:
                    self._last_id = value.decode("utf-8", "replace")
            elif name == b"retry" and value.isdigit():
                retry = self.retry = int(value)
        if data is None:
            return None
        text = (data[0] if len(data) == 1 else b"\n".join(data)).decode("utf-8", "replace")
        return ServerSentEvent(text, event, self._last_id, retry)

    def _too_large(self, size: int) -> None:
        self._pending.clear()
        self._pending_size = 0
        raise SSEEventTooLargeError(
            f"server-sent event of at least {size} bytes exceeds max_event_size={self._max}; "
            "the body is not a sensible event stream or the limit is too small"
        )
