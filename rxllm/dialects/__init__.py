"""Dialects: the wire protocols rxllm speaks at its edges, over one stream of chunks.

A dialect is a pair: a *request translator* (the dialect's request body → an rxllm call,
:class:`TranslatedRequest`) and an *event encoder* (chunks → that dialect's server-sent
events). Both are pure (no I/O, no aiohttp), so the proxy and a user's own aiohttp or FastAPI
service use the same code; the ``rxllm.operators`` ``to_sse``, ``to_responses_sse``,
``to_messages_sse`` and ``to_ui_message_stream`` wrap the encoders as operators.

- :mod:`rxllm.dialects.chat`: OpenAI chat completions (``data: {chunk}``, ``[DONE]``).
- :mod:`rxllm.dialects.responses`: OpenAI's Responses API.
- :mod:`rxllm.dialects.messages`: Anthropic's Messages API.
- :mod:`rxllm.dialects.ui_stream`: the Vercel AI SDK's UI message stream (``useChat``).
"""

from __future__ import annotations

from ._common import SSE_HEADERS, Encoder, RequestFieldError, TranslatedRequest, chunks_of_response

__all__ = ["SSE_HEADERS", "Encoder", "RequestFieldError", "TranslatedRequest", "chunks_of_response"]
