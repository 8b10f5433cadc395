"""The access pipeline in the running service: inputs call in, records go to the record writer.

``ingest`` is for inputs that can retry (``POST /ingest/access``, replay): it returns once
the kept records, the closed windows' summaries and the dead letters are durable, and raises
``StorageError`` otherwise. ``submit`` is for syslog, which cannot be told to retry: lines
are processed at once and their records written by a background task every ``WRITE_EVERY_S``;
what cannot be written is counted as dropped. A periodic task closes windows by the clock;
``aclose`` summarizes the open window. ``listeners`` see every durable record and summary:
the hook for detections.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

import structlog

from webhook.access.hosts import INGRESS_PREFIXES, HostIndex
from webhook.access.pipeline import AccessBatch, AccessPipeline, Line, Parser
from webhook.access.request_metrics import RequestMetrics
from webhook.access.settings import AccessConfig
from webhook.dedupe import Deduper
from webhook.errors import ConfigError, StateError, StorageError
from webhook.metrics import Metrics
from webhook.record.access import replica_name
from webhook.record.dead_letter import DeadLetter
from webhook.record.line import ACCESS, ACCESS_SUMMARY
from webhook.record.time import now
from webhook.spool.writer import RecordWriter
from webhook.state import StateStore

__all__ = ["DROP_REASONS", "MAX_PENDING_RECORDS", "WRITE_EVERY_S", "AccessService", "build_access_parser"]

log = structlog.get_logger(__name__)

WRITE_EVERY_S: Final = 0.2
MAX_PENDING_RECORDS: Final = 50_000  # syslog records waiting for the writer; beyond: dropped
_LOAD_LIMIT: Final = 100_000
DROP_REASONS: Final = ("spool-full", "storage", "backlog", "too-many-connections")

Listener = Callable[[Sequence[Any]], None]


def build_access_parser(config: AccessConfig) -> Parser:
    from webhook.access.parsers import build_parser

    try:
        return build_parser(config.format, config.field_map, max_line_bytes=config.max_line_bytes)
    except ValueError as exc:
        raise ConfigError(f"access: {exc}") from None


class AccessService:
    def __init__(
        self,
        config: AccessConfig,
        writer: RecordWriter,
        state: StateStore,
        metrics: Metrics,
        *,
        cluster: str,
        trusted_cidrs: Sequence[str] = (),
        listeners: Sequence[Listener] = (),
        clock: Callable[[], float] | None = time.time,
        index: HostIndex | None = None,
        dedupe: Deduper | None = None,
    ) -> None:
        """``clock=None``: replay, where "now" is the newest request time seen; ``dedupe``:
        records whose id it has seen are not written again (replay); ``index``: the host
        index, which the caller keeps following the audit records."""
        self.config = config
        self.writer = writer
        self.state = state
        self.metrics = metrics
        self._requests = RequestMetrics(metrics)
        self.index = index if index is not None else HostIndex()  # an empty index is falsy
        self.pipeline = AccessPipeline(
            config,
            cluster=cluster,
            parser=build_access_parser(config),
            index=self.index,
            trusted_cidrs=trusted_cidrs,
            replica=replica_name(),
        )
        # At 0 from the start, so that an alert's increase() sees the first drop.
        for reason in DROP_REASONS:
            self.metrics.access_dropped.labels(reason=reason)
        self.listeners: tuple[Listener, ...] = tuple(listeners)
        self._clock = clock
        self._pending: list[Any] = []
        self._pending_letters: list[DeadLetter] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._write_lock = asyncio.Lock()
        self._dedupe = dedupe

    def now(self) -> float:
        return self._clock() if self._clock is not None else self.pipeline.latest

    async def open(self) -> None:
        """Load the ingresses the state store knows, start the timers."""
        for prefix in INGRESS_PREFIXES:
            try:
                stored = await self.state.scan(prefix, limit=_LOAD_LIMIT)
            except StateError as exc:
                log.warning("access.hosts_not_loaded", store=self.state.name, code=exc.code)
                break
            self.index.load(stored)
        log.info("access.hosts_loaded", ingresses=len(self.index))
        if self._clock is not None:
            self._tasks.append(asyncio.create_task(self._flush_loop()))
            self._tasks.append(asyncio.create_task(self._write_loop()))

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.flush(everything=True)

    async def flush(self, *, everything: bool = False) -> int:
        """Summarize the windows closed by now (every open one with ``everything``) and write
        them with whatever syslog records are pending; shutdown and tests call it."""
        summaries = self.pipeline.flush(self.now(), everything=everything)
        if summaries:
            self.metrics.access_windows.inc(len({s.window_start for s in summaries}))
        self._pending.extend(summaries)
        await self._write_pending()
        return len(summaries)

    async def ingest(
        self,
        lines: Sequence[Line],
        *,
        input: str,
        where: str = "",
        rejected: Sequence[DeadLetter] = (),
    ) -> AccessBatch:
        """Process and write durably; raises StorageError when the records cannot be kept.

        ``rejected``: dead letters for items the input could not even split (counted here)."""
        batch = self._process(lines, input=input, where=where)
        for letter in rejected:
            self.count_unparsed(input, letter.reason.removeprefix("access-"))
        records = self._unseen([*batch.records, *batch.summaries])
        async with self._write_lock:
            await self.writer.write_records(records, [*batch.dead_letters, *rejected])
        self._written(records)
        return batch

    def _unseen(self, records: list[Any]) -> list[Any]:
        if self._dedupe is None:
            return records
        return [r for r in records if not self._dedupe.seen(r.id)]

    def count_unparsed(self, input: str, reason: str) -> None:
        """A line or frame the input itself refused (syslog framing, a bad JSON item)."""
        self.metrics.access_lines.labels(input=input, result="unparsed").inc()
        self.metrics.access_unparsed.labels(input=input, reason=reason).inc()

    def submit(
        self, lines: Sequence[Line], *, input: str, where: str = "", parser: Parser | None = None
    ) -> AccessBatch:
        """Process now; the records are written by the background writer (syslog)."""
        batch = self._process(lines, input=input, where=where, parser=parser)
        records = [*batch.records, *batch.summaries]
        room = MAX_PENDING_RECORDS - len(self._pending)
        if len(records) > room:
            self.metrics.access_dropped.labels(reason="backlog").inc(len(records) - max(room, 0))
            records = records[: max(room, 0)]
        self._pending.extend(records)
        self._pending_letters.extend(batch.dead_letters)
        return batch

    def _process(
        self, lines: Sequence[Line], *, input: str, where: str, parser: Parser | None = None
    ) -> AccessBatch:
        clock = self._clock() if self._clock is not None else None
        batch = self.pipeline.process(
            lines, input=input, received_at=now(), now=clock, where=where, parser=parser
        )
        batch.summaries = self.pipeline.flush(self.now())
        self._count(batch, input)
        return batch

    def _count(self, batch: AccessBatch, input: str) -> None:
        metrics = self.metrics
        if batch.parsed:
            metrics.access_lines.labels(input=input, result="parsed").inc(batch.parsed)
        bad = batch.lines - batch.parsed
        if bad:
            metrics.access_lines.labels(input=input, result="unparsed").inc(bad)
            for letter in batch.dead_letters:
                reason = letter.reason.removeprefix("access-")
                metrics.access_unparsed.labels(input=input, reason=reason).inc()
            if batch.suppressed:
                metrics.access_unparsed.labels(input=input, reason="suppressed").inc(batch.suppressed)
        for ingress, slots in self.pipeline.take_request_counts().items():
            self._requests.observe(ingress, slots)
        if batch.summaries:
            metrics.access_windows.inc(len({s.window_start for s in batch.summaries}))

    def _written(self, records: Sequence[Any]) -> None:
        if not records:
            return
        if self._dedupe is not None:
            self._dedupe.remember(r.id for r in records)
        summaries = sum(1 for r in records if r.type == ACCESS_SUMMARY)
        if summaries:
            self.metrics.access_records.labels(type=ACCESS_SUMMARY).inc(summaries)
        if len(records) > summaries:
            self.metrics.access_records.labels(type=ACCESS).inc(len(records) - summaries)
        for listener in self.listeners:
            listener(records)

    async def _write_pending(self) -> None:
        records, self._pending = self._unseen(self._pending), []
        letters, self._pending_letters = self._pending_letters, []
        if not records and not letters:
            return
        async with self._write_lock:
            try:
                await self.writer.write_records(records, letters)
            except StorageError as exc:
                self.metrics.access_dropped.labels(reason=exc.code).inc(len(records))
                log.warning("access.records_dropped", records=len(records), code=exc.code)
                return
        self._written(records)

    async def _write_loop(self) -> None:
        while True:
            await asyncio.sleep(WRITE_EVERY_S)
            try:
                await self._write_pending()
            except Exception as exc:  # noqa: BLE001 - the loop must outlive one bad write
                log.error("access.write_failed", error=type(exc).__name__)

    async def _flush_loop(self) -> None:
        interval = min(5.0, max(0.05, self.config.window_s / 10))
        while True:
            await asyncio.sleep(interval)
            try:
                summaries = self.pipeline.flush(self.now())
            except Exception as exc:  # noqa: BLE001 - the loop must outlive one bad window
                log.error("access.flush_failed", error=type(exc).__name__)
                continue
            if summaries:
                self.metrics.access_windows.inc(len({s.window_start for s in summaries}))
                self._pending.extend(summaries)
                log.info("access.window_flushed", summaries=len(summaries))
