"""The public API: ``stream()`` (the reactive heart) and LiteLLM-compatible ``completion``/``acompletion``.

``stream()`` returns the provider's cold Observable of chunks and nothing more: compose
operators on it. ``completion``/``acompletion`` are thin compositions for code written
against LiteLLM: repeated-chunk detection with the module limit, the partial response on
errors, ``success_callback``/``failure_callback`` fired once per stream, and the sync or
async iterator edge.
"""

from __future__ import annotations

import asyncio
import sys
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import reactivex
from reactivex import Observable

from rxllm._instrument import CallInfo, instrument
from rxllm._log import get_logger
from rxllm._secrets import register_secret, safe_url
from rxllm.adapters import AsyncStreamIterator, BlockingStreamIterator, to_async_iterator, to_iterator
from rxllm.errors import BadRequestError
from rxllm.providers import ChatRequest, CheckedStream, claimed_provider, get_provider, resolve_model, validate_request
from rxllm.providers._http import aclose_sessions
from rxllm.retry_policy import exponential_backoff
from rxllm.streams import from_async_iterable
from rxllm.types import ChatCompletionChunk, ModelResponse

__all__ = [
    "AsyncCompletionStream",
    "CompletionStream",
    "aclose",
    "acompletion",
    "build_request",
    "completion",
    "stream",
]

_log = get_logger("rxllm.api")

_VALID_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def build_request(model: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]) -> ChatRequest:
    """Validate the arguments and resolve the provider, before any I/O.

    ``mock_response`` (or any of ``mock_tool_calls``, ``mock_fail_after``, ``mock_fail_with``)
    sends any model to the mock provider, as in LiteLLM; the model name is kept so costs are
    computed for it.

    Raises:
        BadRequestError: For a missing model, an unknown provider (listing the known ones),
            messages that are not a list of role/content dicts, or bad parameter types.
    """
    if not isinstance(model, str) or not model.strip():
        raise BadRequestError(f"model must be a non-empty string like 'openai/gpt-4o', got {model!r}")
    provider, provider_model = resolve_model(model, params)
    checked = _check_messages(messages, model)
    rest = {k: v for k, v in params.items() if v is not None}
    api_base = rest.pop("api_base", None) or rest.pop("base_url", None)
    rest.pop("base_url", None)
    api_key = rest.pop("api_key", None)
    timeout = _seconds(rest.pop("timeout", None), "timeout", model)
    stream_timeout = _seconds(rest.pop("stream_timeout", None), "stream_timeout", model)
    extra_headers = rest.pop("extra_headers", None) or {}
    rest.pop("stream", None)
    if not isinstance(extra_headers, Mapping):
        raise BadRequestError("extra_headers must be a dict of header names to values", model=model)
    if api_base is not None:
        _check_api_base(api_base, model)
    _check_depth(checked, "messages", model)
    _check_depth(rest, "parameters", model)
    if api_key is not None and not isinstance(api_key, str):
        raise BadRequestError(f"api_key must be a string, got {type(api_key).__name__}", model=model)
    return ChatRequest(
        model=provider_model,
        provider=provider,
        messages=checked,
        params=rest,
        api_base=api_base,
        api_key=api_key,
        timeout=timeout,
        stream_timeout=stream_timeout,
        extra_headers=dict(extra_headers),
        original_model=model,
    )


#: How deeply messages and parameters may nest (JSON encoders stop near 255; real requests use < 20).
MAX_NESTING = 100


def _check_depth(value: Any, what: str, model: str) -> None:
    """Refuse containers nested deeper than :data:`MAX_NESTING` (iteratively: no recursion limit)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_NESTING:
            raise BadRequestError(f"{what} are nested deeper than {MAX_NESTING} levels", model=model)
        if isinstance(item, Mapping):
            stack.extend((v, depth + 1) for v in item.values() if isinstance(v, Mapping | list | tuple))
        elif isinstance(item, list | tuple):
            stack.extend((v, depth + 1) for v in item if isinstance(v, Mapping | list | tuple))


def _check_api_base(api_base: Any, model: str) -> None:
    """A usable http(s) URL without credentials in it; errors never print the URL's secrets."""
    if not isinstance(api_base, str):
        raise BadRequestError(f"api_base must be a URL string, got {type(api_base).__name__}", model=model)
    try:
        parts = urlsplit(api_base.strip())
        port = parts.port
    except ValueError:
        raise BadRequestError(f"api_base is not a valid URL: {safe_url(api_base)!r}", model=model) from None
    del port
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequestError(
            f"api_base must be an http:// or https:// URL with a host, got {safe_url(api_base)!r}", model=model
        )
    if parts.username is not None or parts.password is not None:
        register_secret(parts.password)
        raise BadRequestError(
            "api_base must not carry credentials (user:password@host): pass the key as api_key= "
            f"or in extra_headers; got {safe_url(api_base)!r}",
            model=model,
        )


def _seconds(value: Any, name: str, model: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise BadRequestError(f"{name} must be a positive number of seconds, got {value!r}", model=model)
    return float(value)


def _check_messages(messages: Any, model: str) -> tuple[Mapping[str, Any], ...]:
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise BadRequestError(
            f"messages must be a list of {{'role': ..., 'content': ...}} dicts, got {type(messages).__name__}",
            model=model,
        )
    if not messages:
        raise BadRequestError("messages must not be empty", model=model)
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise BadRequestError(
                f"messages[{i}] must be a dict with 'role' and 'content', got {type(message).__name__}",
                model=model,
            )
        role = message.get("role")
        if not isinstance(role, str) or role not in _VALID_ROLES:
            raise BadRequestError(
                f"messages[{i}] has role {role!r}; expected one of {', '.join(sorted(_VALID_ROLES))}",
                model=model,
            )
        content = message.get("content")
        if content is None and role != "assistant" and role != "tool":
            raise BadRequestError(f"messages[{i}] ({role}) has no 'content'", model=model)
        if content is not None and not isinstance(content, str | list):
            raise BadRequestError(
                f"messages[{i}].content must be a string or a list of parts, got {type(content).__name__}",
                model=model,
            )
    return tuple(messages)


def stream(model: str, messages: Sequence[Mapping[str, Any]], **params: Any) -> Observable[ChatCompletionChunk]:
    """The provider's response as a cold Observable of chunks.

    Each subscription makes one request; disposing cancels it and closes the connection.
    Nothing is added: compose :mod:`rxllm.operators` on it.

    Args:
        model: ``"provider/model"`` (``"openai/gpt-4o"``, ``"mock/echo"``) or a bare name a
            provider claims (``"gpt-4o"``).
        messages: OpenAI-format messages.
        **params: OpenAI parameters (``temperature``, ``tools``, ``max_tokens``, ...),
            transport settings (``api_base``, ``api_key``, ``timeout``, ``stream_timeout``,
            ``extra_headers``) and mock settings (``mock_response``, ``mock_delay``, ...).

    Raises:
        BadRequestError: Invalid arguments, raised now, before any I/O.
        APIError: ``mock_response`` given as an error is raised now, too.
    """
    request = build_request(model, messages, params)
    provider = get_provider(request.provider)
    validate_request(provider, request)
    # the provider boundary: chunks are checked once, so operators can trust them; the built-in
    # providers check as they build (no extra hop), any other provider is wrapped
    if getattr(provider, "checks_chunks", False) is True:
        return from_async_iterable(lambda: provider.stream(request))
    return from_async_iterable(lambda: CheckedStream(provider, request))


def _pipeline(
    model: str, messages: Sequence[Mapping[str, Any]], params: dict[str, Any], *, streaming: bool, is_async: bool
) -> tuple[Observable[ChatCompletionChunk], CallInfo]:
    from rxllm import operators as ops

    num_retries = params.pop("num_retries", None)
    retry_backoff = params.pop("retry_backoff", None)
    fallbacks = _check_fallbacks(params.pop("fallbacks", None), model)
    info = CallInfo(model=model, messages=list(messages), params=params, stream=streaming, is_async=is_async)
    info.llm_provider = claimed_provider(model)
    if not num_retries and not fallbacks:
        # the common call: detection runs inside the instrumentation (one observer per chunk)
        plain = stream(model, messages, **{k: v for k, v in params.items() if k != "model"})
        return plain.pipe(instrument(info, detect_repeats=True)), info
    source = _detected(model, messages, params, eager=not fallbacks)
    if num_retries:
        if isinstance(num_retries, bool) or not isinstance(num_retries, int) or num_retries < 0:
            raise BadRequestError(f"num_retries must be a non-negative integer, got {num_retries!r}", model=model)
        backoff = exponential_backoff() if retry_backoff is None else retry_backoff
        source = source.pipe(ops.retry_stream(num_retries + 1, backoff=backoff))
    if fallbacks:
        alternatives = [
            _detected(alt.get("model", model), messages, {**params, **alt, "model": None}, eager=False)
            for alt in fallbacks
        ]
        source = source.pipe(ops.fallback(*alternatives))
    return source.pipe(instrument(info)), info


def _detected(
    model: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any], *, eager: bool
) -> Observable[ChatCompletionChunk]:
    """One model's stream with repeated-chunk detection; lazy ones fail as ``on_error`` (for fallbacks)."""
    from rxllm import operators as ops

    params = {k: v for k, v in params.items() if k != "model"}
    # partial_response=False: the instrumentation downstream attaches the partial response.
    detect = ops.detect_repeated_chunks(llm_provider=claimed_provider(model), partial_response=False)
    if eager:
        return stream(model, messages, **params).pipe(detect)
    return reactivex.defer(lambda _scheduler: stream(model, messages, **params)).pipe(detect)


def _check_fallbacks(value: Any, model: str) -> list[dict[str, Any]]:
    """LiteLLM's ``fallbacks``: model names, or dicts of a model and parameter overrides."""
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise BadRequestError("fallbacks must be a list of model names or {'model': ...} dicts", model=model)
    out: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            out.append({"model": item})
        elif isinstance(item, Mapping) and isinstance(item.get("model"), str):
            out.append(dict(item))
        else:
            raise BadRequestError(f"fallbacks[{i}] must be a model name or a dict with 'model', got {item!r}")
    return out


BLOCKING_LOOP_MESSAGE = (
    "completion(stream=True) is being iterated on a thread whose event loop is running: every "
    "chunk blocks that loop (other requests and streams wait). In async code use "
    "'await rxllm.acompletion(..., stream=True)' with 'async for'."
)


def _in_ipython() -> bool:
    """True inside an IPython kernel or shell, where blocking a cell's loop is what the user asked for."""
    ipython = sys.modules.get("IPython")
    getter = getattr(ipython, "get_ipython", None)
    try:
        return getter is not None and getter() is not None
    except Exception:
        return False


def _warn_if_blocking_a_loop(model: str) -> None:
    """Warn once per stream when a synchronous stream is about to block a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    if _in_ipython():
        return
    _log.warning("rxllm.api.blocking_stream_in_event_loop", model=model, hint=BLOCKING_LOOP_MESSAGE)
    warnings.warn(BLOCKING_LOOP_MESSAGE, RuntimeWarning, stacklevel=4)


class CompletionStream(Iterator[ChatCompletionChunk]):
    """What ``completion(stream=True)`` returns: a blocking iterator of chunks.

    The request has started (and failed, if it failed before its first chunk) by the time
    ``completion`` returns. ``observable`` is the underlying Observable (subscribing it again
    makes a new request); ``response`` is the rebuilt final response once the stream ends.
    Leave a ``with`` block or call :meth:`close` to cancel early.
    """

    def __init__(self, observable: Observable[ChatCompletionChunk], info: CallInfo) -> None:
        self.observable = observable
        self._info = info
        if info.stream:
            _warn_if_blocking_a_loop(info.model)
        self._iterator: BlockingStreamIterator[ChatCompletionChunk] = to_iterator(observable)
        self._lookahead: list[ChatCompletionChunk] = []
        try:
            self._lookahead.append(next(self._iterator))
        except StopIteration:
            pass

    @property
    def response(self) -> ModelResponse | None:
        """The final response rebuilt from the chunks, once the stream has completed."""
        return self._info.response

    def __iter__(self) -> CompletionStream:
        return self

    def __next__(self) -> ChatCompletionChunk:
        if self._lookahead:
            return self._lookahead.pop()
        return next(self._iterator)

    def close(self) -> None:
        """Cancel the request if it is still streaming."""
        self._iterator.close()

    def __enter__(self) -> CompletionStream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<CompletionStream model={self._info.model!r}>"


class AsyncCompletionStream(AsyncIterator[ChatCompletionChunk]):
    """What ``await acompletion(stream=True)`` returns: an async iterator of chunks.

    See :class:`CompletionStream`; ``aclose()`` or leaving ``async with`` cancels early.
    """

    def __init__(self, observable: Observable[ChatCompletionChunk], info: CallInfo) -> None:
        self.observable = observable
        self._info = info
        # The stream is this iterator's alone: pull the provider from the consumer's task.
        self._iterator: AsyncStreamIterator[ChatCompletionChunk] = to_async_iterator(observable, pull=True)
        self._anext: Callable[[], Awaitable[ChatCompletionChunk]] = self._iterator.__anext__

    async def _start(self) -> None:
        await self._iterator.peek_ready()
        error = self._iterator.first_error()
        if error is not None:
            await self._iterator.aclose()
            raise error
        # pulled directly (the usual case): each item is the direct pull's own awaitable, so
        # ask it straight away (the iterator's __anext__ would only hand the call on)
        self._anext = self._iterator.direct_anext() or self._anext

    @property
    def response(self) -> ModelResponse | None:
        """The final response rebuilt from the chunks, once the stream has completed."""
        return self._info.response

    def __aiter__(self) -> AsyncCompletionStream:
        return self

    def __anext__(self) -> Awaitable[ChatCompletionChunk]:
        return self._anext()  # the edge's own awaitable: no await layer more per chunk

    async def aclose(self) -> None:
        """Cancel the request if it is still streaming."""
        await self._iterator.aclose()

    async def __aenter__(self) -> AsyncCompletionStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<AsyncCompletionStream model={self._info.model!r}>"


def completion(model: str, messages: Sequence[Mapping[str, Any]], stream: bool = False, **params: Any) -> Any:
    """LiteLLM's ``completion``: the final response, or with ``stream=True`` an iterator of chunks.

    Streams get repeated-chunk detection (``rxllm.REPEATED_STREAMING_CHUNK_LIMIT``) and fire
    ``rxllm.success_callback`` / ``failure_callback`` once. Errors carry the partial response.
    ``num_retries=N`` retries retryable errors that happen before the first chunk (backoff
    ``retry_backoff``: seconds, or a function of the retry number); ``fallbacks=[...]`` (model
    names, or ``{"model": ..., **overrides}`` dicts) are tried in order after that. Neither
    ever delivers a chunk twice: after the first chunk, errors propagate.

    Returns:
        A :class:`~rxllm.types.ModelResponse`, or a :class:`CompletionStream` with ``stream=True``.

    Raises:
        BadRequestError: Invalid arguments (before any I/O).
        APIError: The provider's error (for streams: at call time if it happened before the
            first chunk, else while iterating).
    """
    pipeline, info = _pipeline(model, messages, dict(params), streaming=stream, is_async=False)
    iterator = CompletionStream(pipeline, info)
    if stream:
        return iterator
    with iterator:
        for _ in iterator:
            pass
    assert info.response is not None
    return info.response


async def acompletion(model: str, messages: Sequence[Mapping[str, Any]], stream: bool = False, **params: Any) -> Any:
    """LiteLLM's ``acompletion``: as :func:`completion`, on the running event loop.

    Returns:
        A :class:`~rxllm.types.ModelResponse`, or an :class:`AsyncCompletionStream` with
        ``stream=True`` (errors before the first chunk are raised here, at the ``await``).
    """
    pipeline, info = _pipeline(model, messages, dict(params), streaming=stream, is_async=True)
    iterator = AsyncCompletionStream(pipeline, info)
    await iterator._start()
    if stream:
        return iterator
    async with iterator:
        async for _ in iterator:
            pass
    assert info.response is not None
    return info.response


async def aclose() -> None:
    """Close the HTTP session (and its pooled connections) rxllm keeps for the running event loop.

    Sessions are also closed when their loop ends (``asyncio.run`` and every runner that
    shuts down async generators), so this is for long-lived loops: a service shutting down,
    a test's teardown. The next request on the loop opens a new session.
    """
    await aclose_sessions()
