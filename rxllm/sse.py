"""Server-sent events: encoding chunks for browsers and OpenAI clients (and, below, decoding).

The encoder writes what OpenAI's endpoint writes: ``data: {json}\\n\\n`` per chunk and
``data: [DONE]\\n\\n`` at the end.
"""

from __future__ import annotations

from typing import Final

import orjson

__all__ = ["SSE_DONE", "encode_data", "encode_json"]

#: The event OpenAI-compatible streams end with.
SSE_DONE: Final = b"data: [DONE]\n\n"


def encode_data(payload: bytes, *, event: str | None = None) -> bytes:
    """One SSE event carrying ``payload`` (which must not contain newlines) as its data."""
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + payload + b"\n\n"


def encode_json(obj: object, *, event: str | None = None) -> bytes:
    """One SSE event whose data is ``obj`` as compact JSON (orjson never emits newlines)."""
    return encode_data(orjson.dumps(obj), event=event)
