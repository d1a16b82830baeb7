"""The floor proxy: the least a parsing streaming proxy can do, in aiohttp (the proxy ratios' denominator).

    python -m benchmarks._floor_proxy --config CONFIG.yaml --port 0

It reads the same ``model_list`` config as the real proxies (model name -> ``api_base``),
checks the master key, POSTs the request body to the upstream through one pooled
``aiohttp.ClientSession``, and relays the stream: every SSE event is split out,
``orjson.loads``-ed and ``orjson.dumps``-ed again (what a proxy that looks at each chunk must
do at least), and each network read's events are written in one write. No routing, no
metering, no log line, no error shapes: a floor, not a product.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml
from aiohttp import web

_SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("session", aiohttp.ClientSession)


def _routes(config: dict[str, Any]) -> tuple[dict[str, tuple[str, str]], str]:
    routes = {}
    for entry in config.get("model_list") or ():
        params = entry["litellm_params"]
        url = params["api_base"].rstrip("/") + "/chat/completions"
        routes[entry["model_name"]] = (url, params["model"].partition("/")[2])
    key = (config.get("general_settings") or {}).get("master_key", "")
    return routes, f"Bearer {key}"


async def _relay(request: web.Request) -> web.StreamResponse:
    routes, auth = request.app["routes"], request.app["auth"]
    if request.headers.get("Authorization") != auth:
        return web.json_response({"error": {"message": "bad key"}}, status=401)
    body = orjson.loads(await request.read())
    url, model = routes[body["model"]]
    body["model"] = model
    session = request.app[_SESSION]
    async with session.post(url, data=orjson.dumps(body), headers={"Content-Type": "application/json"}) as up:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        loads, dumps = orjson.loads, orjson.dumps
        rest = b""
        async for piece in up.content.iter_any():
            events = (rest + piece).split(b"\n\n")
            rest = events.pop()
            out = []
            for event in events:
                if not event.startswith(b"data: "):
                    continue
                data = event[6:]
                if data == b"[DONE]":
                    out.append(b"data: [DONE]\n\n")
                else:
                    out.append(b"data: " + dumps(loads(data)) + b"\n\n")
            if out:
                await response.write(b"".join(out))
        await response.write_eof()
    return response


async def _serve(config_path: Path, port: int) -> None:
    routes, auth = _routes(yaml.safe_load(config_path.read_text()))
    app = web.Application()
    app["routes"] = routes
    app["auth"] = auth
    app.router.add_post("/v1/chat/completions", _relay)
    app.router.add_get("/health/readiness", lambda request: _ready(request))
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    app[_SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout())
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=4096)
    await site.start()
    print(f"floor proxy listening on http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await app[_SESSION].close()
        await runner.cleanup()


async def _ready(request: web.Request) -> web.Response:
    return web.json_response({"status": "healthy", "active_requests": -1})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # as many sockets as allowed
    try:
        asyncio.run(_serve(args.config, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
