from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.conftest import find_event, make_event
from webhook.enrich.objects import (
    Backend,
    IngressPath,
    IngressRule,
    IngressSummary,
    IngressTLS,
    ingress_summary,
    object_of,
)

MARKER = "s3cr3t-marker-value"
_PATH = {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}
_TLS = {"hosts": ["a.example.com"], "secretName": "a-tls"}
_RESOURCE = {"resource": {"apiGroup": "k8s.example.com", "kind": "Bucket", "name": "assets"}}


def test_captured_ingress_with_tls() -> None:
    """A05's stored Ingress: class, host, path, service backend, TLS host and secret."""
    event = find_event("0009.json", stage="ResponseComplete", verb="create")
    ingress = object_of(event, "Ingress")
    assert ingress is not None

    summary = ingress_summary(ingress)

    assert summary.ingress_class == "nginx-test"
    assert summary.hosts == ("shop.example.test",)
    assert summary.rules == (
        IngressRule(
            host="shop.example.test",
            paths=(
                IngressPath(
                    path="/",
                    path_type="Prefix",
                    backend=Backend(service="shop-frontend", port=80),
                ),
            ),
        ),
    )
    assert summary.tls == (IngressTLS(hosts=("shop.example.test",), secret_name="shop-tls"),)
    assert summary.tls_hosts == ("shop.example.test",)
    assert summary.default_backend is None


def test_named_port_and_hosts_deduplicated() -> None:
    """A port given by name is kept as a string; a host used by two rules is listed once."""
    summary = ingress_summary(
        {
            "spec": {
                "rules": [
                    {
                        "host": "a.test",
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "backend": {"service": {"name": "s", "port": {"name": "https"}}},
                                }
                            ]
                        },
                    },
                    {"host": "a.test", "http": {"paths": []}},
                    {"host": "b.test"},
                    {
                        "http": {
                            "paths": [
                                {"path": "/x", "backend": {"service": {"name": "t", "port": {"number": 81}}}}
                            ]
                        }
                    },
                ],
                "tls": [{"hosts": ["a.test", "b.test"], "secretName": "ab"}, {"hosts": ["a.test"]}],
            }
        }
    )

    assert summary.hosts == ("a.test", "b.test")
    assert summary.rules[0].paths[0].backend == Backend(service="s", port="https")
    assert summary.rules[3].host is None
    assert summary.rules[3].paths[0].backend == Backend(service="t", port=81)
    assert summary.tls_hosts == ("a.test", "b.test")
    assert summary.tls[1] == IngressTLS(hosts=("a.test",), secret_name=None)


def test_legacy_backend_shape() -> None:
    """``serviceName``/``servicePort`` (networking v1beta1, old last-applied annotations)."""
    summary = ingress_summary(
        {
            "metadata": {"annotations": {"kubernetes.io/ingress.class": "nginx"}},
            "spec": {
                "backend": {"serviceName": "fallback", "servicePort": "http"},
                "rules": [
                    {
                        "host": "old.test",
                        "http": {
                            "paths": [{"path": "/", "backend": {"serviceName": "web", "servicePort": 8080}}]
                        },
                    }
                ],
            },
        }
    )

    assert summary.ingress_class == "nginx"
    assert summary.default_backend == Backend(service="fallback", port="http")
    assert summary.rules[0].paths[0].backend == Backend(service="web", port=8080)


def test_class_name_wins_over_the_annotation() -> None:
    """``spec.ingressClassName`` is the class; the legacy annotation only when it is absent."""
    summary = ingress_summary(
        {
            "metadata": {"annotations": {"kubernetes.io/ingress.class": "old"}},
            "spec": {"ingressClassName": "new"},
        }
    )
    assert summary.ingress_class == "new"


def test_default_backend_and_resource_backend() -> None:
    """``spec.defaultBackend`` is summarized; a resource backend is ``group/kind/name``."""
    summary = ingress_summary(
        {
            "spec": {
                "defaultBackend": {"service": {"name": "catch-all", "port": {"number": 80}}},
                "rules": [
                    {
                        "host": "static.test",
                        "http": {
                            "paths": [
                                {
                                    "path": "/assets",
                                    "pathType": "ImplementationSpecific",
                                    "backend": {
                                        "resource": {
                                            "apiGroup": "k8s.example.com",
                                            "kind": "StorageBucket",
                                            "name": "assets",
                                        }
                                    },
                                }
                            ]
                        },
                    }
                ],
            }
        }
    )

    assert summary.default_backend == Backend(service="catch-all", port=80)
    assert summary.rules[0].paths[0].backend == Backend(resource="k8s.example.com/StorageBucket/assets")


@pytest.mark.parametrize(
    "ingress",
    [
        {},
        {"spec": None},
        {"spec": "x"},
        {"spec": {"rules": "x", "tls": {"hosts": "x"}}},
        {"spec": {"rules": [None, 1, {"host": 5, "http": {"paths": [None, {"backend": []}]}}]}},
        {"spec": {"tls": [{"hosts": "a.test", "secretName": 1}]}},
        {"metadata": [], "spec": {"backend": {"service": {"port": "80"}}}},
    ],
)
def test_odd_shapes_are_left_out_not_fatal(ingress: dict[str, Any]) -> None:
    """Objects are client-written JSON: parts with unexpected shapes are skipped."""
    summary = ingress_summary(ingress)
    assert all(isinstance(h, str) for h in summary.hosts)
    assert all(isinstance(h, str) for h in summary.tls_hosts)


def test_object_of_prefers_the_stored_object() -> None:
    """The responseObject (after the change) wins over the requestObject."""
    event = make_event(
        requestObject={"kind": "Ingress", "spec": {"rules": [{"host": "sent.test"}]}},
        responseObject={"kind": "Ingress", "spec": {"rules": [{"host": "stored.test"}]}},
    )
    obj = object_of(event, "Ingress")
    assert obj is not None
    assert ingress_summary(obj).hosts == ("stored.test",)


def test_object_of_skips_patches_statuses_and_tables() -> None:
    """A JSON patch (array), a delete's Status and a Table are not the object."""
    json_patch = find_event("0017.json", stage="ResponseComplete", verb="patch")
    assert isinstance(json_patch["requestObject"], list)
    assert object_of({**json_patch, "responseObject": None}, "Ingress") is None

    delete = find_event("0050.json", stage="ResponseComplete", verb="delete")
    assert delete["responseObject"]["kind"] == "Status"
    assert object_of(delete, "Ingress") is None

    table = find_event("0022.json", stage="ResponseComplete", verb="get")
    assert table["responseObject"]["kind"] == "Table"
    assert object_of(table, "Secret") is None

    assert object_of(make_event(), "Ingress") is None


@pytest.mark.parametrize(
    "spec",
    [
        {"rules": [{"host": "a.example.com", "http": {"paths": [_PATH]}}], "tls": [_TLS]},
        {"defaultBackend": {"service": {"name": "web", "port": {"name": "http"}}}},
        {
            "ingressClassName": "nginx",
            "rules": [
                {"http": {"paths": [{"path": "/x", "pathType": "Exact", "backend": _RESOURCE}]}},
                {"host": "*.example.com"},
            ],
        },
    ],
    ids=["rules-and-tls", "default-backend", "resource-backend"],
)
def test_a_summary_reads_back_from_its_json(spec: dict[str, Any]) -> None:
    """What observers read from a record's ``ingress`` is the summary it was written from."""
    summary = ingress_summary({"kind": "Ingress", "metadata": {"name": "web"}, "spec": spec})
    assert IngressSummary.from_json(orjson.loads(orjson.dumps(summary))) == summary
