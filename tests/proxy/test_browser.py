"""Browsers: CORS for allowed origins, refusal before any upstream call for the others, in real Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from rxllm.proxy import PROXY_STATE
from rxllm.proxy.cors import CorsPolicy
from tests.proxy.proxy_support import MASTER_KEY, config, mock_entry, running, upstream, upstream_entry

CHAT = "/v1/chat/completions"

#: The page: streams a chat completion from the proxy and writes what it read into the DOM.
PAGE = """<!doctype html>
<html><body><pre id="out">pending</pre>
<script>
(async () => {
  const out = document.getElementById("out");
  try {
    const response = await fetch(PROXY + "/v1/chat/completions", {
      method: "POST",
      headers: {"Content-Type": "application/json", "Authorization": "Bearer " + KEY},
      body: JSON.stringify({model: "m", stream: true, messages: [{role: "user", content: "hi"}]}),
    });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let raw = "", reads = 0;
    for (;;) {
      const {done, value} = await reader.read();
      if (done) break;
      reads += 1;
      raw += decoder.decode(value, {stream: true});
    }
    let text = "";
    for (const line of raw.split("\\n")) {
      if (!line.startsWith("data: {")) continue;
      const chunk = JSON.parse(line.slice(6));
      for (const choice of chunk.choices) text += choice.delta.content || "";
    }
    out.textContent = "STREAMED[" + text + "] status=" + response.status + " reads=" + reads;
  } catch (error) {
    // the request the browser would send without asking (no preflight): the proxy must refuse it too
    try {
      await fetch(PROXY + "/v1/chat/completions", {
        method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"},
        body: JSON.stringify({model: "m", stream: true, messages: [{role: "user", content: "hi"}]}),
      });
    } catch (ignored) {}
    out.textContent = "BLOCKED[" + error.name + "]";
  }
})();
</script></body></html>
"""


def _chromium() -> str:
    """Chromium's path, or skip (fail when RXLLM_REQUIRE_BROWSER=1, as .ci/run sets)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        reason = "Debian's chromium is not installed (apt-get install chromium); .ci/run installs it"
        if os.environ.get("RXLLM_REQUIRE_BROWSER"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@contextlib.asynccontextmanager
async def _page_server(proxy_url: str) -> AsyncIterator[str]:
    """A web page on its own local origin (its own port)."""
    html = PAGE.replace("PROXY +", f"{proxy_url!r} +").replace("KEY", repr(MASTER_KEY))

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def _page_result(chromium: str, url: str) -> str:
    """Load ``url`` in headless Chromium (driven over the DevTools protocol) and return ``#out``'s text.

    Waits (bounded) until the page's script has replaced ``pending`` with its result.
    """
    with tempfile.TemporaryDirectory(prefix="rxllm-chromium-") as profile:
        proc = await asyncio.create_subprocess_exec(
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "about:blank",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            return await asyncio.wait_for(_drive(proc, url), 90)
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()


async def _drive(proc: asyncio.subprocess.Process, url: str) -> str:
    assert proc.stderr is not None
    devtools = ""
    while not devtools:
        line = (await proc.stderr.readline()).decode(errors="replace")
        if not line:
            raise RuntimeError("chromium exited before its DevTools endpoint was up")
        if "DevTools listening on " in line:
            devtools = line.split("DevTools listening on ", 1)[1].strip()
    http = devtools.split("/devtools/")[0].replace("ws://", "http://")
    async with aiohttp.ClientSession() as session:
        async with session.get(http + "/json/list") as listing:
            targets = await listing.json()
        page_ws = next(t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page")
        async with session.ws_connect(page_ws, max_msg_size=0) as ws:
            ids = iter(range(1, 1_000_000))

            async def call(method: str, **params: object) -> dict[str, object]:
                n = next(ids)
                await ws.send_json({"id": n, "method": method, "params": params})
                while True:
                    message = await ws.receive_json()
                    if message.get("id") == n:
                        return message

            await call("Page.navigate", url=url)
            expression = "(document.getElementById('out') || {}).textContent || 'pending'"
            while True:
                answer = await call("Runtime.evaluate", expression=expression, returnByValue=True)
                value = answer.get("result", {}).get("result", {}).get("value")  # type: ignore[union-attr]
                if isinstance(value, str) and value != "pending":
                    return value
                await asyncio.sleep(0.1)


async def _raw(method: str, url: str, headers: dict[str, str], data: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as session, session.request(method, url, headers=headers, data=data) as r:
        return r.status, dict(r.headers), await r.read()


class TestCors:
    async def test_preflight_from_an_allowed_origin_is_answered(self) -> None:
        """OPTIONS from an allowed origin: 204 with the origin, methods and the requested headers."""
        async with running(config(cors_allowed_origins=["http://app.test:3000"])) as server:
            status, headers, _ = await _raw(
                "OPTIONS",
                server.make_url(CHAT),
                {
                    "Origin": "http://app.test:3000",
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization, content-type",
                },
            )

        assert status == 204
        assert headers["Access-Control-Allow-Origin"] == "http://app.test:3000"
        assert "POST" in headers["Access-Control-Allow-Methods"]
        assert headers["Access-Control-Allow-Headers"] == "authorization, content-type"

    async def test_answers_to_allowed_origins_carry_allow_origin(self) -> None:
        """A streamed answer to an allowed origin carries Access-Control-Allow-Origin; without Origin, none."""
        async with running(config(mock_entry("m"), cors_allowed_origins=["http://app.test:3000"])) as server:
            body = b'{"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}'
            allowed = await _raw("POST", server.make_url(CHAT), {"Origin": "http://app.test:3000"}, body)
            plain = await _raw("POST", server.make_url(CHAT), {"Content-Type": "application/json"}, body)

        assert allowed[0] == 200 and allowed[1]["Access-Control-Allow-Origin"] == "http://app.test:3000"
        assert b"data: [DONE]" in allowed[2]
        assert plain[0] == 200 and "Access-Control-Allow-Origin" not in plain[1]

    @pytest.mark.parametrize("content_type", ["text/plain", "application/json", "application/x-www-form-urlencoded"])
    async def test_a_disallowed_origin_is_refused_before_any_upstream_call(self, content_type: str) -> None:
        """Any content type from a page on another origin: 403, no Allow-Origin, and the upstream is never called."""
        async with upstream() as up, running(config(upstream_entry("m", up))) as server:
            body = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
            status, headers, answer = await _raw(
                "POST", server.make_url(CHAT), {"Origin": "http://evil.test", "Content-Type": content_type}, body
            )
            preflight = await _raw(
                "OPTIONS",
                server.make_url(CHAT),
                {"Origin": "http://evil.test", "Access-Control-Request-Method": "POST"},
            )

        assert status == 403 and b"origin_not_allowed" in answer
        assert "Access-Control-Allow-Origin" not in headers
        assert preflight[0] == 403 and "Access-Control-Allow-Origin" not in preflight[1]
        assert up.requests == []

    async def test_the_proxys_own_origin_and_star(self) -> None:
        """The proxy's own origin always passes; '*' allows any origin."""
        async with running(config(mock_entry("m"))) as server:
            own = await _raw("GET", server.make_url("/v1/models"), {"Origin": f"http://127.0.0.1:{server.port}"})
        async with running(config(mock_entry("m"), cors_allowed_origins="*")) as server:
            anyone = await _raw("GET", server.make_url("/v1/models"), {"Origin": "https://anywhere.test"})

        assert own[0] == 200
        assert anyone[0] == 200 and anyone[1]["Access-Control-Allow-Origin"] == "https://anywhere.test"


class TestHeadlessBrowser:
    async def test_an_allowed_page_streams_and_a_disallowed_one_cannot(self) -> None:
        """Real Chromium: an allowed page streams text; a page elsewhere is blocked and calls no upstream."""
        chromium = _chromium()
        async with upstream(count=5, delay=0.02) as up:
            cfg_entries = upstream_entry("m", up)
            async with running(config(cfg_entries, master_key=MASTER_KEY)) as server:
                proxy_url = f"http://127.0.0.1:{server.port}"
                async with _page_server(proxy_url) as good, _page_server(proxy_url) as bad:
                    state = server.app[PROXY_STATE]
                    state.cors = CorsPolicy([good])  # the page's port is known only now
                    allowed = await _page_result(chromium, good + "/")
                    calls_after_allowed = len(up.requests)
                    refused = await _page_result(chromium, bad + "/")

        assert allowed.startswith("STREAMED[tok0 tok1 tok2 tok3 tok4 ] status=200")
        assert calls_after_allowed == 1
        assert refused == "BLOCKED[TypeError]"
        assert len(up.requests) == 1  # the disallowed page made no upstream request at all
