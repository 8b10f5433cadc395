"""``ingress-audit report``: the weekly review of the records files, in one pass.

Reads the JSONL files (rotated backups first, gzip'd ones too) line by line and keeps only
aggregates and the top entries (webhook/report_collect.py), so a month of records takes the
memory of its summary. Audit records are counted in the window ``[since, until)`` by their
own time; certificates come from the latest record of each secret up to ``until``, since a
secret's state outlives the window. Alerts and dead letters are summarized; other record
types are counted and otherwise ignored.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import orjson

from webhook.replay import open_log
from webhook.report_collect import SEVERITY_RANK, Collector, record_time
from webhook.report_render import Report, Section, render
from webhook.tail import RecordsNotFoundError, rotated

__all__ = ["ReportOptions", "build_report", "read_lines", "report_files", "run"]

CATEGORIES: Final = ("ingress", "ingress-class", "tls-secret", "dns", "gateway")
_PLAIN_WIDTH: Final = 160


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportOptions:
    since: datetime
    until: datetime
    now: datetime
    expiring_within: timedelta = timedelta(days=30)
    top: int = 10
    clusters: tuple[str, ...] = ()
    max_changes: int = 200


def report_files(paths: Sequence[Path]) -> list[Path]:
    """Each path's rotated backups, oldest first, then the path itself; only those that exist."""
    files: list[Path] = []
    for path in paths:
        files += reversed(rotated(path))
        if path.is_file():
            files.append(path)
    if not files:
        raise RecordsNotFoundError(f"no records file at {', '.join(map(str, paths))}")
    return files


def read_lines(files: Iterable[Path]) -> Iterator[dict[str, Any] | None]:
    """Each line's JSON object, one at a time; ``None`` for a line that is not one."""
    for path in files:
        raw, stream = open_log(path)
        with raw, stream:
            for line in stream:
                if not line.strip():
                    continue
                try:
                    doc = orjson.loads(line)
                except orjson.JSONDecodeError:
                    yield None
                    continue
                yield doc if isinstance(doc, dict) else None


def _cluster_of(doc: dict[str, Any]) -> str | None:
    cluster = doc.get("cluster")
    if cluster is None and isinstance(doc.get("labels"), dict):
        cluster = doc["labels"].get("cluster")
    return cluster if isinstance(cluster, str) else None


def collect(docs: Iterable[dict[str, Any] | None], options: ReportOptions) -> Collector:
    c = Collector(top=options.top, max_changes=options.max_changes)
    wanted = frozenset(options.clusters)
    for doc in docs:
        if doc is None:
            c.quality["unreadable lines"] += 1
            continue
        kind = str(doc.get("type") or "audit")
        if wanted and kind != "dead_letter" and (cl := _cluster_of(doc)) is not None and cl not in wanted:
            continue
        when = record_time(doc)
        if when is None:
            c.quality[f"{kind} records without a time"] += 1
            continue
        if when >= options.until:
            continue
        stamp = _z(when.astimezone(UTC))
        if kind == "audit":
            c.certificates(doc, stamp)
        if when < options.since:
            continue
        c.types[kind] += 1
        if kind == "audit":
            c.audit(doc, stamp)
        elif kind == "alert":
            c.alert(doc, stamp)
        elif kind == "dead_letter":
            c.dead_letter(doc, stamp)
    return c


def _z(when: datetime) -> str:
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


def _approx(*counters: Any) -> str:
    return "approximate: more distinct keys than kept" if any(t.approximate for t in counters) else ""


def _sections(c: Collector, options: ReportOptions) -> list[Section]:
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
                    _z(not_after),
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


def build_report(
    docs: Iterable[dict[str, Any] | None], options: ReportOptions, *, sources: Sequence[Path] = ()
) -> Report:
    c = collect(docs, options)
    clusters = ", ".join(f"{name} ({n})" for name, n in c.clusters.most_common(options.top)) or "-"
    facts: list[tuple[str, str | int]] = [
        ("period", f"{_z(options.since)} to {_z(options.until)}"),
        ("audit records", c.records),
        ("first / last record", f"{c.first or '-'} / {c.last or '-'}"),
        ("clusters", clusters),
        ("changes reviewed", sum(c.change_counts.values())),
        ("alerts", ", ".join(f"{s} {n}" for s, n in sorted(c.alert_status.items())) or "0"),
        ("dead letters", sum(c.dead_letters.values())),
        ("generated", _z(options.now)),
    ]
    if sources:
        facts.append(("files", ", ".join(p.name for p in sources)))
    return Report(title="ingress-audit review", facts=tuple(facts), sections=tuple(_sections(c, options)))


def run(
    paths: Sequence[Path],
    *,
    since: datetime | None,
    until: datetime | None,
    fmt: str,
    output: Path | None,
    clusters: Sequence[str] = (),
    expiring_within: timedelta = timedelta(days=30),
    top: int = 10,
    now: datetime | None = None,
) -> int:
    """Read, aggregate, write; the default window is the seven days before now."""
    now = now or datetime.now(UTC)
    until = until or now
    options = ReportOptions(
        since=since or until - timedelta(days=7),
        until=until,
        now=now,
        expiring_within=expiring_within,
        top=top,
        clusters=tuple(clusters),
    )
    files = report_files(paths)
    report = build_report(read_lines(files), options, sources=files)
    if output is not None:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w", encoding="utf-8") as f:
            render(report, fmt, f)
        return 0
    terminal = sys.stdout.isatty()
    width = None if terminal else int(os.environ.get("COLUMNS") or 0) or _PLAIN_WIDTH
    try:
        render(report, fmt, sys.stdout, terminal=terminal, width=width)
        sys.stdout.flush()
    except BrokenPipeError:  # `| head` went away: nothing more to say
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return 0
