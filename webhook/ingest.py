"""The pipeline plus its durable writes: what ``POST /audit`` and ``replay`` share.

``ingest`` returns only once every record of the batch is in every sink and every dead letter
is in the dead-letter file; it raises ``StorageError`` when that cannot be done, and then the
batch's dedupe keys are not remembered, so the resent batch is recorded in full.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any

import structlog

from webhook.appendlog import AppendLog, ensure_private_dir
from webhook.config import Config, JsonlSinkConfig
from webhook.dedupe import Deduper
from webhook.errors import StorageError, WebhookError
from webhook.metrics import Metrics
from webhook.pipeline import BatchResult, DeadLetter, Pipeline, dead_letter_json
from webhook.record import Record
from webhook.sinks.base import Sink
from webhook.sinks.jsonl import JsonlSink

__all__ = ["Ingestor"]

log = structlog.get_logger(__name__)


def _build_sink(config: Config, sink: JsonlSinkConfig) -> Sink:
    return JsonlSink(sink, config.in_data_dir(sink.path))


class Ingestor:
    def __init__(self, config: Config, metrics: Metrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or Metrics()
        self.deduper = Deduper(max_entries=config.dedupe.max_entries, ttl_s=config.dedupe.ttl_s)
        self.pipeline = Pipeline(config, self.deduper)
        self.dead_letters = AppendLog(
            config.in_data_dir(config.dead_letter.path),
            max_bytes=config.dead_letter.max_bytes,
            backups=config.dead_letter.backups,
        )
        self.sinks: list[Sink] = []

    async def open(self) -> None:
        """Create the data dir and open every output; closes what it opened if one fails."""
        await asyncio.to_thread(ensure_private_dir, self.config.data_dir)
        await asyncio.to_thread(self.dead_letters.open)
        try:
            for sink_config in self.config.sinks:
                sink = _build_sink(self.config, sink_config)
                await sink.open()
                self.sinks.append(sink)
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        """Write what is queued and close the outputs."""
        for sink in self.sinks:
            await sink.aclose()
        await self.dead_letters.aclose()
        log.info("sinks.closed", sinks=len(self.sinks))

    async def ingest(self, items: Sequence[Any], *, received_at: str) -> BatchResult:
        result = self.pipeline.process(items, received_at=received_at)
        await self._keep(result.records, result.dead_letters)
        self.deduper.remember(result.keys)
        metrics = self.metrics
        metrics.events.inc(result.events)
        metrics.matched.inc(result.matched)
        metrics.dedupe_hits.inc(result.duplicates)
        metrics.dedupe_entries.set(len(self.deduper))
        for sink in self.sinks:
            metrics.records.labels(sink=sink.name).inc(len(result.records))
        for letter in result.dead_letters:
            metrics.dead_letters.labels(reason=letter.reason).inc()
        return result

    async def reject(self, exc: WebhookError, *, received_at: str) -> None:
        """A rejected batch leaves a trace too: the apiserver drops it after its retries."""
        letter = DeadLetter(reason=exc.code, detail=exc.message, received_at=received_at)
        self.metrics.dead_letters.labels(reason=exc.code).inc()
        try:
            await self.dead_letters.append(dead_letter_json([letter]))
        except StorageError:
            log.error("dead_letter.write_failed", reason=exc.code)

    async def _keep(self, records: list[Record], letters: list[DeadLetter]) -> None:
        """Write to every sink and the dead-letter file; StorageError if any fails."""
        writes: list[Awaitable[None]] = [sink.send(records) for sink in self.sinks if records]
        if letters:
            writes.append(self.dead_letters.append(dead_letter_json(letters)))
        outcomes = await asyncio.gather(*writes, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def problems(self) -> dict[str, str]:
        """What keeps the outputs from being written, by output name; empty when all is well."""
        problems: dict[str, str] = {}
        if not self.dead_letters.healthy:
            problems["dead_letter"] = self.dead_letters.last_error or "closed"
        for sink in self.sinks:
            health = await sink.health()
            if not health.ok:
                problems[f"sink:{sink.name}"] = health.detail
        return problems
