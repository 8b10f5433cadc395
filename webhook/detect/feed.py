"""Between the ingest path and the detector: durable records in, alert records into the spool.

Records reach the detector only once they are durable (a refused batch is retried by the
apiserver and must not count twice). Alerts are appended to the spool like records, so every
sink gets them; an append that fails (spool full, disk error) keeps them in a bounded buffer
retried on each tick, and never fails the batch whose records are already written. When
serving, the detection time is the wall clock and a task ticks once a second to resolve quiet
alerts; in replays it is each record's own time, and the end of the input resolves the rest.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import structlog

from webhook.detect.edge import ChangeCorrelation, ChangeSource
from webhook.detect.engine import Detector
from webhook.errors import StorageError
from webhook.metrics import Metrics
from webhook.record.alert import Alert, alert_json
from webhook.record.time import parse_time
from webhook.spool.segments import Spool

__all__ = ["AlertFeed", "record_seconds"]

log = structlog.get_logger(__name__)

_MAX_PENDING: Final = 10_000


def record_seconds(record: Mapping[str, Any] | Any) -> float | None:
    """A record's own ``time`` (else ``received_at``) in seconds since the epoch."""
    for name in ("time", "received_at"):
        value = record.get(name) if isinstance(record, Mapping) else getattr(record, name, None)
        if (when := parse_time(value)) is not None:
            return when.timestamp()
    return None


class AlertFeed:
    def __init__(
        self,
        detector: Detector | None,
        spool: Spool,
        metrics: Metrics,
        *,
        event_time: bool = False,
        clock: Callable[[], float] = time.time,
        interval_s: float = 1.0,
    ) -> None:
        self.detector = detector
        self.spool = spool
        self.metrics = metrics
        self.event_time = event_time
        self.clock = clock
        self.interval_s = interval_s
        self._pending: list[Alert] = []
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._writes: set[asyncio.Task[None]] = set()  # alerts of listen(), being written

    def start(self) -> None:
        if self.detector is not None and not self.event_time and self._task is None:
            self._task = asyncio.create_task(self._ticker(), name="detections:tick")

    async def records(self, records: Sequence[Any]) -> None:
        """Count durable records; spool the alerts they raise. Never raises StorageError."""
        await self._write(self._observe(records))

    def listen(self, records: Sequence[Any]) -> None:
        """``AccessService.listeners``: count durable access records and window summaries now;
        their alerts are written by a task (``drain`` waits for it)."""
        alerts = self._observe(records)
        if alerts:
            task = asyncio.get_running_loop().create_task(self._write(alerts))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    def follow_hosts(self, changes: ChangeSource) -> None:
        """Where change-correlation learns which hosts a change touched (the access host index)."""
        for rule in self.detector.rules if self.detector is not None else ():
            if isinstance(rule, ChangeCorrelation):
                rule.changes = changes

    async def drain(self) -> None:
        """Wait until the alerts of ``listen`` calls so far are written (or pending)."""
        while self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    def _observe(self, records: Sequence[Any]) -> list[Alert]:
        detector = self.detector
        alerts: list[Alert] = []
        if detector is None or not records:
            return alerts
        for record in records:
            # The records are written: a detection bug must not fail their batch, nor skip the
            # records after the one it failed on. Only the type is logged: a message can quote
            # a value.
            try:
                if self.event_time:
                    now = record_seconds(record) or self.clock()
                    alerts += detector.tick(now)
                else:
                    now = self.clock()
                alerts += detector.observe(record, now)
            except Exception as exc:  # noqa: BLE001
                log.error("detections.failed", error=type(exc).__name__)
        return alerts

    async def tick(self) -> None:
        if self.detector is not None:
            await self._write(self.detector.tick(self.clock()))

    async def aclose(self) -> None:
        """Stop ticking; a replay resolves what still fires (its input is over)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.drain()
        if self.detector is not None and self.event_time:
            await self._write(self.detector.flush())
        elif self._pending:
            await self._write([])

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.tick()
            except Exception:  # a bug here must not stop the resolutions for good
                log.exception("detections.tick_failed")

    async def _write(self, alerts: list[Alert]) -> None:
        async with self._lock:
            pending = self._pending + alerts
            if not pending:
                return
            try:
                await self.spool.append([alert_json(alert) for alert in pending])
            except StorageError as exc:
                if len(pending) > _MAX_PENDING:
                    self.metrics.alerts_dropped.inc(len(pending) - _MAX_PENDING)
                    pending = pending[-_MAX_PENDING:]
                self._pending = pending
                log.warning("alerts.write_failed", code=exc.code, pending=len(pending))
                return
            self._pending = []
            log.info("alerts.written", alerts=len(pending))
