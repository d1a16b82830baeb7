"""What a provider is: a function from a request to an async iterator of chunks.

A provider turns one :class:`ChatRequest` into the provider's HTTP call and yields
normalized :class:`~rxllm.types.ChatCompletionChunk` objects. It is an async generator so
that closing it (``aclose()``, which the Observable bridge does on dispose) closes the HTTP
response. Errors are raised as :mod:`rxllm.errors` classes carrying ``llm_provider`` and
``model``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

import attrs

from rxllm._secrets import safe_url
from rxllm.types import ChatCompletionChunk

__all__ = ["ChatRequest", "Provider"]


@attrs.frozen
class ChatRequest:
    """One chat request, validated and resolved to a provider.

    Attributes:
        model: The model name as the provider knows it (``"gpt-4o"``, no prefix).
        provider: The provider prefix (``"openai"``, ``"groq"``, ``"mock"``...).
        messages: OpenAI-format messages.
        params: OpenAI-format optional parameters (``temperature``, ``tools``,
            ``tool_choice``, ``max_tokens``, ``stop``, ``n``, ``stream_options``...),
            plus provider-specific ones (``thinking``, ``mock_*``).
        api_base: Overrides the provider's endpoint root (or full URL); shown without its
            query string or user info in reprs.
        api_key: Overrides the provider's key variable. Never shown in reprs.
        timeout: Seconds to connect (LiteLLM's ``timeout``).
        stream_timeout: Seconds allowed between body reads (LiteLLM's ``stream_timeout``).
        extra_headers: Extra HTTP headers to send.
        original_model: The model string as the caller gave it (``"openai/gpt-4o"``).
    """

    model: str
    provider: str
    messages: tuple[Mapping[str, Any], ...]
    params: Mapping[str, Any] = attrs.field(factory=dict)
    api_base: str | None = attrs.field(default=None, repr=lambda v: repr(safe_url(v)) if v else repr(v))
    api_key: str | None = attrs.field(default=None, repr=False)
    timeout: float | None = None
    stream_timeout: float | None = None
    extra_headers: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    original_model: str = ""


class Provider(Protocol):
    """A wire protocol: turns requests into chunk streams.

    A provider may also have a ``validate(request) -> None`` method, called before any I/O,
    that raises an :mod:`rxllm.errors` class for a request it cannot serve (the mock provider
    raises the error a ``mock_response`` asks for there).
    """

    name: str

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatCompletionChunk]:
        """Start the request and yield its chunks; closing the iterator cancels it."""
        ...
