"""The pipeline, the spool and the sinks: what ``POST /audit`` and ``replay`` share.

``ingest`` returns once every record of the batch is in the spool and every dead letter in
the dead-letter file, both fsync'd; it raises ``StorageError`` (``SpoolFullError`` when a
sink is too far behind) when that cannot be done, and then neither the batch's dedupe keys
nor its baselines are stored, so the resent batch is recorded (and diffed) in full. The state
store is read only for events the filter kept; when it cannot be reached, records are
written without a baseline (``change.baseline: unavailable``) rather than refused. The new
states and dedupe keys are stored behind the answer (webhook/state/behind.py). Delivery to the
sinks runs behind, one loop per sink (webhook/delivery.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from webhook.config import Config
from webhook.dedupe import Deduper
from webhook.delivery import SinkWorker
from webhook.detect.feed import AlertFeed
from webhook.errors import SpoolFullError, StateError, StorageError, WebhookError
from webhook.metrics import Metrics
from webhook.pipeline.record_metrics import RecordMetrics
from webhook.pipeline.stages import BatchResult, DeadLetter, Pipeline, dead_letter_json
from webhook.pipeline.workers import PreparePool, prepare_body
from webhook.record.audit import to_json
from webhook.redact.redactor import Redactor, load_or_create_key
from webhook.sinks import sink_types
from webhook.spool.appendlog import AppendLog, ensure_private_dir
from webhook.spool.segments import Spool
from webhook.state import StateStore, open_store
from webhook.state.behind import WriteBehind

__all__ = ["Ingestor"]

log = structlog.get_logger(__name__)


class Ingestor:
    def __init__(self, config: Config, metrics: Metrics | None = None, *, event_time: bool = False) -> None:
        """``event_time``: detection windows run on the records' own time (replays), not the clock."""
        self.config = config
        self.metrics = metrics or Metrics()
        self._record_metrics = RecordMetrics(
            self.metrics, disabled=config.findings.disabled, severity=config.findings.severity
        )
        self.deduper = Deduper(max_entries=config.dedupe.max_entries, ttl_s=config.dedupe.ttl_s)
        self._pipeline: Pipeline | None = None
        self._prepare_pool: PreparePool | None = None
        self.dead_letters = AppendLog(
            config.in_data_dir(config.dead_letter.path),
            max_bytes=config.dead_letter.max_bytes,
            backups=config.dead_letter.backups,
        )
        self.spool = Spool(
            config.in_data_dir(config.spool.path),
            max_bytes=config.spool.max_bytes,
            segment_bytes=config.spool.segment_bytes,
            fsync=config.spool.fsync,
            on_drop=lambda sink, records: self.metrics.spool_dropped.labels(sink=sink).inc(records),
        )
        self.workers: list[SinkWorker] = []
        # Called with each batch's records once they are durable (the access host index).
        self.record_observers: list[Callable[[Sequence[Any]], None]] = []
        self.alerts = AlertFeed.from_config(config, self.spool, self.metrics, event_time=event_time)
        self._refused_at: int | None = None  # spool size when a batch last did not fit
        self.state: StateStore = open_store(
            config.state, data_dir=config.data_dir, cluster=config.cluster, dedupe_ttl_s=config.dedupe.ttl_s
        )
        self.state_writes = WriteBehind(
            self.state, on_error=lambda _: self.metrics.state_errors.labels(operation="write").inc()
        )

    @property
    def pipeline(self) -> Pipeline:
        if self._pipeline is None:
            raise RuntimeError("Ingestor.open() has not run")
        return self._pipeline

    async def open(self) -> None:
        """Create the data dir, recover the spool, start one delivery loop per sink."""
        await asyncio.to_thread(ensure_private_dir, self.config.data_dir)
        redaction = self.config.redaction
        key = await asyncio.to_thread(
            load_or_create_key, self.config.in_data_dir(redaction.fingerprint_key_file)
        )
        redactor = Redactor(key, expiry_warning_days=redaction.certificate_expiry_warning_days)
        self._pipeline = Pipeline(self.config, self.deduper, redactor)
        self._prepare_pool = PreparePool(self.config, key)
        await self.state.open()
        await asyncio.to_thread(self.dead_letters.open)
        await asyncio.to_thread(self.spool.open)
        self.metrics.spool_max_bytes.set(self.spool.max_bytes)
        types = sink_types()
        for settings in self.config.sinks:
            sink = types[settings.type].build(settings, self.config.data_dir)
            worker = SinkWorker(
                sink, settings, self.spool, metrics=self.metrics, dead_letters=self.dead_letters
            )
            self.workers.append(worker)
            worker.start()
        self.alerts.start()

    async def aclose(self, *, drain_timeout_s: float = 0.0) -> None:
        """Let the sinks catch up for at most ``drain_timeout_s``, then stop and close."""
        await self.alerts.aclose()
        if drain_timeout_s > 0:
            drained = await asyncio.gather(*(w.drain(drain_timeout_s) for w in self.workers))
            behind = [w.name for w, ok in zip(self.workers, drained, strict=True) if not ok]
            if behind:
                log.warning("sinks.not_drained", sinks=behind)
        for worker in self.workers:
            await worker.stop()
        if self._prepare_pool is not None:
            await self._prepare_pool.aclose()
        await self.spool.aclose()
        await self.dead_letters.aclose()
        await self.state_writes.drain()
        await self.state.aclose()
        log.info("sinks.closed", sinks=len(self.workers))

    async def drain(self, timeout_s: float) -> bool:
        """True once every sink has delivered everything in the spool."""
        results = await asyncio.gather(*(w.drain(timeout_s) for w in self.workers))
        return all(results)

    async def _with_state(self, result: BatchResult) -> list[str]:
        """Fetch previous states and shared dedupe keys (kept events only); finish the records.

        Returns the dedupe keys this batch claimed in the store."""
        pipeline = self.pipeline
        if not result.pending:
            return []
        lookups = pipeline.lookups(result)  # dead-letters an event whose keys cannot be read
        claimed = [p.key for p in result.pending]
        try:
            # Both at once: one wait for the event loop instead of two round trips.
            duplicates, states = await asyncio.gather(self.state.claim(claimed), self.state.get_many(lookups))
        except StateError as exc:
            log.warning("state.unavailable", store=self.state.name, code=exc.code)
            self.metrics.state_errors.labels(operation="read").inc()
            pipeline.finish(result, states={}, available=False)
            return []
        # States of earlier batches still on their way to the store are newer than the store's.
        pipeline.finish(result, states=self.state_writes.overlay(lookups, states), duplicates=duplicates)
        return [key for key in claimed if key not in duplicates]

    async def _release(self, claimed: list[str]) -> None:
        try:
            await self.state.release(claimed)
        except StateError as exc:
            log.warning("state.release_failed", store=self.state.name, code=exc.code)
            self.metrics.state_errors.labels(operation="release").inc()

    @property
    def prepare_pool(self) -> PreparePool:
        if self._prepare_pool is None:
            raise RuntimeError("Ingestor.open() has not run")
        return self._prepare_pool

    async def ingest_body(self, body: bytes, *, received_at: str, max_events: int) -> BatchResult:
        """``ingest`` for an EventList body: large ones are decoded, filtered and redacted by
        the worker processes (``server.workers``), small ones here.

        Raises the ``BadRequestError`` of a body that is not an EventList and
        ``BodyTooLargeError`` for more than ``max_events`` events."""
        pool = self.prepare_pool
        if not pool.wants(body):
            result = prepare_body(self.pipeline, body, received_at=received_at, max_events=max_events)
            return await self._ingest(result)
        result = await pool.prepare(body, received_at=received_at, max_events=max_events)
        pending = []
        for prepared in result.pending:  # the dedupe window is this process's
            if self.deduper.seen(prepared.key):
                result.duplicates += 1
            else:
                pending.append(prepared)
        result.pending = pending
        return await self._ingest(result)

    async def ingest(self, items: Sequence[Any], *, received_at: str) -> BatchResult:
        return await self._ingest(self.pipeline.prepare(items, received_at=received_at))

    async def _ingest(self, result: BatchResult) -> BatchResult:
        claimed = await self._with_state(result)
        try:
            await self._write(result)
        except SpoolFullError:
            self._refused_at = self.spool.size
            if claimed:
                await self._release(claimed)
            raise
        except BaseException:
            if claimed:
                await self._release(claimed)  # the retry must be recorded, here or elsewhere
            raise
        self._refused_at = None
        self.deduper.remember(result.keys)
        # The records are durable: the answer does not wait for the state store (see behind.py).
        await self.state_writes.submit(result.keys, result.state_updates)
        self._count(result)
        for observe in self.record_observers:
            observe(result.records)
        await self.alerts.records(result.records)  # durable now: count them, spool their alerts
        return result

    async def write_records(self, records: Sequence[Any], dead_letters: Sequence[DeadLetter] = ()) -> None:
        """Append records of other types (access, summaries) and dead letters, durably.

        Raises ``StorageError`` (``SpoolFullError``) like ``ingest`` when they cannot be kept.
        """
        writes = []
        if records:
            writes.append(self.spool.append([to_json(record) for record in records]))
        if dead_letters:
            writes.append(self.dead_letters.append(dead_letter_json(dead_letters)))
        for outcome in await asyncio.gather(*writes, return_exceptions=True):
            if isinstance(outcome, BaseException):
                if isinstance(outcome, SpoolFullError):
                    self._refused_at = self.spool.size
                raise outcome
        self.metrics.spool_bytes.set(self.spool.size)
        for letter in dead_letters:
            self.metrics.dead_letters.labels(reason=letter.reason).inc()

    async def _write(self, result: BatchResult) -> None:
        writes = []
        if result.lines:
            writes.append(self.spool.append(result.lines))
        if result.dead_letters:
            writes.append(self.dead_letters.append(dead_letter_json(result.dead_letters)))
        for outcome in await asyncio.gather(*writes, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome

    def _count(self, result: BatchResult) -> None:
        metrics = self.metrics
        metrics.events.inc(result.events)
        metrics.matched.inc(result.matched)
        metrics.records.inc(len(result.records))
        metrics.dedupe_hits.inc(result.duplicates)
        metrics.dedupe_entries.set(len(self.deduper))
        metrics.spool_bytes.set(self.spool.size)
        for letter in result.dead_letters:
            metrics.dead_letters.labels(reason=letter.reason).inc()
        self._record_metrics.count(result.records)

    async def reject(self, exc: WebhookError, *, received_at: str) -> None:
        """A rejected batch leaves a trace too: the apiserver drops it after its retries."""
        letter = DeadLetter(reason=exc.code, detail=exc.message, received_at=received_at)
        self.metrics.dead_letters.labels(reason=exc.code).inc()
        try:
            await self.dead_letters.append(dead_letter_json([letter]))
        except StorageError:
            log.error("dead_letter.write_failed", reason=exc.code)

    async def problems(self) -> dict[str, str]:
        """What stops us from accepting batches; empty when all is well."""
        problems: dict[str, str] = {}
        if not self.dead_letters.healthy:
            problems["dead_letter"] = self.dead_letters.last_error or "closed"
        if not self.spool.healthy:
            problems["spool"] = self.spool.last_error or "closed"
        elif self.spool.size >= self.spool.max_bytes * 0.99 or (
            self._refused_at is not None and self.spool.size >= self._refused_at
        ):
            problems["spool"] = "full; behind: " + ", ".join(self.spool.lagging())
        return problems

    async def sink_status(self) -> dict[str, dict[str, Any]]:
        """Per sink: healthy or not, and its lag; reported by /readyz, never failing it."""
        status: dict[str, dict[str, Any]] = {}
        for worker in self.workers:
            health = await worker.health()
            records, size = self.spool.lag(worker.name)
            status[worker.name] = {"ok": health.ok, "detail": health.detail, "lag_records": records}
            if size:
                status[worker.name]["lag_bytes"] = size
        return status
