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

import os
from typing import TYPE_CHECKING, Any

from rxllm.adapters import to_async_iterator, to_iterator
from rxllm.api import AsyncCompletionStream, CompletionStream, aclose, acompletion, completion, stream
from rxllm.errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    BadGatewayError,
    BadRequestError,
    ContentPolicyViolationError,
    ContextWindowExceededError,
    InternalServerError,
    InvalidToolArgumentsError,
    MalformedStreamError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTooLargeError,
    ServiceUnavailableError,
    Timeout,
    UnprocessableEntityError,
)
from rxllm.providers import known_providers, register_provider
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
    from rxllm.builder import stream_chunk_builder as stream_chunk_builder
    from rxllm.pricing import PriceNotFoundError as PriceNotFoundError
    from rxllm.pricing import completion_cost as completion_cost
    from rxllm.pricing import cost_per_token as cost_per_token
    from rxllm.pricing import get_model_info as get_model_info
    from rxllm.pricing import model_cost as model_cost
    from rxllm.pricing import register_model as register_model

__version__ = "0.1.0"

# The design fixes the operators at the top level (operators/), and setup.cfg's package_dir
# installs them as rxllm/operators. A script or `python -m rxllm` run from a source checkout
# imports this directory instead of the installed package: let it find ../operators the
# same way, so a checkout and an installation behave alike.
_source_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if not os.path.isdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), "operators")) and os.path.isfile(
    os.path.join(_source_root, "operators", "__init__.py")
):
    __path__.append(_source_root)


def _limit_from_env() -> int:
    raw = os.environ.get("REPEATED_STREAMING_CHUNK_LIMIT")
    if raw is None:
        return 100
    try:
        value = int(raw)
    except ValueError:
        raise BadRequestError(f"REPEATED_STREAMING_CHUNK_LIMIT must be an integer, got {raw!r}") from None
    if value < 1:
        raise BadRequestError(f"REPEATED_STREAMING_CHUNK_LIMIT must be at least 1, got {value}")
    return value


REPEATED_STREAMING_CHUNK_LIMIT: int = _limit_from_env()
success_callback: list[Any] = []
failure_callback: list[Any] = []

# Imported on first use, so that `import rxllm` stays cheap.
_LAZY = {
    "operators": ("rxllm.operators", None),
    "stream_chunk_builder": ("rxllm.builder", "stream_chunk_builder"),
    "completion_cost": ("rxllm.pricing", "completion_cost"),
    "cost_per_token": ("rxllm.pricing", "cost_per_token"),
    "get_model_info": ("rxllm.pricing", "get_model_info"),
    "PriceNotFoundError": ("rxllm.pricing", "PriceNotFoundError"),
    "model_cost": ("rxllm.pricing", "model_cost"),
    "register_model": ("rxllm.pricing", "register_model"),
}


def __getattr__(name: str) -> Any:
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'rxllm' has no attribute {name!r}") from None
    import importlib

    module = importlib.import_module(module_name)
    return module if attribute is None else getattr(module, attribute)


__all__ = [
    "REPEATED_STREAMING_CHUNK_LIMIT",
    "APIConnectionError",
    "APIError",
    "AsyncCompletionStream",
    "AuthenticationError",
    "BadGatewayError",
    "BadRequestError",
    "ChatCompletionChunk",
    "Choice",
    "CompletionStream",
    "ContentPolicyViolationError",
    "ContextWindowExceededError",
    "Delta",
    "Function",
    "FunctionDelta",
    "InternalServerError",
    "InvalidToolArgumentsError",
    "MalformedStreamError",
    "Message",
    "ModelResponse",
    "NotFoundError",
    "PermissionDeniedError",
    "PriceNotFoundError",
    "RateLimitError",
    "RequestTooLargeError",
    "ServiceUnavailableError",
    "StreamChoice",
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
    "failure_callback",
    "from_async_iterable",
    "get_model_info",
    "known_providers",
    "model_cost",
    "operators",
    "register_model",
    "register_provider",
    "stream",
    "stream_chunk_builder",
    "success_callback",
    "to_async_iterator",
    "to_iterator",
]
