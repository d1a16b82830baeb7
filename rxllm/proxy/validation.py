"""Request validation shared by every dialect: the same rules, the same typed 400s.

Dialect translators call these helpers so a wrong type is reported the same way whichever
endpoint received it: a :class:`~rxllm.proxy.errors.ProxyError` with status 400 whose
message names the field, what it must be and what it was (never the value itself, which may
be large or private).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from rxllm.dialects._common import json_type
from rxllm.proxy.errors import ProxyError

__all__ = [
    "BLOCKED_PARAMS",
    "MAX_JSON_DEPTH",
    "TYPED_PARAMS",
    "bad_request",
    "check_depth",
    "check_messages",
    "check_types",
    "json_type",
    "passthrough_params",
    "require_object",
]

#: Request fields a client may never set: they would redirect or re-key the upstream call.
BLOCKED_PARAMS: Final = frozenset(
    {
        "api_base",
        "base_url",
        "api_key",
        "api_version",
        "extra_headers",
        "headers",
        "timeout",
        "stream_timeout",
        "custom_llm_provider",
        "litellm_params",
        "num_retries",
        "retry_backoff",
        "fallbacks",
    }
)

#: Common OpenAI parameters and the JSON types they must have.
TYPED_PARAMS: Final[Mapping[str, tuple[tuple[type, ...], str]]] = {
    "temperature": ((int, float), "a number"),
    "top_p": ((int, float), "a number"),
    "presence_penalty": ((int, float), "a number"),
    "frequency_penalty": ((int, float), "a number"),
    "max_tokens": ((int,), "an integer"),
    "max_completion_tokens": ((int,), "an integer"),
    "n": ((int,), "an integer"),
    "seed": ((int,), "an integer"),
    "tools": ((list,), "an array"),
    "functions": ((list,), "an array"),
    "stop": ((str, list), "a string or an array"),
    "user": ((str,), "a string"),
    "tool_choice": ((str, dict), "a string or an object"),
    "response_format": ((dict,), "an object"),
}


#: How deeply a request body may nest arrays and objects (real requests, tool schemas
#: included, stay far below; deeper ones would exhaust the JSON encoder's recursion limit).
MAX_JSON_DEPTH: Final = 100


def bad_request(message: str, param: str | None = None, *, code: str | None = None) -> ProxyError:
    """A 400 :class:`ProxyError` naming ``param``."""
    return ProxyError(message, status_code=400, param=param, code=code)


def require_object(body: Any) -> dict[str, Any]:
    """``body`` if it is a JSON object.

    Raises:
        ProxyError: 400 otherwise.
    """
    if not isinstance(body, dict):
        raise bad_request(f"the request body must be a JSON object, got {json_type(body)}")
    return body


def check_types(body: Mapping[str, Any], typed: Mapping[str, tuple[tuple[type, ...], str]] = TYPED_PARAMS) -> None:
    """Check the fields of ``body`` named in ``typed`` (absent or null fields pass).

    Raises:
        ProxyError: 400 naming the first field of the wrong type (or ``n`` below 1).
    """
    for name, (types, wanted) in typed.items():
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, types):
            raise bad_request(f"{name} must be {wanted}, got {json_type(value)}", name)
    n = body.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n < 1:
        raise bad_request(f"n must be at least 1, got {n}", "n")


def passthrough_params(body: Mapping[str, Any], handled: Iterable[str]) -> dict[str, Any]:
    """The fields of ``body`` to pass to :func:`rxllm.stream`: all but ``handled`` and the blocked ones."""
    skip = BLOCKED_PARAMS.union(handled)
    return {k: v for k, v in body.items() if k not in skip}


def check_depth(body: Any, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse a body nested deeper than ``limit`` arrays/objects (iteratively: no recursion).

    Raises:
        ProxyError: 400 ``"the request body nests deeper than ..."``.
    """
    stack: list[tuple[Any, int]] = [(body, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        value, depth = pop()
        if depth > limit:
            raise bad_request(f"the request body nests arrays/objects deeper than {limit} levels", code="too_deep")
        if isinstance(value, dict):
            for item in value.values():
                if isinstance(item, dict | list):
                    push((item, depth + 1))
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict | list):
                    push((item, depth + 1))


def check_messages(messages: Any, param: str = "messages") -> list[dict[str, Any]]:
    """Check the shape of OpenAI-format ``messages``: a non-empty array of objects with a string role.

    Returns:
        ``messages`` itself.

    Raises:
        ProxyError: 400 naming the first bad message (``messages[2].role``).
    """
    if messages is None:
        raise bad_request(f"you must provide a {param} parameter", param)
    if not isinstance(messages, list):
        raise bad_request(f"{param} must be an array of message objects, got {json_type(messages)}", param)
    if not messages:
        raise bad_request(f"{param} must not be empty", param)
    for i, message in enumerate(messages):
        where = f"{param}[{i}]"
        if not isinstance(message, dict):
            raise bad_request(f"{where} must be an object, got {json_type(message)}", param)
        role = message.get("role")
        if not isinstance(role, str) or not role:
            raise bad_request(f"{where}.role must be a non-empty string, got {json_type(role)}", param)
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise bad_request(f"{where}.content must be a string or an array of parts, got {json_type(content)}", param)
        if isinstance(content, list):
            for j, part in enumerate(content):
                if not isinstance(part, dict):
                    raise bad_request(f"{where}.content[{j}] must be an object, got {json_type(part)}", param)
        name = message.get("name")
        if name is not None and not isinstance(name, str):
            raise bad_request(f"{where}.name must be a string, got {json_type(name)}", param)
    return messages
