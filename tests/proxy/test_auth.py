"""Which hosts count as loopback (serving there needs no master key), and the keys a request presents."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from rxllm.proxy.auth import is_loopback, presented_keys


class TestIsLoopback:
    @given(st.ip_addresses())
    def test_an_address_is_loopback_exactly_when_the_standard_library_says_so(
        self, address: ipaddress.IPv4Address | ipaddress.IPv6Address
    ) -> None:
        """Any IPv4 or IPv6 address, bracketed or not, is loopback iff ``ipaddress`` calls it loopback."""
        assert is_loopback(str(address)) is address.is_loopback
        assert is_loopback(f"[{address}]") is address.is_loopback

    def test_localhost_is_loopback(self) -> None:
        """The name ``localhost`` binds this machine only."""
        assert is_loopback("localhost") is True

    def test_other_names_and_wildcards_are_not(self) -> None:
        """Host names other than localhost, the wildcard addresses and garbage are not loopback."""
        for host in ("example.com", "0.0.0.0", "::", "", "localhost.evil", "127.0.0.1.nip.io"):
            assert is_loopback(host) is False, host


class TestPresentedKeys:
    def test_bearer_and_both_key_headers_in_order(self) -> None:
        """A Bearer token, then x-api-key, then api-key; blanks and other schemes are ignored."""
        headers = {"Authorization": "Bearer  tok ", "x-api-key": " xk", "api-key": ""}
        assert presented_keys(headers) == ["tok", "xk"]
        assert presented_keys({"Authorization": "Basic abc"}) == []
        assert presented_keys({"Authorization": "bearer t", "api-key": "a"}) == ["t", "a"]
