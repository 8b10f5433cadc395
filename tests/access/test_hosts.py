"""The host index: which ingress serves a host and path, and what last changed it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.access.access_lines import ingress_object
from webhook.access.clients import ClientClassifier, parse_ip, status_class
from webhook.access.hosts import HostIndex
from webhook.state.base import StoredObject


def stored(obj: dict[str, Any] | None, *, deleted: bool = False) -> StoredObject:
    return StoredObject(object=obj, resource_version="1", audit_id="a", time=None, deleted=deleted)


def index_of(*objects: dict[str, Any]) -> HostIndex:
    index = HostIndex()
    index.load(
        {
            f"networking.k8s.io/ingresses/{o['metadata']['namespace']}/{o['metadata']['name']}": stored(o)
            for o in objects
        }
    )
    return index


def two_paths() -> dict[str, Any]:
    obj = ingress_object("api", host="shop.example.com", service="api", port=8080, tls_name=None)
    obj["spec"]["rules"][0]["http"]["paths"] = [
        {
            "path": "/api",
            "pathType": "Prefix",
            "backend": {"service": {"name": "api", "port": {"number": 8080}}},
        },
        {
            "path": "/health",
            "pathType": "Exact",
            "backend": {"service": {"name": "hc", "port": {"name": "http"}}},
        },
    ]
    return obj


def test_longest_prefix_exact_and_wildcard_hosts() -> None:
    """/api/x goes to the /api rule, /apix does not; Exact matches only itself; *.x matches one label."""
    wildcard = ingress_object("wild", host="*.example.org", service="w")
    index = index_of(ingress_object(), two_paths(), wildcard)

    def name(host: str | None, path: str | None, upstream: str | None = None) -> str | None:
        served = index.lookup(host, path, upstream)
        return served.ingress.name if served is not None else None

    assert name("shop.example.com", "/api/items") == "api"
    assert name("shop.example.com", "/apix") == "web"
    assert name("shop.example.com", "/health") == "api"
    assert name("shop.example.com", "/health/deep") == "web"
    assert name("a.example.org", "/") == "wild"
    assert name("a.b.example.org", "/") is None
    assert name("unknown.example", "/") is None
    assert name(None, None, "shop-api-8080") == "api"
    assert name(None, None, "shop-hc-http") == "api"
    assert name(None, None, "shop-nothing-80") is None


def test_tls_state_comes_from_spec_tls() -> None:
    """A host listed under spec.tls is tls with its secret; another host of the ingress is not."""
    index = index_of(ingress_object(), two_paths())

    web = index.lookup("shop.example.com", "/")
    assert web is not None
    assert (web.ingress.tls, web.ingress.tls_secret, web.ingress.ingress_class) == (True, "shop-tls", "nginx")
    api = index.lookup("shop.example.com", "/api")
    assert api is not None
    assert api.ingress.tls is False


def test_deleted_and_metadata_only_objects_are_not_indexed() -> None:
    """Tombstones and objects without content add no routes."""
    index = HostIndex()
    loaded = index.load(
        {
            "networking.k8s.io/ingresses/shop/gone": stored(None, deleted=True),
            "networking.k8s.io/ingresses/shop/meta": stored(None),
            "networking.k8s.io/ingresses/shop/web": stored(ingress_object()),
        }
    )

    assert loaded == 1
    assert len(index) == 1
    assert index.hosts_of("shop", "web") == ("shop.example.com",)


@pytest.mark.parametrize(
    ("status", "expected"),
    [(200, "2xx"), (101, "1xx"), (404, "4xx"), (503, "5xx"), (0, "other"), (999, "other")],
)
def test_status_class(status: int, expected: str) -> None:
    assert status_class(status) == expected


def test_client_trust_with_ipv6_ports_and_mapped_addresses() -> None:
    """Trusted by network, IPv4-mapped IPv6 counts as IPv4, ports are ignored, junk is unknown."""
    classifier = ClientClassifier(["10.0.0.0/8", "fd00::/8"])

    assert classifier.trust("10.1.2.3") == "trusted"
    assert classifier.trust("::ffff:10.1.2.3") == "trusted"
    assert classifier.trust("[fd00::1]:443") == "trusted"
    assert classifier.trust("203.0.113.1:8080") == "untrusted"
    assert classifier.trust("not-an-ip") == "unknown"
    assert ClientClassifier([]).trust("10.1.2.3") == "unknown"
    assert parse_ip("[::1]") is not None


def test_forwarded_for_through_a_chain_of_proxies() -> None:
    """Proxies are skipped from the right; a spoofed left part is never the client when a real
    hop precedes it; when every hop is a proxy, the left-most is."""
    classifier = ClientClassifier([], ["192.0.2.0/24", "10.0.0.0/8"])

    assert classifier.client_ip("10.0.0.5", "1.1.1.1, 203.0.113.9, 192.0.2.1") == "203.0.113.9"
    assert classifier.client_ip("10.0.0.5", "192.0.2.7, 192.0.2.1") == "192.0.2.7"
    assert classifier.client_ip("10.0.0.5", " , ") == "10.0.0.5"
    assert classifier.client_ip("10.0.0.5", "garbage-value") == "garbage-value"
