"""Key auth for the proxy: one master key, compared in constant time.

The comparison is :func:`hmac.compare_digest` over SHA-256 digests of both keys, so neither
the position of the first wrong byte nor the key's length shows in the timing. The key is
never echoed: a wrong key gets the same answer as a missing one, minus the hint.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Mapping

from rxllm.proxy.errors import ProxyError

__all__ = ["KeyChecker", "is_loopback", "presented_keys"]


class KeyChecker:
    """Checks the proxy key a request presents against the master key.

    Accepted, as the clients send it: ``Authorization: Bearer <key>`` (OpenAI's SDKs; only
    the ``Bearer`` scheme), ``x-api-key: <key>`` (Anthropic's SDK) and ``api-key: <key>``
    (Azure OpenAI clients). The request passes if any of them carries the master key.

    Args:
        master_key: The key clients must present.
    """

    __slots__ = ("_digest",)

    def __init__(self, master_key: str) -> None:
        self._digest = hashlib.sha256(master_key.encode()).digest()

    def __repr__(self) -> str:
        return "KeyChecker(master_key=***)"

    def check(self, headers: Mapping[str, str]) -> None:
        """Return if the request carries the master key, else raise.

        Raises:
            ProxyError: 401 with an OpenAI-style message.
        """
        given = presented_keys(headers)
        if not given:
            raise ProxyError(
                "missing API key: send 'Authorization: Bearer <key>' (or 'x-api-key: <key>') with the "
                "proxy's master key",
                status_code=401,
                code="invalid_api_key",
            )
        matched = False
        for key in given:  # compare every candidate: the timing does not tell which one matched
            digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
            matched |= hmac.compare_digest(digest, self._digest)
        if not matched:
            raise ProxyError("invalid API key", status_code=401, code="invalid_api_key")


def presented_keys(headers: Mapping[str, str]) -> list[str]:
    """The keys a request presents: a ``Bearer`` token, ``x-api-key`` and ``api-key`` values."""
    keys = []
    scheme, _, token = headers.get("Authorization", "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer" and token:
        keys.append(token)
    for name in ("x-api-key", "api-key"):
        value = headers.get(name, "").strip()
        if value:
            keys.append(value)
    return keys


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` exposes the proxy only to this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
