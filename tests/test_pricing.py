"""Prices, model-name lookup and cost arithmetic."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from rxllm import pricing
from rxllm.errors import NotFoundError
from rxllm.pricing import (
    PriceNotFoundError,
    completion_cost,
    cost_per_token,
    get_model_info,
    lookup_model_price,
    model_cost,
    register_model,
)
from rxllm.types import ModelResponse

FIELDS = {
    "input_cost_per_token",
    "output_cost_per_token",
    "litellm_provider",
    "max_input_tokens",
    "max_output_tokens",
    "mode",
}


@pytest.fixture
def restore_prices() -> Iterator[None]:
    saved = copy.deepcopy(model_cost)
    yield
    model_cost.clear()
    model_cost.update(saved)


def key(model: str, llm_provider: str | None = None) -> str | None:
    found = lookup_model_price(model, llm_provider=llm_provider)
    return None if found is None else found[0]


class TestModelCost:
    def test_every_entry_has_litellm_fields(self) -> None:
        """Each entry carries LiteLLM's field names with non-negative prices."""
        for name, entry in model_cost.items():
            assert entry.keys() >= FIELDS, name
            assert entry["mode"] == "chat"
            for field in (
                "input_cost_per_token",
                "output_cost_per_token",
                "cache_read_input_token_cost",
                "cache_creation_input_token_cost",
            ):
                assert entry.get(field, 0) >= 0, (name, field)

    @pytest.mark.parametrize(
        "model",
        [
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4.1",
            "gpt-4.1-mini",
            "gpt-4.1-nano",
            "gpt-5",
            "gpt-5-mini",
            "gpt-5-nano",
            "o1",
            "o3",
            "o3-mini",
            "o4-mini",
            "claude-sonnet-4-5",
            "claude-opus-4-5",
            "claude-haiku-4-5",
            "claude-opus-4-1",
            "claude-3-7-sonnet",
            "claude-3-5-haiku",
            "claude-3-haiku",
            "gemini-2.0-flash",
            "gemini-2.5-flash",
            "gemini-2.5-pro",
            "gemini-3-pro-preview",
            "gemini-3-flash-preview",
            "deepseek-chat",
            "deepseek-reasoner",
        ],
    )
    def test_current_chat_models_are_priced(self, model: str) -> None:
        """The current OpenAI, Anthropic, Gemini and DeepSeek chat models have prices."""
        entry = model_cost[model]

        assert entry["input_cost_per_token"] > 0
        assert entry["output_cost_per_token"] >= entry["input_cost_per_token"]

    def test_known_list_prices(self) -> None:
        """Spot checks against the providers' published per-million prices."""
        assert model_cost["gpt-4o"]["input_cost_per_token"] * 1e6 == pytest.approx(2.5)
        assert model_cost["gpt-4o"]["output_cost_per_token"] * 1e6 == pytest.approx(10)
        assert model_cost["claude-sonnet-4-5"]["cache_creation_input_token_cost"] * 1e6 == pytest.approx(3.75)
        assert model_cost["gemini-2.5-flash"]["output_cost_per_token"] * 1e6 == pytest.approx(2.5)

    def test_mock_models_are_free(self) -> None:
        """Every mock/ model is priced at zero, so the offline default reports 0.0."""
        assert cost_per_token("mock/echo", 1000, 1000) == (0.0, 0.0)


class TestLookup:
    @pytest.mark.parametrize(
        ("model", "expected"),
        [
            ("gpt-4o-2024-08-06", "gpt-4o"),
            ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
            ("gpt-4o-mini-0125", "gpt-4o-mini"),
            ("o3-2025-04-16", "o3"),
            ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
            ("claude-sonnet-4-5@20250929", "claude-sonnet-4-5"),
            ("claude-3-7-sonnet-latest", "claude-3-7-sonnet"),
            ("gemini-2.0-flash-001", "gemini-2.0-flash"),
        ],
    )
    def test_dated_suffixes_are_dropped(self, model: str, expected: str) -> None:
        """A snapshot date or alias suffix resolves to the family's price."""
        assert key(model) == expected

    @pytest.mark.parametrize(
        ("model", "expected"),
        [
            ("openai/gpt-4o", "gpt-4o"),
            ("anthropic/claude-opus-4-5-20251101", "claude-opus-4-5"),
            ("gemini/gemini-2.5-flash", "gemini-2.5-flash"),
            ("deepseek/deepseek-reasoner", "deepseek-reasoner"),
            ("openrouter/anthropic/claude-haiku-4-5", "claude-haiku-4-5"),
            ("OpenAI/GPT-4o", "gpt-4o"),
        ],
    )
    def test_provider_prefixes_are_dropped(self, model: str, expected: str) -> None:
        """Provider prefixes (nested too, any case) resolve to the bare model."""
        assert key(model) == expected

    def test_exact_prefixed_entry_wins(self, restore_prices: None) -> None:
        """A provider-specific entry is preferred over the bare model's."""
        register_model({"azure/gpt-4o": {"input_cost_per_token": 1.0, "output_cost_per_token": 1.0}})

        assert key("gpt-4o", llm_provider="azure") == "azure/gpt-4o"
        assert key("azure/gpt-4o") == "azure/gpt-4o"
        assert key("gpt-4o") == "gpt-4o"

    def test_provider_wildcard(self) -> None:
        """Any mock model matches the mock/* entry, by prefix or by llm_provider."""
        assert key("mock/echo") == "mock/*"
        assert key("anything", llm_provider="mock") == "mock/*"

    def test_unknown_model(self) -> None:
        """An unknown name finds nothing, even after stripping."""
        assert key("llama-9-2099-01-01") is None
        assert key("groq/unknown-model") is None

    def test_get_model_info(self) -> None:
        """get_model_info returns a copy with the matched key, or raises naming the model."""
        info = get_model_info("openai/gpt-4o-2024-08-06")

        assert info["key"] == "gpt-4o"
        assert info["litellm_provider"] == "openai"
        with pytest.raises(PriceNotFoundError, match="no-such-model"):
            get_model_info("no-such-model")


class TestCostPerToken:
    def test_prompt_and_completion(self) -> None:
        """Tokens times the per-token prices, split into prompt and completion."""
        prompt, completion = cost_per_token(model="gpt-4o", prompt_tokens=1000, completion_tokens=500)

        assert prompt == pytest.approx(1000 * 2.5e-6)
        assert completion == pytest.approx(500 * 10e-6)

    def test_cached_tokens_use_the_cache_read_price(self) -> None:
        """Cached tokens are part of prompt_tokens and billed at the cache-read rate."""
        prompt, _ = cost_per_token(model="gpt-4o", prompt_tokens=1000, completion_tokens=0, cached_tokens=600)

        assert prompt == pytest.approx(400 * 2.5e-6 + 600 * 1.25e-6)

    def test_cache_creation_tokens(self) -> None:
        """Anthropic cache writes are billed at the cache-creation rate."""
        prompt, _ = cost_per_token(
            model="claude-sonnet-4-5",
            prompt_tokens=1000,
            completion_tokens=0,
            cached_tokens=100,
            cache_creation_tokens=200,
        )

        assert prompt == pytest.approx(700 * 3e-6 + 100 * 0.3e-6 + 200 * 3.75e-6)

    def test_missing_cache_price_falls_back_to_input_price(self) -> None:
        """A model with no cache-read price bills cached tokens as ordinary input."""
        prompt, _ = cost_per_token(model="gemini-2.0-flash-lite", prompt_tokens=100, cached_tokens=50)

        assert prompt == pytest.approx(100 * 0.075e-6)

    def test_more_cached_than_prompt_never_goes_negative(self) -> None:
        """Inconsistent counts are clamped rather than producing a negative cost."""
        prompt, completion = cost_per_token(model="gpt-4o", prompt_tokens=10, cached_tokens=50)

        assert prompt >= 0
        assert completion == 0

    def test_unknown_model_raises_not_found(self) -> None:
        """No price is a NotFoundError naming the model and how to fix it."""
        with pytest.raises(NotFoundError) as info:
            cost_per_token(model="my-finetune", prompt_tokens=1, completion_tokens=1)

        assert isinstance(info.value, PriceNotFoundError)
        assert info.value.model == "my-finetune"
        assert "register_model" in str(info.value)


class TestCompletionCost:
    def response(self, model: str = "gpt-4o-2024-08-06", usage: bool = True) -> ModelResponse:
        d: dict[str, Any] = {
            "id": "x",
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "abcdefgh"}}],
        }
        if usage:
            d["usage"] = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
        return ModelResponse.from_dict(d)

    def test_from_usage(self) -> None:
        """The response's usage priced at its (dated) model's price."""
        assert completion_cost(completion_response=self.response()) == pytest.approx(100 * 2.5e-6 + 20 * 1e-5)

    def test_accepts_wire_dicts_and_model_override(self) -> None:
        """A dict response works, and model= overrides the response's model."""
        d = self.response(model="unknown").to_dict()

        assert completion_cost(completion_response=d, model="gpt-4o-mini") == pytest.approx(100 * 0.15e-6 + 20 * 0.6e-6)

    def test_estimates_without_usage(self) -> None:
        """No usage: tokens are estimated from the text and the prompt."""
        cost = completion_cost(
            completion_response=self.response(usage=False), messages=[{"role": "user", "content": "abcd"}]
        )

        assert cost == pytest.approx((1 + 4) * 2.5e-6 + 2 * 1e-5)

    def test_unknown_model_raises(self) -> None:
        """Like LiteLLM, an unpriced model raises (here a NotFoundError)."""
        with pytest.raises(PriceNotFoundError, match="unknown"):
            completion_cost(completion_response=self.response(model="unknown"))

    def test_requires_a_response(self) -> None:
        """Calling without a response is a TypeError, not a silent 0."""
        with pytest.raises(TypeError):
            completion_cost()


class TestRegisterModel:
    def test_adds_a_model(self, restore_prices: None) -> None:
        """A registered model is priced at once."""
        register_model({"my-model": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}})

        assert cost_per_token("my-model", 10, 10) == pytest.approx((1e-5, 2e-5))

    def test_merges_into_an_existing_entry(self, restore_prices: None) -> None:
        """Overriding one field keeps the others."""
        register_model({"gpt-4o": {"output_cost_per_token": 1.0}})

        assert model_cost["gpt-4o"]["output_cost_per_token"] == 1.0
        assert model_cost["gpt-4o"]["input_cost_per_token"] == pytest.approx(2.5e-6)

    def test_rejects_non_mapping_entries(self, restore_prices: None) -> None:
        """A malformed entry is refused before it can break lookups."""
        with pytest.raises(TypeError, match="bad"):
            register_model({"bad": 3})  # type: ignore[dict-item]

        assert "bad" not in model_cost

    def test_price_table_is_package_data(self) -> None:
        """The table is read from the installed package (so wheels carry it)."""
        assert pricing._load() == {k: v for k, v in model_cost.items() if k in pricing._load()}
