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

__all__: list[str] = []

# --- response building, tool calls, loop detection (one section per contributor) ---

from rxllm.builder import ResponseSnapshot

from ._accumulate_tool_calls import accumulate_tool_calls, tool_call_snapshots
from ._detect_repeated_chunks import detect_repeated_chunks
from ._text import text
from ._to_response import snapshots, to_response

# A plain dunder assignment (not +=) keeps later imports legal for ruff's E402.
__all__ = [
    *__all__,
    "ResponseSnapshot",
    "accumulate_tool_calls",
    "detect_repeated_chunks",
    "snapshots",
    "text",
    "to_response",
    "tool_call_snapshots",
]

# --- cost, time, retries, logging, SSE ---

from ._log_stream import log_stream
from ._retry import DEFAULT_RETRY_ON, StreamRestart, exponential_backoff, fallback, retry_stream
from ._tap_cost import CostReport, tap_cost
from ._timeouts import carries_data, deadline, first_chunk_timeout, stall_timeout
from ._to_sse import error_payload, to_sse

__all__ = [
    *__all__,
    "DEFAULT_RETRY_ON",
    "CostReport",
    "StreamRestart",
    "carries_data",
    "deadline",
    "error_payload",
    "exponential_backoff",
    "fallback",
    "first_chunk_timeout",
    "log_stream",
    "retry_stream",
    "stall_timeout",
    "tap_cost",
    "to_sse",
]

# --- observability integrations (optional dependencies, imported lazily) ---

from ._tap_otel import tap_otel

__all__ = [*__all__, "tap_otel"]

__all__.sort()
