"""Browsers: which web origins may call the proxy (CORS), and refusing every other one.

A page's ``fetch()`` carries an ``Origin`` header. Browsers block a cross-origin page from
*reading* an answer without ``Access-Control-Allow-Origin``, but a "simple" request (a
``text/plain`` POST) is still *sent*: a loopback proxy without a master key would run it and
spend the user's provider tokens for any web site the user visits. So the proxy refuses a
request whose ``Origin`` is not allowed (403) before it reads the body, checks a key or
calls an upstream, whatever its method or content type; only the configured origins
(``general_settings.cors_allowed_origins``, default none) and the proxy's own origin pass.

Requests without ``Origin`` (SDKs, curl, servers) are not affected.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final

from rxllm.proxy.config import normalize_origin

__all__ = ["CorsPolicy"]

_HEADER_LIST: Final = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+(\s*,\s*[A-Za-z0-9!#$%&'*+.^_`|~-]+)*")
_DEFAULT_HEADERS: Final = "authorization, content-type, x-api-key, api-key, anthropic-version, x-request-id"
_EXPOSED: Final = "X-Request-Id, Retry-After, x-vercel-ai-ui-message-stream"


class CorsPolicy:
    """The allowed origins and the headers that tell browsers so.

    Args:
        origins: Allowed origins (``"https://app.example.com"``), or ``"*"`` for any.
    """

    __slots__ = ("_any", "_origins")

    def __init__(self, origins: Iterable[str]) -> None:
        found = set(origins)
        self._any = "*" in found
        self._origins = frozenset(normalize_origin(o) for o in found if o != "*")

    def __repr__(self) -> str:
        shown = ["*"] if self._any else sorted(self._origins)
        return f"CorsPolicy({shown!r})"

    def allows(self, origin: str, own_origin: str | None = None) -> bool:
        """Whether a page on ``origin`` may call the proxy (its own origin always may)."""
        normal = normalize_origin(origin)
        if own_origin is not None and normal == normalize_origin(own_origin):
            return True
        return self._any or normal in self._origins

    def preflight_headers(self, origin: str, request_headers: Mapping[str, str]) -> dict[str, str]:
        """The answer to an allowed ``OPTIONS`` preflight."""
        wanted = request_headers.get("Access-Control-Request-Headers", "").strip()
        allowed = wanted if wanted and _HEADER_LIST.fullmatch(wanted) else _DEFAULT_HEADERS
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
            "Access-Control-Allow-Headers": allowed,
            "Access-Control-Max-Age": "600",
            "Vary": "Origin",
        }

    def response_headers(self, origin: str) -> dict[str, str]:
        """Headers that let a page on the allowed ``origin`` read an answer (streams included)."""
        return {"Access-Control-Allow-Origin": origin, "Access-Control-Expose-Headers": _EXPOSED, "Vary": "Origin"}
