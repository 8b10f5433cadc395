"""How the review reads a record: what counts as a reviewed change, and change summaries."""

from __future__ import annotations

from typing import Any

import pytest

from webhook.report_describe import category, change_summary


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
        ({"object": obj("secrets"), "secret": {"type": "Opaque", "certificates": []}}, None),
        (
            {
                "object": obj("secrets"),
                "change": {"operations": [{"path": "/type", "old": "kubernetes.io/tls"}]},
            },
            "tls-secret",
        ),
        ({"object": obj("secrets")}, None),
        ({"object": None, "request_uri": "/version"}, None),
    ],
)
def test_category(doc: dict[str, Any], expected: str | None) -> None:
    """Which writes the review lists, and under which kind of object."""
    assert category(doc) == expected


def test_a_secret_seen_as_tls_stays_tls() -> None:
    """A later record without the body (Metadata level, delete) is still a TLS secret's."""
    assert category({"object": obj("secrets", name="web-tls")}, {"shop/web-tls"}) == "tls-secret"


def test_change_summary_names_paths_and_keys_never_values() -> None:
    """Operations by path, key names by what happened to them; no old or new value appears."""
    doc = {
        "change": {
            "baseline": "state",
            "operations": [
                {"op": "replace", "path": "/data/password", "old": "hmac-sha256:aa", "new": "hmac-sha256:bb"},
                {"op": "add", "path": "/data/token", "old": None, "new": "hmac-sha256:cc"},
                {"op": "remove", "path": "/data/old", "old": "hmac-sha256:dd", "new": None},
                {"op": "add", "path": "/metadata/labels/x", "old": None, "new": "s3cr3t-looking"},
            ],
            "omitted_operations": 2,
        },
        "secret": {"changes": {"added": ["token"], "changed": ["password"], "removed": ["old"]}},
    }

    summary = change_summary(doc)

    assert summary == (
        "6 ops: ~/data/password, +/data/token, -/data/old (+3 more); "
        "keys added: token; keys changed: password; keys removed: old"
    )
    assert "hmac" not in summary
    assert "s3cr3t" not in summary
    assert change_summary({"change": {"baseline": "unavailable", "operations": []}}) == "baseline unavailable"
    assert (
        change_summary({"change": {"baseline": "none", "operations": []}}) == "new: no earlier state to diff"
    )
