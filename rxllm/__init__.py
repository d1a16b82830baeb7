"""rxllm: every LLM provider's stream as a ReactiveX Observable of OpenAI-style chunks.

The reactive heart is :func:`stream` plus :mod:`rxllm.operators`; :func:`completion`,
:func:`acompletion` and :func:`stream_chunk_builder` keep code written against LiteLLM's
streaming documentation working with ``litellm`` replaced by ``rxllm``.

Module settings (read when a stream is subscribed):

- ``REPEATED_STREAMING_CHUNK_LIMIT``: how many identical content chunks in a row are
  allowed before ``InternalServerError`` (default 100, or the environment variable of the
  same name).
- ``success_callback`` / ``failure_callback``: lists of callables
  ``(kwargs, completion_response, start_time, end_time)`` fired once per call.
"""

from __future__ import annotations

import sys
from types import ModuleType as _ModuleType
from typing import TYPE_CHECKING, Any

from rxllm.adapters import to_async_iterator, to_iterator
from rxllm.api import AsyncCompletionStream, CompletionStream, aclose, acompletion, completion, stream
from rxllm.errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    BadGatewayError,
    BadRequestError,
    BudgetExceededError,
    ContentPolicyViolationError,
    ContextWindowExceededError,
    InternalServerError,
    InvalidToolArgumentsError,
    JSONSchemaValidationError,
    MalformedStreamError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTooLargeError,
    ServiceUnavailableError,
    Timeout,
    UnprocessableEntityError,
)
from rxllm.providers import ChatRequest, Provider, known_providers, register_provider
from rxllm.settings import settings as _settings
from rxllm.streams import from_async_iterable
from rxllm.types import (
    ChatCompletionChunk,
    Choice,
    Delta,
    Function,
    FunctionDelta,
    Message,
    ModelResponse,
    StreamChoice,
    ToolCall,
    ToolCallDelta,
    Usage,
)

if TYPE_CHECKING:
    import rxllm.operators as operators
    from rxllm.builder import ResponseSnapshot as ResponseSnapshot
    from rxllm.builder import stream_chunk_builder as stream_chunk_builder
    from rxllm.pricing import PriceNotFoundError as PriceNotFoundError
    from rxllm.pricing import completion_cost as completion_cost
    from rxllm.pricing import cost_per_token as cost_per_token
    from rxllm.pricing import get_model_info as get_model_info
    from rxllm.pricing import model_cost as model_cost
    from rxllm.pricing import register_model as register_model
    from rxllm.retry_policy import exponential_backoff as exponential_backoff
    from rxllm.stream_log import MemoryStreamLog as MemoryStreamLog
    from rxllm.stream_log import StreamLog as StreamLog
    from rxllm.stream_log import resume as resume

__version__ = "0.1.0"


class _Package(_ModuleType):
    """The ``rxllm`` module's class: LiteLLM-style settings read and write :mod:`rxllm.settings`.

    ``rxllm.REPEATED_STREAMING_CHUNK_LIMIT = 5`` must reach the operators, which import
    ``rxllm.settings`` (a lower layer) rather than this package.
    """

    @property
    def REPEATED_STREAMING_CHUNK_LIMIT(self) -> int:
        return _settings.repeated_chunk_limit

    @REPEATED_STREAMING_CHUNK_LIMIT.setter
    def REPEATED_STREAMING_CHUNK_LIMIT(self, value: int) -> None:
        _settings.repeated_chunk_limit = value

    @property
    def success_callback(self) -> list[Any]:
        return _settings.success_callback

    @success_callback.setter
    def success_callback(self, value: list[Any]) -> None:
        _settings.success_callback = value

    @property
    def failure_callback(self) -> list[Any]:
        return _settings.failure_callback

    @failure_callback.setter
    def failure_callback(self, value: list[Any]) -> None:
        _settings.failure_callback = value


sys.modules[__name__].__class__ = _Package

# Imported on first use, so that `import rxllm` stays cheap.
_LAZY = {
    "operators": ("rxllm.operators", None),
    "display": ("rxllm.display", None),  # a callable module: rxllm.display(source)
    "stream_chunk_builder": ("rxllm.builder", "stream_chunk_builder"),
    "ResponseSnapshot": ("rxllm.builder", "ResponseSnapshot"),
    "exponential_backoff": ("rxllm.retry_policy", "exponential_backoff"),
    "completion_cost": ("rxllm.pricing", "completion_cost"),
    "cost_per_token": ("rxllm.pricing", "cost_per_token"),
    "get_model_info": ("rxllm.pricing", "get_model_info"),
    "PriceNotFoundError": ("rxllm.pricing", "PriceNotFoundError"),
    "model_cost": ("rxllm.pricing", "model_cost"),
    "register_model": ("rxllm.pricing", "register_model"),
    "resume": ("rxllm.stream_log", "resume"),
    "MemoryStreamLog": ("rxllm.stream_log", "MemoryStreamLog"),
    "StreamLog": ("rxllm.stream_log", "StreamLog"),
}


def __getattr__(name: str) -> Any:
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'rxllm' has no attribute {name!r}") from None
    import importlib

    module = importlib.import_module(module_name)
    return module if attribute is None else getattr(module, attribute)


def __dir__() -> list[str]:
    # The public API, not this module's imports and helpers.
    return sorted(__all__)


__all__ = [
    "REPEATED_STREAMING_CHUNK_LIMIT",
    "APIConnectionError",
    "APIError",
    "AsyncCompletionStream",
    "AuthenticationError",
    "BadGatewayError",
    "BadRequestError",
    "BudgetExceededError",
    "ChatCompletionChunk",
    "ChatRequest",
    "Choice",
    "CompletionStream",
    "ContentPolicyViolationError",
    "ContextWindowExceededError",
    "Delta",
    "Function",
    "FunctionDelta",
    "InternalServerError",
    "InvalidToolArgumentsError",
    "JSONSchemaValidationError",
    "MalformedStreamError",
    "MemoryStreamLog",
    "Message",
    "ModelResponse",
    "NotFoundError",
    "PermissionDeniedError",
    "PriceNotFoundError",
    "Provider",
    "RateLimitError",
    "RequestTooLargeError",
    "ResponseSnapshot",
    "ServiceUnavailableError",
    "StreamChoice",
    "StreamLog",
    "Timeout",
    "ToolCall",
    "ToolCallDelta",
    "UnprocessableEntityError",
    "Usage",
    "aclose",
    "acompletion",
    "completion",
    "completion_cost",
    "cost_per_token",
    "display",
    "exponential_backoff",
    "failure_callback",
    "from_async_iterable",
    "get_model_info",
    "known_providers",
    "model_cost",
    "operators",
    "register_model",
    "register_provider",
    "resume",
    "stream",
    "stream_chunk_builder",
    "success_callback",
    "to_async_iterator",
    "to_iterator",
]
