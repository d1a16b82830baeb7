"""rxllm's operators: pure functions ``Observable -> Observable`` for LLM chunk streams.

Compose them with ``pipe``::

    from rxllm import operators as ops

    rxllm.stream("mock/echo", messages).pipe(
        ops.detect_repeated_chunks(),
        ops.tap_cost(print),
        ops.to_response(),
    )

Each operator lives in its own private module; state is per subscription.
"""

from __future__ import annotations

from ._accumulate_tool_calls import accumulate_tool_calls, tool_call_snapshots
from ._detect_repeated_chunks import detect_repeated_chunks
from ._display import display, display_frames
from ._events import events
from ._limit import limit
from ._log_stream import log_stream
from ._retry import StreamRestart, fallback, retry_stream
from ._smooth import smooth
from ._split_think_tags import split_think_tags
from ._structured import structured_output
from ._tap_cost import CostReport, tap_cost
from ._tap_otel import tap_otel
from ._tee_to import tee_to
from ._text import reasoning, text
from ._throttle_snapshots import throttle_snapshots
from ._timeouts import deadline, first_chunk_timeout, stall_timeout
from ._to_messages_sse import to_messages_sse
from ._to_response import snapshots, to_response
from ._to_responses_sse import to_responses_sse
from ._to_sse import to_sse
from ._to_ui_message_stream import to_ui_message_stream

# Operators, plus the two value types their output carries (tap_cost's report, the
# in-stream restart marker). Non-operators live where they belong: rxllm.builder
# (ResponseSnapshot), rxllm.types (carries_data), rxllm.retry_policy (exponential_backoff),
# rxllm.events (the event classes events() emits), rxllm.structured (StructuredPartial,
# StructuredFinal, response_format).
__all__ = [
    "CostReport",
    "StreamRestart",
    "accumulate_tool_calls",
    "deadline",
    "detect_repeated_chunks",
    "display",
    "display_frames",
    "events",
    "fallback",
    "first_chunk_timeout",
    "limit",
    "log_stream",
    "reasoning",
    "retry_stream",
    "smooth",
    "snapshots",
    "split_think_tags",
    "stall_timeout",
    "structured_output",
    "tap_cost",
    "tap_otel",
    "tee_to",
    "text",
    "throttle_snapshots",
    "to_messages_sse",
    "to_response",
    "to_responses_sse",
    "to_sse",
    "to_ui_message_stream",
    "tool_call_snapshots",
]
