from __future__ import annotations

import base64
import copy
import json
import os
import re
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import orjson
import pytest
import trustme
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.secret_shapes import (
    LAST_APPLIED,
    SCENARIO,
    SHAPES,
    Planted,
    SecretSpec,
    audit_event,
    b64,
    ca_pem,
    capture_events,
    captured_bodies,
    secret_object,
)
from webhook.errors import ConfigError
from webhook.redact.leaks import encodings, scan
from webhook.redact.redactor import RedactionResult, Redactor, load_or_create_key

KEY: Final = b"k" * 32
CAPTURE_DAY: Final = datetime(2026, 11, 25, tzinfo=UTC)
FINGERPRINT: Final = r"hmac-sha256:[0-9a-f]{32}"
LA_SOURCE: Final = ".metadata.annotations.last-applied-configuration"


def redactor(key: bytes = KEY) -> Redactor:
    return Redactor(key, now=lambda: CAPTURE_DAY)


def redact(event: dict[str, Any], key: bytes = KEY) -> RedactionResult:
    """Redact, checking on the way that the input is left exactly as it was."""
    before = copy.deepcopy(event)
    result = redactor(key).redact(event)
    assert event == before
    return result


def leaked(output: bytes, values: tuple[str | bytes, ...]) -> list[int]:
    return [i for i, value in enumerate(values) if any(e in output for e in encodings(value))]


def annotation(obj: dict[str, Any]) -> Any:
    return json.loads(obj["metadata"]["annotations"][LAST_APPLIED])


# -- every shape, generated ---------------------------------------------------------------------


@pytest.mark.parametrize("shape", sorted(SHAPES))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_no_planted_value_survives(shape: str, data: st.DataObject) -> None:
    """In every shape, no encoding of a planted value is left and each has its fingerprint."""
    planted: Planted = data.draw(SHAPES[shape])
    redactor_ = redactor()

    result = redact(planted.event)
    out = orjson.dumps(result.event)

    assert leaked(out, planted.values) == []
    for raw in planted.fingerprinted:
        assert redactor_.fingerprint(raw).encode() in out
    assert result.dropped == planted.dropped
    if planted.sources is not None:
        assert tuple(s.source for s in result.secrets) == planted.sources


def test_the_property_would_catch_a_leak() -> None:
    """The check itself: an unredacted event fails it, in data and in the annotation."""
    spec = SecretSpec(name="n", namespace="shop", data={"k": "QZXW-abc"}, string_data={"s": "QZXW-x"})
    obj = secret_object(spec, last_applied=True, string_data=False)
    raw = orjson.dumps(obj)

    assert leaked(raw, spec.values) == [0, 1]


# -- the real captures ----------------------------------------------------------------------------


@pytest.mark.parametrize("body", captured_bodies(), ids=lambda p: p.stem)
def test_no_capture_value_survives(body: Path, tmp_path: Path) -> None:
    """Every event of every capture, redacted and written out, holds no line of secrets.txt."""
    events = capture_events(body.name)
    out = tmp_path / "records.jsonl"
    out.write_bytes(b"".join(orjson.dumps(redact(e).event) + b"\n" for e in events))

    secrets = (SCENARIO / "secrets.txt").read_text().splitlines()

    assert scan([tmp_path], secrets) == []


def test_a08_applied_secret() -> None:
    """A08: data and the last-applied copy both hold the fingerprints of the decoded values."""
    event = capture_events("0013.json")[7]
    sent = event["requestObject"]["data"]
    expected = {k: redactor().fingerprint(base64.b64decode(v)) for k, v in sent.items()}

    result = redact(event)

    for side in ("requestObject", "responseObject"):
        obj = result.event[side]
        assert obj["data"] == expected
        assert annotation(obj)["data"] == expected
        assert obj["metadata"]["annotations"][LAST_APPLIED].endswith("}\n")  # as kubectl wrote it
    fields = result.event["responseObject"]["metadata"]["managedFields"]
    assert fields == event["responseObject"]["metadata"]["managedFields"]  # key names only
    sources = [s.source for s in result.secrets]
    assert sources == [
        "requestObject",
        f"requestObject{LA_SOURCE}",
        "responseObject",
        f"responseObject{LA_SOURCE}",
    ]
    first = result.secrets[0]
    assert (first.name, first.namespace, first.type) == ("api-keys", "shop", "Opaque")
    assert {(k.name, k.fingerprint) for k in first.keys} == set(expected.items())
    assert [f.id for f in first.findings] == ["secret-values-in-last-applied"]
    assert result.dropped == ()


def test_a03_tls_secret_certificate() -> None:
    """A03: the certificate is read before the values go, and the key is known to match."""
    event = capture_events("0007.json")[1]

    result = redact(event)

    details = result.secrets[0]
    (cert,) = details.certificates
    assert cert.sans == ("shop.example.test", "www.shop.example.test")
    assert (cert.self_signed, details.key_matches_certificate) == (True, True)
    assert [f.id for f in details.findings] == ["certificate-self-signed"]
    assert {k.name for k in details.keys} == {"tls.crt", "tls.key"}
    assert all(k.size > 1000 for k in details.keys)


def test_a15_secret_list() -> None:
    """A15: a SecretList of three items gives three Secrets, each value fingerprinted."""
    event = capture_events("0021.json")[9]

    result = redact(event)

    names = [s.name for s in result.secrets if "last-applied" not in s.source]
    assert names == ["api-keys", "db-creds", "shop-tls"]
    items = result.event["responseObject"]["items"]
    assert all(v.startswith("hmac-sha256:") for item in items for v in item["data"].values())


def test_a16_table_kept() -> None:
    """A16: the Table of kubectl get has nothing to hide and comes through whole."""
    event = capture_events("0022.json")[1]

    result = redact(event)

    assert result.event["responseObject"] == event["responseObject"]
    assert result.dropped == ()
    assert result.secrets == ()


def test_delete_shapes_kept() -> None:
    """A35: DeleteOptions in and Status out are kept field for field."""
    event = capture_events("0048.json")[7]

    result = redact(event)

    for side in ("requestObject", "responseObject", "responseStatus"):
        assert result.event[side] == event[side]
    assert result.dropped == ()


@pytest.mark.parametrize("name", ["0009.json", "0014.json", "0017.json", "0039.json", "0044.json"])
def test_other_events_come_back_untouched(name: str) -> None:
    """Ingress, patch, ConfigMap and Gateway events (certificateRefs included) are not copied."""
    for event in capture_events(name):
        result = redact(event)
        assert result.event is event
        assert result.secrets == ()
        assert result.dropped == ()


# -- fingerprints ---------------------------------------------------------------------------------


def test_fingerprint_format_and_stability() -> None:
    """Same key and value: same fingerprint; another key or value: another one."""
    value = b"S3cr3t-value"

    first, again = redactor().fingerprint(value), redactor().fingerprint(value)

    assert first == again
    assert re.fullmatch(FINGERPRINT, first)
    assert redactor(b"x" * 32).fingerprint(value) != first
    assert redactor().fingerprint(value + b"!") != first


def test_data_and_string_data_agree() -> None:
    """A value fingerprints the same in base64 data, in plain stringData and in a JSON patch."""
    value = "pässwörd-QZXW"
    request = {"kind": "Secret", "data": {"a": b64(value)}, "stringData": {"b": value}}
    patch = [{"op": "replace", "path": "/data/c", "value": b64(value)}]

    created = redact(audit_event("secrets", "create", request=request)).event["requestObject"]
    patched = redact(audit_event("secrets", "patch", request=patch)).event["requestObject"]

    assert created["data"]["a"] == created["stringData"]["b"] == patched[0]["value"]


def test_undecodable_data_is_fingerprinted_raw() -> None:
    """Data that is not base64 is fingerprinted as sent, never kept."""
    request = {"kind": "Secret", "data": {"a": "not base64!"}}

    result = redact(audit_event("secrets", "create", request=request))

    assert result.event["requestObject"]["data"]["a"] == redactor().fingerprint(b"not base64!")
    assert result.secrets[0].keys[0].size == len("not base64!")


def test_non_string_values_fingerprinted_as_json() -> None:
    """A value that is not a string (the apiserver would refuse it) is fingerprinted, not kept."""
    request = {
        "kind": "Secret",
        "data": {"n": 12345678, "o": {"p": "QZXW-in-object"}},
        "stringData": {"s": ["QZXW-in-list"]},
    }

    sent = redact(audit_event("secrets", "create", request=request)).event["requestObject"]

    assert sent["data"] == {
        "n": redactor().fingerprint(b"12345678"),
        "o": redactor().fingerprint(b'{"p":"QZXW-in-object"}'),
    }
    assert sent["stringData"] == {"s": redactor().fingerprint(b'["QZXW-in-list"]')}


def test_redactor_key_checks() -> None:
    """A short key is refused, and the key never shows in a repr."""
    with pytest.raises(ConfigError):
        Redactor(b"short")
    assert "k" * 8 not in repr(Redactor(KEY))


# -- shapes that are dropped, or kept -------------------------------------------------------------


def test_unknown_kind_is_dropped() -> None:
    """A secrets event whose object is of an unknown kind loses the object, not the event."""
    event = audit_event("secrets", "get", response={"kind": "Weird", "payload": "QZXW-value"})

    result = redact(event)

    assert result.event["responseObject"] == {
        "redacted": "dropped",
        "reason": "unrecognised kind in a secrets request",
    }
    assert result.dropped == ("responseObject",)
    assert result.event["auditID"] == event["auditID"]


def test_unparseable_last_applied_on_any_object() -> None:
    """An annotation that is not JSON is replaced by a marker, on an Ingress too."""
    ingress = {"kind": "Ingress", "metadata": {"annotations": {LAST_APPLIED: '{"data": {"k'}}}

    result = redact(audit_event("ingresses", "create", request=ingress))

    annotations = result.event["requestObject"]["metadata"]["annotations"]
    assert annotations[LAST_APPLIED] == "<redacted: unparseable last-applied-configuration>"
    assert result.dropped == (f"requestObject{LA_SOURCE}",)


def test_ingress_last_applied_unchanged() -> None:
    """An Ingress's own annotation has nothing to redact: the event is not copied."""
    manifest = {"kind": "Ingress", "spec": {"tls": [{"secretName": "shop-tls"}]}}
    ingress = {"kind": "Ingress", "metadata": {"annotations": {LAST_APPLIED: json.dumps(manifest)}}}
    event = audit_event("ingresses", "create", request=ingress)

    assert redact(event).event is event


def test_status_message_redacted_unless_safe() -> None:
    """A secrets request's error message may quote the request: kept only for safe reasons."""
    bad = {"status": "Failure", "reason": "BadRequest", "message": "bad QZXW", "code": 400}
    missing = {"status": "Failure", "reason": "NotFound", "message": 'secrets "x" not found'}

    hidden = redact(audit_event("secrets", "patch", status=bad)).event["responseStatus"]
    shown = redact(audit_event("secrets", "get", status=missing)).event["responseStatus"]

    assert "QZXW" not in hidden["message"]
    assert hidden["code"] == 400
    assert shown == missing


def test_service_account_token_ca() -> None:
    """A service-account token Secret: its ca.crt is read, the token fingerprinted."""
    spec = SecretSpec(name="t", namespace="shop", data={"token": "QZXW-tok", "ca.crt": ca_pem()})
    obj = secret_object(spec, type_="kubernetes.io/service-account-token")

    (details,) = redact(audit_event("secrets", "get", response=obj)).secrets

    (cert,) = details.certificates
    assert (cert.key, cert.is_ca, details.key_matches_certificate) == ("ca.crt", True, None)


def test_cached_certificates_follow_the_secret_and_the_clock() -> None:
    """The redaction stage's certificate cache: a Secret updated with another certificate under
    the same name gets the new one's details, and a certificate seen again is dated against the
    clock of each event, not of its first sight."""
    first, second = trustme.CA().cert_pem.bytes(), trustme.CA().cert_pem.bytes()

    def details(ca: bytes, now: datetime) -> tuple[str, int]:
        spec = SecretSpec(name="t", namespace="shop", data={"token": "QZXW-tok", "ca.crt": ca})
        obj = secret_object(spec, type_="kubernetes.io/service-account-token")
        (found,) = (
            Redactor(KEY, now=lambda: now).redact(audit_event("secrets", "update", request=obj)).secrets
        )
        (cert,) = found.certificates
        return cert.serial, cert.days_to_expiry

    serial, days = details(first, CAPTURE_DAY)
    assert details(second, CAPTURE_DAY)[0] != serial
    assert details(first, CAPTURE_DAY) == (serial, days)
    assert details(first, CAPTURE_DAY + timedelta(days=10)) == (serial, days - 10)


def test_garbage_certificate_is_a_finding() -> None:
    """A tls.crt that is not a certificate gives a finding, not an exception."""
    data = {"tls.crt": b64("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")}
    obj = {"kind": "Secret", "type": "kubernetes.io/tls", "data": data | {"tls.key": b64("x")}}

    (details,) = redact(audit_event("secrets", "create", request=obj)).secrets

    assert [f.id for f in details.findings] == ["certificate-unparseable"]
    assert details.certificates == ()
    assert details.key_matches_certificate is None


def test_value_copied_into_annotation() -> None:
    """A value copied into an annotation (a JSON patch copy op) is fingerprinted and reported."""
    obj = {
        "kind": "Secret",
        "metadata": {"annotations": {"copied": "QZXW-secret-value"}},
        "data": {"k": b64("QZXW-secret-value")},
    }

    result = redact(audit_event("secrets", "get", response=obj))

    copied = result.event["responseObject"]["metadata"]["annotations"]["copied"]
    assert copied == redactor().fingerprint(b"QZXW-secret-value")
    assert [f.id for f in result.secrets[0].findings] == ["secret-value-in-metadata"]


def test_large_secret_list_one_pass() -> None:
    """Thousands of items: all redacted, each reported once."""
    items = [{"metadata": {"name": f"s{i}"}, "data": {"k": b64(f"QZXW-{i:05}")}} for i in range(3000)]
    event = audit_event("secrets", "list", response={"kind": "SecretList", "items": items})

    result = redact(event)

    assert len(result.secrets) == 3000
    assert b"UVpYVy" not in orjson.dumps(result.event)  # base64 of the marker


def test_null_items_and_removed_annotation() -> None:
    """Go's null for an empty list, and a merge patch removing the annotation, are no values."""
    listed = audit_event("secrets", "list", response={"kind": "SecretList", "items": None})
    patch = {"metadata": {"annotations": {LAST_APPLIED: None}}, "data": {"gone": None}}

    assert redact(listed).event["responseObject"] == {"kind": "SecretList", "items": []}
    result = redact(audit_event("secrets", "patch", request=patch))
    assert result.event["requestObject"] == patch
    assert result.dropped == ()


def test_deep_nesting_does_not_crash() -> None:
    """Pathological nesting is cut off with a marker rather than a RecursionError."""
    deep: dict[str, Any] = {"kind": "Secret", "data": {"k": "QZXW"}}
    for _ in range(400):
        deep = {"x": deep}

    result = redact(audit_event("configmaps", "create", request=deep))

    assert len(result.dropped) == 1
    assert b"QZXW" not in orjson.dumps(result.event)


@pytest.mark.parametrize("shape", sorted(SHAPES))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_given_its_encoding_an_event_is_redacted_the_same(shape: str, data: st.DataObject) -> None:
    """With ``encoded``, an event the walk would give back unchanged skips the walk; any other
    is walked: the result is the same either way."""
    event = data.draw(SHAPES[shape]).event
    assert redactor().redact(event, encoded=orjson.dumps(event)) == redact(event)


_JSON_TREES: Final = st.recursive(
    st.none()
    | st.integers(-(2**63), 2**63 - 1)
    | st.sampled_from(["Secret", "SecretList", "TokenRequest", "TokenReview", "x", "QZXW"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                ["kind", "data", "status", "spec", "token", "value", "path", "items", LAST_APPLIED]
            ),
            inner | st.just("/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration"),
            max_size=4,
        )
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(request=_JSON_TREES, response=_JSON_TREES)
def test_the_shortcut_holds_for_any_object_of_any_kind(request: Any, response: Any) -> None:
    event = audit_event("ingresses", "create", request=request, response=response)
    assert redactor().redact(event, encoded=orjson.dumps(event)) == redact(event)


def test_an_object_whose_kind_is_not_a_string_is_walked() -> None:
    """Any JSON may stand where a kind is expected (a CRD's own field): it was a TypeError, and
    the event a dead letter."""
    obj = {"kind": ["TokenRequest"], "spec": {"nested": {"kind": {"a": 1}}}}
    result = redact(audit_event("widgets", "create", request=obj))
    assert result.event["requestObject"] == obj
    assert result.dropped == ()


def test_the_shortcut_never_skips_an_object_nested_too_deep() -> None:
    deep: Any = []
    for _ in range(250):
        deep = [deep]
    event = audit_event("configmaps", "create", request={"x": deep})

    result = redactor().redact(event, encoded=orjson.dumps(event))

    assert result == redact(event)
    assert len(result.dropped) == 1


@pytest.mark.parametrize("depth", [0, 1, 5, 31, 32, 33, 40])
def test_metadata_strings_holding_a_value_are_fingerprinted_at_any_depth(depth: int) -> None:
    """Other metadata fields are searched for the Secret's values to any depth; below the
    limit a field is dropped, as it was before the walk skipped clean ones."""
    holder: Any = ["kept", "pre-QZXW-value-post"]
    clean: Any = ["kept"]
    for level in range(depth):
        holder = {f"k{level}": holder} if level % 2 else [holder]
        clean = {f"k{level}": clean} if level % 2 else [clean]
    obj = _secret_with("QZXW-value", ownerReferences=holder, finalizers=clean)

    result = redact(audit_event("secrets", "get", response=obj))

    out = result.event["responseObject"]["metadata"]
    assert b"QZXW" not in orjson.dumps(result.event)
    if depth <= 32:
        assert out["finalizers"] == clean
        leaf = out["ownerReferences"]
        for level in reversed(range(depth)):
            leaf = leaf[f"k{level}"] if level % 2 else leaf[0]
        assert leaf == ["kept", redactor().fingerprint(b"pre-QZXW-value-post")]
    else:
        assert out["finalizers"] != clean  # nested too deep: dropped, like the one holding it
        assert len(result.dropped) == 2


# -- the key file ---------------------------------------------------------------------------------


def test_key_created_once_with_mode_0600(tmp_path: Path) -> None:
    """The first call writes 32 random bytes, mode 0600; the next call reads the same key."""
    path = tmp_path / "fingerprint.key"

    key = load_or_create_key(path)

    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(path) == key
    assert [p.name for p in tmp_path.iterdir()] == ["fingerprint.key"]


def test_existing_key_is_kept(tmp_path: Path) -> None:
    """A key already there is used as it is, never replaced."""
    path = tmp_path / "fingerprint.key"
    path.write_bytes(b"0123456789abcdef-existing")
    path.chmod(0o600)

    assert load_or_create_key(path) == b"0123456789abcdef-existing"


@pytest.mark.parametrize("mode", [0o660, 0o604, 0o644, 0o602])
def test_key_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    """A key file that others can read, or its group write, is a config error naming the path."""
    path = tmp_path / "fingerprint.key"
    path.write_bytes(os.urandom(32))
    path.chmod(mode)

    with pytest.raises(ConfigError, match=r"fingerprint\.key"):
        load_or_create_key(path)


@pytest.mark.parametrize("mode", [0o400, 0o440, 0o600, 0o640])
def test_key_readable_by_its_group_is_accepted(tmp_path: Path, mode: int) -> None:
    """A Secret volume with an fsGroup makes the key group-readable: that is allowed."""
    path = tmp_path / "fingerprint.key"
    key = os.urandom(32)
    path.write_bytes(key)
    path.chmod(mode)

    assert load_or_create_key(path) == key


def test_key_mounted_from_a_secret_volume_is_read(tmp_path: Path) -> None:
    """A Secret volume's files are symlinks into ..data/: the key behind the link is used."""
    data = tmp_path / "..2026_11_25" / "key"
    data.parent.mkdir()
    key = os.urandom(32)
    data.write_bytes(key)
    data.chmod(0o440)
    (tmp_path / "..data").symlink_to(data.parent.name)
    (tmp_path / "key").symlink_to("..data/key")

    assert load_or_create_key(tmp_path / "key") == key


def test_short_key_is_refused(tmp_path: Path) -> None:
    """Fewer than 16 bytes is too weak a key."""
    path = tmp_path / "fingerprint.key"
    path.write_bytes(b"short")
    path.chmod(0o600)

    with pytest.raises(ConfigError, match="fewer than 16 bytes"):
        load_or_create_key(path)


def test_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    """No directory to create the key in: a config error, not an OSError."""
    with pytest.raises(ConfigError, match="cannot create key file"):
        load_or_create_key(tmp_path / "missing" / "fingerprint.key")


# -- a Secret's other annotations, labels and metadata (review finding 3) -------------------------


def _secret_with(value: str, **metadata: Any) -> dict[str, Any]:
    return {"kind": "Secret", "type": "Opaque", "metadata": metadata, "data": {"k": b64(value)}}


def test_annotations_fingerprinted_unless_allowed() -> None:
    """Every annotation of a Secret becomes a fingerprint but the controllers' names and uids."""
    kept = {
        "kubernetes.io/service-account.name": "builder",
        "kubernetes.io/service-account.uid": "af3088f4-80e4-4a9a-8cca-512f440ce7b7",
        "cert-manager.io/issuer-name": "letsencrypt",
        "meta.helm.sh/release-name": "shop",
    }
    other = {"team": "shop", "kapp.k14s.io/original-diff-md5": "58e0494c", "n": 5}
    obj = _secret_with("QZXW-value", annotations=kept | other | {"gone": None})

    out = redact(audit_event("secrets", "get", response=obj)).event["responseObject"]

    annotations = out["metadata"]["annotations"]
    assert {k: annotations[k] for k in kept} == kept
    assert annotations["team"] == redactor().fingerprint(b"shop")
    assert annotations["n"] == redactor().fingerprint(b"5")
    assert re.fullmatch(FINGERPRINT, annotations["kapp.k14s.io/original-diff-md5"])
    assert annotations["gone"] is None  # a merge patch removing it


def test_kapp_original_parsed_like_last_applied() -> None:
    """kapp's copy, written by Go (``\\u0026``), is redacted in place; unreadable, a marker."""
    value = "RT&SECRET-61<xyz>"
    manifest = {"kind": "Secret", "metadata": {"name": "db"}, "stringData": {"password": value}}
    text = json.dumps(manifest).replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    obj = _secret_with(value, annotations={"kapp.k14s.io/original": text})
    broken = _secret_with(value, annotations={"kapp.k14s.io/original": text[:-5]})

    result = redact(audit_event("secrets", "get", response=obj))
    unparsed = redact(audit_event("secrets", "get", response=broken))

    copy_ = json.loads(result.event["responseObject"]["metadata"]["annotations"]["kapp.k14s.io/original"])
    assert copy_["stringData"]["password"] == redactor().fingerprint(value.encode())
    assert copy_["metadata"] == {"name": "db"}
    assert [s.source for s in result.secrets] == [
        "responseObject",
        "responseObject.metadata.annotations.kapp-original",
    ]
    assert "secret-values-in-last-applied" in [f.id for f in result.secrets[0].findings]
    annotations = unparsed.event["responseObject"]["metadata"]["annotations"]
    assert annotations["kapp.k14s.io/original"] == "<redacted: unparseable kapp-original>"
    assert unparsed.dropped == ("responseObject.metadata.annotations.kapp-original",)


@pytest.mark.parametrize(
    ("value", "label", "removed"),
    [
        ("RTpw5", "pw-RTpw5", True),  # short values were kept below 8 characters
        ("abc", "abc-app", True),  # 3 characters: removed from any string holding them
        ("ab", "ab", True),  # 1 or 2: only from a string equal to them
        ("ab", "lab-app", False),
        ('RT"x', 'note \\"RT\\\\\\"x\\"', True),  # escaped twice
        ("RT&x", "RT\\u0026x", True),  # escaped by Go
        ("é€", "\\u00e9\\u20ac", True),  # escaped as ASCII
    ],
)
def test_values_of_any_length_in_any_form_leave_labels(value: str, label: str, removed: bool) -> None:
    """Labels, kept annotations, finalizers and the type lose a string that holds a value."""
    allowed = "cert-manager.io/issuer-name"
    obj = _secret_with(value, annotations={allowed: label}, labels={"l": label}, finalizers=[label])
    obj["type"] = label

    result = redact(audit_event("secrets", "get", response=obj))

    out = result.event["responseObject"]
    fingerprint = redactor().fingerprint(label.encode())
    expected = fingerprint if removed else label
    assert out["metadata"]["labels"]["l"] == out["metadata"]["annotations"][allowed] == expected
    assert out["metadata"]["finalizers"] == [expected]
    assert out["type"] == expected
    assert ("secret-value-in-metadata" in [f.id for f in result.secrets[0].findings]) is removed


def test_identity_fields_are_kept() -> None:
    """The name and server-set fields keep their form even if a short value matches them."""
    meta = {"name": "db", "namespace": "shop", "uid": "1", "resourceVersion": "1"}
    obj = _secret_with("1", **meta)

    out = redact(audit_event("secrets", "get", response=obj)).event["responseObject"]

    assert out["metadata"] == meta


def test_json_patch_metadata_checked_against_every_value_of_the_patch() -> None:
    """A label added before the value it copies is still fingerprinted (values go first)."""
    ops = [
        {"op": "add", "path": "/metadata/labels/pin", "value": "RTpin67"},
        {"op": "add", "path": "/metadata/annotations/note", "value": "hello"},
        {"op": "add", "path": "/metadata/annotations/kubernetes.io~1service-account.name", "value": "sa"},
        {"op": "add", "path": "/data/pin", "value": b64("RTpin67")},
    ]

    out = redact(audit_event("secrets", "patch", request=ops)).event["requestObject"]

    fingerprint = redactor().fingerprint
    assert [op["value"] for op in out] == [
        fingerprint(b"RTpin67"),
        fingerprint(b"hello"),
        "sa",
        fingerprint(b"RTpin67"),
    ]


def test_status_message_quoting_a_value_is_redacted() -> None:
    """Even a reason that is built from names loses its message if a value is in it."""
    status = {"status": "Failure", "reason": "AlreadyExists", "code": 409}
    obj = _secret_with("RTpw5", name="RTpw5")
    quoted, named = 'secrets "RTpw5" already exists', 'secrets "db" already exists'
    event = audit_event("secrets", "create", request=obj, status=status | {"message": quoted})
    fine = audit_event("secrets", "create", request=obj, status=status | {"message": named})

    assert redact(event).event["responseStatus"]["message"].startswith("<redacted")
    assert redact(fine).event["responseStatus"]["message"] == named


@pytest.mark.parametrize("field", ["annotations", "labels", "data"])
def test_values_nested_deeper_than_json_allows_are_fingerprinted(field: str) -> None:
    """A wrong-typed value nested past orjson's limit is fingerprinted, not an exception."""
    deep: Any = "QZXW-deep"
    for _ in range(300):
        deep = {"a": deep}
    obj = _secret_with("QZXW-value")
    if field == "data":
        obj["data"]["deep"] = deep
    else:
        obj["metadata"][field] = {"deep": deep}

    out = orjson.dumps(redact(audit_event("secrets", "get", response=obj)).event)

    assert b"QZXW" not in out


def test_values_of_the_request_leave_the_responses_metadata() -> None:
    """A JSON patch sets a value; the Secret it answers with has it in a label."""
    ops = [{"op": "add", "path": "/data/pin", "value": b64("RTpin67")}]
    obj = _secret_with("other-value", labels={"pin": "RTpin67"})

    out = redact(audit_event("secrets", "patch", request=ops, response=obj)).event["responseObject"]

    assert out["metadata"]["labels"]["pin"] == redactor().fingerprint(b"RTpin67")


def test_values_read_from_a_copy_leave_the_labels() -> None:
    """Metadata only (a Table row): the values known from the kapp copy are looked for too."""
    manifest = {"kind": "Secret", "stringData": {"pin": "RTpin67"}}
    partial = {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {
            "name": "db",
            "labels": {"pin": "RTpin67"},
            "annotations": {"kapp.k14s.io/original": json.dumps(manifest)},
        },
    }
    row = {"cells": ["db", "Opaque", 1, "1s"], "object": partial}
    columns = [{"name": n, "type": "string"} for n in ("Name", "Type", "Data", "Age")]
    table: dict[str, Any] = {"kind": "Table", "apiVersion": "meta.k8s.io/v1"}
    table |= {"columnDefinitions": columns, "rows": [row]}

    out = redact(audit_event("secrets", "get", response=table)).event["responseObject"]

    labels = out["rows"][0]["object"]["metadata"]["labels"]
    assert labels == {"pin": redactor().fingerprint(b"RTpin67")}
