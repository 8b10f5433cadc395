"""The weekly review's aggregates, fed one parsed record at a time in bounded memory.

Every per-key table (source IPs, users, alerts, secrets) is a ``TopCounter``: exact while the
keys fit, then pruned to its most frequent keys and marked approximate, so a flood of distinct
addresses cannot grow the report's memory.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Generic, TypeVar

from webhook.report_describe import WRITES, actor_name, category, change_summary, get, object_key, object_name

__all__ = ["SEVERITY_RANK", "Collector", "ReportOptions", "TopCounter"]

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


@dataclass(slots=True)
class Seen:
    """Count is kept by the TopCounter; this is when and one example."""

    first: str = ""
    last: str = ""
    example: str = ""

    def saw(self, when: str, example: str) -> None:
        self.first = self.first or when
        self.last, self.example = when, example


@dataclass(slots=True)
class AlertState:
    detection: str = ""
    severity: str = ""
    summary: str = ""
    status: str = ""
    count: int = 0
    starts_at: str = ""
    last: str = ""


@dataclass(slots=True)
class Certs:
    when: str = ""
    certificates: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class Collector:
    """Everything the report shows, updated record by record."""

    top: int = 10
    max_changes: int = 200
    capacity: int = 1000
    records: int = 0
    first: str | None = None
    last: str | None = None
    types: Counter[str] = field(default_factory=Counter)
    clusters: Counter[str] = field(default_factory=Counter)
    changes: deque[dict[str, str]] = field(default_factory=deque)
    change_counts: Counter[str] = field(default_factory=Counter)
    changers: TopCounter[Counter[str]] = field(init=False)
    findings: TopCounter[dict[str, Any]] = field(init=False)
    unauthenticated: TopCounter[Seen] = field(init=False)
    forbidden: TopCounter[Seen] = field(init=False)
    alerts: TopCounter[AlertState] = field(init=False)
    alert_status: Counter[str] = field(default_factory=Counter)
    secrets: TopCounter[Certs] = field(init=False)
    tls_secrets: set[str] = field(default_factory=set)
    dead_letters: Counter[str] = field(default_factory=Counter)
    quality: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.changes = deque(maxlen=self.max_changes)
        self.changers = TopCounter(self.capacity, Counter)
        self.findings = TopCounter(self.capacity, dict)
        self.unauthenticated = TopCounter(self.capacity, Seen)
        self.forbidden = TopCounter(self.capacity, Seen)
        self.alerts = TopCounter(self.capacity, AlertState)
        self.secrets = TopCounter(self.capacity * 50, Certs)

    def period(self, when: str) -> None:
        self.first = when if self.first is None or when < self.first else self.first
        self.last = when if self.last is None or when > self.last else self.last

    def audit(self, doc: dict[str, Any], when: str) -> None:
        self.records += 1
        self.clusters[str(doc.get("cluster") or "-")] += 1
        self.period(when)
        code = get(doc, "outcome", "code")
        if get(doc, "change", "baseline") == "unavailable":
            self.quality["baseline unavailable"] += 1
        kind = category(doc, self.tls_secrets)
        ok = isinstance(code, int) and code < 400
        if kind == "tls-secret" and len(self.tls_secrets) < self.capacity * 50:
            self.tls_secrets.add(object_key(doc))
        if kind and ok and doc.get("verb") in WRITES and not doc.get("dry_run"):
            self._change(doc, kind, when)
        self._findings(doc, when)
        if code == 401:
            ip = next(iter(get(doc, "actor", "source_ips") or ()), None) or "(none)"
            self.unauthenticated.add(str(ip)).saw(when, f"{doc.get('verb', '-')} {object_name(doc)}")
        elif code == 403:
            self.forbidden.add(actor_name(doc)).saw(when, f"{doc.get('verb', '-')} {object_name(doc)}")

    def _change(self, doc: dict[str, Any], kind: str, when: str) -> None:
        self.change_counts[kind] += 1
        actor = actor_name(doc)
        self.changers.add(actor)[kind] += 1
        self.changes.append(
            {
                "time": when,
                "category": kind,
                "actor": actor,
                "kind": str(get(doc, "actor", "user", "kind") or "-"),
                "verb": str(doc.get("verb") or "-"),
                "object": object_name(doc),
                "change": change_summary(doc),
                "findings": ", ".join(sorted({str(f.get("id")) for f in _findings(doc)})),
            }
        )

    def _findings(self, doc: dict[str, Any], when: str) -> None:
        seen: set[str] = set()
        for finding in _findings(doc):
            fid = str(finding.get("id") or "?")
            if fid in seen:
                continue
            seen.add(fid)
            entry = self.findings.add(fid)
            severity = str(finding.get("severity") or "info")
            if SEVERITY_RANK.get(severity, -1) >= SEVERITY_RANK.get(entry.get("severity", ""), -1):
                entry["severity"] = severity
            examples: list[str] = entry.setdefault("examples", [])
            if len(examples) < _EXAMPLES:
                examples.append(f"{when} {actor_name(doc)} {doc.get('verb', '-')} {object_name(doc)}")

    def certificates(self, doc: dict[str, Any], when: str) -> None:
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
        if key in self.secrets.payloads and self.secrets.payloads[key].when > when:
            return
        entry = self.secrets.add(key)
        entry.when, entry.certificates = when, [c for c in certs if isinstance(c, dict)]

    def alert(self, doc: dict[str, Any], when: str) -> None:
        self.period(when)
        status = str(doc.get("status") or "-")
        self.alert_status[status] += 1
        key = str(doc.get("fingerprint") or doc.get("id") or "?")
        entry = self.alerts.add(key)
        if when >= entry.last:
            entry.last, entry.status = when, status
            entry.detection = str(doc.get("detection") or "-")
            entry.severity = str(doc.get("severity") or "-")
            entry.summary = str(doc.get("summary") or "")
        count = doc.get("count")
        if isinstance(count, int) and not isinstance(count, bool):
            entry.count = max(entry.count, count)
        starts = doc.get("starts_at")
        if isinstance(starts, str) and (not entry.starts_at or starts < entry.starts_at):
            entry.starts_at = starts

    def dead_letter(self, doc: dict[str, Any], when: str) -> None:
        self.period(when)
        self.dead_letters[str(doc.get("reason") or "-")] += 1


def _findings(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in doc.get("findings") or () if isinstance(f, dict)]
