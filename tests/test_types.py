"""Round trips of the wire model: from_dict(to_dict(x)) == x, unknown keys included."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings

from rxllm.types import ChatCompletionChunk, ModelResponse
from tests.strategies import chunk_dicts, load_fixture_chunks, response_dicts


def unknown(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k.startswith("x_")}


class TestChunkRoundTrip:
    @settings(max_examples=150, deadline=None)
    @given(chunk_dicts())
    def test_dict_round_trip(self, d: dict[str, Any]) -> None:
        """A chunk survives to_dict/from_dict and JSON bytes unchanged."""
        chunk = ChatCompletionChunk.from_dict(d)

        assert ChatCompletionChunk.from_dict(chunk.to_dict()) == chunk
        assert ChatCompletionChunk.from_json(chunk.to_json()) == chunk

    @settings(max_examples=100, deadline=None)
    @given(chunk_dicts())
    def test_unknown_keys_survive(self, d: dict[str, Any]) -> None:
        """Provider-specific keys at chunk, choice and delta level are written back as they came."""
        out = ChatCompletionChunk.from_dict(d).to_dict()

        assert unknown(out) == unknown(d)
        for got, sent in zip(out["choices"], d["choices"], strict=True):
            assert unknown(got) == unknown(sent)
            assert unknown(got["delta"]) == unknown(sent["delta"])
            for tg, ts in zip(got["delta"].get("tool_calls", []), sent["delta"].get("tool_calls", []), strict=True):
                assert unknown(tg) == unknown(ts)
        if "usage" in d:
            assert unknown(out["usage"]) == unknown(d["usage"])

    def test_recorded_chunks_round_trip(self) -> None:
        """Every chunk of a 2025-format OpenAI stream (obfuscation, service_tier) round-trips."""
        chunks = load_fixture_chunks("openai/tool_calls_parallel_2_obfuscation.sse")

        assert len(chunks) == 15
        assert all(ChatCompletionChunk.from_dict(c.to_dict()) == c for c in chunks)
        assert "obfuscation" in chunks[0].extra


class TestResponseRoundTrip:
    @settings(max_examples=150, deadline=None)
    @given(response_dicts())
    def test_dict_round_trip(self, d: dict[str, Any]) -> None:
        """A response survives to_dict/from_dict and JSON bytes unchanged."""
        response = ModelResponse.from_dict(d)

        assert ModelResponse.from_dict(response.to_dict()) == response
        assert ModelResponse.from_json(response.to_json()) == response

    @settings(max_examples=100, deadline=None)
    @given(response_dicts())
    def test_unknown_keys_survive(self, d: dict[str, Any]) -> None:
        """Unknown keys on the response, choices, messages and tool calls are kept."""
        out = ModelResponse.from_dict(d).to_dict()

        assert unknown(out) == unknown(d)
        for got, sent in zip(out["choices"], d["choices"], strict=True):
            assert unknown(got) == unknown(sent)
            assert unknown(got["message"]) == unknown(sent["message"])
            for tg, ts in zip(got["message"].get("tool_calls", []), sent["message"].get("tool_calls", []), strict=True):
                assert unknown(tg) == unknown(ts)
                assert unknown(tg["function"]) == unknown(ts["function"])
