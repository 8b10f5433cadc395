"""The alert record: what a fired detection writes to the spool, next to the audit records.

Its JSON shape is a contract (docs/record.md, ``schema.json``): fields may be added, never
renamed or dropped. The detector (webhook/detect/engine.py) derives ids from what triggered the
alert, so the same input always yields the same ids, and a sink that dedupes by id dedupes
alerts too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson

from webhook.core.findings import Severity
from webhook.record.line import ALERT, RecordHeader

__all__ = [
    "MAX_RECORDS",
    "Alert",
    "AlertActor",
    "AlertObject",
    "Status",
    "alert_json",
]

Status = Literal["firing", "resolved"]

MAX_RECORDS: Final = 20


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertActor:
    username: str | None
    kind: str | None
    source_ips: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertObject:
    api_group: str
    resource: str | None
    namespace: str | None
    name: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert(RecordHeader):
    type: Literal["alert"] = ALERT
    id: str
    fingerprint: str
    cluster: str
    status: Status
    detection: str
    severity: Severity
    summary: str
    description: str
    labels: Mapping[str, str]
    namespace: str | None
    actor: AlertActor | None
    object: AlertObject | None
    count: int
    threshold: int | None
    window_s: float | None
    starts_at: str
    ends_at: str | None
    time: str
    received_at: str
    records: tuple[str, ...]
    records_total: int
    # change-correlation (and edge-5xx-spike's effect): the audit change and what it did to the
    # traffic; null for the other detections (docs/record.md)
    change: Mapping[str, Any] | None = None
    effect: Mapping[str, Any] | None = None


def alert_json(alert: Alert) -> bytes:
    """One alert as a compact JSON line body (no trailing newline), like ``record.line.to_json``."""
    return orjson.dumps(alert)
