"""What a managed cloud's log pipeline hands in: audit events, each with the cluster its channel proves.

The decoders of the cloud envelopes (Firehose, Pub/Sub push, AKS diagnostic records) turn one
request or blob into these items; the pipeline takes the events, and every rejected item becomes
one dead letter with its reason, so the rest of its request is kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["CloudEvent", "CloudReject"]


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
