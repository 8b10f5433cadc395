"""An Ingress TLS host that the referenced secret's certificate does not cover is flagged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from tests.conftest import CAPTURES, delivered, make_config, make_event, post_capture
from webhook.server.app import create_app


def _ingress(name: str, host: str, secret: str, audit_id: str) -> dict[str, Any]:
    spec = {
        "tls": [{"hosts": [host], "secretName": secret}],
        "rules": [
            {
                "host": host,
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": "web", "port": {"number": 80}}},
                        }
                    ]
                },
            }
        ],
    }
    obj = {
        "kind": "Ingress",
        "apiVersion": "networking.k8s.io/v1",
        "metadata": {"name": name, "namespace": "shop", "resourceVersion": "900"},
        "spec": spec,
    }
    return make_event(
        name=name, audit_id=audit_id, requestObject=obj, responseObject=obj, level="RequestResponse"
    )


async def test_hosts_outside_the_certificate_are_flagged(aiohttp_client: Any, tmp_path: Path) -> None:
    """A03 stores shop-tls (SANs shop.example.test, www.shop.example.test); an Ingress using it
    for a host it covers raises nothing, for another host raises tls-host-not-in-certificate."""
    from tests.conftest import event_list

    config = make_config(tmp_path)
    client: TestClient[Any, Any] = await aiohttp_client(create_app(config))
    assert (await post_capture(client, CAPTURES / "0007.json"))[0] == 200
    covered = _ingress("ok", "www.shop.example.test", "shop-tls", "00000000-0000-4000-8000-00000000000a")
    outside = _ingress("bad", "api.other.test", "shop-tls", "00000000-0000-4000-8000-00000000000b")
    unknown = _ingress("new", "api.other.test", "never-seen", "00000000-0000-4000-8000-00000000000c")
    resp = await client.post(
        "/audit", data=event_list(covered, outside, unknown), headers={"Content-Type": "application/json"}
    )
    assert resp.status == 200

    by_name = {r["object"]["name"]: {f["id"] for f in r["findings"]} for r in await delivered(client, config)}
    assert "tls-host-not-in-certificate" not in by_name["ok"]
    assert "tls-host-not-in-certificate" in by_name["bad"]
    assert "tls-host-not-in-certificate" not in by_name["new"]  # the certificate is not known
    assert "tls-secret-unknown" in by_name["new"]
