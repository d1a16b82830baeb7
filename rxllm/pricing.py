"""Per-model prices and the cost arithmetic, with LiteLLM's names and field names.

``model_cost`` is a plain dict keyed by model name, loaded at import from
``rxllm/data/model_prices.json`` (a few kilobytes: well under a millisecond, so ``import rxllm``
stays fast). Each entry uses LiteLLM's fields: ``input_cost_per_token``,
``output_cost_per_token``, ``cache_read_input_token_cost``, ``cache_creation_input_token_cost``,
``litellm_provider``, ``max_input_tokens``, ``max_output_tokens``, ``mode``. Prices are the
providers' standard (short-context, non-batch) rates in USD per token.

Token conventions follow OpenAI's usage object, which rxllm's :class:`~rxllm.types.Usage`
uses for every provider: ``prompt_tokens`` *includes* cache reads (``cached_tokens``) and
cache writes (``cache_creation_tokens``); ``completion_tokens`` includes hidden reasoning
tokens, which are billed at the output rate.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from importlib import resources
from typing import Any

import orjson

from rxllm.errors import NotFoundError
from rxllm.types import ModelResponse, Usage
from rxllm.usage import UsageAccumulator

__all__ = [
    "PriceNotFoundError",
    "completion_cost",
    "cost_per_token",
    "get_model_info",
    "lookup_model_price",
    "model_cost",
    "register_model",
]


class PriceNotFoundError(NotFoundError):
    """rxllm has no price for this model (add one with :func:`register_model`)."""


def _load() -> dict[str, dict[str, Any]]:
    data = resources.files("rxllm").joinpath("data/model_prices.json").read_bytes()
    table: dict[str, dict[str, Any]] = orjson.loads(data)
    return table


#: Prices keyed by model name; edit it directly or through :func:`register_model`.
model_cost: dict[str, dict[str, Any]] = _load()

# A release date or alias at the end of a model name: OpenAI ``-2024-08-06``, Anthropic
# ``-20250929`` (Vertex writes ``@20250929``), short snapshots ``-0125`` / ``-001``, ``-latest``.
_DATED_SUFFIX = re.compile(r"[-@](?:\d{4}-\d{2}-\d{2}|\d{8}|\d{3,4}|latest)$")


def register_model(model_cost_entries: Mapping[str, Mapping[str, Any]]) -> None:
    """Add or override prices, as LiteLLM's ``register_model`` does.

    Fields given for a known model are merged into its entry (so you can change just
    ``output_cost_per_token``); unknown models are added. A key ``"provider/*"`` prices every
    model of that provider that has no entry of its own.

    Args:
        model_cost_entries: ``{"model-name": {"input_cost_per_token": ..., ...}, ...}``.

    Raises:
        TypeError: When an entry is not a mapping (caught early: it would break cost lookups).
    """
    for name, entry in model_cost_entries.items():
        if not isinstance(entry, Mapping):
            raise TypeError(f"register_model: the entry for {name!r} must be a mapping, got {entry!r}")
        key = name.lower()
        model_cost[key] = {**model_cost.get(key, {}), **entry}


def _candidates(model: str, llm_provider: str | None) -> Iterator[str]:
    name = model.strip().lower()
    if llm_provider and not name.startswith(llm_provider.lower() + "/"):
        yield f"{llm_provider.lower()}/{name}"
    while True:
        yield name
        bare = _DATED_SUFFIX.sub("", name)
        if bare != name:
            yield bare
        if "/" not in name:
            return
        name = name.split("/", 1)[1]


def lookup_model_price(
    model: str,
    *,
    llm_provider: str | None = None,
    table: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[str, Mapping[str, Any]] | None:
    """Find a model's price entry, tolerating provider prefixes and dated suffixes.

    The rule, first hit wins:

    1. ``"<llm_provider>/<model>"`` when a provider is given, then ``model`` itself
       (lower-cased), each also with a trailing release date or alias removed
       (``gpt-4o-2024-08-06`` → ``gpt-4o``, ``claude-sonnet-4-5-20250929`` →
       ``claude-sonnet-4-5``, ``claude-3-7-sonnet-latest`` → ``claude-3-7-sonnet``).
    2. The same with each leading ``prefix/`` dropped in turn (``openai/gpt-4o`` → ``gpt-4o``,
       ``openrouter/anthropic/claude-opus-4-5`` → ``anthropic/claude-opus-4-5`` →
       ``claude-opus-4-5``): a routed model is priced at its maker's list price.
    3. A provider wildcard ``"<provider>/*"`` (the provider given, or the model's first
       prefix): this is how every ``mock/...`` model costs 0.

    Args:
        model: The model name as the caller or the provider spelled it.
        llm_provider: The provider, when known separately from the name.
        table: The price table to search (default :data:`model_cost`).

    Returns:
        ``(key, entry)`` or ``None`` when nothing matches.
    """
    prices = model_cost if table is None else table
    for name in _candidates(model, llm_provider):
        entry = prices.get(name)
        if entry is not None:
            return name, entry
    provider = llm_provider or (model.split("/", 1)[0] if "/" in model else None)
    if provider:
        key = f"{provider.lower()}/*"
        entry = prices.get(key)
        if entry is not None:
            return key, entry
    return None


def get_model_info(model: str, *, llm_provider: str | None = None) -> dict[str, Any]:
    """The price entry of a model (a copy, with its table ``key``), as LiteLLM's ``get_model_info``.

    Raises:
        PriceNotFoundError: When no entry matches (see :func:`lookup_model_price`).
    """
    found = lookup_model_price(model, llm_provider=llm_provider)
    if found is None:
        raise _not_found(model, llm_provider)
    key, entry = found
    return {"key": key, **entry}


def _not_found(model: str, llm_provider: str | None) -> PriceNotFoundError:
    return PriceNotFoundError(
        f"no price for model {model!r} in rxllm.model_cost; "
        "add one with rxllm.register_model({name: {'input_cost_per_token': ..., "
        "'output_cost_per_token': ...}})",
        model=model,
        llm_provider=llm_provider,
    )


def prices_cost(
    entry: Mapping[str, Any],
    prompt_tokens: int,
    completion_tokens: int,
    cached_tokens: int = 0,
    cache_creation_tokens: int = 0,
) -> tuple[float, float]:
    """Apply one price entry to token counts; see :func:`cost_per_token` for the conventions."""
    input_rate = float(entry.get("input_cost_per_token") or 0.0)
    output_rate = float(entry.get("output_cost_per_token") or 0.0)
    read_rate = entry.get("cache_read_input_token_cost")
    write_rate = entry.get("cache_creation_input_token_cost")
    cached = max(0, cached_tokens)
    created = max(0, cache_creation_tokens)
    uncached = max(0, prompt_tokens - cached - created)
    prompt_cost = (
        uncached * input_rate
        + cached * (input_rate if read_rate is None else float(read_rate))
        + created * (input_rate if write_rate is None else float(write_rate))
    )
    return prompt_cost, max(0, completion_tokens) * output_rate


def cost_per_token(
    model: str = "",
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    cached_tokens: int = 0,
    cache_creation_tokens: int = 0,
    *,
    llm_provider: str | None = None,
) -> tuple[float, float]:
    """The USD cost of a call's prompt and completion, as LiteLLM's ``cost_per_token``.

    Args:
        model: The model name (prefixes and dated suffixes are tolerated).
        prompt_tokens: All prompt tokens, *including* ``cached_tokens`` and
            ``cache_creation_tokens`` (OpenAI's convention).
        completion_tokens: All completion tokens, including reasoning tokens.
        cached_tokens: Prompt tokens read from the cache (billed at
            ``cache_read_input_token_cost`` when the model has one).
        cache_creation_tokens: Prompt tokens written to the cache (billed at
            ``cache_creation_input_token_cost`` when the model has one).
        llm_provider: The provider, when not part of ``model``.

    Returns:
        ``(prompt_cost_usd, completion_cost_usd)``.

    Raises:
        PriceNotFoundError: When the model has no price (a :class:`rxllm.NotFoundError`).
    """
    found = lookup_model_price(model, llm_provider=llm_provider)
    if found is None:
        raise _not_found(model, llm_provider)
    return prices_cost(found[1], prompt_tokens, completion_tokens, cached_tokens, cache_creation_tokens)


def usage_cost(
    entry: Mapping[str, Any],
    usage: Usage,
) -> tuple[float, float]:
    """Apply one price entry to a :class:`~rxllm.types.Usage`."""
    details = usage.prompt_tokens_details
    created = (details.cache_creation_tokens or 0) if details is not None else 0
    return prices_cost(entry, usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, created)


def completion_cost(
    completion_response: ModelResponse | Mapping[str, Any] | None = None,
    model: str | None = None,
    *,
    llm_provider: str | None = None,
    messages: list[Mapping[str, Any]] | None = None,
) -> float:
    """The USD cost of a complete response, as LiteLLM's ``completion_cost``.

    Args:
        completion_response: A :class:`~rxllm.types.ModelResponse` or its wire dict.
        model: Overrides the response's ``model`` (e.g. the name you requested).
        llm_provider: The provider, when not part of the model name.
        messages: The prompt, used only to estimate prompt tokens when the response has no
            usage (the completion side is then estimated from the response text).

    Returns:
        Prompt cost plus completion cost, in USD.

    Raises:
        PriceNotFoundError: When the model has no price.
        TypeError: When no response is given.
    """
    if completion_response is None:
        raise TypeError("completion_cost() needs completion_response=")
    response = (
        completion_response
        if isinstance(completion_response, ModelResponse)
        else ModelResponse.from_dict(completion_response)
    )
    name = model or response.model
    found = lookup_model_price(name, llm_provider=llm_provider)
    if found is None:
        raise _not_found(name, llm_provider)
    usage = response.usage if response.usage is not None else _estimate(response, messages)
    prompt_cost, output_cost = usage_cost(found[1], usage)
    return prompt_cost + output_cost


def _estimate(response: ModelResponse, messages: list[Mapping[str, Any]] | None) -> Usage:
    parts: list[str] = []
    for choice in response.choices:
        msg = choice.message
        parts.extend(p for p in (msg.content, msg.reasoning_content, msg.refusal) if p)
        for call in msg.tool_calls or ():
            parts.append(call.function.name)
            parts.append(call.function.arguments)
    return UsageAccumulator().result(completion_text="".join(parts), messages=messages)
