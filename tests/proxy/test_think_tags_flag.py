"""The per-deployment ``split_think_tags`` flag in litellm_params: parsed, validated, applied by the proxy."""

from __future__ import annotations

from typing import Any

import pytest

from rxllm.proxy.config import ConfigError
from tests.proxy.proxy_support import USER, client, config, mock_entry, running


class TestThinkTagsFlag:
    @pytest.mark.parametrize(
        ("value", "want"),
        [(True, {}), (False, None), ({"implicit_open": False}, {"implicit_open": False})],
    )
    def test_parsed_and_not_sent_upstream(self, value: Any, want: Any) -> None:
        """The flag becomes the operator's keywords and is kept out of the parameters sent upstream."""
        cfg = config(mock_entry("r1", split_think_tags=value))

        deployment = cfg.deployments[0]
        assert deployment.think_tags == want
        assert "split_think_tags" not in deployment.params

    @pytest.mark.parametrize("value", ["yes", {"open": "<t>"}, {"open_tag": ""}, {"implicit_open": "no"}])
    def test_bad_values_fail_at_startup(self, value: Any) -> None:
        """A flag that is not true/false or the operator's keywords is a ConfigError naming the field."""
        with pytest.raises(ConfigError, match=r"model_list\[0\]\.litellm_params\.split_think_tags"):
            config(mock_entry("r1", split_think_tags=value))

    async def test_the_proxy_moves_think_tags_into_reasoning(self) -> None:
        """With the flag on, the client's stream has no <think> tags in content and the thought in reasoning."""
        answer = "<think>Let me think about it.</think>The answer is 4."
        entries = (
            mock_entry("r1", mock_response=answer, split_think_tags=True),
            mock_entry("plain", mock_response=answer),
        )
        async with running(config(*entries)) as server:
            api = client(server)
            stream = await api.chat.completions.create(model="r1", messages=USER, stream=True)
            chunks = [c async for c in stream]
            plain = await api.chat.completions.create(model="plain", messages=USER, stream=True)
            raw = [c async for c in plain]

        content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
        assert content == "The answer is 4."
        assert reasoning == "Let me think about it."
        assert "".join(c.choices[0].delta.content or "" for c in raw if c.choices) == answer
