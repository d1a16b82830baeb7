"""Bearer-key auth for the proxy: one master key, compared in constant time.

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

__all__ = ["KeyChecker", "is_loopback"]


class KeyChecker:
    """Checks ``Authorization: Bearer <key>`` headers against the master key.

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
        header = headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ProxyError(
                "missing API key: send 'Authorization: Bearer <key>' with the proxy's master key",
                status_code=401,
                code="invalid_api_key",
            )
        given = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        if not hmac.compare_digest(given, self._digest):
            raise ProxyError("invalid API key", status_code=401, code="invalid_api_key")


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` exposes the proxy only to this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
