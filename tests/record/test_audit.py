from __future__ import annotations

import uuid
from typing import Any

import jsonschema
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import enrichment_of, find_event, make_event
from webhook.config import Config
from webhook.dedupe import Deduper
from webhook.errors import MalformedEventError
from webhook.pipeline.stages import Pipeline
from webhook.record.audit import Record, cluster_record_id, record_id, record_schema
from webhook.record.line import SCHEMA_VERSION, to_json
from webhook.redact.redactor import Redactor
from webhook.runtime import pipeline_settings

RECEIVED = "2026-11-24T14:20:41.000000Z"
MARKER = "s3cr3t-marker-value"
VALIDATOR = jsonschema.Draft202012Validator(
    record_schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)

REDACTOR = Redactor(b"test-fingerprint-key-0123456789ab")


def build(event: dict[str, Any]) -> Record:
    """The record of ``event`` after the redaction stage, as the pipeline builds it."""
    redacted = REDACTOR.redact(event)
    return Record.from_event(
        redacted.event,
        record_id=record_id(event["auditID"], event["stage"], "d"),
        cluster="c",
        received_at=RECEIVED,
        enrichment=enrichment_of(redacted.event, secrets=redacted.secrets, dropped=redacted.dropped),
    )


def as_json(record: Record) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(to_json(record))
    return doc


def pipeline_record(event: dict[str, Any]) -> Record:
    """The record a fresh pipeline (default rules) makes of ``event``."""
    (record,) = (
        Pipeline(pipeline_settings(Config()), Deduper(max_entries=10, ttl_s=60), REDACTOR)
        .process([event], received_at=RECEIVED)
        .records
    )
    return record


def test_the_shipped_schema_is_valid_draft_2020_12() -> None:
    """record.schema.json is itself a valid JSON Schema and pins the schema version."""
    jsonschema.Draft202012Validator.check_schema(record_schema())
    assert record_schema()["properties"]["schema_version"] == {"const": SCHEMA_VERSION}


def test_captured_create_becomes_a_full_record() -> None:
    """A05 (create Ingress): ids, times, verb, object, outcome, actor and ingress summary."""
    event = find_event("0009.json", stage="ResponseComplete", verb="create")

    doc = as_json(build(event))

    assert doc["schema_version"] == SCHEMA_VERSION
    assert doc["type"] == "audit"
    assert doc["audit_id"] == event["auditID"]
    assert (doc["stage"], doc["level"], doc["verb"]) == ("ResponseComplete", "RequestResponse", "create")
    assert (doc["time"], doc["request_received_at"]) == (
        event["stageTimestamp"],
        event["requestReceivedTimestamp"],
    )
    assert (doc["cluster"], doc["received_at"]) == ("c", RECEIVED)
    assert doc["request_uri"] == event["requestURI"]
    assert doc["field_manager"] == "kubectl-create"
    assert doc["dry_run"] is False
    assert doc["object"] == {
        "api_group": "networking.k8s.io",
        "api_version": "v1",
        "resource": "ingresses",
        "subresource": None,
        "namespace": "shop",
        "name": "shop-web",
        "uid": event["responseObject"]["metadata"]["uid"],
        "resource_version": None,
    }
    assert doc["outcome"] == {
        "code": 201,
        "status": None,
        "reason": None,
        "message": None,
        "decision": "allow",
        "authorization_reason": None,
    }
    assert doc["ingress"]["hosts"] == ["shop.example.test"]
    assert doc["secret"] is None
    assert [e.message for e in VALIDATOR.iter_errors(doc)] == []


def test_records_carry_no_raw_objects() -> None:
    """Neither the request nor the response object is copied into the record."""
    event = find_event("0013.json", stage="ResponseComplete", verb="create", resource="secrets")

    doc = as_json(build(event))

    assert not {"requestObject", "responseObject", "request_object", "response_object"} & set(doc)
    assert (doc["secret"]["type"], doc["secret"]["keys"]) == ("Opaque", ["api-key", "webhook-secret"])
    assert [f["name"] for f in doc["secret"]["fingerprints"]] == ["api-key", "webhook-secret"]
    out = to_json(build(event))
    for value in event["responseObject"]["data"].values():
        assert value.encode() not in out
    annotation = event["responseObject"]["metadata"]["annotations"][
        "kubectl.kubernetes.io/last-applied-configuration"
    ]
    assert annotation.encode() not in out


def test_name_of_a_create_comes_from_the_stored_object() -> None:
    """At create time objectRef has no name; the stored object's metadata supplies it."""
    event = make_event(
        name=None, responseObject={"kind": "Ingress", "metadata": {"name": "late", "uid": "u-1"}}
    )
    ref = build(event).object
    assert ref is not None
    assert (ref.name, ref.uid) == ("late", "u-1")


def test_no_object_ref_means_no_object() -> None:
    """Non-resource requests (``/openapi/v2``) have no object."""
    event = make_event(resource=None, verb="get", code=403, requestURI="/openapi/v2")
    assert build(event).object is None


@pytest.mark.parametrize(
    ("uri", "dry_run", "manager"),
    [
        (
            "/apis/networking.k8s.io/v1/namespaces/shop/ingresses?dryRun=All&fieldManager=kubectl-client-side-apply",
            True,
            "kubectl-client-side-apply",
        ),
        (
            "/apis/networking.k8s.io/v1/namespaces/shop/ingresses/web?fieldManager=kubectl&force=false&dryRun=All",
            True,
            "kubectl",
        ),
        ("/apis/networking.k8s.io/v1/namespaces/shop/ingresses/web?dryRun=None", False, None),
        ("/apis/networking.k8s.io/v1/namespaces/shop/ingresses", False, None),
        (
            "/apis/networking.k8s.io/v1/namespaces/shop/ingresses?fieldManager=kubectl-patch",
            False,
            "kubectl-patch",
        ),
    ],
)
def test_dry_run_and_field_manager_from_the_uri(uri: str, dry_run: bool, manager: str | None) -> None:
    """A dry run shows only as ``dryRun=All`` in the request URI; so does the field manager."""
    record = build(make_event(requestURI=uri))
    assert (record.dry_run, record.field_manager) == (dry_run, manager)


def test_forbidden_outcome() -> None:
    """A20 (alice reads a secret, 403): decision forbid, empty RBAC reason, no message kept."""
    event = find_event("0028.json", stage="ResponseComplete", verb="get", resource="secrets")
    assert event["responseStatus"]["message"]

    outcome = build(event).outcome

    assert (outcome.code, outcome.status, outcome.reason) == (403, "Failure", "Forbidden")
    assert (outcome.decision, outcome.authorization_reason) == ("forbid", None)
    assert outcome.message is None


def test_message_kept_for_other_resources_and_bounded() -> None:
    """Outside secrets the status message is kept, cut to 1024 characters."""
    short = make_event(code=422, responseStatus={"code": 422, "message": "spec.rules: Invalid value"})
    long = make_event(code=422, responseStatus={"code": 422, "message": "x" * 5000})

    assert build(short).outcome.message == "spec.rules: Invalid value"
    message = build(long).outcome.message
    assert message is not None
    assert len(message) <= 1025
    assert message.startswith("x" * 1024)


def test_secret_message_is_dropped() -> None:
    """A validation message about a Secret may quote what was sent; it is never kept."""
    event = make_event(
        api_group="",
        resource="secrets",
        code=422,
        responseStatus={"code": 422, "message": f'Secret "x" is invalid: data[{MARKER}]'},
    )
    assert MARKER.encode() not in to_json(build(event))


def test_authorization_reason_is_kept() -> None:
    """A25: the RBAC reason names the RoleBinding that allowed the request."""
    outcome = build(find_event("0034.json", stage="ResponseComplete", verb="get")).outcome
    assert outcome.decision == "allow"
    assert outcome.authorization_reason is not None
    assert "dev-ingress-reader" in outcome.authorization_reason


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"responseStatus": {"code": "403"}}, "responseStatus.code"),
        ({"responseStatus": {"code": True}}, "responseStatus.code"),
        ({"responseStatus": {"code": 200, "message": ["x"]}}, "responseStatus.message"),
        ({"level": 3}, "level"),
        ({"stageTimestamp": 1700000000}, "stageTimestamp"),
        ({"user": {"username": "admin", "groups": "system:masters"}}, "user.groups"),
    ],
)
def test_wrong_types_raise_naming_the_field(change: dict[str, Any], field: str) -> None:
    """Deeper checks run only on kept events; each names the path of the bad field."""
    event = make_event(**change)
    with pytest.raises(MalformedEventError) as info:
        build(event)
    assert info.value.message.split()[0] == field


def test_object_ref_fields_must_be_strings() -> None:
    """``objectRef.name`` of the wrong type is named too."""
    event = make_event()
    event["objectRef"]["name"] = {"x": 1}
    with pytest.raises(MalformedEventError, match=r"^objectRef\.name "):
        build(event)


def test_record_id_is_a_stable_uuid() -> None:
    """Same inputs, same id; any input changes it."""
    first = record_id("a", "ResponseComplete", "d1")

    assert uuid.UUID(first).version == 5
    assert record_id("a", "ResponseComplete", "d1") == first
    assert (
        len(
            {
                first,
                record_id("b", "ResponseComplete", "d1"),
                record_id("a", "Panic", "d1"),
                record_id("a", "ResponseComplete", "d2"),
            }
        )
        == 4
    )


def test_identical_events_get_the_same_id() -> None:
    """A byte-identical resend produces the same record id (in a fresh process, too)."""
    event = find_event("0009.json", stage="ResponseComplete", verb="create")
    assert (
        pipeline_record(event).id
        == pipeline_record(find_event("0009.json", stage="ResponseComplete", verb="create")).id
    )


def test_same_audit_id_different_content_gets_another_id() -> None:
    """Clients choose their own Audit-ID: different events sharing one must not collide."""
    event = find_event("0009.json", stage="ResponseComplete", verb="create")
    other = {**event, "verb": "update", "requestURI": event["requestURI"] + "&x=1"}

    assert other["auditID"] == event["auditID"]
    assert pipeline_record(event).id != pipeline_record(other).id


@pytest.mark.parametrize(
    "event",
    [
        make_event(),
        make_event(stage="ResponseStarted", username=None, code=401, resource=None),
        make_event(
            impersonatedUser={"username": "system:serviceaccount:a:b", "groups": ["x"]},
            responseObject={
                "kind": "Ingress",
                "spec": {
                    "defaultBackend": {"resource": {"kind": "Bucket", "name": "b"}},
                    "rules": [
                        {
                            "host": "h",
                            "http": {"paths": [{"backend": {"serviceName": "s", "servicePort": "http"}}]},
                        }
                    ],
                    "tls": [{}],
                },
            },
        ),
        make_event(
            api_group="", resource="secrets", responseObject={"kind": "Secret", "data": {"k": "dg=="}}
        ),
        make_event(username="system:node:n1", groups=(), code=None, stage="Panic"),
    ],
    ids=["minimal", "401", "ingress-odd-backends", "secret", "node-panic-no-status"],
)
def test_synthetic_records_validate(event: dict[str, Any]) -> None:
    """Shapes the captures do not show (legacy and resource backends, nodes, Panic) still fit."""
    doc = as_json(build(event))
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in VALIDATOR.iter_errors(doc)]
    assert errors == []


def test_schema_rejects_what_a_consumer_must_not_see() -> None:
    """The schema is strict enough to catch a wrong record (so the validation tests can fail)."""
    doc = as_json(build(make_event()))
    assert VALIDATOR.is_valid(doc)
    for broken in (
        {**doc, "schema_version": 2},
        {**doc, "id": "not-a-uuid"},
        {**doc, "outcome": {**doc["outcome"], "code": "201"}},
        {**doc, "actor": {**doc["actor"], "user": {**doc["actor"]["user"], "kind": "robot"}}},
        {k: v for k, v in doc.items() if k != "audit_id"},
    ):
        assert not VALIDATOR.is_valid(broken)


@settings(max_examples=300)
@given(st.text(), st.text(), st.text())
def test_record_ids_are_the_uuid5_they_always_were(audit_id: str, stage: str, digest: str) -> None:
    """Ids are stable across versions: the same event must get the same id (dedupe, replay)."""
    namespace = uuid.UUID("5b0f6a52-3c1e-4c8e-9a57-0d6f2b1c7e41")
    try:
        expected = str(uuid.uuid5(namespace, f"{audit_id}/{stage}/{digest}"))
    except UnicodeEncodeError:  # a lone surrogate: neither encodes it
        with pytest.raises(UnicodeEncodeError):
            record_id(audit_id, stage, digest)
        return
    assert record_id(audit_id, stage, digest) == expected
    assert cluster_record_id(stage, expected) == str(uuid.uuid5(namespace, f"{stage}/{expected}"))
