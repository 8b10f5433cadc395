"""Who the client is (X-Forwarded-For only through trusted proxies) and whether it is trusted.

The logged address is the controller's peer. When that peer is one of ``trusted_proxies`` (a
load balancer, a CDN), the client is the right-most X-Forwarded-For address that is not itself
a trusted proxy: everything left of it was written by the client and proves nothing. A peer
that is not a trusted proxy is the client, whatever X-Forwarded-For it sent.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Final

from webhook.access.entry import AccessEntry
from webhook.core.net import Network, parse_networks
from webhook.record.access import AccessClient, Trust

__all__ = ["ClientClassifier", "parse_ip", "status_class"]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_CLASSES: Final = ("1xx", "2xx", "3xx", "4xx", "5xx")
_CACHE_ENTRIES: Final = 16384


def status_class(status: int) -> str:
    """``2xx`` … ``5xx``; anything outside 100-599 is ``other``."""
    index = status // 100 - 1
    return _CLASSES[index] if 0 <= index < 5 else "other"


def parse_ip(text: str) -> Address | None:
    """An address as logged: plain, ``[v6]``, or with a port (``1.2.3.4:80``, ``[::1]:80``)."""
    text = text.strip()
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else text
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    else:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _inside(address: Address, networks: tuple[Network, ...]) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address.version == net.version and address in net for net in networks)


class ClientClassifier:
    def __init__(self, trusted_cidrs: Sequence[str], trusted_proxies: Sequence[str] = ()) -> None:
        self._trusted = parse_networks(trusted_cidrs, where="trusted_cidrs")
        self._proxies = parse_networks(trusted_proxies, where="trusted_proxies")
        self.has_proxies = bool(self._proxies)
        self._cache: dict[str, Trust] = {}

    def trust(self, ip: str) -> Trust:
        if not self._trusted:
            return "unknown"
        cached = self._cache.get(ip)
        if cached is not None:
            return cached
        address = parse_ip(ip)
        trust: Trust = "unknown"
        if address is not None:
            trust = "trusted" if _inside(address, self._trusted) else "untrusted"
        if len(self._cache) >= _CACHE_ENTRIES:
            self._cache.clear()  # bounded: heavy hitters come back at once
        self._cache[ip] = trust
        return trust

    def _is_proxy(self, ip: str) -> bool:
        address = parse_ip(ip)
        return address is not None and _inside(address, self._proxies)

    def client_ip(self, peer: str, forwarded_for: str | None) -> str:
        """The client's address: ``peer`` unless it is a trusted proxy that forwarded for someone."""
        if not self._proxies or not forwarded_for or not self._is_proxy(peer):
            return peer
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        for hop in reversed(hops):
            if not self._is_proxy(hop):
                address = parse_ip(hop)
                return str(address) if address is not None else hop[:64]
        return hops[0] if hops else peer  # every hop is a proxy: the left-most is the furthest

    def client(self, entry: AccessEntry) -> AccessClient:
        ip = self.client_ip(entry.client_ip, entry.forwarded_for)
        return AccessClient(
            ip=ip, trust=self.trust(ip), peer=entry.client_ip if ip != entry.client_ip else None
        )
