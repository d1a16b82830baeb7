"""OpenAI's chat-completions stream and every server that speaks it (Groq, DeepSeek, vLLM, ...).

The wire format already is rxllm's chunk format, so the per-chunk path is ``orjson.loads``
then :meth:`ChatCompletionChunk.from_dict`. What real servers add is normalized only when a
cheap byte check on the raw event says it may be needed:

- ``delta.reasoning`` (Groq, OpenRouter, vLLM) becomes ``reasoning_content``;
- Mistral's content arrays (``[{"type": "thinking", ...}, {"type": "text", ...}]``) become
  ``reasoning_content`` and ``content`` strings;
- tool-call deltas without ``index`` (Mistral) get one, a new index per new call id;
- a chunk with a top-level ``error`` (OpenRouter) or an ``event: error`` (Groq) raises the
  matching :mod:`rxllm.errors` class.

Everything else (usage on the finish chunk or on a ``choices: []`` chunk, Azure's
``prompt_filter_results`` chunk, trailing chunks after usage, unknown keys) passes through
unchanged: unknown keys land in ``extra``. ``data: [DONE]`` ends the stream; a body that ends
without it raises :class:`~rxllm.errors.APIConnectionError`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from contextvars import ContextVar
from typing import Any, Final

import attrs
import orjson

from rxllm.errors import APIConnectionError, AuthenticationError
from rxllm.providers._http import (
    Shape,
    api_key_for,
    bad_json,
    checked_chunk,
    endpoint,
    error_from_payload,
    request_events,
    shape_error,
)
from rxllm.providers.base import ChatRequest
from rxllm.sse import ServerSentEvent
from rxllm.types import EMPTY as _EMPTY
from rxllm.types import ChatCompletionChunk, ToolCallDelta

__all__ = ["RAW_EVENTS", "OpenAICompatibleProvider", "ProviderConfig", "RawEvent", "get_provider"]


class RawEvent:
    """The last chunk a stream yielded, with its event's data when that states the chunk as is.

    A relay that wants to forward the upstream's own bytes (the proxy's passthrough) sets
    :data:`RAW_EVENTS` to one of these in the task that pulls the stream. For every chunk it
    yields, the provider stores the chunk and its event's ``data`` text here, or ``None`` as
    ``data`` when the chunk is not exactly that JSON (a normalized chunk: ``reasoning``
    renamed, Mistral's content parts, tool-call indexes added; an event missing a field the
    chunk fills in, such as ``object`` or a choice's ``index``; a delta with a ``null``
    field, which the chunk's encoding would leave out). The data may still hold ``null``
    for OpenAI's own optional fields (``usage``, ``logprobs``, ``service_tier``,
    ``system_fingerprint``), which the encoding leaves out too: every OpenAI-compatible SDK
    reads them alike. Whoever reads it compares ``chunk`` by identity: a chunk an operator
    replaced is not the one stored.

    Attributes:
        chunk: The chunk last yielded (``None`` before the first).
        data: Its event's data (text, or the undecoded bytes of a plain one-line event), or
            ``None`` when that is not the chunk as is.
    """

    __slots__ = ("chunk", "data")

    def __init__(self) -> None:
        self.chunk: ChatCompletionChunk | None = None
        self.data: str | bytes | None = None


#: Set (in the pulling task) to a :class:`RawEvent` to receive each chunk's event data.
RAW_EVENTS: Final[ContextVar[RawEvent | None]] = ContextVar("rxllm_raw_events", default=None)


@attrs.frozen
class ProviderConfig:
    """Where an OpenAI-compatible provider lives and how it authenticates.

    Attributes:
        default_base: The SDK-style root (``.../v1``), or None when ``api_base`` is required.
        key_env: Environment variables holding the key, first set wins.
        base_env: Environment variables that override ``default_base``.
        key_required: Whether a request to the default endpoint needs a key.
        auth_header: ``"Authorization"`` (sent as ``Bearer <key>``) or Azure's ``"api-key"``.
    """

    default_base: str | None
    key_env: tuple[str, ...] = ()
    base_env: tuple[str, ...] = ()
    key_required: bool = True
    auth_header: str = "Authorization"


_CONFIGS: Final[dict[str, ProviderConfig]] = {
    "openai": ProviderConfig("https://api.openai.com/v1", ("OPENAI_API_KEY",), ("OPENAI_BASE_URL", "OPENAI_API_BASE")),
    "azure_openai": ProviderConfig(
        None,
        ("AZURE_OPENAI_API_KEY", "AZURE_API_KEY"),
        ("AZURE_OPENAI_ENDPOINT", "AZURE_API_BASE"),
        auth_header="api-key",
    ),
    "deepseek": ProviderConfig("https://api.deepseek.com", ("DEEPSEEK_API_KEY",), ("DEEPSEEK_API_BASE",)),
    "groq": ProviderConfig("https://api.groq.com/openai/v1", ("GROQ_API_KEY",), ("GROQ_API_BASE",)),
    "mistral": ProviderConfig("https://api.mistral.ai/v1", ("MISTRAL_API_KEY",), ("MISTRAL_API_BASE",)),
    "openrouter": ProviderConfig(
        "https://openrouter.ai/api/v1", ("OPENROUTER_API_KEY", "OR_API_KEY"), ("OPENROUTER_API_BASE",)
    ),
    "together_ai": ProviderConfig(
        "https://api.together.xyz/v1", ("TOGETHER_API_KEY", "TOGETHERAI_API_KEY", "TOGETHER_AI_API_KEY")
    ),
    "fireworks_ai": ProviderConfig(
        "https://api.fireworks.ai/inference/v1",
        ("FIREWORKS_API_KEY", "FIREWORKS_AI_API_KEY", "FIREWORKSAI_API_KEY"),
        ("FIREWORKS_API_BASE",),
    ),
    "xai": ProviderConfig("https://api.x.ai/v1", ("XAI_API_KEY",), ("XAI_API_BASE",)),
    "hosted_vllm": ProviderConfig(
        "http://localhost:8000/v1", ("HOSTED_VLLM_API_KEY",), ("HOSTED_VLLM_API_BASE",), key_required=False
    ),
    "lm_studio": ProviderConfig(
        "http://localhost:1234/v1", ("LM_STUDIO_API_KEY",), ("LM_STUDIO_API_BASE",), key_required=False
    ),
    "ollama_chat": ProviderConfig(
        "http://localhost:11434/v1", ("OLLAMA_API_KEY",), ("OLLAMA_API_BASE",), key_required=False
    ),
}

#: Parameters that configure rxllm or LiteLLM rather than the request body.
_NOT_SENT: Final = frozenset(
    {
        "stream",
        "api_version",
        "drop_params",
        "num_retries",
        "fallbacks",
        "retry_backoff",
        "max_retries",
        "metadata",
        "caching",
        "custom_llm_provider",
        "logger_fn",
        "thinking",
        "mock_response",
        "mock_tool_calls",
        "mock_delay",
        "mock_error",
    }
)

_PATH: Final = "/chat/completions"

#: The structure of a ``chat.completion.chunk`` (leaf types are checked on the built chunk).
_SHAPE: Final[Shape] = {
    "choices": list,
    "choices[]": dict,
    "choices[].index": int,
    "choices[].delta": dict,
    "choices[].delta.content": (str, list),
    "choices[].delta.tool_calls": list,
    "choices[].delta.tool_calls[]": dict,
    "choices[].delta.tool_calls[].index": int,
    "choices[].delta.tool_calls[].function": dict,
    "choices[].delta.function_call": dict,
    "choices[].logprobs": dict,
    "choices[].logprobs.content": list,
    "choices[].logprobs.content[]": dict,
    "choices[].logprobs.refusal": list,
    "choices[].logprobs.refusal[]": dict,
    "usage": dict,
    "usage.prompt_tokens_details": dict,
    "usage.completion_tokens_details": dict,
}

#: Delta keys that need no normalizing; any other key (reasoning, tool_calls, ...) takes the slow path.
_PLAIN_DELTA: Final = frozenset({"role", "content", "refusal", "reasoning_content", "function_call"})
#: Delta keys of a chunk the normalizer leaves alone when every tool call carries its ``index``.
_INDEXED_DELTA: Final = _PLAIN_DELTA | {"tool_calls"}
_DONE: Final = "[DONE]"
_CHUNK_OBJECT: Final = "chat.completion.chunk"
_DONE_BYTES: Final = b"[DONE]"


class _Normalizer:
    """Per-stream state for the rare chunks that need fixing before ``from_dict``."""

    __slots__ = ("_last_index", "_next_index")

    def __init__(self) -> None:
        self._next_index: dict[int, int] = {}
        self._last_index: dict[int, int] = {}

    def indexed(self, choices: Any) -> bool:
        """Whether the chunk with these choices needs no fixing: its tool calls all carry an ``index``.

        OpenAI's own tool-call deltas: true, and the calls' indexes are recorded (as
        :meth:`fix` would record them), so a later call without an index still gets the next
        free one. False (nothing recorded) when anything else may need fixing: then call
        :meth:`fix`.
        """
        for choice in choices:
            delta = choice.get("delta")
            if not delta:
                continue
            if not delta.keys() <= _INDEXED_DELTA or type(delta.get("content")) is list:
                return False
            for call in delta.get("tool_calls") or ():
                if type(call) is not dict or type(call.get("index")) is not int:
                    return False
        last, following = self._last_index, self._next_index
        for choice in choices:
            delta = choice.get("delta")
            calls = delta.get("tool_calls") if delta else None
            if calls:
                position = choice.get("index") or 0
                for call in calls:
                    index = last[position] = call["index"]
                    if index >= following.get(position, 0):
                        following[position] = index + 1
        return True

    def record(self, chunk: ChatCompletionChunk) -> None:
        """Record the tool-call indexes of a decoded chunk whose calls all carry one (as :meth:`indexed` does)."""
        last, following = self._last_index, self._next_index
        for choice in chunk.choices:
            calls = choice.delta.tool_calls
            if calls:
                position = choice.index
                for call in calls:
                    index = call.index
                    if index is None:  # (not recorded: such a chunk takes the normalizer's path)
                        continue
                    last[position] = index
                    if index >= following.get(position, 0):
                        following[position] = index + 1

    def fix(self, d: dict[str, Any]) -> None:
        """Normalize one decoded chunk in place."""
        for choice in d.get("choices") or ():
            delta = choice.get("delta")
            if not delta:
                continue
            if "reasoning" in delta:
                reasoning = delta.pop("reasoning")
                if reasoning is not None and delta.get("reasoning_content") is None:
                    delta["reasoning_content"] = reasoning
            content = delta.get("content")
            if isinstance(content, list):
                _split_content_parts(delta, content)
            calls = delta.get("tool_calls")
            if calls:
                self._index_calls(choice.get("index") or 0, calls)

    def _index_calls(self, choice: int, calls: list[Any]) -> None:
        for call in calls:
            if not isinstance(call, dict):
                continue
            index = call.get("index")
            if index is None:
                if call.get("id") or choice not in self._last_index:
                    index = self._next_index.get(choice, 0)
                else:
                    index = self._last_index[choice]
                call["index"] = index
                if call.get("id") and call.get("type") is None:
                    call["type"] = "function"
            self._last_index[choice] = index
            self._next_index[choice] = max(self._next_index.get(choice, 0), index + 1)


def _all_indexed(calls: tuple[ToolCallDelta, ...]) -> bool:
    """Whether every tool-call fragment says which call it belongs to (no normalizing needed)."""
    for call in calls:  # noqa: SIM110 - a loop, not all() over a generator (a frame per call)
        if call.index is None:
            return False
    return True


def _as_is(d: dict[str, Any], text: str | bytes) -> str | bytes | None:
    """``text``, the event's data, when it states the decoded chunk ``d`` exactly (see :class:`RawEvent`).

    Not when the data is more than one line, misses a field the chunk fills in (``object``,
    ``id``, ``created``, a choice's ``index`` or ``delta``), or a delta holds a key the
    normalizer may rewrite (tool calls, content parts) or a ``null`` field: the chunk's
    encoding leaves that out, and for a field the client's SDK does not model that shows.
    """
    if (text.__class__ is not bytes and "\n" in text) or d.get("object") != _CHUNK_OBJECT or "id" not in d:
        return None
    choices = d.get("choices")
    if "created" not in d or type(choices) is not list:
        return None
    for choice in choices:
        delta = choice.get("delta") if type(choice) is dict else None
        if (
            delta is None
            or "index" not in choice
            or not delta.keys() <= _PLAIN_DELTA
            or type(delta.get("content")) is list
            or None in delta.values()
        ):
            return None
    return text


def _split_content_parts(delta: dict[str, Any], parts: list[Any]) -> None:
    """Mistral's content array: thinking parts to ``reasoning_content``, text parts to ``content``."""
    text: list[str] = []
    thinking: list[str] = []
    for part in parts:
        if isinstance(part, str):
            text.append(part)
            continue
        if not isinstance(part, Mapping):
            continue
        kind = part.get("type")
        if kind == "thinking":
            inner = part.get("thinking")
            if isinstance(inner, str):
                thinking.append(inner)
            elif isinstance(inner, list):
                thinking.extend(p["text"] for p in inner if isinstance(p, Mapping) and isinstance(p.get("text"), str))
        elif kind == "text" and isinstance(part.get("text"), str):
            text.append(part["text"])
    delta["content"] = "".join(text) if text else None
    if thinking:
        delta["reasoning_content"] = (delta.get("reasoning_content") or "") + "".join(thinking)


class OpenAICompatibleProvider:
    """Streams ``POST {api_base}/chat/completions`` for one OpenAI-compatible prefix.

    Args:
        name: The provider prefix (``"openai"``, ``"groq"``, ...).
        config: Its default endpoint and key variables.
    """

    #: Every chunk is checked as it is built (the provider boundary, without an extra hop).
    checks_chunks = True

    def __init__(self, name: str, config: ProviderConfig) -> None:
        self.name = name
        self.config = config

    def __repr__(self) -> str:
        return f"OpenAICompatibleProvider(name={self.name!r}, default_base={self.config.default_base!r})"

    def prepare(self, request: ChatRequest) -> tuple[str, dict[str, str], dict[str, Any]]:
        """The URL, headers and JSON body for a request (no I/O).

        Raises:
            AuthenticationError: When the default endpoint needs a key and none is set.
        """
        cfg = self.config
        base = request.api_base or api_key_for(None, cfg.base_env) or cfg.default_base
        model_name = request.original_model or request.model
        if base is None:
            raise AuthenticationError(
                f"{self.name} needs an endpoint: pass api_base= or set {' or '.join(cfg.base_env)}",
                llm_provider=self.name,
                model=model_name,
            )
        key = api_key_for(request.api_key, cfg.key_env)
        if key is None and cfg.key_required and request.api_base is None:
            raise AuthenticationError(
                f"no API key for {self.name}: pass api_key= or set {' or '.join(cfg.key_env)}",
                llm_provider=self.name,
                model=model_name,
            )
        url = endpoint(base, base, _PATH)
        if self.name == "azure_openai":
            url = _azure_url(url, base, request)
        headers: dict[str, str] = {}
        if key:
            headers[cfg.auth_header] = f"Bearer {key}" if cfg.auth_header == "Authorization" else key
        headers.update(request.extra_headers)
        body: dict[str, Any] = {"model": request.model, "messages": list(request.messages)}
        for name, value in request.params.items():
            if value is not None and name not in _NOT_SENT:
                body[name] = value
        body["stream"] = True
        if "stream_options" not in body:
            body["stream_options"] = {"include_usage": True}
        return url, headers, body

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatCompletionChunk]:
        """POST the request and yield its chunks until ``data: [DONE]``.

        Raises:
            APIError: Typed errors for HTTP error statuses and error events in the stream.
            APIConnectionError: When the body ends before ``data: [DONE]``.
            MalformedStreamError: For invalid JSON in a data field or a body that is not SSE.
        """
        url, headers, body = self.prepare(request)
        name = self.name
        checked = checked_chunk
        normalizer: _Normalizer | None = None
        from_dict = ChatCompletionChunk.from_dict
        checked_decode = ChatCompletionChunk._wire_checked
        all_indexed = _all_indexed
        loads = orjson.loads
        events, state, model_name = request_events(
            request, provider=self.name, url=url, headers=headers, body=body, raw_data=True
        )
        raw = RAW_EVENTS.get()
        async with aclosing(events):
            async for batch in events:
                for event in batch:
                    text: str | bytes
                    if event.__class__ is bytes:
                        # a plain one-line "data: ..." event, undecoded: orjson reads the bytes themselves
                        if event == _DONE_BYTES:
                            return
                        text = event
                        try:
                            d = loads(event)
                        except orjson.JSONDecodeError:
                            d = _loads_text(event.decode("utf-8", "replace"), name, model_name)
                    else:
                        data = event.data  # type: ignore[union-attr]
                        if data == _DONE:
                            return
                        if event.event != "message":  # type: ignore[union-attr]
                            if event.event == "error":  # type: ignore[union-attr]
                                raise error_from_payload(
                                    _loads_or_text(data),
                                    provider=self.name,
                                    model=model_name,
                                    context="error event in stream",
                                )
                            continue  # a named event this protocol does not define
                        d = _loads_text(data, name, model_name)
                        text = data
                    if type(d) is not dict:
                        raise bad_json(_text_of(event), self.name, model_name)
                    if "error" not in d:
                        # the common chunk, in one pass: decoded and checked together (the checked
                        # decoder gives up on any value chunk_problem would name); then only deltas
                        # that need no normalizing pass (no unknown key such as ``reasoning``, no
                        # annotations, tool calls only with their index). Anything else, and any
                        # payload the decoder cannot read, takes the general path below, which
                        # decodes again and names the fault.
                        try:
                            chunk = checked_decode(d)
                        except (AttributeError, TypeError, KeyError, ValueError):
                            chunk = None
                        if chunk is not None:
                            calls = False
                            for sc in chunk.choices:
                                dl = sc.delta
                                if dl.extra is not _EMPTY or dl.annotations is not None:
                                    break
                                if dl.tool_calls is not None:
                                    if not all_indexed(dl.tool_calls):
                                        break
                                    calls = True
                            else:
                                if calls:
                                    if normalizer is None:
                                        normalizer = _Normalizer()
                                    normalizer.record(chunk)
                                if raw is not None:
                                    raw.chunk = chunk
                                    raw.data = _as_is(d, text)
                                d = sc = dl = None  # the parsed tree is not held while the stream waits
                                yield chunk
                                continue
                    # cheap check; only chunks that may need fixing pay for the normalizer
                    suspect = "error" in d
                    try:
                        if not suspect:
                            for choice in d.get("choices") or ():
                                delta = choice.get("delta") if type(choice) is dict else None
                                if delta and (not delta.keys() <= _PLAIN_DELTA or type(delta.get("content")) is list):
                                    suspect = True
                                    break
                        if suspect:
                            if d.get("error"):
                                raise error_from_payload(
                                    d, provider=self.name, model=model_name, context="error in stream"
                                )
                            if normalizer is None:
                                normalizer = _Normalizer()
                            if not normalizer.indexed(d.get("choices") or ()):
                                normalizer.fix(d)
                    except (AttributeError, TypeError, KeyError, ValueError) as exc:
                        raise shape_error(d, _SHAPE, exc, self.name, model_name) from None
                    try:
                        chunk = from_dict(d)
                    except (AttributeError, TypeError, KeyError, ValueError) as exc:
                        raise shape_error(d, _SHAPE, exc, self.name, model_name) from None
                    chunk = checked(chunk, name, model_name)
                    if raw is not None:
                        raw.chunk = chunk
                        raw.data = None if suspect else _as_is(d, text)
                    d = choice = delta = None  # the parsed tree is not held while the stream waits
                    yield chunk
                del batch  # nor the last read's events
        # the body ended without [DONE]
        tail = state.decoder.flush()
        if tail is not None and tail.data == _DONE:
            return
        if state.events == 0:
            raise state.not_sse_error(self.name, model_name)
        raise APIConnectionError(
            "the stream ended before 'data: [DONE]': the connection was closed early or the body was cut",
            llm_provider=self.name,
            model=model_name,
        )


def _azure_url(url: str, base: str, request: ChatRequest) -> str:
    """Azure's v1 endpoint lives under ``/openai/v1``; ``api_version`` becomes a query parameter."""
    root, sep, query = base.partition("?")
    if "/openai" not in root:
        url = endpoint(root.rstrip("/") + "/openai/v1" + sep + query, "", _PATH)
    version = request.params.get("api_version")
    if version and "api-version=" not in url:
        url += ("&" if "?" in url else "?") + f"api-version={version}"
    return url


def _loads_text(data: str, provider: str, model: str) -> Any:
    """A data field's JSON (as text: invalid UTF-8 already replaced), or the error naming it."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise bad_json(data, provider, model) from None


def _text_of(event: ServerSentEvent | bytes) -> str:
    return event.decode("utf-8", "replace") if isinstance(event, bytes) else event.data


def _loads_or_text(data: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return {"error": {"message": data[:500]}}


def get_provider(prefix: str) -> OpenAICompatibleProvider:
    """The provider for an OpenAI-compatible prefix (unknown prefixes get OpenAI's shape, no default URL)."""
    config = _CONFIGS.get(prefix) or ProviderConfig(None, (f"{prefix.upper()}_API_KEY",), key_required=False)
    return OpenAICompatibleProvider(prefix, config)
