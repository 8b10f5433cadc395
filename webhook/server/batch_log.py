"""The ``batch.accepted`` and ``batch.rejected`` log lines, one per request until requests come
faster than a person reads: then one line a second sums them up.

In batch mode an apiserver posts at most a few requests a second, and a line per request is
what an operator wants to see. In blocking mode it posts one request per API call, thousands a
second: a line each would flood the cluster's log pipeline with our own logs and cost the
event loop 3.5 % of its time (bench/RESULTS.md); so would a sender with a wrong token, or
anyone posting junk. So each line spends a token from a bucket that refills at ``per_second``
(and holds as many); a request that finds it empty is added to a pending sum instead, logged
``interval_s`` after the first request it holds (one line per key: per reason and status for
refusals). Every line says how many requests it covers (``batches``, ``requests``), so summing
any field over the lines gives the same total whatever was folded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, fields
from typing import Final, Generic, Protocol, Self, TypeVar

import structlog

__all__ = ["BatchSums", "FoldingLog", "Rejections", "write_accepted", "write_rejected"]

log = structlog.get_logger(__name__)

LINES_PER_SECOND: Final = 10.0


class _Sums(Protocol):
    def add(self, other: Self) -> None: ...


K = TypeVar("K", bound=Hashable)
S = TypeVar("S", bound=_Sums)


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


@dataclass(slots=True)
class Rejections:
    requests: int = 0

    def add(self, other: Rejections) -> None:
        self.requests += other.requests


class FoldingLog(Generic[K, S]):
    """``add(key, sums)`` per request; ``write(key, sums)`` logs one line."""

    def __init__(
        self,
        write: Callable[[K, S], None],
        *,
        per_second: float = LINES_PER_SECOND,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write = write
        self.per_second = per_second
        self.interval_s = interval_s
        self._clock = clock
        self._tokens = per_second
        self._refilled = clock()
        self._pending: dict[K, S] = {}
        self._timer: asyncio.TimerHandle | None = None

    def add(self, key: K, sums: S) -> None:
        if not self._pending and self._take():
            self._write(key, sums)
            return
        if not self._pending:
            self._timer = asyncio.get_running_loop().call_later(self.interval_s, self.flush)
        pending = self._pending.get(key)
        if pending is None:
            self._pending[key] = sums
        else:
            pending.add(sums)

    def flush(self) -> None:
        """Log the pending sums now, if there are any (the timer, and shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, {}
        for key, sums in pending.items():
            self._write(key, sums)

    def _take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.per_second, self._tokens + (now - self._refilled) * self.per_second)
        self._refilled = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


def write_accepted(_: None, sums: BatchSums) -> None:
    """``batch.accepted``: FoldingLog(write_accepted) takes add(None, BatchSums(batches=1, ...))."""
    log.info(
        "batch.accepted",
        batches=sums.batches,
        events=sums.events,
        matched=sums.matched,
        records=sums.records,
        duplicates=sums.duplicates,
        dead_lettered=sums.dead_lettered,
    )


def write_rejected(key: tuple[str, int], sums: Rejections) -> None:
    """``batch.rejected``: FoldingLog(write_rejected) takes add((reason, status), Rejections(1))."""
    reason, status = key
    log.warning("batch.rejected", reason=reason, status=status, requests=sums.requests)
