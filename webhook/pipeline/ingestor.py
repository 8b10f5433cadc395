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
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

import orjson
import structlog

from webhook.dedupe import Deduper
from webhook.errors import StateError
from webhook.metrics import Metrics
from webhook.pipeline.record_metrics import RecordMetrics
from webhook.pipeline.stages import BatchResult, Pipeline
from webhook.pipeline.workers import PreparePool, prepare_body
from webhook.spool.writer import RecordWriter
from webhook.state import StateStore
from webhook.state.base import StoredObject, lay_newer
from webhook.state.behind import WriteBehind

__all__ = ["AuditIngestor", "Observer"]

# Builds a batch's records from the previous states, the ids other replicas recorded, and
# whether the store answered.
Finish = Callable[[Mapping[str, StoredObject], frozenset[str] | set[str], bool], Awaitable[BatchResult]]


def _built(result: BatchResult) -> Finish:
    """The ``Finish`` of a batch whose records are built already."""

    async def finish(_: Mapping[str, StoredObject], __: frozenset[str] | set[str], ___: bool) -> BatchResult:
        return result

    return finish


log = structlog.get_logger(__name__)

# Called in order with each batch's records, as their JSON documents (the record schema), once
# they are durable, before the answer.
Observer = Callable[[Sequence[Mapping[str, Any]]], Awaitable[None]]


class _Hold:
    """``AuditIngestor._in_order``'s hold on some objects, as an async context manager."""

    __slots__ = ("_busy", "_mine", "_objects")

    def __init__(
        self, busy: dict[str, list[tuple[asyncio.Future[None], object]]], objects: list[str], builder: object
    ) -> None:
        self._busy = busy
        self._objects = objects
        self._mine: tuple[asyncio.Future[None], object] = (
            asyncio.get_running_loop().create_future(),
            builder,
        )

    async def __aenter__(self) -> None:
        busy, objects, builder = self._busy, self._objects, self._mine[1]
        while waits := [done for key in objects for done, where in busy.get(key, ()) if where is not builder]:
            await asyncio.wait(waits)
        for key in objects:
            busy.setdefault(key, []).append(self._mine)

    async def __aexit__(self, *_: object) -> None:
        busy = self._busy
        for key in self._objects:
            holders = busy[key]
            holders.remove(self._mine)
            if not holders:
                del busy[key]
        self._mine[0].set_result(None)


_NOTHING_HELD: Final = contextlib.nullcontext()


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
        # state key -> the batch building a record of it, and where (None: the event loop)
        self._busy: dict[str, list[tuple[asyncio.Future[None], object]]] = {}
        # a batch's cluster (the configured one, or the one its sender proved) -> its counters;
        # bounded by the clusters the config names (RecordMetrics.cluster: the rest are "other")
        self._counters: dict[str, tuple[Any, Any]] = {}
        # state key -> the newest state of a batch whose records are built, not yet written
        self._unsettled: dict[str, StoredObject] = {}

    async def ingest_body(
        self, body: bytes, *, received_at: str, max_events: int, cluster: str | None = None
    ) -> BatchResult:
        """``ingest`` for an EventList body: the records of large ones are built by the worker
        processes (``server.workers``), the others' here.

        Raises the ``BadRequestError`` of a body that is not an EventList and
        ``BodyTooLargeError`` for more than ``max_events`` events. ``cluster``: the cluster the
        sender proved (None: the configured one)."""
        if not self._pool.wants(body):
            result = prepare_body(
                self.pipeline, body, received_at=received_at, max_events=max_events, cluster=cluster
            )
            return await self._ingest(result)
        prepared = await self._pool.prepare(
            body, received_at=received_at, max_events=max_events, cluster=cluster
        )
        if isinstance(prepared, BatchResult):  # nothing kept: the worker finished it
            return await self._record([], [], _built(prepared))
        remote = prepared
        try:
            skip = [key for key in remote.keys if self._deduper.seen(key)]  # the window is ours
            dropped = frozenset(skip)
            keys = [key for key in remote.keys if key not in dropped] if skip else remote.keys

            async def finish(
                states: Mapping[str, StoredObject], duplicates: frozenset[str] | set[str], available: bool
            ) -> BatchResult:
                return await remote.finish(skip, states, duplicates, available)

            return await self._record(keys, remote.lookups, finish, remote.worker)
        finally:
            remote.drop()  # unless it was sent to be finished: the worker forgets it

    async def ingest(
        self, items: Sequence[Any], *, received_at: str, cluster: str | None = None
    ) -> BatchResult:
        return await self._ingest(self.pipeline.prepare(items, received_at=received_at, cluster=cluster))

    async def _ingest(self, result: BatchResult) -> BatchResult:
        """A batch prepared here: its records are built here too."""
        if not result.pending and not result.dead_letters:
            self._count(result)  # nothing kept (most of blocking mode's requests): nothing to write
            return result
        pipeline = self.pipeline
        lookups = pipeline.lookups(result) if result.pending else []  # dead-letters unreadable keys

        async def finish(
            states: Mapping[str, StoredObject], duplicates: frozenset[str] | set[str], available: bool
        ) -> BatchResult:
            pipeline.finish(result, states=states, duplicates=duplicates, available=available)
            # As the workers' batches: parsing a line is cheaper than viewing its record field
            # by field for the detections and the counts (26 against 45 µs a record, both).
            result.documents = [orjson.loads(line) for line in result.lines]
            return result

        return await self._record([p.key for p in result.pending], lookups, finish)

    async def _record(
        self, keys: list[str], lookups: list[str], finish: Finish, builder: object = None
    ) -> BatchResult:
        """Read the previous states, have ``finish`` build the records, write, count, observe.

        ``keys``: the kept events' record ids (claimed in the store); ``lookups``: the state
        keys their records need. Per-object order: a batch reads and builds only while no other
        batch is building a record of one of its objects, and the new states a batch reveals
        are read by the batches after it from then on (``_unsettled``), before its records are
        even written: each record is diffed against the one built before it."""
        claimed: list[str] = []
        updates: dict[str, StoredObject] = {}
        try:
            async with self._in_order(lookups, builder):
                if not keys and not lookups:
                    result = await finish({}, frozenset(), True)
                else:
                    # What is on its way to the store as the read leaves: a remote store may
                    # answer from before a write that lands (and leaves the overlays) meanwhile.
                    sent = self._newest(lookups, {})
                    try:
                        duplicates, states = await self._read(keys, lookups)
                    except StateError as exc:
                        log.warning("state.unavailable", store=self._state.name, code=exc.code)
                        self._metrics.state_errors.labels(operation="read").inc()
                        result = await finish({}, frozenset(), False)
                    else:
                        claimed = [key for key in keys if key not in duplicates]
                        newest = self._newest(lookups, lay_newer(states, sent))
                        result = await finish(newest, duplicates, True)
                updates = result.state_updates
                lay_newer(self._unsettled, updates)
            await self._writer.write_batch(result.lines, result.dead_letters)
        except BaseException:
            self._settle(updates)  # the batch's retry recounts them, whoever reads them now
            if claimed:
                await self._release(claimed)  # the retry must be recorded, here or elsewhere
            raise
        self._deduper.remember(result.keys)
        # The records are durable: the answer does not wait for the state store (behind.py).
        await self._state_writes.submit(result.keys, updates)
        self._settle(updates)
        self._count(result)
        for observe in self._observers:
            await observe(result.documents)
        return result

    def _newest(self, lookups: list[str], stored: dict[str, StoredObject]) -> dict[str, StoredObject]:
        """The stored states, overlaid by newer ones on their way to the store (queued behind
        the answers) and newer ones of batches still being written."""
        return lay_newer(self._state_writes.overlay(lookups, stored), self._unsettled, lookups)

    def _settle(self, updates: Mapping[str, StoredObject]) -> None:
        """Queued for the store (``WriteBehind`` has them now), or never to be: forget them."""
        unsettled = self._unsettled
        for key, update in updates.items():
            if unsettled.get(key) is update:
                del unsettled[key]

    async def _read(self, keys: list[str], lookups: list[str]) -> tuple[set[str], dict[str, StoredObject]]:
        """The dedupe keys already recorded (by another replica) and the stored states."""
        state = self._state
        if state.remote:  # both at once: one wait for the network instead of two
            duplicates, states = await asyncio.gather(state.claim(keys), state.get_many(lookups))
        else:  # neither waits: no task, no pass of the event loop between them
            duplicates = await state.claim(keys)
            states = await state.get_many(lookups)
        return duplicates, states

    def _in_order(self, objects: list[str], builder: object = None) -> _Hold | contextlib.nullcontext[None]:
        """Hold ``objects`` (state keys) while one batch reads and builds: wait while a batch
        built elsewhere holds any. ``builder``: the worker process that builds the batch's
        records (None: the event loop); one worker keeps the order of its own batches itself
        (``workers._Batches``). All at once or none: no batch holds some while it waits."""
        return _Hold(self._busy, objects, builder) if objects else _NOTHING_HELD

    async def _release(self, claimed: list[str]) -> None:
        try:
            await self._state.release(claimed)
        except StateError as exc:
            log.warning("state.release_failed", store=self._state.name, code=exc.code)
            self._metrics.state_errors.labels(operation="release").inc()

    def _count(self, result: BatchResult) -> None:
        """The batch's counts; the writer counted the bytes and dead letters it wrote."""
        metrics = self._metrics
        name = result.cluster or self.pipeline.cluster
        counters = self._counters.get(name)
        if counters is None:  # label lookups cost more than the increments: once per cluster
            cluster = self._record_metrics.cluster(name)
            counters = self._counters[name] = (
                metrics.events.labels(cluster=cluster),
                metrics.records.labels(cluster=cluster),
            )
        events, records = counters
        events.inc(result.events)
        if not result.matched and not result.duplicates:
            return  # nothing kept (most of blocking mode's requests): the rest stays as it is
        metrics.matched.inc(result.matched)
        records.inc(len(result.lines))
        metrics.dedupe_hits.inc(result.duplicates)
        metrics.dedupe_entries.set(len(self._deduper))
        if result.list_item_hits:
            metrics.list_items.labels(result="hit").inc(result.list_item_hits)
        if result.list_item_misses:
            metrics.list_items.labels(result="miss").inc(result.list_item_misses)
        self._record_metrics.count(result.documents)
