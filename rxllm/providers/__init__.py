"""The provider registry: ``"provider/model"`` strings to the module that speaks that protocol.

Provider modules are imported lazily, so ``import rxllm`` stays cheap. Each module named
here exposes ``get_provider(prefix: str) -> Provider``.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Final

from rxllm._validate import chunk_problem, describe
from rxllm.errors import APIError, BadRequestError, MalformedStreamError
from rxllm.providers.base import ChatRequest, Provider
from rxllm.types import ChatCompletionChunk

__all__ = [
    "MOCK_PARAMS",
    "ChatRequest",
    "CheckedStream",
    "Provider",
    "claimed_provider",
    "get_provider",
    "known_providers",
    "open_stream",
    "register_provider",
    "resolve_model",
    "split_model",
    "validate_request",
]

_OPENAI: Final = "rxllm.providers.openai"

#: prefix -> module implementing it
_MODULES: dict[str, str] = {
    "openai": _OPENAI,
    "azure_openai": _OPENAI,
    "deepseek": _OPENAI,
    "groq": _OPENAI,
    "mistral": _OPENAI,
    "openrouter": _OPENAI,
    "together_ai": _OPENAI,
    "fireworks_ai": _OPENAI,
    "xai": _OPENAI,
    "hosted_vllm": _OPENAI,
    "lm_studio": _OPENAI,
    "ollama_chat": _OPENAI,
    "anthropic": "rxllm.providers.anthropic",
    "gemini": "rxllm.providers.gemini",
    "mock": "rxllm.providers.mock",
}

_CUSTOM: dict[str, Provider] = {}
_CACHE: dict[str, Provider] = {}

#: bare model-name prefixes LiteLLM users write without a provider
_INFERRED: tuple[tuple[str, str], ...] = (
    ("gpt-", "openai"),
    ("chatgpt-", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("claude-", "anthropic"),
    ("gemini-", "gemini"),
    ("deepseek-", "deepseek"),
)


def known_providers() -> list[str]:
    """Every provider prefix rxllm understands, sorted."""
    return sorted({*_MODULES, *_CUSTOM})


def register_provider(prefix: str, provider: Provider) -> None:
    """Make ``prefix/...`` models use ``provider`` (overrides a built-in prefix)."""
    if not prefix or "/" in prefix:
        raise BadRequestError(f"provider prefix must be a non-empty name without '/', got {prefix!r}")
    _CUSTOM[prefix] = provider
    _CACHE.pop(prefix, None)


def split_model(model: str) -> tuple[str, str]:
    """Split ``"groq/llama-3.1-8b"`` into ``("groq", "llama-3.1-8b")``.

    A bare model name is matched to its provider as LiteLLM does (``gpt-4o`` is OpenAI's,
    ``claude-...`` Anthropic's, ``gemini-...`` Gemini's).

    Raises:
        BadRequestError: For an empty model, an unknown prefix (listing the known ones), or a
            bare name no provider claims.
    """
    if not isinstance(model, str) or not model.strip():
        raise BadRequestError(f"model must be a non-empty string like 'openai/gpt-4o', got {model!r}")
    prefix, sep, rest = model.partition("/")
    # "meta-llama/Llama-3" style names are not prefixes: they fall through to inference
    if sep and (prefix in _MODULES or prefix in _CUSTOM):
        if not rest:
            raise BadRequestError(f"model {model!r} names the provider {prefix!r} but no model")
        return prefix, rest
    for start, provider in _INFERRED:
        if model.startswith(start):
            return provider, model
    raise BadRequestError(
        f"unknown provider for model {model!r}: write it as 'provider/model'; "
        f"known providers: {', '.join(known_providers())}",
        model=model,
    )


#: Parameters that make any model answer from the mock provider, as in LiteLLM.
MOCK_PARAMS: Final = ("mock_response", "mock_tool_calls", "mock_fail_after", "mock_fail_with")


def resolve_model(model: str, params: Mapping[str, Any]) -> tuple[str, str]:
    """``(provider prefix, provider's model name)`` for a call.

    A call that carries a mock parameter (:data:`MOCK_PARAMS`) is served by the mock provider
    whatever its model, which keeps its own name so costs are computed for it.

    Raises:
        BadRequestError: As :func:`split_model`.
    """
    if any(params.get(name) is not None for name in MOCK_PARAMS) and not model.startswith("mock/"):
        if not isinstance(model, str) or not model.strip():
            raise BadRequestError(f"model must be a non-empty string like 'openai/gpt-4o', got {model!r}")
        return "mock", model
    return split_model(model)


def claimed_provider(model: str) -> str:
    """The provider a model name belongs to (``"mock"`` when none claims it), for errors and logs."""
    try:
        return split_model(model)[0]
    except BadRequestError:
        return "mock"


def validate_request(provider: Provider, request: ChatRequest) -> None:
    """Run the provider's own checks (an optional ``validate(request)`` method) before any I/O."""
    validate = getattr(provider, "validate", None)
    if validate is not None:
        validate(request)


def get_provider(prefix: str) -> Provider:
    """The provider for a prefix, importing its module on first use."""
    if prefix in _CUSTOM:
        return _CUSTOM[prefix]
    cached = _CACHE.get(prefix)
    if cached is not None:
        return cached
    module_name = _MODULES.get(prefix)
    if module_name is None:
        raise BadRequestError(f"unknown provider {prefix!r}; known providers: {', '.join(known_providers())}")
    provider: Provider = importlib.import_module(module_name).get_provider(prefix)
    _CACHE[prefix] = provider
    return provider


# --------------------------------------------------------------------------- the boundary


class CheckedStream(AsyncIterator[ChatCompletionChunk]):
    """A provider's chunk iterator with the boundary rules applied: what passes can be trusted.

    Every chunk is checked once (:func:`rxllm._validate.chunk_problem`); a chunk of the wrong
    shape, or any exception of the provider's code that is not an :class:`~rxllm.errors.APIError`
    (a ``TypeError`` on a payload field of the wrong type), becomes a
    :class:`~rxllm.errors.MalformedStreamError` naming the field (or the exception) and the
    provider, with no transport object in its ``__cause__``/``__context__``. Closing it closes
    the provider's iterator (and its HTTP response).

    Args:
        provider: The provider.
        request: The request to stream.
    """

    __slots__ = ("_iterator", "_model", "_name", "_next", "_provider", "_request")

    def __init__(self, provider: Provider, request: ChatRequest) -> None:
        self._provider = provider
        self._request = request
        self._name = str(getattr(provider, "name", None) or request.provider)
        self._model = request.original_model or request.model
        self._iterator: AsyncIterator[ChatCompletionChunk] | None = None
        self._next: Callable[[], Awaitable[ChatCompletionChunk]] | None = None

    def __aiter__(self) -> CheckedStream:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        error: APIError
        try:
            step = self._next
            if step is None:
                iterator = self._iterator = aiter(self._provider.stream(self._request))
                step = self._next = iterator.__anext__
            chunk = await step()
        except (StopAsyncIteration, APIError, asyncio.CancelledError):
            raise
        except Exception as exc:
            error = MalformedStreamError(
                f"the {self._name} stream has a field of an unexpected type or shape ({type(exc).__name__}: {exc})",
                llm_provider=self._name,
                model=self._model,
            )
            if not type(exc).__module__.startswith("aiohttp"):
                error.__cause__ = exc
        else:
            if chunk.__class__ is not ChatCompletionChunk:
                raise MalformedStreamError(
                    f"the {self._name} provider yielded {describe(chunk)}, not a ChatCompletionChunk",
                    llm_provider=self._name,
                    model=self._model,
                )
            problem = chunk_problem(chunk)
            if problem is None:
                return chunk
            error = MalformedStreamError(
                f"malformed chunk from {self._name}: {problem}", llm_provider=self._name, model=self._model
            )
        raise error  # outside the except block: no provider exception in __context__

    async def aclose(self) -> None:
        """Close the provider's iterator (idempotent)."""
        iterator, self._iterator = self._iterator, None
        self._next = _closed_step
        aclose: Any = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


async def _closed_step() -> ChatCompletionChunk:
    raise StopAsyncIteration


def open_stream(request: ChatRequest) -> CheckedStream:
    """The checked chunk iterator of ``request``'s provider (see :class:`CheckedStream`).

    Raises:
        BadRequestError: For an unknown provider.
    """
    return CheckedStream(get_provider(request.provider), request)
