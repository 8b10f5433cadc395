"""The review's sections, built from the collected aggregates: plain rows for every renderer."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any, Final

from webhook.report_collect import SEVERITY_RANK, Collector, ReportOptions
from webhook.report_render import Section

__all__ = ["CATEGORIES", "sections", "stamp"]

CATEGORIES: Final = ("ingress", "ingress-class", "tls-secret", "dns", "gateway")


def stamp(when: datetime) -> str:
    """RFC 3339 to the second, ``Z`` for UTC: the report's one way of writing a time."""
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


def _approx(*counters: Any) -> str:
    return "approximate: more distinct keys than kept" if any(t.approximate for t in counters) else ""


def sections(c: Collector, options: ReportOptions) -> list[Section]:
    """Every section in reading order; rankings cut at ``options.top``."""
    top = options.top
    by_actor: tuple[tuple[str | int, ...], ...] = tuple(
        (actor, *(kinds[k] for k in CATEGORIES), total) for actor, total, kinds in c.changers.top(top)
    )
    shown = list(c.changes)
    total_changes = sum(c.change_counts.values())
    more = f"the latest {len(shown)} of {total_changes}" if total_changes > len(shown) else ""
    findings = sorted(
        c.findings.top(len(c.findings.counts)),
        key=lambda f: (-SEVERITY_RANK.get(f[2].get("severity", ""), -1), -f[1], f[0]),
    )
    return [
        Section(
            key="changers",
            title="Who changed ingress, TLS, DNS and Gateway API objects",
            columns=("actor", *CATEGORIES, "total"),
            rows=by_actor,
            note=_approx(c.changers),
        ),
        Section(
            key="changes",
            title="Changes",
            columns=("time", "category", "actor", "kind", "verb", "object", "change", "findings"),
            rows=tuple(tuple(row.values()) for row in shown),
            note=more,
        ),
        Section(
            key="findings",
            title="Findings",
            columns=("finding", "severity", "records", "examples"),
            rows=tuple(
                (fid, str(e.get("severity", "-")), n, "; ".join(e.get("examples", ())))
                for fid, n, e in findings
            ),
            note=_approx(c.findings),
        ),
        Section(
            key="unauthenticated",
            title="Authentication failures (401) by source IP",
            columns=("source ip", "requests", "first", "last", "example"),
            rows=tuple((ip, n, s.first, s.last, s.example) for ip, n, s in c.unauthenticated.top(top)),
            note=_approx(c.unauthenticated),
        ),
        Section(
            key="forbidden",
            title="Authorization failures (403) by user",
            columns=("user", "requests", "first", "last", "example"),
            rows=tuple((u, n, s.first, s.last, s.example) for u, n, s in c.forbidden.top(top)),
            note=_approx(c.forbidden),
        ),
        _certificates(c, options),
        *_alerts(c, top),
        _quality(c),
    ]


def _certificates(c: Collector, options: ReportOptions) -> Section:
    rows: list[tuple[Any, ...]] = []
    horizon = options.now + options.expiring_within
    for key, certs in c.secrets.payloads.items():
        cluster, _, name = key.partition("/")
        for cert in certs.certificates:
            try:
                not_after = datetime.fromisoformat(str(cert.get("not_after")))
            except ValueError:
                continue
            if not_after.tzinfo is None or not_after > horizon:
                continue
            days = (not_after - options.now) // timedelta(days=1)
            rows.append(
                (
                    name,
                    cluster,
                    str(cert.get("subject") or "-"),
                    ", ".join(map(str, cert.get("sans") or ())) or "-",
                    stamp(not_after),
                    days,
                    "leaf" if cert.get("position") in (0, None) else f"chain #{cert.get('position')}",
                    certs.when,
                )
            )
    rows.sort(key=lambda r: (r[5], r[0]))
    days = options.expiring_within // timedelta(days=1)
    return Section(
        key="certificates",
        title=f"Certificates expiring within {days} days (or expired)",
        columns=("secret", "cluster", "subject", "hosts (SANs)", "not after", "days left", "which", "seen"),
        rows=tuple(rows),
        note="approximate: more secrets than kept" if c.secrets.approximate else "",
    )


def _alerts(c: Collector, top: int) -> list[Section]:
    grouped: Counter[tuple[str, str, str]] = Counter()
    for alert in c.alerts.payloads.values():
        grouped[(alert.detection, alert.severity, alert.status)] += 1
    keys = sorted({(d, s) for d, s, _ in grouped}, key=lambda k: (-SEVERITY_RANK.get(k[1], -1), k[0]))
    by_detection = tuple(
        (d, s, grouped[(d, s, "firing")], grouped[(d, s, "resolved")], _total(grouped, d, s)) for d, s in keys
    )
    ranked = sorted(
        c.alerts.payloads.items(),
        key=lambda kv: (
            kv[1].status != "firing",
            -SEVERITY_RANK.get(kv[1].severity, -1),
            -kv[1].count,
            kv[0],
        ),
    )[:top]
    return [
        Section(
            key="alerts_by_detection",
            title="Alerts by detection and severity (latest status of each alert)",
            columns=("detection", "severity", "firing", "resolved", "alerts"),
            rows=by_detection,
            note=_approx(c.alerts),
        ),
        Section(
            key="alerts",
            title="Top alerts",
            columns=("detection", "severity", "status", "count", "since", "last update", "summary"),
            rows=tuple(
                (a.detection, a.severity, a.status, a.count, a.starts_at or "-", a.last, a.summary)
                for _, a in ranked
            ),
        ),
    ]


def _total(grouped: Counter[tuple[str, str, str]], detection: str, severity: str) -> int:
    return sum(n for (d, s, _), n in grouped.items() if (d, s) == (detection, severity))


def _quality(c: Collector) -> Section:
    rows: list[tuple[str, int]] = [(f"dead letters: {r}", n) for r, n in sorted(c.dead_letters.items())]
    rows += sorted(c.quality.items())
    rows += [(f"ignored records of type {t}", n) for t, n in sorted(c.types.items()) if t not in _KNOWN]
    return Section(
        key="quality", title="Data quality", columns=("what", "count"), rows=tuple(rows), empty="no problems"
    )


_KNOWN: Final = frozenset({"audit", "alert", "dead_letter"})
