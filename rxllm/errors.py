"""The exception hierarchy: LiteLLM's names and status codes, carried as values in streams.

Every error knows its HTTP ``status_code``, the ``llm_provider`` and ``model`` it came from,
and, when it interrupted a stream, the ``partial_response`` rebuilt from what had arrived.
Constructors take keywords, as LiteLLM's do::

    raise InternalServerError(message="boom", llm_provider="openai", model="gpt-4o")

Secrets never reach these objects: providers pass messages extracted from response bodies,
never request headers.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from rxllm._secrets import scrub, scrub_value

# The partial response is a rxllm.types.ModelResponse; it is typed loosely here because this
# module is the lowest layer (rxllm.types raises these errors, so it cannot be imported here).
PartialResponse = Any

__all__ = [
    "APIConnectionError",
    "APIError",
    "AuthenticationError",
    "BadGatewayError",
    "BadRequestError",
    "BudgetExceededError",
    "ContentPolicyViolationError",
    "ContextWindowExceededError",
    "InternalServerError",
    "InvalidToolArgumentsError",
    "JSONSchemaValidationError",
    "MalformedStreamError",
    "NotFoundError",
    "PartialJSONError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestTooLargeError",
    "ServiceUnavailableError",
    "Timeout",
    "UnprocessableEntityError",
    "as_api_error",
    "error_body",
    "error_for_status",
    "error_status",
    "parse_retry_after",
    "resolve_error_class",
]


class APIError(Exception):
    """Base class of every error rxllm raises about a request or a stream.

    Args:
        message: What went wrong, in words a person can act on.
        llm_provider: The provider name (``"openai"``, ``"anthropic"``, ...), if known.
        model: The model name as the caller gave it, if known.
        status_code: Overrides the class's default HTTP status.
        partial_response: The response rebuilt from the chunks received before the error.
        response_headers: Headers of the HTTP response that carried the error.
        body: The provider's decoded error body, if any.
    """

    default_status_code: ClassVar[int] = 500

    def __init__(
        self,
        message: str = "",
        *,
        llm_provider: str | None = None,
        model: str | None = None,
        status_code: int | None = None,
        partial_response: PartialResponse | None = None,
        response_headers: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> None:
        message = scrub(message) if isinstance(message, str) else message
        super().__init__(message)
        self.message = message
        self.llm_provider = llm_provider
        self.model = model
        self.status_code = self.default_status_code if status_code is None else status_code
        self.partial_response = partial_response
        self.response_headers = (
            {k: scrub(v) if isinstance(v, str) else v for k, v in response_headers.items()} if response_headers else {}
        )
        self.body = scrub_value(body) if body is not None else None

    def __str__(self) -> str:
        provider, model = self.llm_provider, self.model
        if provider and model and model.startswith(provider + "/"):
            provider = None  # "openai/gpt-4o" already names its provider: never "openai/openai/gpt-4o"
        where = "/".join(p for p in (provider, model) if p)
        prefix = f"rxllm.{type(self).__name__}"
        return scrub(f"{prefix}: {where}: {self.message}" if where else f"{prefix}: {self.message}")

    def __repr__(self) -> str:
        return scrub(
            f"{type(self).__name__}(message={self.message!r}, status_code={self.status_code}, "
            f"llm_provider={self.llm_provider!r}, model={self.model!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructors do not pickle by default; errors cross process pools.
        return (_rebuild, (type(self), self.message, self._state()))

    def _state(self) -> dict[str, Any]:
        return {
            "llm_provider": self.llm_provider,
            "model": self.model,
            "status_code": self.status_code,
            "partial_response": self.partial_response,
            "response_headers": self.response_headers,
            "body": self.body,
        }

    def with_partial_response(self, partial_response: PartialResponse | None) -> APIError:
        """This error carrying ``partial_response``: ``self`` when it already has one, else a copy.

        Errors are never changed as they pass through a pipeline: with ``share()`` every
        subscriber sees the same exception object, so the copy (same class, same fields,
        ``__cause__`` kept) is what carries one subscriber's partial response.
        """
        if self.partial_response is not None or partial_response is None:
            return self
        return self.copy(partial_response=partial_response)

    def copy(self, **changes: Any) -> APIError:
        """A copy of this error (same class and fields, traceback and ``__cause__`` kept), with ``changes``."""
        clone = _rebuild(type(self), self.message, {**self.__dict__, **changes})
        clone.__cause__ = self.__cause__
        clone.__suppress_context__ = self.__suppress_context__
        return clone.with_traceback(self.__traceback__)


def as_api_error(exc: BaseException, *, llm_provider: str | None = None, model: str | None = None) -> APIError:
    """``exc`` itself when it is an :class:`APIError`, else an ``APIError`` (status 500) wrapping it.

    The one rule for errors in a pipeline: whatever raises between the socket and the edge (an
    operator, a builder, a callback, a user's ``map``) reaches the consumer typed. The original
    exception is the wrapper's ``__cause__``; its message is scrubbed of secrets.
    """
    if isinstance(exc, APIError):
        return exc
    detail = str(exc)
    err = APIError(
        f"{type(exc).__name__} raised while processing the stream" + (f": {detail}" if detail else ""),
        llm_provider=llm_provider,
        model=model,
    )
    err.__cause__ = exc
    return err


def _rebuild(cls: type[APIError], message: str, state: dict[str, Any]) -> APIError:
    err = cls.__new__(cls)
    APIError.__init__(err, message)
    err.__dict__.update(state)
    return err


class BadRequestError(APIError):
    """The request was rejected as invalid (HTTP 400), including bad arguments to rxllm."""

    default_status_code = 400


class ContextWindowExceededError(BadRequestError):
    """The prompt does not fit the model's context window (HTTP 400)."""


class ContentPolicyViolationError(BadRequestError):
    """The provider refused the input under its content policy (HTTP 400)."""


class RequestTooLargeError(BadRequestError):
    """The request body is larger than the server accepts (HTTP 413)."""

    default_status_code = 413


class AuthenticationError(APIError):
    """The API key is missing or wrong (HTTP 401)."""

    default_status_code = 401


class PermissionDeniedError(APIError):
    """The key is valid but may not do this (HTTP 403)."""

    default_status_code = 403


class NotFoundError(APIError):
    """The model or endpoint does not exist (HTTP 404)."""

    default_status_code = 404


class Timeout(APIError):
    """The request, the first chunk, or a gap between chunks took too long (HTTP 408)."""

    default_status_code = 408


class UnprocessableEntityError(APIError):
    """The request was well-formed but could not be processed (HTTP 422)."""

    default_status_code = 422


class RateLimitError(APIError):
    """Too many requests (HTTP 429); ``retry_after`` holds the server's hint in seconds."""

    default_status_code = 429

    def __init__(self, message: str = "", *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = parse_retry_after(retry_after)

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "retry_after": self.retry_after}


class InternalServerError(APIError):
    """The provider failed, or the model misbehaved (a repeating stream) (HTTP 500)."""

    default_status_code = 500


class BadGatewayError(APIError):
    """An upstream gateway failed (HTTP 502)."""

    default_status_code = 502


class ServiceUnavailableError(APIError):
    """The provider is overloaded or down (HTTP 503)."""

    default_status_code = 503


class APIConnectionError(APIError):
    """The connection failed or the stream ended before its terminator (HTTP 500)."""

    default_status_code = 500


class MalformedStreamError(APIError):
    """The provider sent bytes that are not the stream format it promised (HTTP 502)."""

    default_status_code = 502


class BudgetExceededError(APIError):
    """A stream crossed a budget set with ``ops.limit`` and was cut off (HTTP 400).

    The upstream was disposed the moment the budget was crossed; ``partial_response`` holds
    everything received until then (the chunk that crossed included).

    Args:
        message: What was exceeded.
        budget: Which budget: ``"max_output_tokens"``, ``"max_reasoning_tokens"`` or ``"max_cost"``.
        limit: The budget's value.
        used: How much had been used when the stream was cut (tokens, or USD for ``max_cost``).
        cost: The cost in USD of the partial response, when the model's price is known.
        **kwargs: The :class:`APIError` keywords (``llm_provider``, ``model``, ``partial_response``).
    """

    default_status_code = 400

    def __init__(
        self,
        message: str = "",
        *,
        budget: str = "",
        limit: float = 0,
        used: float = 0,
        cost: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.budget = budget
        self.limit = limit
        self.used = used
        self.cost = cost

    @property
    def current_cost(self) -> float | None:
        """The cost so far (LiteLLM's ``BudgetExceededError`` attribute name)."""
        return self.cost

    @property
    def max_budget(self) -> float:
        """The limit that was crossed (LiteLLM's attribute name)."""
        return self.limit

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "budget": self.budget, "limit": self.limit, "used": self.used, "cost": self.cost}


class JSONSchemaValidationError(APIError):
    """A model's structured output is not valid JSON or does not match its schema (HTTP 500).

    Args:
        message: What did not validate.
        raw_response: The raw text the model produced.
        schema: The schema (or model class name) it was checked against.
        errors: One line per problem found.
        **kwargs: The :class:`APIError` keywords.
    """

    default_status_code = 500

    def __init__(
        self,
        message: str = "",
        *,
        raw_response: str = "",
        schema: Any = None,
        errors: Iterable[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.raw_response = raw_response
        self.schema = schema
        self.errors = tuple(errors)

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "raw_response": self.raw_response, "schema": self.schema, "errors": self.errors}


class InvalidToolArgumentsError(ValueError):
    """A tool call's arguments are not valid JSON.

    Args:
        name: The tool's function name.
        arguments: The raw arguments string.
        reason: What the JSON parser said.
    """

    def __init__(self, name: str | None, arguments: str, reason: str) -> None:
        shown = arguments if len(arguments) <= 200 else arguments[:200] + "..."
        super().__init__(f"tool call {name!r} has invalid JSON arguments ({reason}): {shown!r}")
        self.name = name
        self.arguments = arguments
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.name, self.arguments, self.reason))


class PartialJSONError(ValueError):
    """A JSON text fed to the incremental parser is not valid JSON, or ended too early.

    Args:
        reason: What was wrong.
        position: The character offset in the whole text where it was noticed.
    """

    def __init__(self, reason: str, position: int) -> None:
        super().__init__(f"invalid JSON at character {position}: {reason}")
        self.reason = reason
        self.position = position

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason, self.position))


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: Timeout,
    413: RequestTooLargeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
    500: InternalServerError,
    502: BadGatewayError,
    503: ServiceUnavailableError,
    504: Timeout,
}

_CONTEXT_HINTS = ("context length", "context_length", "context window", "maximum context", "too many tokens")


def error_for_status(
    status: int,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> APIError:
    """Build the error class that matches an HTTP status, as LiteLLM maps them.

    Args:
        status: The HTTP status code.
        message: The provider's error message.
        headers: Response headers; ``Retry-After`` feeds ``RateLimitError.retry_after``.
        **kwargs: Passed on to the error (``llm_provider``, ``model``, ``body``, ...).

    Returns:
        An instance of the matching ``APIError`` subclass, with ``status_code=status``.
    """
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = InternalServerError if status >= 500 else BadRequestError if status >= 400 else APIError
    if cls is BadRequestError and any(h in message.lower() for h in _CONTEXT_HINTS):
        cls = ContextWindowExceededError
    if cls is RateLimitError:
        return RateLimitError(
            message,
            retry_after=_retry_after(headers),
            status_code=status,
            response_headers=headers,
            **kwargs,
        )
    return cls(message, status_code=status, response_headers=headers, **kwargs)


#: ``Retry-After`` values above this many seconds (a day) are absurd and ignored.
MAX_SANE_RETRY_AFTER = 86400.0


def parse_retry_after(value: Any) -> float | None:
    """Seconds from a ``Retry-After`` value (delay-seconds or an HTTP date), or None when unusable.

    Non-numbers, ``nan``, ``inf``, negative values and values above
    :data:`MAX_SANE_RETRY_AFTER` are ignored (None): a server's hint must never make a client
    sleep forever. Callers cap what remains (``retry_stream(max_retry_after=...)``).
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            delay = _http_date_delay(text)
            if delay is None:
                return None
            seconds = delay
    else:
        return None
    if not math.isfinite(seconds) or seconds < 0 or seconds > MAX_SANE_RETRY_AFTER:
        return None
    return seconds


def _http_date_delay(text: str) -> float | None:
    import email.utils  # only for an HTTP-date Retry-After: the email package costs ~8 ms at import

    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds())


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    if not headers:
        return None
    for name, value in headers.items():
        if name.lower() == "retry-after":
            return parse_retry_after(value)
    return None


def resolve_error_class(name: str) -> type[APIError]:
    """Turn ``"rxllm.RateLimitError"`` or ``"RateLimitError"`` into the class.

    Raises:
        BadRequestError: When no rxllm error has that name.
    """
    short = name.rsplit(".", 1)[-1]
    cls = globals().get(short)
    if isinstance(cls, type) and issubclass(cls, APIError):
        return cls
    known = ", ".join(sorted(n for n in __all__ if n[0].isupper() and n != "InvalidToolArgumentsError"))
    raise BadRequestError(f"unknown error name {name!r}; known: {known}")


# OpenAI's error "type" and "code" strings by HTTP status, as its API sends them.
_ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    408: "timeout_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    504: "timeout_error",
}
_ERROR_CODES: dict[int, str] = {
    401: "invalid_api_key",
    404: "model_not_found",
    408: "timeout",
    413: "request_too_large",
    429: "rate_limit_exceeded",
    504: "timeout",
}


def error_status(exc: BaseException) -> int:
    """The HTTP status that reports ``exc`` to a client.

    An :class:`APIError`'s own 4xx/5xx status; 502 for an upstream answer that is no error
    status at all (a redirect, which rxllm never follows: the fault is the upstream's); 500
    for anything that is not an :class:`APIError`.
    """
    if isinstance(exc, APIError):
        status = exc.status_code
        if isinstance(status, int) and 400 <= status <= 599:
            return status
        return 502
    return 500


def error_body(exc: BaseException, secrets: Iterable[str] = ()) -> dict[str, Any]:
    """The OpenAI-style error object for ``exc``: ``{"error": {message, type, param, code}}``.

    What OpenAI's SDKs read, whether it arrives as an HTTP error body or as an SSE event
    after streaming started. Only rxllm's own errors, whose messages are built to be safe,
    are described; any other exception is a bug and becomes a generic internal error naming
    only its class. Every string in ``secrets`` is replaced by ``***`` (an upstream that
    echoes a key back does not leak it). ``param`` and ``code`` are taken from the error when
    it carries them (the proxy's own request errors do).
    """
    status = error_status(exc)
    param = getattr(exc, "param", None)
    code = getattr(exc, "code", None) or _ERROR_CODES.get(status)
    if isinstance(exc, APIError):
        message = exc.message or type(exc).__name__
        if exc.llm_provider and getattr(exc, "param", None) is None and getattr(exc, "code", None) is None:
            message = f"{exc.llm_provider} error: {message}"
    else:
        message = f"internal error ({type(exc).__name__})"
    for secret in secrets:
        if secret and secret in message:
            message = message.replace(secret, "***")
    message = scrub(message)
    kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
