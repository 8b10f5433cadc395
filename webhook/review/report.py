"""The weekly review of the records files, in one pass (two without a start of the period: the
first finds the newest audit record, where the default period ends).

Reads the JSONL files (rotated backups first, gzip'd ones too) line by line and keeps only
aggregates and the top entries (webhook/review/collect.py), so a month of records takes the
memory of its summary. Audit records are counted in the window ``[since, until)`` by their
own time; an alert by the time of the records that raised it; certificates come from the
latest record of each secret up to ``until``, since a secret's state outlives the window.
Dead letters are summarized; other record types are counted and otherwise ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import orjson

from webhook.commands.tail import RecordsNotFoundError
from webhook.record.files import rotated
from webhook.review.collect import Collector, ReportOptions
from webhook.review.describe import record_time
from webhook.review.render import Report
from webhook.review.sections import assemble
from webhook.sources.logfile import open_log

__all__ = ["ReportOptions", "build_report", "newest_record", "read_lines", "report_files", "report_for"]

_RECENT_IDS: Final = 100_000  # about 15 MB of ids and times
_DEFAULT_PERIOD: Final = timedelta(days=7)
_TICK: Final = timedelta(microseconds=1)  # ``until`` is excluded: the newest record is in


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
    """The last ``size`` audit record ids and their times: a sink redelivering after a crash
    writes a record again close to its first copy, and the review should count it once; an
    alert follows the records that raised it closely, and is placed in time by them."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._times: dict[str, datetime] = {}  # insertion order: oldest first

    def seen(self, record_id: str, when: datetime) -> bool:
        if record_id in self._times:
            return True
        self._times[record_id] = when
        if len(self._times) > self._size:
            del self._times[next(iter(self._times))]
        return False

    def time_of(self, ids: Any) -> datetime | None:
        """The newest time of the records among ``ids`` still remembered."""
        found = (
            [self._times[i] for i in ids if isinstance(i, str) and i in self._times]
            if isinstance(ids, list)
            else []
        )
        return max(found, default=None)


def _wanted(doc: dict[str, Any], kind: str, clusters: frozenset[str]) -> bool:
    return not clusters or kind == "dead_letter" or (cl := _cluster_of(doc)) is None or cl in clusters


def newest_record(docs: Iterable[dict[str, Any] | None], clusters: Sequence[str] = ()) -> datetime | None:
    """The time of the newest audit record (of ``clusters``): where the default period ends.
    Audit records only: alerts and dead letters carry the time they were processed, which
    after a backfill is long after the events."""
    wanted = frozenset(clusters)
    newest: datetime | None = None
    for doc in docs:
        if doc is None or str(doc.get("type") or "audit") != "audit" or not _wanted(doc, "audit", wanted):
            continue
        when = record_time(doc)
        if when is not None and (newest is None or when > newest):
            newest = when
    return newest


def collect(docs: Iterable[dict[str, Any] | None], options: ReportOptions) -> Collector:
    c = Collector(top=options.top, max_changes=options.max_changes)
    wanted = frozenset(options.clusters)
    recent = _RecentIds(_RECENT_IDS)
    for doc in docs:
        if doc is None:
            c.quality[("unreadable_lines", None)] += 1
            continue
        kind = str(doc.get("type") or "audit")
        if not _wanted(doc, kind, wanted):
            continue
        when = own = record_time(doc)
        if when is None or own is None:
            c.quality[("records_without_time", kind)] += 1
            continue
        if kind == "audit":
            if isinstance(rid := doc.get("id"), str) and recent.seen(rid, when):
                c.quality[("duplicate_records", None)] += 1
                continue
            c.hold(when)
        elif kind == "alert":
            when = recent.time_of(doc.get("records")) or when  # the records' time, not the detection's
        if when >= options.until:
            continue
        if kind == "audit":
            c.certificates(doc, when)
        if when < options.since:
            continue
        c.types[kind] += 1
        if kind == "audit":
            c.audit(doc, when)
        elif kind == "alert":
            c.alert(doc, own, records_at=when)
        elif kind == "dead_letter":
            c.dead_letter(doc)
    return c


def build_report(
    docs: Iterable[dict[str, Any] | None], options: ReportOptions, *, sources: Sequence[Path] = ()
) -> Report:
    c = collect(docs, options)
    return assemble(c, options, sources)


def report_for(
    paths: Sequence[Path],
    *,
    since: datetime | None,
    until: datetime | None,
    now: datetime,
    clusters: Sequence[str] = (),
    expiring_within: timedelta = timedelta(days=30),
    top: int = 10,
) -> Report:
    """The report of the records files at ``paths``. Without ``since``, the period is the seven
    days up to ``until``, else up to the newest audit record (the files are then read twice),
    else now."""
    files = report_files(paths)
    basis = "given"
    if since is None:
        if until is None:
            newest = newest_record(read_lines(files), clusters)
            until, basis = (newest + _TICK, "newest-record") if newest else (now, "now")
        since = until - _DEFAULT_PERIOD
    options = ReportOptions(
        since=since,
        until=until or now,
        now=now,
        expiring_within=expiring_within,
        top=top,
        clusters=tuple(clusters),
        basis=basis,
    )
    return build_report(read_lines(files), options, sources=files)
