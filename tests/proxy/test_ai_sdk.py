"""The Vercel AI SDK (under Node) against a running proxy: openai(model), anthropic(model), useChat's transport.

The SDK is an npm install kept outside the repository: ``RXLLM_AI_SDK_DIR`` names a directory
holding ``node_modules`` with ``ai``, ``@ai-sdk/openai`` and ``@ai-sdk/anthropic`` (``.ci/run``
installs them). Without it the test skips, and fails when ``RXLLM_REQUIRE_AI_SDK=1`` (CI).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.proxy.proxy_support import config, mock_entry, running

SCRIPT = Path(__file__).with_name("ai_sdk_check.mjs")
TOOL_CALLS = [{"id": "call_1", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]


def _sdk_dir() -> Path:
    """The AI SDK install, or skip (fail when RXLLM_REQUIRE_AI_SDK=1, as .ci/run sets)."""
    root = Path(os.environ.get("RXLLM_AI_SDK_DIR", "/nonexistent"))
    node = shutil.which("node")
    packages = [root / "node_modules" / name for name in ("ai", "@ai-sdk/openai", "@ai-sdk/anthropic")]
    if node is None or not all(p.is_dir() for p in packages):
        reason = (
            "the Vercel AI SDK is not installed: set RXLLM_AI_SDK_DIR to a directory where "
            "`npm install ai @ai-sdk/openai @ai-sdk/anthropic` ran (.ci/run does)"
        )
        if os.environ.get("RXLLM_REQUIRE_AI_SDK"):
            pytest.fail(reason)
        pytest.skip(reason)
    return root


async def _run_check(root: Path, base: str) -> dict[str, Any]:
    """Run the Node script (copied beside the SDK's node_modules, where ESM imports resolve)."""
    script = root / "rxllm_ai_sdk_check.mjs"
    script.write_bytes(SCRIPT.read_bytes())
    proc = await asyncio.create_subprocess_exec(
        "node", str(script), base, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=root
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)  # a hang guard, not a timing bound
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode(errors="replace")[-3000:]
    return orjson.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


class TestVercelAISDK:
    async def test_openai_anthropic_and_use_chat_providers_work_against_the_proxy(self) -> None:
        """The AI SDK's openai() (Responses), anthropic() (Messages) and useChat transport all stream from rxllm."""
        root = _sdk_dir()
        cfg = config(
            mock_entry("echo", model="mock/echo"),
            mock_entry("tools", mock_response="", mock_tool_calls=TOOL_CALLS),
        )
        async with running(cfg, handler_cancellation=True) as server:
            result = await _run_check(root, server.make_url("").rstrip("/"))

        assert result["responsesText"] == "Hello from the Responses provider"
        assert result["responsesFinish"] == "stop"
        assert result["responsesOutputTokens"] > 0
        assert result["responsesToolCalls"] == [["get_weather", {"city": "Paris"}]]
        assert result["responsesSecondTurn"] == "turn two"
        assert result["messagesText"] == "Hello from the Anthropic provider"
        assert result["messagesFinish"] == "stop"
        assert result["messagesToolCalls"] == [["get_weather", {"city": "Paris"}]]
        assert (result["uiRole"], result["uiTexts"]) == ("assistant", ["Hello from useChat"])
