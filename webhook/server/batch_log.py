"""The ``batch.accepted`` and ``batch.rejected`` log lines, one per request, folded beyond ten a
second by a ``FoldingLog`` (webhook/log.py says why). Every line says how many requests it
covers (``batches``, ``requests``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import structlog

__all__ = ["BatchSums", "Rejections", "write_accepted", "write_rejected"]

log = structlog.get_logger(__name__)


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
