"""The one scrubber: every secret rxllm knows of is replaced by ``***`` in text that leaves the process.

rxllm runs :func:`scrub` on every error message (:class:`rxllm.errors.APIError` scrubs its
message, ``str``, ``repr`` and body), every log line (:mod:`rxllm._log`) and every repr that
could hold a URL. What it knows:

- values registered with :func:`register_secret`: the transport registers the caller's
  ``api_key``, the key it took from a provider's environment variable, every
  ``extra_headers`` value and every query-string value of ``api_base``, before any request;
- the values of environment variables whose names look like keys (``*_API_KEY``, ``*_TOKEN``,
  ``*_SECRET``, ``*_PASSWORD``, ...), read on first use and again after :func:`refresh_env`;
- shapes, whoever's they are: ``Bearer <token>``, ``user:password@`` in URLs, and values of
  key-like query parameters (``?key=...``, ``api-key=``, ``token=``, ``sig=``, ...).

The API is two functions, for any layer (the proxy uses them too)::

    from rxllm._secrets import register_secret, scrub

    register_secret(client_key)        # from now on never printed
    log.warning("...", error=scrub(text))

Registration is cheap and bounded (the most recent :data:`MAX_SECRETS` values are kept);
:func:`scrub` costs a few substring searches and is meant for error paths, never the per-chunk
path. Values shorter than :data:`MIN_SECRET_LENGTH` are ignored (they would scrub ordinary
words).
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "MASK",
    "MAX_SECRETS",
    "MIN_SECRET_LENGTH",
    "refresh_env",
    "register_secret",
    "register_secrets",
    "safe_url",
    "scrub",
    "scrub_value",
]

#: What a secret becomes.
MASK: Final = "***"
#: Registered values kept (least recently registered are forgotten first).
MAX_SECRETS: Final = 4096
#: Shorter values are not treated as secrets.
MIN_SECRET_LENGTH: Final = 6

_ENV_NAME = re.compile(r"(API_?KEY|_KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)S?$", re.IGNORECASE)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{6,}")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@?#]*@")
_QUERY_KEY = re.compile(
    r"(?i)([?&;](?:[a-z0-9_\-]*key|token|access_token|auth|authorization|sig|signature|secret|password|"
    r"code|credential|x-goog-api-key)=)[^&#\s'\"]+"
)

_lock = threading.Lock()
_registered: OrderedDict[str, None] = OrderedDict()
_env: frozenset[str] | None = None
_pattern: re.Pattern[str] | None = None


def register_secret(value: Any) -> None:
    """Never print ``value`` again: :func:`scrub` replaces it with ``***`` from now on.

    Args:
        value: A key, token or password. Non-strings and values shorter than
            :data:`MIN_SECRET_LENGTH` are ignored. ``"Bearer <key>"`` registers the key too.
    """
    global _pattern
    if not isinstance(value, str):
        return
    values = [value.strip()]
    head, _, tail = values[0].partition(" ")
    if tail and head.lower() in ("bearer", "basic"):
        values.append(tail.strip())
    with _lock:
        for v in values:
            if len(v) < MIN_SECRET_LENGTH:
                continue
            if v in _registered:
                _registered.move_to_end(v)
                continue
            _registered[v] = None
            if len(_registered) > MAX_SECRETS:
                _registered.popitem(last=False)
            _pattern = None


def register_secrets(values: Iterable[Any] | Mapping[str, Any]) -> None:
    """:func:`register_secret` for each value (a mapping's values: headers)."""
    items = values.values() if isinstance(values, Mapping) else values
    for value in items:
        register_secret(value)


def refresh_env() -> None:
    """Read key-like environment variables again (after the application changed them)."""
    global _env, _pattern
    with _lock:
        _env = None
        _pattern = None


def _env_secrets() -> frozenset[str]:
    return frozenset(
        value.strip()
        for name, value in os.environ.items()
        if _ENV_NAME.search(name) and len(value.strip()) >= MIN_SECRET_LENGTH
    )


def _compiled() -> re.Pattern[str] | None:
    global _env, _pattern
    pattern = _pattern
    if pattern is not None or (not _registered and _env is not None and not _env):
        return pattern
    with _lock:
        if _env is None:
            _env = _env_secrets()
        values = sorted({*_registered, *_env}, key=len, reverse=True)
        if not values:
            return None
        _pattern = re.compile("|".join(re.escape(v) for v in values))
        return _pattern


def scrub(text: str) -> str:
    """``text`` with every known secret, bearer token, URL password and key-like query value masked.

    Args:
        text: Any message, log line or repr.

    Returns:
        The text with secrets replaced by ``***`` (the same object when nothing matched).
    """
    if not isinstance(text, str) or not text:
        return text
    pattern = _compiled()
    out = pattern.sub(MASK, text) if pattern is not None else text
    if "earer" in out or "asic" in out:
        out = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", out)
    if "@" in out:
        out = _USERINFO.sub(lambda m: f"{m.group(1)}{MASK}@", out)
    if "=" in out:
        out = _QUERY_KEY.sub(lambda m: m.group(1) + MASK, out)
    return out


def scrub_value(value: Any, _depth: int = 0) -> Any:
    """A copy of a decoded JSON value (an error body) with :func:`scrub` applied to every string."""
    if isinstance(value, str):
        return scrub(value)
    if _depth > 32:
        return value
    if isinstance(value, Mapping):
        return {k: scrub_value(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_value(v, _depth + 1) for v in value]
    return value


def safe_url(url: str) -> str:
    """``url`` without user info and query string: the origin and path only, safe to print."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return scrub(url.split("?", 1)[0])
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    return scrub(urlunsplit((parts.scheme, netloc, parts.path, "", "")))
