"""The normalized record: one per kept event, versioned, documented in docs/record.md.

Consumers rely on it, so within ``SCHEMA_VERSION`` (webhook/record/line.py) changes are additive
only. The JSON Schema ships as ``schema.json`` next to this module (``ingress-audit schema``
prints it).
Records never carry the raw request or response objects, only fields derived from them.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import uuid
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson

from webhook.core.findings import Finding
from webhook.enrich.actor import Actor
from webhook.enrich.change import Change
from webhook.enrich.dns import DnsChange
from webhook.enrich.enricher import Enrichment
from webhook.enrich.gateway import GatewaySummary, IngressClassSummary, ReferenceGrantSummary, RouteSummary
from webhook.enrich.objects import IngressSummary
from webhook.enrich.secrets import SecretList, SecretSummary
from webhook.errors import MalformedEventError
from webhook.events import opt_object, opt_str
from webhook.record.line import AUDIT, RecordHeader

__all__ = [
    "ObjectRef",
    "Outcome",
    "Record",
    "Redaction",
    "cluster_record_id",
    "record_id",
    "record_schema",
]

_ID_NAMESPACE: Final = uuid.UUID("5b0f6a52-3c1e-4c8e-9a57-0d6f2b1c7e41")
_ID_HASH: Final = hashlib.sha1(_ID_NAMESPACE.bytes, usedforsecurity=False)  # uuid5's, begun
_MESSAGE_LIMIT: Final = 1024
_SECRET_RESOURCES: Final = frozenset({"secrets"})


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectRef:
    api_group: str
    api_version: str | None
    resource: str | None
    subresource: str | None
    namespace: str | None
    name: str | None
    uid: str | None
    resource_version: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    code: int | None
    status: str | None
    reason: str | None
    message: str | None
    decision: str | None
    authorization_reason: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Redaction:
    """Paths of objects or fields the redaction stage removed because it did not know them."""

    dropped: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Record(RecordHeader):
    type: Literal["audit"] = AUDIT
    id: str
    audit_id: str
    stage: str
    level: str | None
    cluster: str
    time: str | None
    request_received_at: str | None
    received_at: str
    verb: str
    dry_run: bool
    request_uri: str
    field_manager: str | None
    outcome: Outcome
    object: ObjectRef | None
    actor: Actor
    ingress: IngressSummary | None = None
    secret: SecretSummary | None = None
    secret_list: SecretList | None = None
    findings: tuple[Finding, ...] = ()
    redaction: Redaction | None = None
    change: Change | None = None
    gateway: GatewaySummary | None = None
    route: RouteSummary | None = None
    reference_grant: ReferenceGrantSummary | None = None
    ingress_class: IngressClassSummary | None = None
    dns: DnsChange | None = None

    @classmethod
    def from_event(
        cls,
        event: dict[str, Any],
        *,
        record_id: str,
        cluster: str,
        received_at: str,
        enrichment: Enrichment,
    ) -> Record:
        """The record of a checked, redacted event and its enrichment, field by field; raises
        MalformedEventError naming a bad field."""
        object_ref = _object_ref(event)
        return cls(
            id=record_id,
            audit_id=event["auditID"],
            stage=event["stage"],
            level=opt_str(event, "level", "level"),
            cluster=cluster,
            time=opt_str(event, "stageTimestamp", "stageTimestamp"),
            request_received_at=opt_str(event, "requestReceivedTimestamp", "requestReceivedTimestamp"),
            received_at=received_at,
            verb=event["verb"],
            dry_run=enrichment.dry_run,
            request_uri=enrichment.request_uri,
            field_manager=enrichment.field_manager,
            outcome=_outcome(event, object_ref),
            object=object_ref,
            actor=enrichment.actor,
            ingress=enrichment.ingress,
            secret=enrichment.secret,
            secret_list=enrichment.secret_list,
            findings=enrichment.findings,
            redaction=Redaction(dropped=enrichment.dropped) if enrichment.dropped else None,
            change=enrichment.change,
            gateway=enrichment.gateway,
            route=enrichment.route,
            reference_grant=enrichment.reference_grant,
            ingress_class=enrichment.ingress_class,
            dns=enrichment.dns,
        )


def record_id(audit_id: str, stage: str, digest: str) -> str:
    """Stable across the apiserver's byte-identical retries.

    The digest of the event is part of the id because clients can choose their own ``Audit-ID``
    header: two different events that share an auditID must not collapse into one record.
    """
    return _uuid5(f"{audit_id}/{stage}/{digest}")


def cluster_record_id(cluster: str, record_id: str) -> str:
    """The id of a record of a cluster other than the configured one: its event's id namespaced
    by the cluster. Two clusters' identical events (one capture replayed to both) stay two
    records, with two dedupe keys; the configured cluster's ids stay as they always were."""
    return _uuid5(f"{cluster}/{record_id}")


def _uuid5(name: str) -> str:
    """``str(uuid.uuid5(_ID_NAMESPACE, name))``, from a SHA-1 already fed the namespace, and
    with no UUID object in between (a record id is computed for every kept event)."""
    sha = _ID_HASH.copy()
    sha.update(name.encode())
    digest = bytearray(sha.digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC 4122 variant
    x = digest.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def _object_ref(event: dict[str, Any]) -> ObjectRef | None:
    ref = opt_object(event, "objectRef", "objectRef")
    if not ref:
        return None
    metadata = {}
    response = event.get("responseObject")
    if isinstance(response, dict) and isinstance(response.get("metadata"), dict):
        metadata = response["metadata"]
    name = opt_str(ref, "name", "objectRef.name")
    uid = opt_str(ref, "uid", "objectRef.uid")
    if name is None and isinstance(metadata.get("name"), str):
        name = metadata["name"]  # a create's name is known only once stored
    if uid is None and isinstance(metadata.get("uid"), str):
        uid = metadata["uid"]
    return ObjectRef(
        api_group=opt_str(ref, "apiGroup", "objectRef.apiGroup") or "",
        api_version=opt_str(ref, "apiVersion", "objectRef.apiVersion"),
        resource=opt_str(ref, "resource", "objectRef.resource"),
        subresource=opt_str(ref, "subresource", "objectRef.subresource"),
        namespace=opt_str(ref, "namespace", "objectRef.namespace"),
        name=name,
        uid=uid,
        resource_version=opt_str(ref, "resourceVersion", "objectRef.resourceVersion"),
    )


def _outcome(event: dict[str, Any], object_ref: ObjectRef | None) -> Outcome:
    status = opt_object(event, "responseStatus", "responseStatus")
    annotations = opt_object(event, "annotations", "annotations")
    code = status.get("code")
    if code is not None and (not isinstance(code, int) or isinstance(code, bool)):
        raise MalformedEventError("responseStatus.code is not an integer")
    message = opt_str(status, "message", "responseStatus.message")
    if object_ref is not None and object_ref.resource in _SECRET_RESOURCES:
        message = None  # validation messages about a Secret may quote what was sent
    elif message is not None and len(message) > _MESSAGE_LIMIT:
        message = message[:_MESSAGE_LIMIT] + "…"
    decision = annotations.get("authorization.k8s.io/decision")
    reason = annotations.get("authorization.k8s.io/reason")
    return Outcome(
        code=code,
        status=opt_str(status, "status", "responseStatus.status"),
        reason=opt_str(status, "reason", "responseStatus.reason"),
        message=message,
        decision=decision if isinstance(decision, str) else None,
        authorization_reason=reason if isinstance(reason, str) and reason else None,
    )


@functools.cache
def record_schema() -> dict[str, Any]:
    text = importlib.resources.files("webhook.record").joinpath("schema.json").read_bytes()
    schema: dict[str, Any] = orjson.loads(text)
    return schema
