"""The ``batch.accepted`` log line, one per request until requests come faster than a person
reads: then one line a second sums them up.

In batch mode an apiserver posts at most a few requests a second, and a line per request is
what an operator wants to see. In blocking mode it posts one request per API call, thousands a
second: a line each would flood the cluster's log pipeline with our own logs and cost the
event loop 3.5 % of its time (bench/RESULTS.md). So each line spends a token from a bucket
that refills at ``per_second`` (and holds as many); a request that finds it empty is added to
a pending sum instead, logged as one line ``interval_s`` after the first request it holds,
with ``batches`` saying how many requests it covers. Every line carries ``batches``, so summing
any field over the lines gives the same total whatever was folded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Final

import structlog

__all__ = ["BatchLog", "BatchSums"]

log = structlog.get_logger(__name__)

LINES_PER_SECOND: Final = 10.0


@dataclass(slots=True)
class BatchSums:
    """What one request (``batches`` 1) or a sum of them accepted."""

    batches: int = 0
    events: int = 0
    matched: int = 0
    records: int = 0
    duplicates: int = 0
    dead_lettered: int = 0

    def add(self, other: BatchSums) -> None:
        for field in fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


class BatchLog:
    def __init__(
        self,
        *,
        per_second: float = LINES_PER_SECOND,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_second = per_second
        self.interval_s = interval_s
        self._clock = clock
        self._tokens = per_second
        self._refilled = clock()
        self._pending: BatchSums | None = None
        self._timer: asyncio.TimerHandle | None = None

    def accepted(self, batch: BatchSums) -> None:
        now = self._clock()
        self._tokens = min(self.per_second, self._tokens + (now - self._refilled) * self.per_second)
        self._refilled = now
        if self._pending is None and self._tokens >= 1.0:
            self._tokens -= 1.0
            _write(batch)
            return
        if self._pending is None:
            self._pending = BatchSums()
            self._timer = asyncio.get_running_loop().call_later(self.interval_s, self.flush)
        self._pending.add(batch)

    def flush(self) -> None:
        """Log the pending sum now, if there is one (the timer, and shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, None
        if pending is not None:
            _write(pending)


def _write(sums: BatchSums) -> None:
    log.info(
        "batch.accepted",
        batches=sums.batches,
        events=sums.events,
        matched=sums.matched,
        records=sums.records,
        duplicates=sums.duplicates,
        dead_lettered=sums.dead_lettered,
    )
