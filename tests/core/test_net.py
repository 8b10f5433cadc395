"""One CIDR parser, ``host:port`` splitting and the loopback test."""

from __future__ import annotations

import ipaddress

import pytest

from webhook.core.net import NetworkError, is_loopback, parse_networks, split_address


def test_networks_allow_host_bits_and_bare_addresses() -> None:
    """``10.1.2.3/8`` is 10.0.0.0/8; a bare address is a /32 (or /128)."""
    assert parse_networks(["10.1.2.3/8", "192.0.2.7", "2001:db8::1/32"], where="$.x") == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.0.2.7/32"),
        ipaddress.ip_network("2001:db8::/32"),
    )
    assert parse_networks((), where="$.x") == ()


def test_each_bad_network_is_named_by_its_place_never_its_value() -> None:
    """Every bad entry is listed as ``where[index]``; the value itself is not repeated."""
    with pytest.raises(NetworkError) as failure:
        parse_networks(["10.0.0.0/8", "s3cr3t-not-a-cidr", "10.0.0.0/33"], where="$.actors.trusted_cidrs")

    assert failure.value.problems == (
        "$.actors.trusted_cidrs[1]: not an IP network",
        "$.actors.trusted_cidrs[2]: not an IP network",
    )
    assert "s3cr3t" not in str(failure.value)
    assert isinstance(failure.value, ValueError)


@pytest.mark.parametrize(
    ("address", "expected"),
    [("127.0.0.1:5514", ("127.0.0.1", 5514)), ("[::1]:80", ("::1", 80)), ("host:0", ("host", 0))],
)
def test_split_address(address: str, expected: tuple[str, int]) -> None:
    """``host:port`` and ``[v6]:port``."""
    assert split_address(address) == expected


@pytest.mark.parametrize("address", ["5514", ":5514", "host:", "host:x", "host:65536"])
def test_split_address_refuses(address: str) -> None:
    """No port, no host, a port that is not a number or is out of range: ValueError."""
    with pytest.raises(ValueError, match=r"host:port|out of range"):
        split_address(address)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("0.0.0.0", False),
        ("10.0.0.1", False),
        ("localhost.example.com", False),
        ("", False),
    ],
)
def test_is_loopback(host: str, expected: bool) -> None:
    """``localhost`` and loopback addresses; any other name is not taken on trust."""
    assert is_loopback(host) is expected
