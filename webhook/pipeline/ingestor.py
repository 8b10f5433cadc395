"""One audit batch end to end: prepare, fetch state, build the records, write, count, observe.

``ingest`` returns once every record of the batch and every dead letter is durable (the
``RecordWriter``); when they cannot be kept it raises ``StorageError`` and stores neither the
batch's dedupe keys nor its baselines, so the resent batch is recorded (and diffed) in full.
The state store is read only for kept events; when it cannot be reached, records are written
without a baseline (``change.baseline: unavailable``) rather than refused. New states and
dedupe keys are stored behind the answer (webhook/state/behind.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import structlog

from webhook.dedupe import Deduper
from webhook.errors import StateError
from webhook.metrics import Metrics
from webhook.pipeline.record_metrics import RecordMetrics
from webhook.pipeline.stages import BatchResult, Pipeline
from webhook.pipeline.workers import PreparePool, prepare_body
from webhook.record.view import RecordView
from webhook.spool.writer import RecordWriter
from webhook.state import StateStore
from webhook.state.behind import WriteBehind

__all__ = ["AuditIngestor", "Observer"]

log = structlog.get_logger(__name__)

# Called in order with each batch's records, as their JSON documents (the record schema), once
# they are durable, before the answer.
Observer = Callable[[Sequence[Mapping[str, Any]]], Awaitable[None]]


class AuditIngestor:
    def __init__(
        self,
        pipeline: Pipeline,
        pool: PreparePool,
        *,
        deduper: Deduper,
        state: StateStore,
        state_writes: WriteBehind,
        writer: RecordWriter,
        metrics: Metrics,
        record_metrics: RecordMetrics,
        observers: Sequence[Observer] = (),
    ) -> None:
        self.pipeline = pipeline
        self._pool = pool
        self._deduper = deduper
        self._state = state
        self._state_writes = state_writes
        self._writer = writer
        self._metrics = metrics
        self._record_metrics = record_metrics
        self._observers = tuple(observers)

    async def ingest_body(
        self, body: bytes, *, received_at: str, max_events: int, cluster: str | None = None
    ) -> BatchResult:
        """``ingest`` for an EventList body: large ones are decoded, filtered and redacted by
        the worker processes (``server.workers``), the others here.

        Raises the ``BadRequestError`` of a body that is not an EventList and
        ``BodyTooLargeError`` for more than ``max_events`` events. ``cluster``: the cluster the
        sender proved (None: the configured one)."""
        if not self._pool.wants(body):
            result = prepare_body(
                self.pipeline, body, received_at=received_at, max_events=max_events, cluster=cluster
            )
            return await self._ingest(result)
        result = await self._pool.prepare(body, received_at=received_at, max_events=max_events)
        self.pipeline.assign(result, cluster)
        pending = []
        for prepared in result.pending:  # the dedupe window is this process's
            if self._deduper.seen(prepared.key):
                result.duplicates += 1
            else:
                pending.append(prepared)
        result.pending = pending
        return await self._ingest(result)

    async def ingest(
        self, items: Sequence[Any], *, received_at: str, cluster: str | None = None
    ) -> BatchResult:
        return await self._ingest(self.pipeline.prepare(items, received_at=received_at, cluster=cluster))

    async def _ingest(self, result: BatchResult) -> BatchResult:
        claimed = await self._with_state(result)
        try:
            await self._writer.write_batch(result.lines, result.dead_letters)
        except BaseException:
            if claimed:
                await self._release(claimed)  # the retry must be recorded, here or elsewhere
            raise
        self._deduper.remember(result.keys)
        # The records are durable: the answer does not wait for the state store (see behind.py).
        await self._state_writes.submit(result.keys, result.state_updates)
        if not result.documents:
            result.documents = [RecordView(record) for record in result.records]
        self._count(result)
        for observe in self._observers:
            await observe(result.documents)
        return result

    async def _with_state(self, result: BatchResult) -> list[str]:
        """Fetch previous states and shared dedupe keys (kept events only); finish the records.

        Returns the dedupe keys this batch claimed in the store."""
        pipeline = self.pipeline
        if not result.pending:
            return []
        lookups = pipeline.lookups(result)  # dead-letters an event whose keys cannot be read
        claimed = [p.key for p in result.pending]
        state = self._state
        try:
            if state.remote:  # both at once: one wait for the network instead of two
                duplicates, states = await asyncio.gather(state.claim(claimed), state.get_many(lookups))
            else:  # neither waits: no task, no pass of the event loop between them
                duplicates = await state.claim(claimed)
                states = await state.get_many(lookups)
        except StateError as exc:
            log.warning("state.unavailable", store=state.name, code=exc.code)
            self._metrics.state_errors.labels(operation="read").inc()
            pipeline.finish(result, states={}, available=False)
            return []
        # States of earlier batches still on their way to the store are newer than the store's.
        pipeline.finish(result, states=self._state_writes.overlay(lookups, states), duplicates=duplicates)
        return [key for key in claimed if key not in duplicates]

    async def _release(self, claimed: list[str]) -> None:
        try:
            await self._state.release(claimed)
        except StateError as exc:
            log.warning("state.release_failed", store=self._state.name, code=exc.code)
            self._metrics.state_errors.labels(operation="release").inc()

    def _count(self, result: BatchResult) -> None:
        """The batch's counts; the writer counted the bytes and dead letters it wrote."""
        metrics = self._metrics
        cluster = self._record_metrics.cluster(result.cluster or self.pipeline.cluster)
        metrics.events.labels(cluster=cluster).inc(result.events)
        metrics.matched.inc(result.matched)
        metrics.records.labels(cluster=cluster).inc(len(result.records))
        metrics.dedupe_hits.inc(result.duplicates)
        metrics.dedupe_entries.set(len(self._deduper))
        self._record_metrics.count(result.documents)
