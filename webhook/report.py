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
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import orjson

from webhook.replay import open_log
from webhook.report_collect import Collector, ReportOptions
from webhook.report_describe import record_time
from webhook.report_render import Report, render
from webhook.report_sections import sections, stamp
from webhook.tail import RecordsNotFoundError, rotated

__all__ = ["ReportOptions", "build_report", "read_lines", "report_files", "run"]

_PLAIN_WIDTH: Final = 160
_RECENT_IDS: Final = 100_000  # about 10 MB of ids


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


class _RecentIds:
    """The last ``size`` record ids: a sink redelivering after a crash writes a record again
    close to its first copy, and the review should count it once."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._order: deque[str] = deque()
        self._ids: set[str] = set()

    def seen(self, record_id: str) -> bool:
        if record_id in self._ids:
            return True
        self._ids.add(record_id)
        self._order.append(record_id)
        if len(self._order) > self._size:
            self._ids.discard(self._order.popleft())
        return False


def collect(docs: Iterable[dict[str, Any] | None], options: ReportOptions) -> Collector:
    c = Collector(top=options.top, max_changes=options.max_changes)
    wanted = frozenset(options.clusters)
    recent = _RecentIds(_RECENT_IDS)
    for doc in docs:
        if doc is None:
            c.quality["unreadable lines"] += 1
            continue
        kind = str(doc.get("type") or "audit")
        if kind == "audit" and isinstance(rid := doc.get("id"), str) and recent.seen(rid):
            c.quality["duplicate records (counted once)"] += 1
            continue
        if wanted and kind != "dead_letter" and (cl := _cluster_of(doc)) is not None and cl not in wanted:
            continue
        when = record_time(doc)
        if when is None:
            c.quality[f"{kind} records without a time"] += 1
            continue
        if when >= options.until:
            continue
        at = stamp(when.astimezone(UTC))
        if kind == "audit":
            c.certificates(doc, at)
        if when < options.since:
            continue
        c.types[kind] += 1
        if kind == "audit":
            c.audit(doc, at)
        elif kind == "alert":
            c.alert(doc, at)
        elif kind == "dead_letter":
            c.dead_letter(doc, at)
    return c


def build_report(
    docs: Iterable[dict[str, Any] | None], options: ReportOptions, *, sources: Sequence[Path] = ()
) -> Report:
    c = collect(docs, options)
    clusters = ", ".join(f"{name} ({n})" for name, n in c.clusters.most_common(options.top)) or "-"
    facts: list[tuple[str, str | int]] = [
        ("period", f"{stamp(options.since)} to {stamp(options.until)}"),
        ("audit records", c.records),
        ("first / last record", f"{c.first or '-'} / {c.last or '-'}"),
        ("clusters", clusters),
        ("changes reviewed", sum(c.change_counts.values())),
        ("alerts", ", ".join(f"{s} {n}" for s, n in sorted(c.alert_status.items())) or "0"),
        ("dead letters", sum(c.dead_letters.values())),
        ("generated", stamp(options.now)),
    ]
    if sources:
        facts.append(("files", ", ".join(p.name for p in sources)))
    return Report(title="ingress-audit review", facts=tuple(facts), sections=tuple(sections(c, options)))


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
