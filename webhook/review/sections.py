"""The review's summary and sections, built from the collected aggregates: rows of data, and
how each column reads as text."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

from webhook.record.line import ALERT, AUDIT, DEAD_LETTER
from webhook.review.collect import SEVERITIES, SEVERITY_RANK, Collector, ReportOptions
from webhook.review.render import Column, Report, Section, stamp, text
from webhook.review.text import (
    change_text,
    example_text,
    examples_text,
    findings_text,
    issue_text,
    object_text,
    position_text,
)

__all__ = ["CATEGORIES", "assemble"]

CATEGORIES: Final = ("ingress", "ingress-class", "tls-secret", "secret", "dns", "gateway")
_KNOWN: Final = frozenset({AUDIT, ALERT, DEAD_LETTER})


def _snake(name: str) -> str:
    return name.replace("-", "_")


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _time_col(key: str, title: str) -> Column:
    return Column(key=key, title=title, style="time")


def _num(key: str, title: str) -> Column:
    return Column(key=key, title=title, style="number")


_FINDINGS_COL: Final = Column(key="findings", title="findings", show=findings_text, style="findings")


def _summary(c: Collector, sections: dict[str, Section], options: ReportOptions) -> dict[str, Any]:
    by_severity = Counter(str(r["severity"]) for r in sections["findings"].rows)
    latest = Counter(a.status for a in c.alerts.payloads.values())
    return {
        "audit_records": c.records,
        "first_record": c.first,
        "last_record": c.last,
        "clusters": [{"cluster": name, "records": n} for name, n in c.clusters.most_common(options.top)],
        "changes": sections["changes"].total,
        "secret_writes": sections["secrets"].total,
        "findings": {s: by_severity.get(s, 0) for s in SEVERITIES},
        "unauthenticated_requests": sum(c.unauthenticated.counts.values()),
        "forbidden_requests": sum(c.forbidden.counts.values()),
        "alerts": {"firing": latest.get("firing", 0), "resolved": latest.get("resolved", 0)},
        "dead_letters": sum(c.dead_letters.values()),
    }


def _notice(c: Collector, options: ReportOptions) -> str:
    held = (
        f"the files hold {_count(c.held, 'audit record')}, from {stamp(c.held_first)} to {stamp(c.held_last)}"
        if c.held and c.held_first and c.held_last
        else "the files hold no audit record"
    )
    if options.basis == "newest-record" and c.held_last is not None:
        days = (options.until - options.since) // timedelta(days=1)
        head = f"The {days} days up to the newest record, {stamp(c.held_last)}"
        if c.held > c.records:
            return f"{head}; {held} (--since widens the period)."
        return f"{head}: every audit record the files hold."
    if options.basis == "now":
        return f"The 7 days up to now: {held}."
    if c.records == 0:
        return f"The period {stamp(options.since)} to {stamp(options.until)} holds no audit record; {held}."
    return f"From {stamp(options.since)} to {stamp(options.until)}; {held}."


def _facts(summary: dict[str, Any], options: ReportOptions, files: Sequence[Path]) -> list[tuple[str, str]]:
    s = summary
    findings = ", ".join(f"{n} {sev}" for sev, n in s["findings"].items() if n) or "none"
    facts = [
        ("period", f"{stamp(options.since)} to {stamp(options.until)}"),
        ("audit records", str(s["audit_records"])),
        ("first / last record", f"{text(s['first_record'])} / {text(s['last_record'])}"),
        ("clusters", ", ".join(f"{x['cluster']} ({x['records']})" for x in s["clusters"]) or "-"),
        ("changes", str(s["changes"])),
        ("secret writes", str(s["secret_writes"])),
        ("findings", findings),
        ("401 / 403", f"{s['unauthenticated_requests']} / {s['forbidden_requests']}"),
        ("alerts", f"firing {s['alerts']['firing']}, resolved {s['alerts']['resolved']}"),
        ("dead letters", str(s["dead_letters"])),
        ("generated", stamp(options.now)),
    ]
    if files:
        facts.append(("files", ", ".join(p.name for p in files)))
    return facts


def assemble(c: Collector, options: ReportOptions, files: Sequence[Path] = ()) -> Report:
    """The whole review: data for json, facts and a notice for the text formats."""
    built = {s.key: s for s in sections(c, options)}
    summary = _summary(c, built, options)
    data = {
        "period": {"since": options.since, "until": options.until, "basis": options.basis},
        "generated": options.now,
        "files": [str(p) for p in files],
        "summary": summary,
        "files_hold": {"audit_records": c.held, "first_record": c.held_first, "last_record": c.held_last},
    }
    return Report(
        title="ingress-audit review",
        data=data,
        facts=tuple(_facts(summary, options, files)),
        notice=_notice(c, options),
        sections=tuple(built.values()),
    )


def sections(c: Collector, options: ReportOptions) -> list[Section]:
    """Every section in reading order; rankings cut at ``options.top``."""
    top = options.top
    findings = sorted(
        c.findings.top(len(c.findings.counts)),
        key=lambda f: (-SEVERITY_RANK.get(f[2].get("severity", ""), -1), -f[1], f[0]),
    )
    secret_rows = tuple(c.secret_writes.rows())
    metadata_only = any(r["level"] == "Metadata" for r in secret_rows)
    return [
        Section(
            key="changers",
            title="Who changed ingress, TLS, DNS and Gateway API objects and Secrets",
            columns=(
                Column(key="actor", title="actor"),
                *(_num(_snake(k), k) for k in CATEGORIES),
                _num("total", "total"),
            ),
            rows=tuple(
                {"actor": actor, **{_snake(k): kinds[k] for k in CATEGORIES}, "total": total}
                for actor, total, kinds in c.changers.top(top)
            ),
            approximate=c.changers.approximate,
        ),
        Section(
            key="changes",
            title="Changes, oldest first",
            columns=(
                _time_col("time", "time"),
                Column(key="category", title="category"),
                Column(key="actor", title="actor"),
                Column(key="actor_kind", title="kind"),
                Column(key="verb", title="verb"),
                Column(key="object", title="object", show=object_text),
                Column(key="change", title="change", show=change_text, style="wide"),
                _FINDINGS_COL,
            ),
            rows=tuple(c.changes.rows()),
            total=c.changes.total,
        ),
        Section(
            key="secrets",
            title="Secret writes, oldest first",
            columns=(
                _time_col("time", "time"),
                Column(key="actor", title="actor"),
                Column(key="verb", title="verb"),
                Column(key="namespace", title="namespace"),
                Column(key="name", title="name"),
                Column(key="type", title="type"),
                Column(key="keys_added", title="keys added"),
                Column(key="keys_changed", title="keys changed"),
                Column(key="keys_removed", title="keys removed"),
                Column(key="level", title="audit level"),
                _FINDINGS_COL,
            ),
            rows=secret_rows,
            total=c.secret_writes.total,
            note=(
                "at the Metadata audit level a record has no Secret body: type and key names "
                "show only with the request-response policy profile"
                if metadata_only
                else ""
            ),
        ),
        Section(
            key="findings",
            title="Findings",
            columns=(
                Column(key="finding", title="finding", style="nowrap"),
                Column(key="severity", title="severity", style="severity"),
                _num("records", "records"),
                Column(key="examples", title="examples", show=examples_text, style="wide"),
            ),
            rows=tuple(
                {
                    "finding": fid,
                    "severity": e.get("severity", "info"),
                    "records": n,
                    "examples": e["examples"],
                }
                for fid, n, e in findings
            ),
            approximate=c.findings.approximate,
        ),
        _seen(
            "unauthenticated",
            "Authentication failures (401) by source IP",
            "source_ip",
            c.unauthenticated,
            top,
        ),
        _seen("forbidden", "Authorization failures (403) by user", "user", c.forbidden, top),
        _certificates(c, options),
        *_alerts(c, top),
        _quality(c),
    ]


def _seen(key: str, title: str, by: str, counter: Any, top: int) -> Section:
    return Section(
        key=key,
        title=title,
        columns=(
            Column(key=by, title=by.replace("_", " ")),
            _num("requests", "requests"),
            _time_col("first", "first"),
            _time_col("last", "last"),
            Column(key="example", title="latest example", show=example_text),
        ),
        rows=tuple(
            {by: k, "requests": n, "first": s.first, "last": s.last, "example": s.example}
            for k, n, s in counter.top(top)
        ),
        approximate=counter.approximate,
    )


def _certificates(c: Collector, options: ReportOptions) -> Section:
    rows: list[dict[str, Any]] = []
    horizon = options.now + options.expiring_within
    for key, certs in c.secrets.payloads.items():
        cluster, _, name = key.partition("/")
        namespace, _, secret = name.rpartition("/")
        for cert in certs.certificates:
            try:
                not_after = datetime.fromisoformat(str(cert.get("not_after")))
            except ValueError:
                continue
            if not_after.tzinfo is None or not_after > horizon:
                continue
            position = cert.get("position")
            rows.append(
                {
                    "namespace": namespace or None,
                    "name": secret,
                    "cluster": cluster,
                    "subject": str(cert.get("subject")) if cert.get("subject") else None,
                    "sans": [str(s) for s in cert.get("sans") or ()],
                    "not_after": not_after,
                    "days_left": (not_after - options.now) // timedelta(days=1),
                    "position": position if isinstance(position, int) else 0,
                    "seen": certs.when,
                }
            )
    rows.sort(key=lambda r: (r["days_left"], r["namespace"] or "", r["name"]))
    days = options.expiring_within // timedelta(days=1)
    return Section(
        key="certificates",
        title=f"Certificates expiring within {days} days (or expired)",
        columns=(
            Column(key="namespace", title="namespace"),
            Column(key="name", title="secret"),
            Column(key="cluster", title="cluster"),
            Column(key="subject", title="subject"),
            Column(key="sans", title="hosts (SANs)"),
            _time_col("not_after", "not after"),
            _num("days_left", "days left"),
            Column(key="position", title="which", show=position_text),
            _time_col("seen", "seen"),
        ),
        rows=tuple(rows),
        approximate=c.secrets.approximate,
    )


def _alerts(c: Collector, top: int) -> list[Section]:
    grouped: Counter[tuple[str, str, str]] = Counter()
    for alert in c.alerts.payloads.values():
        grouped[(alert.detection, alert.severity, alert.status)] += 1
    keys = sorted({(d, s) for d, s, _ in grouped}, key=lambda k: (-SEVERITY_RANK.get(k[1], -1), k[0]))
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
            columns=(
                Column(key="detection", title="detection", style="nowrap"),
                Column(key="severity", title="severity", style="severity"),
                _num("firing", "firing"),
                _num("resolved", "resolved"),
                _num("alerts", "alerts"),
            ),
            rows=tuple(
                {
                    "detection": d,
                    "severity": s,
                    "firing": grouped[(d, s, "firing")],
                    "resolved": grouped[(d, s, "resolved")],
                    "alerts": sum(n for (d2, s2, _), n in grouped.items() if (d2, s2) == (d, s)),
                }
                for d, s in keys
            ),
            approximate=c.alerts.approximate,
        ),
        Section(
            key="alerts",
            title="Top alerts",
            columns=(
                Column(key="detection", title="detection", style="nowrap"),
                Column(key="severity", title="severity", style="severity"),
                Column(key="status", title="status"),
                _num("count", "count"),
                _time_col("records_at", "records at"),
                _time_col("starts_at", "since"),
                _time_col("last_update", "last update"),
                Column(key="summary", title="summary", style="wide"),
            ),
            rows=tuple(
                {
                    "detection": a.detection,
                    "severity": a.severity,
                    "status": a.status,
                    "count": a.count,
                    "records_at": a.records_at,
                    "starts_at": a.starts_at,
                    "last_update": a.last,
                    "summary": a.summary,
                }
                for _, a in ranked
            ),
        ),
    ]


def _quality(c: Collector) -> Section:
    rows: list[dict[str, Any]] = [
        {"issue": "dead_letters", "detail": r, "count": n} for r, n in sorted(c.dead_letters.items())
    ]
    rows += [{"issue": i, "detail": d, "count": n} for (i, d), n in sorted(c.quality.items(), key=str)]
    rows += [
        {"issue": "unknown_type", "detail": t, "count": n}
        for t, n in sorted(c.types.items())
        if t not in _KNOWN
    ]
    return Section(
        key="quality",
        title="Data quality",
        columns=(
            Column(key="issue", title="what", show=issue_text),
            Column(key="detail", title="detail"),
            _num("count", "count"),
        ),
        rows=tuple(rows),
        empty="no problems",
    )
