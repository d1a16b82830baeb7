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
from ._log_stream import log_stream
from ._retry import StreamRestart, fallback, retry_stream
from ._tap_cost import CostReport, tap_cost
from ._tee_to import tee_to
from ._text import text
from ._timeouts import deadline, first_chunk_timeout, stall_timeout
from ._to_response import snapshots, to_response
from ._to_sse import to_sse

# Operators, plus the two value types their output carries (tap_cost's report, the
# in-stream restart marker). Non-operators live where they belong: rxllm.builder
# (ResponseSnapshot), rxllm.types (carries_data), rxllm.retry_policy (exponential_backoff).
__all__ = [
    "CostReport",
    "StreamRestart",
    "accumulate_tool_calls",
    "deadline",
    "detect_repeated_chunks",
    "fallback",
    "first_chunk_timeout",
    "log_stream",
    "retry_stream",
    "snapshots",
    "stall_timeout",
    "tap_cost",
    "tee_to",
    "text",
    "to_response",
    "to_sse",
    "tool_call_snapshots",
]
