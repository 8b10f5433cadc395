"""Every durable write of records and dead letters: the spool and the dead-letter file.

A write returns once its lines are in the spool and its dead letters in their file, both
fsync'd, and raises ``StorageError`` (``SpoolFullError`` when a sink is too far behind) when
that cannot be done. After a refusal the spool counts as full until it shrinks below the size
it refused at or an audit batch fits again, so ``refusal`` turns senders away before they
send work their retry would repeat.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog

from webhook.errors import SpoolFullError, StorageError, WebhookError
from webhook.metrics import Metrics
from webhook.record.dead_letter import DeadLetter, dead_letter_json
from webhook.record.line import to_json
from webhook.spool.appendlog import AppendLog
from webhook.spool.segments import Spool

__all__ = ["RecordWriter"]

log = structlog.get_logger(__name__)

# At this share of its cap the spool counts as full before an append is refused.
_NEARLY_FULL = 0.99


class RecordWriter:
    def __init__(self, spool: Spool, dead_letters: AppendLog, metrics: Metrics) -> None:
        self.spool = spool
        self.dead_letters = dead_letters
        self._metrics = metrics
        self._refused_at: int | None = None  # spool size when a write last did not fit

    async def open(self) -> None:
        """Open the dead-letter file and recover the spool."""
        await asyncio.to_thread(self.dead_letters.open)
        await asyncio.to_thread(self.spool.open)
        self._metrics.spool_max_bytes.set(self.spool.max_bytes)

    async def aclose(self) -> None:
        """Write what is queued, then close (harmless for a file that never opened)."""
        await self.spool.aclose()
        await self.dead_letters.aclose()

    async def write_batch(self, lines: Sequence[bytes], dead_letters: Sequence[DeadLetter]) -> None:
        """An audit batch's records (JSON, no newline) and dead letters; once one fits, the spool
        takes batches again."""
        await self._write(lines, dead_letters)
        self._refused_at = None

    async def write_records(self, records: Sequence[object], dead_letters: Sequence[DeadLetter] = ()) -> None:
        """Records of other types (access records, window summaries) and dead letters."""
        await self._write([to_json(record) for record in records], dead_letters)

    async def reject(self, exc: WebhookError, *, received_at: str) -> None:
        """A refused request leaves a dead letter: its sender drops it after its retries."""
        letter = DeadLetter(reason=exc.code, detail=exc.message, received_at=received_at)
        self._metrics.dead_letters.labels(reason=exc.code).inc()
        try:
            await self.dead_letters.append(dead_letter_json([letter]))
        except StorageError:
            log.error("dead_letter.write_failed", reason=exc.code)

    async def _write(self, lines: Sequence[bytes], dead_letters: Sequence[DeadLetter]) -> None:
        if not lines and not dead_letters:
            return  # nothing kept (most of blocking mode's requests)
        writes = []
        if lines:
            writes.append(self.spool.append(lines))
        if dead_letters:
            writes.append(self.dead_letters.append(dead_letter_json(dead_letters)))
        if len(writes) == 1:  # awaited directly: gather would wrap it in a task, a loop pass
            outcomes: list[object] = []
            try:
                await writes[0]
            except Exception as exc:  # noqa: BLE001 - raised below, as gather's would be
                outcomes.append(exc)
        else:
            outcomes = await asyncio.gather(*writes, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                if isinstance(outcome, SpoolFullError):
                    self._refused_at = self.spool.size
                raise outcome
        self._metrics.spool_bytes.set(self.spool.size)
        for letter in dead_letters:
            self._metrics.dead_letters.labels(reason=letter.reason).inc()

    def problems(self) -> dict[str, str]:
        """What stops us from keeping records; empty when all is well (``/readyz`` shows it)."""
        problems: dict[str, str] = {}
        if not self.dead_letters.healthy:
            problems["dead_letter"] = self.dead_letters.last_error or "closed"
        if not self.spool.healthy:
            problems["spool"] = self.spool.last_error or "closed"
        elif self._full():
            problems["spool"] = "full; behind: " + ", ".join(self.spool.lagging())
        return problems

    def refusal(self) -> SpoolFullError | StorageError | None:
        """Why records cannot be kept now, as the error to answer with; None when they can."""
        problems = self.problems()
        if not problems:
            return None
        detail = "; ".join(f"{part}: {problem}" for part, problem in problems.items())
        error = SpoolFullError if self.spool.healthy and self._full() else StorageError
        return error(f"cannot keep records now: {detail}")

    def _full(self) -> bool:
        size = self.spool.size
        return size >= self.spool.max_bytes * _NEARLY_FULL or (
            self._refused_at is not None and size >= self._refused_at
        )
