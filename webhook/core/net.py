"""Addresses and networks as the config writes them: CIDR lists, ``host:port``, loopback.

One parser for every CIDR list, so that each reports a bad entry the same way: by its place in
the config (``$.actors.trusted_cidrs[2]``), never by its value. Its error is a ValueError (this
layer knows no config): the config loader turns it into a ConfigError listing the problems.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

__all__ = ["Network", "NetworkError", "is_loopback", "parse_networks", "split_address"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class NetworkError(ValueError):
    """Entries of a CIDR list that are not networks; ``problems`` names each by its place."""

    def __init__(self, problems: tuple[str, ...]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def parse_networks(values: Iterable[str], *, where: str) -> tuple[Network, ...]:
    """Each value as a network, host bits allowed (``10.0.0.1/8``); a bare address is a /32 or /128.

    Raises NetworkError whose ``problems`` name each bad entry as ``where[index]: not an IP network``.
    """
    networks: list[Network] = []
    problems: list[str] = []
    for index, value in enumerate(values):
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            problems.append(f"{where}[{index}]: not an IP network")
    if problems:
        raise NetworkError(tuple(problems))
    return tuple(networks)


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` into its parts; raises ValueError."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError("expected host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    number = int(port)
    if number > 65535:
        raise ValueError("port out of range")
    return host, number


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address; a name other than ``localhost`` is not trusted to be."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
