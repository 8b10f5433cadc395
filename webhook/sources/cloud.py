"""What a managed cloud's log pipeline hands in: audit events, each with the cluster its channel proves.

The decoders of the cloud envelopes (Firehose, Pub/Sub push, AKS diagnostic records) turn one
request or blob into these items; the pipeline takes the events, and every rejected item becomes
one dead letter with its reason, so the rest of its request is kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from webhook.record.dead_letter import DeadLetter

__all__ = ["CloudEvent", "CloudReject", "dead_letter"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CloudEvent:
    """One `audit.k8s.io/v1` Event as JSON bytes, and the cluster it came from."""

    cluster: str
    event: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class CloudReject:
    """An item that can never be valid: a kebab-case reason and a detail that quotes no value."""

    reason: str
    detail: str
    cluster: str | None = None
    # identifiers only (auditID, log stream, insertId, blob name): never an event's content
    identity: Mapping[str, str] = field(default_factory=dict)


def dead_letter(reject: CloudReject, *, received_at: str) -> DeadLetter:
    """The reject's dead letter: its reason and detail, and as ``event`` the cluster (when
    known) and its identifiers, so an operator can find the item where it came from."""
    event = {"cluster": reject.cluster} if reject.cluster is not None else {}
    return DeadLetter(
        reason=reject.reason,
        detail=reject.detail,
        received_at=received_at,
        event={**event, **reject.identity},
    )
