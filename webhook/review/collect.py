"""The weekly review's aggregates, fed one parsed record at a time in bounded memory.

Every per-key table (source IPs, users, alerts, secrets) is a ``TopCounter``: exact while the
keys fit, then pruned to its most frequent keys and marked approximate, so a flood of distinct
addresses cannot grow the report's memory. Listed writes are a ``Latest``: the newest by
record time, whatever order the files hold them in.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Generic, TypeVar

from webhook.record.time import parse_time
from webhook.review.describe import (
    WRITES,
    actor_name,
    category,
    change_data,
    get,
    object_key,
    object_ref,
    secret_keys,
    secret_type,
)

__all__ = ["SEVERITIES", "SEVERITY_RANK", "Collector", "Latest", "ReportOptions", "TopCounter"]

SEVERITIES: Final = ("critical", "high", "medium", "low", "info")
SEVERITY_RANK: Final = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
_EXAMPLES: Final = 3

P = TypeVar("P")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportOptions:
    since: datetime
    until: datetime
    now: datetime
    expiring_within: timedelta = timedelta(days=30)
    top: int = 10
    clusters: tuple[str, ...] = ()
    max_changes: int = 200
    basis: str = "given"  # how the period was chosen: given, newest-record, now


class TopCounter(Generic[P]):
    """Counts per key with a payload; past twice ``capacity`` keys, only the top ``capacity`` stay."""

    def __init__(self, capacity: int, payload: Callable[[], P]) -> None:
        self._capacity = capacity
        self._new = payload
        self.counts: dict[str, int] = {}
        self.payloads: dict[str, P] = {}
        self.approximate = False

    def add(self, key: str, amount: int = 1) -> P:
        if key not in self.counts:
            if len(self.counts) >= 2 * self._capacity:
                self._prune()
            self.counts[key] = 0
            self.payloads[key] = self._new()
        self.counts[key] += amount
        return self.payloads[key]

    def discard(self, key: str) -> None:
        self.counts.pop(key, None)
        self.payloads.pop(key, None)

    def _prune(self) -> None:
        keep = sorted(self.counts, key=self.counts.__getitem__, reverse=True)[: self._capacity]
        self.counts = {k: self.counts[k] for k in keep}
        self.payloads = {k: self.payloads[k] for k in keep}
        self.approximate = True

    def top(self, n: int) -> list[tuple[str, int, P]]:
        keys = sorted(self.counts, key=lambda k: (-self.counts[k], k))[:n]
        return [(k, self.counts[k], self.payloads[k]) for k in keys]


class Latest:
    """The ``size`` newest rows by time (ties in arrival order), counting all; oldest first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._heap: list[tuple[datetime, int, dict[str, Any]]] = []
        self._seq = itertools.count()
        self.total = 0

    def wants(self, when: datetime) -> bool:
        """Whether a row of this time would be kept: build it only then."""
        return len(self._heap) < self._size or (self._size > 0 and when > self._heap[0][0])

    def add(self, when: datetime, row: dict[str, Any]) -> None:
        self.total += 1
        item = (when, next(self._seq), row)
        if len(self._heap) < self._size:
            heapq.heappush(self._heap, item)
        elif self._size:
            heapq.heappushpop(self._heap, item)

    def rows(self) -> list[dict[str, Any]]:
        return [row for _, _, row in sorted(self._heap)]


@dataclass(slots=True)
class Seen:
    """Count is kept by the TopCounter; this is when and one example."""

    first: datetime | None = None
    last: datetime | None = None
    example: dict[str, Any] = field(default_factory=dict)

    def saw(self, when: datetime, example: dict[str, Any]) -> None:
        self.first = when if self.first is None or when < self.first else self.first
        if self.last is None or when >= self.last:
            self.last, self.example = when, example


@dataclass(slots=True)
class AlertState:
    detection: str = ""
    severity: str = ""
    summary: str = ""
    status: str = ""
    count: int = 0
    starts_at: datetime | None = None
    last: datetime | None = None
    records_at: datetime | None = None  # the newest record that raised it


@dataclass(slots=True)
class Certs:
    when: datetime | None = None
    certificates: list[dict[str, Any]] = field(default_factory=list)


def _first_last(first: datetime | None, last: datetime | None, when: datetime) -> tuple[datetime, datetime]:
    return (when if first is None or when < first else first, when if last is None or when > last else last)


@dataclass(slots=True)
class Collector:
    """Everything the report shows, updated record by record."""

    top: int = 10
    max_changes: int = 200
    capacity: int = 1000
    records: int = 0
    first: datetime | None = None
    last: datetime | None = None
    held: int = 0  # audit records in the files, in the period or not
    held_first: datetime | None = None
    held_last: datetime | None = None
    types: Counter[str] = field(default_factory=Counter)
    clusters: Counter[str] = field(default_factory=Counter)
    changes: Latest = field(init=False)
    secret_writes: Latest = field(init=False)
    change_counts: Counter[str] = field(default_factory=Counter)
    changers: TopCounter[Counter[str]] = field(init=False)
    findings: TopCounter[dict[str, Any]] = field(init=False)
    unauthenticated: TopCounter[Seen] = field(init=False)
    forbidden: TopCounter[Seen] = field(init=False)
    alerts: TopCounter[AlertState] = field(init=False)
    secrets: TopCounter[Certs] = field(init=False)
    secret_types: dict[str, str | None] = field(default_factory=dict)
    dead_letters: Counter[str] = field(default_factory=Counter)
    quality: Counter[tuple[str, str | None]] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.changes = Latest(self.max_changes)
        self.secret_writes = Latest(self.max_changes)
        self.changers = TopCounter(self.capacity, Counter)
        self.findings = TopCounter(self.capacity, dict)
        self.unauthenticated = TopCounter(self.capacity, Seen)
        self.forbidden = TopCounter(self.capacity, Seen)
        self.alerts = TopCounter(self.capacity, AlertState)
        self.secrets = TopCounter(self.capacity * 50, Certs)

    def hold(self, when: datetime) -> None:
        """An audit record in the files, whether in the period or not."""
        self.held += 1
        self.held_first, self.held_last = _first_last(self.held_first, self.held_last, when)

    def audit(self, doc: dict[str, Any], when: datetime) -> None:
        self.records += 1
        self.clusters[str(doc.get("cluster") or "-")] += 1
        self.first, self.last = _first_last(self.first, self.last, when)
        code = get(doc, "outcome", "code")
        if get(doc, "change", "baseline") == "unavailable":
            self.quality[("baseline_unavailable", None)] += 1
        ok = isinstance(code, int) and code < 400 and not doc.get("dry_run")
        kind = category(doc, self.secret_types)
        if kind in ("secret", "tls-secret") and ok:
            self._remember_type(doc)
        findings = _finding_list(doc)
        if kind and ok and doc.get("verb") in WRITES:
            self._change(doc, kind, when, findings)
        self._findings(doc, when, findings)
        if code in (401, 403):
            example = {"verb": str(doc.get("verb") or "") or None, "object": object_ref(doc)}
            if code == 401:
                ip = next(iter(get(doc, "actor", "source_ips") or ()), None) or "(none)"
                example["request_uri"] = doc.get("request_uri") if example["object"] is None else None
                self.unauthenticated.add(str(ip)).saw(when, example)
            else:
                self.forbidden.add(actor_name(doc)).saw(when, example)

    def _remember_type(self, doc: dict[str, Any]) -> None:
        key = object_key(doc)
        kind = secret_type(doc)
        if doc.get("verb") == "delete":
            return
        room = len(self.secret_types) < self.capacity * 50 or key in self.secret_types
        if room and (kind is not None or key not in self.secret_types):
            self.secret_types[key] = kind or self.secret_types.get(key)

    def _change(self, doc: dict[str, Any], kind: str, when: datetime, findings: list[dict[str, str]]) -> None:
        self.change_counts[kind] += 1
        actor = actor_name(doc)
        self.changers.add(actor)[kind] += 1
        secret = kind in ("secret", "tls-secret")
        if secret and not self.secret_writes.wants(when):
            self.secret_writes.total += 1
            secret = False
        if not self.changes.wants(when):
            self.changes.total += 1
            if secret:
                self._secret_write(doc, when, actor, findings)
            return
        actor_kind = get(doc, "actor", "user", "kind")
        row = {
            "time": when,
            "category": kind,
            "actor": actor,
            "actor_kind": str(actor_kind) if actor_kind else None,
            "verb": str(doc.get("verb")),
            "object": object_ref(doc),
            "change": change_data(doc),
            "findings": findings,
        }
        self.changes.add(when, row)
        if secret:
            self._secret_write(doc, when, actor, findings)

    def _secret_write(
        self, doc: dict[str, Any], when: datetime, actor: str, findings: list[dict[str, str]]
    ) -> None:
        keys = secret_keys(doc)
        known = self.secret_types.get(object_key(doc))
        self.secret_writes.add(
            when,
            {
                "time": when,
                "actor": actor,
                "verb": str(doc.get("verb")),
                "namespace": get(doc, "object", "namespace"),
                "name": get(doc, "object", "name"),
                "type": secret_type(doc) or known,
                "keys_added": keys["added"],
                "keys_changed": keys["changed"],
                "keys_removed": keys["removed"],
                "level": doc.get("level") if isinstance(doc.get("level"), str) else None,
                "findings": findings,
            },
        )

    def _findings(self, doc: dict[str, Any], when: datetime, findings: list[dict[str, str]]) -> None:
        for finding in findings:
            entry = self.findings.add(finding["id"])
            if SEVERITY_RANK.get(finding["severity"], -1) >= SEVERITY_RANK.get(entry.get("severity", ""), -1):
                entry["severity"] = finding["severity"]
            examples: list[dict[str, Any]] = entry.setdefault("examples", [])
            if len(examples) < _EXAMPLES:
                examples.append(
                    {
                        "time": when,
                        "actor": actor_name(doc),
                        "verb": str(doc.get("verb") or "") or None,
                        "object": object_ref(doc),
                    }
                )

    def certificates(self, doc: dict[str, Any], when: datetime) -> None:
        """The latest state of each TLS secret, from every record up to the end of the period."""
        if get(doc, "object", "resource") != "secrets":
            return
        code = get(doc, "outcome", "code")
        if not isinstance(code, int) or code >= 400 or doc.get("dry_run"):
            return
        key = f"{doc.get('cluster') or '-'}/{object_key(doc)}"
        if doc.get("verb") == "delete":
            self.secrets.discard(key)
            return
        certs = get(doc, "secret", "certificates")
        if not isinstance(certs, list):
            return
        seen = self.secrets.payloads.get(key)
        if seen is not None and seen.when is not None and seen.when > when:
            return
        entry = self.secrets.add(key)
        entry.when, entry.certificates = when, [c for c in certs if isinstance(c, dict)]

    def alert(self, doc: dict[str, Any], when: datetime, *, records_at: datetime) -> None:
        """``when`` is the alert record's own time; ``records_at`` that of its records."""
        status = str(doc.get("status") or "-")
        key = str(doc.get("fingerprint") or doc.get("id") or "?")
        entry = self.alerts.add(key)
        if entry.last is None or when >= entry.last:
            entry.last, entry.status = when, status
        if entry.records_at is None or records_at > entry.records_at:
            entry.records_at = records_at
            entry.detection = str(doc.get("detection") or "-")
            entry.severity = str(doc.get("severity") or "-")
            entry.summary = str(doc.get("summary") or "")
        count = doc.get("count")
        if isinstance(count, int) and not isinstance(count, bool):
            entry.count = max(entry.count, count)
        starts = parse_time(doc.get("starts_at"))
        if starts is not None and (entry.starts_at is None or starts < entry.starts_at):
            entry.starts_at = starts

    def dead_letter(self, doc: dict[str, Any]) -> None:
        self.dead_letters[str(doc.get("reason") or "-")] += 1


def _finding_list(doc: dict[str, Any]) -> list[dict[str, str]]:
    """The record's findings, one per id at its highest severity, in id order."""
    best: dict[str, str] = {}
    for f in doc.get("findings") or ():
        if not isinstance(f, dict):
            continue
        fid, severity = str(f.get("id") or "?"), str(f.get("severity") or "info")
        if SEVERITY_RANK.get(severity, -1) >= SEVERITY_RANK.get(best.get(fid, ""), -1):
            best[fid] = severity
    return [{"id": fid, "severity": best[fid]} for fid in sorted(best)]
