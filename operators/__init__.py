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

# --- response building, tool calls, loop detection (one section per contributor) ---

# --- cost, time, retries, logging, SSE ---

__all__: list[str] = []
