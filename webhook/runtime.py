"""What ``serve`` and ``replay`` share: built from the config, opened in order, closed in reverse.

Opened: the data dir and fingerprint key, the state store, the record writer (spool and dead
letters), the sink workers; then what writes into the spool: the alert feed, the audit
ingestor (and its worker processes), the access service. Closed: the writers first, then the
sinks get their time to catch up, then the spool and the state store. An open that fails half
way closes what it opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

from webhook.access.hosts import HostIndex
from webhook.access.service import AccessService
from webhook.config import Config, known_clusters
from webhook.core.files import ensure_private_dir
from webhook.dedupe import Deduper
from webhook.delivery import SinkWorkers
from webhook.detect.audit import build_rules
from webhook.detect.edge import build_edge_rules
from webhook.detect.engine import Detector
from webhook.detect.feed import AlertFeed
from webhook.metrics import Metrics
from webhook.pipeline.ingestor import AuditIngestor, Observer
from webhook.pipeline.record_metrics import RecordMetrics
from webhook.pipeline.stages import Pipeline, PipelineSettings
from webhook.pipeline.workers import PreparePool, PrepareSettings
from webhook.redact.redactor import Redactor, load_or_create_key
from webhook.spool.appendlog import AppendLog
from webhook.spool.segments import INLINE_BYTES, Spool
from webhook.spool.writer import RecordWriter
from webhook.state import StateStore, open_store
from webhook.state.behind import LINGER_S, WriteBehind

__all__ = ["Runtime", "alert_feed", "pipeline_settings", "prepare_settings"]


def pipeline_settings(config: Config) -> PipelineSettings:
    """The parts of the config the stages read; they never see the rest."""
    return PipelineSettings(
        cluster=config.cluster,
        max_event_bytes=config.server.max_event_bytes,
        filter=config.filter,
        change=config.change,
        actors=config.actors,
        findings=config.findings,
    )


def prepare_settings(config: Config) -> PrepareSettings:
    """What each worker process is sent at its start, instead of the whole config."""
    return PrepareSettings(
        pipeline=pipeline_settings(config),
        log=config.log,
        certificate_expiry_warning_days=config.redaction.certificate_expiry_warning_days,
    )


def alert_feed(config: Config, spool: Spool, metrics: Metrics, *, event_time: bool) -> AlertFeed:
    """The detections ``config`` enables, fed the durable records; alerts go to ``spool``."""
    rules = build_rules(config.detections, trusted_cidrs=config.actors.trusted_cidrs)
    access = config.access
    rules += build_edge_rules(
        config.detections,
        keep_statuses=access.keep.statuses,
        keep_all=access.keep_all,
        sensitive=bool(access.keep.sensitive_hosts or access.keep.sensitive_paths),
        trusted=bool(access.trusted_cidrs or config.actors.trusted_cidrs),
    )
    detector = Detector(rules, cluster=config.cluster, metrics=metrics) if rules else None
    return AlertFeed(detector, spool, metrics, event_time=event_time)


def _following(index: HostIndex, cluster: str) -> Observer:
    """The host index follows the configured cluster alone: the access logs are its own."""

    async def observe(records: Sequence[Mapping[str, Any]]) -> None:
        index.observe(record for record in records if record.get("cluster") == cluster)

    return observe


class Runtime:
    """Built by ``open``; every attribute is ready once it returns."""

    ingestor: AuditIngestor
    prepare_pool: PreparePool
    access: AccessService | None

    def __init__(self, config: Config, metrics: Metrics, *, replay: bool) -> None:
        """``replay``: detections run on the records' own time, not the clock."""
        self.config = config
        self.metrics = metrics
        self.deduper = Deduper(max_entries=config.dedupe.max_entries, ttl_s=config.dedupe.ttl_s)
        self.state: StateStore = open_store(
            config.state, data_dir=config.data_dir, cluster=config.cluster, dedupe_ttl_s=config.dedupe.ttl_s
        )
        self.state_writes = WriteBehind(
            self.state,
            on_error=lambda _: metrics.state_errors.labels(operation="write").inc(),
            linger_s=LINGER_S,
        )
        spool = Spool(
            config.in_data_dir(config.spool.path),
            max_bytes=config.spool.max_bytes,
            segment_bytes=config.spool.segment_bytes,
            fsync=config.spool.fsync,
            on_drop=lambda sink, records: metrics.spool_dropped.labels(sink=sink).inc(records),
        )
        dead_letters = AppendLog(
            config.in_data_dir(config.dead_letter.path),
            max_bytes=config.dead_letter.max_bytes,
            backups=config.dead_letter.backups,
            inline_bytes=INLINE_BYTES,  # a request waits for its dead letters as for its records
        )
        self.writer = RecordWriter(spool, dead_letters, metrics)
        self.sinks = SinkWorkers(
            config.sinks, spool, metrics=metrics, dead_letters=dead_letters, data_dir=config.data_dir
        )
        self.alerts = alert_feed(config, spool, metrics, event_time=replay)
        self._replay = replay
        self._inputs = contextlib.AsyncExitStack()  # what writes into the spool
        self._outputs = contextlib.AsyncExitStack()  # the spool, its readers, the state store

    @classmethod
    async def open(
        cls,
        config: Config,
        metrics: Metrics | None = None,
        *,
        replay: bool = False,
        access: bool | None = None,
    ) -> Runtime:
        """Open everything ``config`` asks for; ``access`` (default ``access.enabled``): the access
        service too, which in a replay keeps windows on the requests' own time."""
        runtime = cls(config, metrics or Metrics(), replay=replay)
        await runtime._open(config.access.enabled if access is None else access)
        return runtime

    async def _open(self, with_access: bool) -> None:
        config = self.config
        async with contextlib.AsyncExitStack() as outputs:
            await asyncio.to_thread(ensure_private_dir, config.data_dir)
            redaction = config.redaction
            key = await asyncio.to_thread(
                load_or_create_key, config.in_data_dir(redaction.fingerprint_key_file)
            )
            await self.state.open()
            outputs.push_async_callback(self._close_state)
            # Before open: closing what never opened is harmless, and a half open is closed.
            outputs.push_async_callback(self.writer.aclose)
            await self.writer.open()
            outputs.push_async_callback(self.sinks.stop)
            self.sinks.start()
            async with contextlib.AsyncExitStack() as inputs:
                inputs.push_async_callback(self.alerts.aclose)
                self.alerts.start()
                self.prepare_pool = PreparePool(prepare_settings(config), key, workers=config.server.workers)
                inputs.push_async_callback(self.prepare_pool.aclose)
                index = HostIndex() if with_access else None
                observers: list[Observer] = []
                if index is not None:
                    # First: change correlation asks the index which hosts a change touched.
                    observers.append(_following(index, config.cluster))
                observers.append(self.alerts.records)
                redactor = Redactor(key, expiry_warning_days=redaction.certificate_expiry_warning_days)
                self.ingestor = AuditIngestor(
                    Pipeline(pipeline_settings(config), self.deduper, redactor),
                    self.prepare_pool,
                    deduper=self.deduper,
                    state=self.state,
                    state_writes=self.state_writes,
                    writer=self.writer,
                    metrics=self.metrics,
                    record_metrics=RecordMetrics(
                        self.metrics,
                        clusters=known_clusters(config),
                        disabled=config.findings.disabled,
                        severity=config.findings.severity,
                    ),
                    observers=observers,
                )
                self.access = None if index is None else await self._open_access(index, inputs)
                self._inputs = inputs.pop_all()
            self._outputs = outputs.pop_all()

    async def _open_access(self, index: HostIndex, inputs: contextlib.AsyncExitStack) -> AccessService:
        config = self.config
        self.alerts.follow_hosts(index.last_change)
        access = AccessService(
            config.access,
            self.writer,
            self.state,
            self.metrics,
            cluster=config.cluster,
            trusted_cidrs=config.actors.trusted_cidrs,
            # Access records and summaries count for detections like audit records.
            listeners=[self.alerts.listen],
            clock=None if self._replay else time.time,
            index=index,
            dedupe=self.deduper if self._replay else None,
        )
        await access.open()
        if not self._replay:  # a replay summarizes once its input is read whole, not on failure
            inputs.push_async_callback(access.aclose)
        return access

    async def _close_state(self) -> None:
        await self.state_writes.drain()
        await self.state.aclose()

    async def aclose(self, *, drain_timeout_s: float = 0.0) -> None:
        """Close what writes into the spool, let the sinks catch up for at most
        ``drain_timeout_s``, then close them, the spool and the state store."""
        try:
            await self._inputs.aclose()
            if drain_timeout_s > 0:
                await self.sinks.catch_up(drain_timeout_s)
        finally:
            await self._outputs.aclose()

    def problems(self) -> dict[str, str]:
        """What stops us from accepting batches; empty when all is well."""
        return self.writer.problems()

    async def sink_status(self) -> dict[str, dict[str, Any]]:
        """Per sink: healthy or not, and its lag; reported by /readyz, never failing it."""
        return await self.sinks.status()
