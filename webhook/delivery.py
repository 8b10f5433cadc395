"""One delivery loop per sink: read from the spool, send, retry, move the cursor.

The cursor moves only after the sink accepted the batch, so a crash or restart re-sends at
most the batch in flight (at-least-once; records carry a stable id for idempotent sinks).
Failures are retried with exponential backoff and full jitter, forever for retryable ones:
the spool's cap, not this loop, decides when to push back on the apiserver. Records a sink
refuses for good are dead-lettered (they are already redacted) and skipped. A sink with
``record_types`` is handed only records of those types; its cursor passes over the others.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from webhook.errors import PartialDeliveryError, SinkError, StorageError
from webhook.metrics import Metrics
from webhook.record.dead_letter import DeadLetter, dead_letter_json
from webhook.record.line import RecordLine
from webhook.record.time import now, parse_time
from webhook.sinks import sink_types
from webhook.sinks.base import Health, Sink, SinkSettings
from webhook.spool.appendlog import AppendLog
from webhook.spool.segments import Spool

__all__ = ["SinkWorker", "SinkWorkers"]

log = structlog.get_logger(__name__)

_IDLE_S = 1.0


def _age_s(line: RecordLine) -> float:
    """Seconds since ingress-audit received the record (0 if the field is unreadable); the
    line's fields are parsed once, and shared with the sink."""
    received = parse_time(line.record.get("received_at"))
    return max(time.time() - received.timestamp(), 0.0) if received is not None else 0.0


class SinkWorker:
    def __init__(
        self,
        sink: Sink,
        settings: SinkSettings,
        spool: Spool,
        *,
        metrics: Metrics,
        dead_letters: AppendLog,
    ) -> None:
        self.sink = sink
        self.settings = settings
        self.spool = spool
        self.metrics = metrics
        self.dead_letters = dead_letters
        self.failing_since: float | None = None
        self.last_error: str | None = None
        self._opened = False
        self._sent_at: float | None = None  # time.monotonic() at the end of the last send
        self._task: asyncio.Task[None] | None = None
        spool.register(settings.name, drop_when_full=settings.drop_when_full)

    @property
    def name(self) -> str:
        return self.settings.name

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"sink:{self.name}")

    async def drain(self, timeout_s: float) -> bool:
        """Wait until the sink has everything in the spool, for at most ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while self.spool.lag(self.name)[0] > 0:
            if time.monotonic() > deadline or self._task is None or self._task.done():
                return False
            await asyncio.sleep(0.02)
        return True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._opened:
            await self.sink.aclose()

    async def health(self) -> Health:
        if self.failing_since is not None:
            return Health(
                False, f"failing for {time.monotonic() - self.failing_since:.0f}s: {self.last_error}"
            )
        return Health(True)

    def _update_lag(self, oldest: RecordLine | None) -> None:
        records, size = self.spool.lag(self.name)
        labels = {"sink": self.name}
        self.metrics.sink_lag_records.labels(**labels).set(records)
        self.metrics.sink_lag_bytes.labels(**labels).set(size)
        self.metrics.sink_lag_seconds.labels(**labels).set(_age_s(oldest) if oldest else 0.0)

    async def _run(self) -> None:
        batch_options = self.settings.batch
        while True:
            batch = self.spool.read(
                self.name, max_events=batch_options.max_events, max_bytes=batch_options.max_bytes
            )
            if not batch.records:
                self._update_lag(None)
                try:
                    async with asyncio.timeout(_IDLE_S):
                        await self.spool.wait(self.name)
                except TimeoutError:
                    pass
                continue
            linger = self._linger(batch.records)
            if linger > 0:
                await asyncio.sleep(linger)
                batch = self.spool.read(
                    self.name, max_events=batch_options.max_events, max_bytes=batch_options.max_bytes
                )
            self._update_lag(batch.records[0])
            records = batch.records
            if self.settings.record_types is not None:  # the others are skipped: the cursor passes them
                records = [record for record in records if self.settings.wants(record)]
            if records:
                await self._deliver(records)
            try:
                await self.spool.commit_async(self.name, batch.end)
            except OSError as exc:
                # Delivered, and the cursor moved in memory; only its file lags (a full disk).
                # A restart before the next commit redelivers the batch: at-least-once holds.
                log.warning("spool.cursor_write_failed", sink=self.name, errno=exc.errno)
            self._sent_at = time.monotonic()
            self._update_lag(None)

    def _linger(self, records: Sequence[RecordLine]) -> float:
        """How long to wait for more records before sending these (0: send now)."""
        options = self.settings.batch
        if len(records) >= options.max_events:
            return 0.0
        linger = 0.0
        if options.timeout_s > 0:
            linger = min(options.timeout_s - _age_s(records[0]), options.timeout_s)
        if options.min_interval_s > 0 and self._sent_at is not None:
            linger = max(
                linger, min(self._sent_at + options.min_interval_s - time.monotonic(), options.min_interval_s)
            )
        return linger

    async def _deliver(self, records: Sequence[RecordLine]) -> None:
        """Return once every record is delivered or dead-lettered."""
        pending = list(records)
        attempt = 0
        retry = self.settings.retry
        labels = {"sink": self.name}
        while pending:
            wait_s = 0.0  # at least this long before the next attempt (the receiver's Retry-After)
            try:
                if not self._opened:
                    await self.sink.open()
                    self._opened = True
                await self.sink.send(pending)
            except PartialDeliveryError as exc:
                delivered = len(pending) - len(exc.retry) - len(exc.rejected)
                self.metrics.sink_delivered.labels(**labels).inc(max(delivered, 0))
                await self._reject([(pending[i], reason) for i, reason in exc.rejected.items()])
                pending = [pending[i] for i in exc.retry]
                if not pending:
                    break
                self._failed(exc, attempt)
                wait_s = exc.retry_after_s or 0.0
            except SinkError as exc:
                if not exc.retryable:
                    await self._reject([(record, exc.message) for record in pending])
                    break
                self._failed(exc, attempt)
                wait_s = exc.retry_after_s or 0.0
            except Exception as exc:  # noqa: BLE001 - a sink bug must not stop delivery for good
                self._failed(SinkError(f"unexpected {type(exc).__name__}"), attempt)
            else:
                self.metrics.sink_delivered.labels(**labels).inc(len(pending))
                break
            attempt += 1
            self.metrics.sink_retries.labels(**labels).inc()
            self._update_lag(pending[0])
            ceiling = min(retry.max_backoff_s, retry.initial_backoff_s * 2 ** min(attempt, 30))
            backoff = random.uniform(retry.initial_backoff_s / 2, ceiling)  # noqa: S311
            await asyncio.sleep(max(backoff, wait_s))
        if self.failing_since is not None:
            log.info(
                "sink.recovered", sink=self.name, after_s=round(time.monotonic() - self.failing_since, 1)
            )
        self.failing_since = None
        self.last_error = None
        self.metrics.sink_up.labels(**labels).set(1)

    def _failed(self, exc: SinkError, attempt: int) -> None:
        self.metrics.sink_failures.labels(sink=self.name).inc()
        self.metrics.sink_up.labels(sink=self.name).set(0)
        self.last_error = exc.message
        if self.failing_since is None:
            self.failing_since = time.monotonic()
        if attempt == 0 or attempt % 10 == 0:  # the first failure, then every tenth
            log.warning(
                "sink.send_failed", sink=self.name, code=exc.code, attempt=attempt + 1, reason=exc.message
            )

    async def _reject(self, refused: list[tuple[RecordLine, str]]) -> None:
        """Records the sink will never take: into the dead letters, whole (they are redacted)."""
        if not refused:
            return
        received_at = now()
        letters = [
            DeadLetter(
                reason="sink-rejected",
                detail=f"{self.name}: {reason}"[:500],
                received_at=received_at,
                record=record.record,
            )
            for record, reason in refused
        ]
        self.metrics.dead_letters.labels(reason="sink-rejected").inc(len(letters))
        log.warning("sink.records_rejected", sink=self.name, records=len(letters))
        while True:
            try:
                await self.dead_letters.append(dead_letter_json(letters))
                return
            except StorageError:
                await asyncio.sleep(1.0)  # the dead-letter file is the last place to keep them


class SinkWorkers:
    """One ``SinkWorker`` per configured sink: started, drained and stopped together."""

    def __init__(
        self,
        settings: Sequence[SinkSettings],
        spool: Spool,
        *,
        metrics: Metrics,
        dead_letters: AppendLog,
        data_dir: Path,
    ) -> None:
        self._settings = settings
        self._spool = spool
        self._metrics = metrics
        self._dead_letters = dead_letters
        self._data_dir = data_dir
        self._workers: list[SinkWorker] = []

    def start(self) -> None:
        """Build each sink and start its loop; the spool must be open (cursors resume from it)."""
        types = sink_types()
        for settings in self._settings:
            sink = types[settings.type].build(settings, self._data_dir)
            worker = SinkWorker(
                sink, settings, self._spool, metrics=self._metrics, dead_letters=self._dead_letters
            )
            self._workers.append(worker)
            worker.start()

    async def drain(self, timeout_s: float) -> bool:
        """True once every sink has delivered everything in the spool."""
        results = await asyncio.gather(*(w.drain(timeout_s) for w in self._workers))
        return all(results)

    async def catch_up(self, timeout_s: float) -> None:
        """Let the sinks deliver what the spool holds for at most ``timeout_s``; name the late."""
        drained = await asyncio.gather(*(w.drain(timeout_s) for w in self._workers))
        behind = [w.name for w, ok in zip(self._workers, drained, strict=True) if not ok]
        if behind:
            log.warning("sinks.not_drained", sinks=behind)

    async def stop(self) -> None:
        for worker in self._workers:
            await worker.stop()
        log.info("sinks.closed", sinks=len(self._workers))

    async def status(self) -> dict[str, dict[str, Any]]:
        """Per sink: healthy or not, and its lag; reported by /readyz, never failing it."""
        status: dict[str, dict[str, Any]] = {}
        for worker in self._workers:
            health = await worker.health()
            records, size = self._spool.lag(worker.name)
            status[worker.name] = {"ok": health.ok, "detail": health.detail, "lag_records": records}
            if size:
                status[worker.name]["lag_bytes"] = size
        return status
