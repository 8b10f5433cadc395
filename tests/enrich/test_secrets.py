"""Secret summaries, key changes and secret findings, built from what the redaction stage reports."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.conftest import find_event, make_event, scenario_secrets
from webhook.enrich.actor import actor_of
from webhook.enrich.secrets import key_changes, secret_findings, secret_list, secret_summary
from webhook.redact.redactor import Redactor

REDACTOR = Redactor(b"k" * 32)


def _redacted(event: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    result = REDACTOR.redact(event)
    return result.event, result.secrets


@pytest.mark.parametrize(
    ("capture", "type_", "keys"),
    [
        ("0007.json", "kubernetes.io/tls", ("tls.crt", "tls.key")),
        ("0011.json", "Opaque", ("password", "username")),
        ("0013.json", "Opaque", ("api-key", "webhook-secret")),
    ],
)
def test_captured_secret_summary(capture: str, type_: str, keys: tuple[str, ...]) -> None:
    """A03, A06, A08: type, sorted key names, one fingerprint per key, all keys added; no value."""
    event, secrets = _redacted(
        find_event(capture, stage="ResponseComplete", verb="create", resource="secrets")
    )

    summary = secret_summary(event, secrets)

    assert summary is not None
    assert (summary.type, summary.keys) == (type_, keys)
    assert [f.name for f in summary.fingerprints] == list(keys)
    assert all(f.fingerprint.startswith("hmac-sha256:") and f.size > 0 for f in summary.fingerprints)
    assert summary.changes is not None
    assert (summary.changes.basis, summary.changes.added) == ("create", keys)
    dumped = orjson.dumps(summary)
    assert not [v for v in scenario_secrets() if len(v) > 3 and v.encode() in dumped]


def test_tls_secret_summary_has_the_certificate() -> None:
    """A03's certificate: the SANs the fixture states, self-signed, and the key matches."""
    event, secrets = _redacted(
        find_event("0007.json", stage="ResponseComplete", verb="create", resource="secrets")
    )

    summary = secret_summary(event, secrets)

    assert summary is not None
    (cert,) = summary.certificates
    assert set(cert.sans) == {"shop.example.test", "www.shop.example.test"}
    assert cert.self_signed
    assert summary.key_matches_certificate is True


@pytest.mark.parametrize(
    ("request_object", "expected"),
    [
        (
            [
                {"op": "add", "path": "/data/new", "value": "x"},
                {"op": "remove", "path": "/data/old"},
                {"op": "replace", "path": "/data/a~1b", "value": "y"},
                {"op": "move", "from": "/data/m", "path": "/data/n"},
                {"op": "replace", "path": "/metadata/labels/x", "value": "z"},
            ],
            ("json-patch", ("n", "new"), ("m", "old"), ("a/b",)),
        ),
        (
            {"data": {"a": "eA==", "gone": None}, "stringData": {"b": "x"}},
            ("merge-patch", (), ("gone",), ("a", "b")),
        ),
    ],
    ids=["json-patch", "merge-patch"],
)
def test_key_changes_from_patches(request_object: Any, expected: tuple[Any, ...]) -> None:
    """A patch says which keys it adds, removes or changes; paths are RFC 6901-unescaped."""
    changes = key_changes({"verb": "patch", "requestObject": request_object}, ())

    assert changes is not None
    assert (changes.basis, changes.added, changes.removed, changes.changed) == expected


def test_updates_and_reads_do_not_guess_changes() -> None:
    """Without the previous object, an update or a read says nothing about key changes."""
    assert key_changes({"verb": "update", "requestObject": {"data": {"a": "x"}}}, ("a",)) is None
    assert key_changes({"verb": "get"}, ("a",)) is None
    assert key_changes({"verb": "patch", "requestObject": {"metadata": {"labels": {}}}}, ()) is None


def test_list_of_secrets_names_what_was_read() -> None:
    """A15: a SecretList response lists the secrets read, by namespace/name."""
    event, secrets = _redacted(
        find_event("0021.json", stage="ResponseComplete", verb="list", resource="secrets")
    )

    listed = secret_list(event, secrets)

    assert listed is not None
    assert listed.count == len(event["responseObject"]["items"]) > 0
    assert "shop/db-creds" in listed.names
    assert not listed.truncated


@pytest.mark.parametrize(
    ("username", "namespace", "code", "fires"),
    [
        ("alice", None, 200, True),
        ("alice", "shop", 200, False),
        ("system:serviceaccount:ci:deployer", None, 200, False),
        ("system:kube-controller-manager", None, 200, False),
        ("alice", None, 403, False),
    ],
)
def test_human_listing_secrets_across_namespaces(
    username: str, namespace: str | None, code: int, fires: bool
) -> None:
    """Only a human user who read secrets in all namespaces raises the finding."""
    event = make_event(
        verb="list",
        api_group="",
        resource="secrets",
        namespace=namespace,
        name=None,
        code=code,
        username=username,
    )

    findings = secret_findings(event, actor_of(event), ())

    assert [f.id for f in findings] == (["secrets-listed-across-namespaces"] if fires else [])
