"""What users expect of a proxy: key headers, model lookup, their model name, `rxllm serve --model`."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from tests.proxy.proxy_support import (
    MASTER_KEY,
    USER,
    client,
    config,
    mock_entry,
    running,
    upstream,
    upstream_entry,
)

CHAT = "/v1/chat/completions"
BODY = orjson.dumps({"model": "m", "messages": USER})


async def _post(url: str, headers: dict[str, str], body: bytes = BODY) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", **headers}
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as response:
        return response.status, orjson.loads(await response.read())


class TestProxyKeys:
    @pytest.mark.parametrize(
        "headers",
        [{"Authorization": f"Bearer {MASTER_KEY}"}, {"x-api-key": MASTER_KEY}, {"api-key": MASTER_KEY}],
    )
    async def test_the_master_key_is_accepted_in_each_clients_header(self, headers: dict[str, str]) -> None:
        """Bearer (OpenAI), x-api-key (Anthropic) and api-key (Azure) all carry the proxy key."""
        async with running(config(mock_entry("m", mock_response="ok"), master_key=MASTER_KEY)) as server:
            status, body = await _post(server.make_url(CHAT), headers)

        assert status == 200 and body["choices"][0]["message"]["content"] == "ok"

    @pytest.mark.parametrize(
        "headers",
        [
            {"Authorization": f"Basic {MASTER_KEY}"},
            {"Authorization": MASTER_KEY},
            {"Authorization": f"Token {MASTER_KEY}"},
            {"x-api-key": "wrong-key"},
            {},
        ],
    )
    async def test_other_schemes_and_wrong_keys_are_401(self, headers: dict[str, str]) -> None:
        """Only the Bearer scheme counts for Authorization; a wrong or missing key is 401."""
        async with running(config(mock_entry("m"), master_key=MASTER_KEY)) as server:
            status, body = await _post(server.make_url(CHAT), headers)

        assert status == 401 and body["error"]["code"] == "invalid_api_key"
        assert MASTER_KEY not in json.dumps(body)


class TestModelLookup:
    async def test_models_retrieve_finds_configured_and_mock_models(self) -> None:
        """client.models.retrieve works for a configured name and for mock/* models."""
        async with running(config(mock_entry("echo"))) as server:
            api = client(server)
            echo = await api.models.retrieve("echo")
            mock = await api.models.retrieve("mock/echo")
            with pytest.raises(openai.NotFoundError) as info:
                await api.models.retrieve("nope")

        assert (echo.id, echo.object) == ("echo", "model")
        assert mock.id == "mock/echo"
        assert "echo" in info.value.message

    async def test_mock_models_are_not_found_when_mocks_are_off(self) -> None:
        """With allow_mock_models off, GET /v1/models/mock/echo is 404."""
        async with running(config(mock_entry("m"), allow_mock_models=False)) as server:
            with pytest.raises(openai.NotFoundError):
                await client(server).models.retrieve("mock/echo")


class TestClientModelName:
    async def test_answers_name_the_model_the_client_asked_for(self) -> None:
        """Streamed and whole answers from an upstream report 'm', not the deployment's model."""
        async with upstream() as up, running(config(upstream_entry("m", up))) as server:
            api = client(server)
            whole = await api.chat.completions.create(model="m", messages=USER)
            stream = await api.chat.completions.create(model="m", messages=USER, stream=True)
            models = {chunk.model async for chunk in stream}

        assert whole.model == "m"
        assert models == {"m"}

    async def test_error_messages_do_not_double_the_provider(self) -> None:
        """An upstream error names the provider once ('openai error: ...'), never 'openai/openai/...'."""
        async with upstream() as up:
            up.fail_status = 400
            up.fail_message = "bad thing"
            entry = upstream_entry("m", up)
            entry["litellm_params"]["model"] = "openai/gpt-4o-mini"
            async with running(config(entry)) as server:
                status, body = await _post(server.make_url(CHAT), {})

        assert status == 400
        assert "bad thing" in body["error"]["message"]
        assert "openai/openai" not in body["error"]["message"]


ENV = {**os.environ, "RXLLM_MASTER_KEY": ""}


def _rxllm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rxllm", *args], capture_output=True, text=True, timeout=60, env=ENV, check=False
    )


class TestServeCommand:
    def test_version(self) -> None:
        """rxllm --version prints the package version."""
        result = _rxllm("--version")

        assert result.returncode == 0
        assert re.fullmatch(r"rxllm \S+\n", result.stdout)

    def test_serve_one_model_with_an_alias_and_no_config(self) -> None:
        """rxllm serve --model mock/echo --alias echo: one model named echo, answering under that name."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "rxllm", "serve", "--model", "mock/echo", "--alias", "echo", "--port", "0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        try:
            assert proc.stderr is not None
            line = proc.stderr.readline()
            match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
            assert match, line
            base = f"http://127.0.0.1:{match.group(1)}"
            with urllib.request.urlopen(base + "/v1/models", timeout=10) as resp:
                models = [m["id"] for m in json.loads(resp.read())["data"]]
            body = json.dumps({"model": "echo", "messages": [{"role": "user", "content": "say this"}]}).encode()
            request = urllib.request.Request(base + CHAT, data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as resp:
                answer = json.loads(resp.read())
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

        assert models == ["echo"]
        assert answer["model"] == "echo"
        assert answer["choices"][0]["message"]["content"] == "say this"
        assert code == 0

    @pytest.mark.parametrize(
        ("args", "fragment"),
        [(("--model", "gpt-4o"), "provider/model"), (("--alias", "x"), "--model")],
    )
    def test_bad_model_arguments_exit_1(self, args: tuple[str, ...], fragment: str) -> None:
        """--model without a provider, or --alias alone, is one error line and exit status 1."""
        result = _rxllm("serve", *args, "--port", "0")

        assert result.returncode == 1
        assert fragment in result.stderr
