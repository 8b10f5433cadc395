"""Helpers for the access pipeline tests: ingress-nginx lines and Ingress objects."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from webhook.access.hosts import HostIndex
from webhook.access.parsers import build_parser
from webhook.access.pipeline import AccessPipeline
from webhook.access.settings import AccessConfig
from webhook.state.base import StoredObject

T0 = datetime(2026, 11, 25, 21, 0, tzinfo=UTC).timestamp()


def nginx_line(
    *,
    t: float = T0,
    addr: str = "203.0.113.7",
    request: str = "GET /api/items?page=2&token=s3cr3t HTTP/1.1",
    status: int = 200,
    upstream: str = "[shop-web-80]",
    took: float = 0.012,
    req_id: str = "0f0e0d0c0b0a09080706050403020100",
) -> bytes:
    """One line of ingress-nginx's default ``log-format-upstream`` (it logs no $host)."""
    when = datetime.fromtimestamp(t, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
    return (
        f'{addr} - - [{when}] "{request}" {status} 612 "https://ref.example/p?x=1" "curl/8.5.0" '
        f"523 {took:.3f} {upstream} [] 10.244.1.7:8080 612 {took:.3f} {status} {req_id}"
    ).encode()


def ingress_object(
    name: str = "web",
    namespace: str = "shop",
    host: str = "shop.example.com",
    *,
    service: str = "web",
    port: int = 80,
    tls_name: str | None = "shop-tls",
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "ingressClassName": "nginx",
        "rules": [
            {
                "host": host,
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": service, "port": {"number": port}}},
                        }
                    ]
                },
            }
        ],
    }
    if tls_name:
        spec["tls"] = [{"hosts": [host], "secretName": tls_name}]
    return {"kind": "Ingress", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def shop_index() -> HostIndex:
    index = HostIndex()
    index.load(
        {
            "networking.k8s.io/ingresses/shop/web": StoredObject(
                object=ingress_object(), resource_version="1", audit_id="a", time=None
            )
        }
    )
    return index


def pipeline(
    config: AccessConfig | None = None, index: HostIndex | None = None, replica: str | None = None
) -> AccessPipeline:
    config = config or AccessConfig(enabled=True)
    return AccessPipeline(
        config,
        cluster="test-cluster",
        parser=build_parser(config.format, config.field_map),
        index=index or shop_index(),
        trusted_cidrs=("10.0.0.0/8",),
        replica=replica,
    )
