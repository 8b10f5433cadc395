"""``ingress-audit replay``: kube-apiserver log-backend files through the server's own ingest path.

The log backend (``--audit-log-path``, ``--audit-log-format=json``) writes one Event per line,
with ``kind: Event`` and ``apiVersion`` added; rotated files may be gzip'd. Those two keys are
dropped before ingesting, so an event gets the same record id as when the webhook delivered
it, and a backfill that overlaps live records adds nothing. Lines holding a whole EventList (a
saved webhook body) are accepted too.

Replaying twice adds nothing: before the first batch, the ids of the records already in the
JSONL sinks (rotated files included) are loaded into the dedupe window, which for a replay
neither expires nor evicts. That costs memory: about 200 bytes per record already written plus
one per record replayed (~200 MB for a million records), until a persisted dedupe store
replaces it.
"""

from __future__ import annotations

import asyncio
import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final

import orjson

from webhook.config import Config, DedupeConfig
from webhook.core.jsonscan import ScanError, top_members
from webhook.errors import BadRequestError, MalformedEventError, ReplayInputError
from webhook.events import API_VERSIONS, check_event, decode_event, decode_event_list, event_ref
from webhook.pipeline.ingestor import Ingestor
from webhook.pipeline.stages import DeadLetter, dead_letter_json
from webhook.record.files import open_maybe_gzip, rotated

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from webhook.commands.replay_access import AccessReplaySummary

__all__ = [
    "ReplaySummary",
    "existing_record_ids",
    "open_log",
    "read_events",
    "replay",
]

CHUNK: Final = 400
_LOG_KEYS: Final = ("kind", "apiVersion")


@dataclass(slots=True)
class ReplaySummary:
    files: int = 0
    events: int = 0
    matched: int = 0
    records: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    already_recorded: int = 0
    sent_to: str | None = None  # replay --server: the events went to this server's /audit
    access: AccessReplaySummary | None = None  # replay --access

    def line(self) -> str:
        where = (
            f"sent to {self.sent_to}"
            if self.sent_to
            else f"{self.already_recorded} records were already in the sinks"
        )
        text = (
            f"{self.events} events read, {self.matched} matched, {self.records} records written, "
            f"{self.duplicates} duplicates, {self.dead_letters} dead letters "
            f"({self.files} file{'' if self.files == 1 else 's'}; {where})"
        )
        return text if self.access is None else f"{text}\n{self.access.line()}"


@dataclass(frozen=True, slots=True)
class _Bad:
    """A line that is not an event: why, and the safe identifiers it has (if any)."""

    reason: str
    detail: str
    ref: dict[str, Any]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _as_webhook_item(event: dict[str, Any]) -> dict[str, Any]:
    """The event as the webhook sends it: without the log backend's ``kind``/``apiVersion``."""
    if event.get("kind") == "Event" and event.get("apiVersion") in API_VERSIONS:
        return {key: value for key, value in event.items() if key not in _LOG_KEYS}
    return event


def _tolerant(line: bytes, where: str, pos: int) -> list[Any] | _Bad:
    """A line that does not decode as a whole: an EventList's events each on its own, or the
    line as one event (an ``Undecodable`` holding what can be read of its identity)."""
    text = line.strip()
    try:
        return decode_event_list(text)
    except BadRequestError:
        pass
    try:
        top_members(text)  # an object, only some value in it does not decode
    except ScanError:
        # orjson's message can quote the input; keep only the position.
        return _Bad("not-json", f"{where}: not valid JSON (at byte {pos})", {})
    return [decode_event(text, 0, len(text))]


def _decode(line: bytes, where: str) -> Iterator[dict[str, Any] | _Bad]:
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        found = _tolerant(line, where, exc.pos)
        if isinstance(found, _Bad):
            yield found
            return
        doc = {"kind": "EventList", "items": found}
    items = doc.get("items") if isinstance(doc, dict) and doc.get("kind") == "EventList" else [doc]
    for item in items if isinstance(items, list) else [items]:
        try:
            yield _as_webhook_item(check_event(item))
        except MalformedEventError as exc:
            yield _Bad(exc.code, f"{where}: {exc.message}", event_ref(item))


def open_log(path: Path) -> tuple[BinaryIO, BinaryIO]:
    """(the raw file, the stream of its lines): gzip is recognised by its magic bytes."""
    try:
        return open_maybe_gzip(path)
    except OSError as exc:
        raise ReplayInputError(f"cannot read {path}: {exc.strerror}") from None


def read_events(path: Path, raw_position: list[int] | None = None) -> Iterator[dict[str, Any] | _Bad]:
    """Every event of a log-backend file (plain or gzip), or a ``_Bad`` naming file and line."""
    raw, stream = open_log(path)
    with raw, stream:
        lineno = 0
        try:
            for lineno, line in enumerate(stream, start=1):
                if raw_position is not None:
                    raw_position[0] = raw.tell()
                if line.strip():
                    yield from _decode(line, f"{path.name}:{lineno}")
        except (OSError, EOFError) as exc:
            where = f"{path}: after line {lineno}"
            raise ReplayInputError(f"{where}: cannot read further ({type(exc).__name__})") from None


DRAIN_TIMEOUT_S = 600.0


def _sink_files(config: Config) -> list[Path]:
    """JSONL sink files (rotated ones too) and the spool's segments (records not delivered yet)."""
    files = sorted(config.in_data_dir(config.spool.path).glob("*.seg"))
    for sink in config.sinks:
        if sink.type != "jsonl":
            continue
        path = config.in_data_dir(sink.options.path)
        files.append(path)
        files.extend(rotated(path))  # .N and .N.gz, as tail and report read them
    return [p for p in files if p.is_file()]


def existing_record_ids(config: Config) -> set[str]:
    """The ids of the records (not the alerts) in every JSONL sink file, rotated ones included."""
    ids: set[str] = set()
    for path in _sink_files(config):
        raw, stream = open_maybe_gzip(path)
        with raw, stream:
            for line in stream:
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if (
                    isinstance(record, dict)
                    and isinstance(record.get("id"), str)
                    and record.get("type") != "alert"  # alerts are not events: never replayed
                ):
                    ids.add(record["id"])
    return ids


def _take(events: Iterator[dict[str, Any] | _Bad], size: int) -> list[dict[str, Any] | _Bad]:
    chunk = []
    for event in events:
        chunk.append(event)
        if len(chunk) == size:
            break
    return chunk


async def _replay_file(
    ingestor: Ingestor,
    path: Path,
    summary: ReplaySummary,
    progress: tuple[Progress, TaskID] | None,
    chunk_size: int,
) -> None:
    position = [0]
    events = read_events(path, position)
    while chunk := await asyncio.to_thread(_take, events, chunk_size):
        received_at = _now()
        items = [e for e in chunk if not isinstance(e, _Bad)]
        letters = [
            DeadLetter(reason=e.reason, detail=e.detail, received_at=received_at, event=e.ref)
            for e in chunk
            if isinstance(e, _Bad)
        ]
        if letters:
            await ingestor.dead_letters.append(dead_letter_json(letters))
            for letter in letters:
                ingestor.metrics.dead_letters.labels(reason=letter.reason).inc()
        result = await ingestor.ingest(items, received_at=received_at)
        summary.events += len(chunk)
        summary.matched += result.matched
        summary.records += len(result.records)
        summary.duplicates += result.duplicates
        summary.dead_letters += len(letters) + len(result.dead_letters)
        if progress is not None:
            bar, task = progress
            bar.update(task, completed=position[0])


def _progress() -> Progress:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )


async def replay(
    config: Config,
    files: Sequence[Path],
    *,
    show_progress: bool = False,
    chunk_size: int = CHUNK,
    access_files: Sequence[Path] = (),
) -> ReplaySummary:
    """Feed ``files`` in order through the Ingestor into the configured sinks, then the
    ``access_files`` through the access pipeline (which learns the ingresses from the first)."""
    sizes = []
    for path in [*files, *access_files]:
        try:
            sizes.append(path.stat().st_size)
        except OSError as exc:
            raise ReplayInputError(f"cannot read {path}: {exc.strerror}") from None
    # Everything already recorded must stay known for the whole replay: no expiry, no eviction.
    config = replace(config, dedupe=DedupeConfig(max_entries=sys.maxsize, ttl_s=math.inf))
    if access_files and not config.access.enabled:
        # The default sinks follow access.enabled: access records get their own file here too.
        config = replace(config, access=replace(config.access, enabled=True))
    summary = ReplaySummary(files=len(files))
    ingestor = Ingestor(config, event_time=True)  # detection windows on the events' own time
    await ingestor.open()
    try:
        known = await asyncio.to_thread(existing_record_ids, config)
        summary.already_recorded = len(known)
        ingestor.deduper.remember(known)
        del known
        access = None
        if access_files:
            from webhook.access.service import AccessService

            access = AccessService(ingestor, clock=None, dedupe=ingestor.deduper)
            await access.open()
        bar = _progress() if show_progress else None
        if bar is not None:
            bar.start()
        try:
            for path, size in zip(files, sizes[: len(files)], strict=True):
                task = bar.add_task(path.name, total=size) if bar is not None else None
                tracker = (bar, task) if bar is not None and task is not None else None
                await _replay_file(ingestor, path, summary, tracker, chunk_size)
        finally:
            if bar is not None:
                bar.stop()
        if access is not None:
            from webhook.commands.replay_access import replay_access

            summary.access = await replay_access(access, access_files)
    finally:
        # What is not delivered by then stays in the spool and goes out with the next run.
        await ingestor.aclose(drain_timeout_s=DRAIN_TIMEOUT_S)
    return summary
