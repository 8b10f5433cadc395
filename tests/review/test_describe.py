"""How the review reads a record: what counts as a reviewed change, and change summaries."""

from __future__ import annotations

from typing import Any

import pytest

from webhook.review.describe import category, change_data, secret_keys, secret_type
from webhook.review.text import change_text


def obj(resource: str, group: str = "", namespace: str | None = "shop", name: str = "x") -> dict[str, Any]:
    return {"resource": resource, "api_group": group, "namespace": namespace, "name": name}


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"object": obj("ingresses", "networking.k8s.io")}, "ingress"),
        ({"object": obj("ingresses", "extensions")}, "ingress"),
        ({"object": obj("ingressclasses", "networking.k8s.io", None)}, "ingress-class"),
        ({"object": obj("httproutes", "gateway.networking.k8s.io")}, "gateway"),
        ({"object": obj("configmaps", "", "kube-system", "coredns")}, "dns"),
        ({"object": obj("configmaps", "", "kube-system", "other")}, None),
        ({"object": obj("secrets"), "secret": {"type": "kubernetes.io/tls"}}, "tls-secret"),
        ({"object": obj("secrets"), "secret": {"type": "Opaque", "certificates": []}}, "secret"),
        (
            {
                "object": obj("secrets"),
                "change": {"operations": [{"path": "/type", "old": "kubernetes.io/tls"}]},
            },
            "tls-secret",
        ),
        ({"object": obj("secrets")}, "secret"),  # Metadata level: no body, still a Secret
        ({"object": None, "request_uri": "/version"}, None),
    ],
)
def test_category(doc: dict[str, Any], expected: str | None) -> None:
    """Which writes the review lists, and under which kind of object."""
    assert category(doc) == expected


def test_a_secret_seen_as_tls_stays_tls() -> None:
    """A later record without the body (Metadata level, delete) is still a TLS secret's."""
    assert (
        category({"object": obj("secrets", name="web-tls")}, {"shop/web-tls": "kubernetes.io/tls"})
        == "tls-secret"
    )


def test_change_data_names_paths_and_keys_never_values() -> None:
    """Operations by path, key names by what happened to them; no old or new value appears."""
    doc = {
        "object": obj("secrets"),
        "change": {
            "baseline": "state",
            "operations": [
                {"op": "replace", "path": "/data/password", "old": "hmac-sha256:aa", "new": "hmac-sha256:bb"},
                {"op": "add", "path": "/data/token", "old": None, "new": "hmac-sha256:cc"},
                {"op": "remove", "path": "/data/old", "old": "hmac-sha256:dd", "new": None},
                {"op": "add", "path": "/metadata/annotations/a~1b", "old": None, "new": "s3cr3t-looking"},
            ],
            "omitted_operations": 2,
        },
        "secret": {"changes": {"added": ["token"], "changed": ["password"], "removed": ["old"]}},
    }

    data = change_data(doc)
    summary = change_text(data)

    assert data["operations_total"] == 6
    assert [op["path"] for op in data["operations"]] == [
        "/data/password",
        "/data/token",
        "/data/old",
        "/metadata/annotations/a~1b",
    ]
    assert (data["keys_added"], data["keys_changed"], data["keys_removed"]) == (
        ["token"],
        ["password"],
        ["old"],
    )
    assert summary == (
        "6 ops: ~/data/password, +/data/token, -/data/old (+3 more); "
        "keys added: token; keys changed: password; keys removed: old"
    )
    for text in (summary, str(data)):
        assert "hmac" not in text
        assert "s3cr3t" not in text
    assert change_text(change_data({"change": {"baseline": "unavailable", "operations": []}})) == (
        "baseline unavailable"
    )
    assert change_text(change_data({"change": {"baseline": "none", "operations": []}})) == (
        "no earlier state to diff"
    )


def test_secret_keys_from_the_diff_when_the_request_does_not_say() -> None:
    """An update (no ``secret.changes``): key names from ``/data/<key>`` paths, a delete's whole
    ``/data`` by its keys; the type from ``/type``; never a value."""
    update = {
        "object": obj("secrets"),
        "secret": {"type": "Opaque", "changes": None},
        "change": {
            "operations": [
                {
                    "op": "replace",
                    "path": "/data/db~1password",
                    "old": "hmac-sha256:1",
                    "new": "hmac-sha256:2",
                },
                {"op": "add", "path": "/stringData/extra", "old": None, "new": "hmac-sha256:3"},
            ]
        },
    }
    delete = {
        "object": obj("secrets"),
        "change": {
            "operations": [
                {"op": "remove", "path": "/data", "old": {"a": "hmac-sha256:4", "b": "hmac-sha256:5"}},
                {"op": "remove", "path": "/type", "old": "kubernetes.io/tls", "new": None},
            ]
        },
    }

    assert secret_keys(update) == {"added": ["extra"], "changed": ["db/password"], "removed": []}
    assert secret_keys(delete) == {"added": [], "changed": [], "removed": ["a", "b"]}
    assert secret_type(delete) == "kubernetes.io/tls"
    assert secret_type({"object": obj("secrets")}) is None
