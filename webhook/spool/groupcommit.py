"""Durable appends shared by the spool and the append-only logs.

``GroupCommit`` groups concurrent callers: while one write+fsync runs in a worker thread, new
data queues up, and the next round writes all of it with one fsync; each caller's ``submit``
returns only once its data is on disk. ``write_whole`` writes a buffer and fsyncs it, or cuts
the file back to where it was, so a reader never sees a partial line.

A small write while no round is running (``inline_bytes``; blocking mode's one-event requests)
is written and fsync'd right in the event loop's thread: a hand-off to a thread and back cost
two passes of the event loop, milliseconds while other requests are being served, for an fsync
of a fraction of one. Only while the disk is fast: when the recent writes (a moving average of
every round's time; the first round is always the thread's) took over ``INLINE_MAX_S``, small
writes go to the thread too, so that a slow disk stalls no request but those waiting for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import time
from collections.abc import Callable
from typing import Final, Generic, TypeVar

import structlog

from webhook.errors import StorageError

__all__ = ["GroupCommit", "errno_name", "write_whole"]

log = structlog.get_logger(__name__)

T = TypeVar("T")

# A write is done inline only while the moving average of the recent ones is below this.
INLINE_MAX_S: Final = 0.002
_AVERAGE_WEIGHT: Final = 0.2  # of the newest round in the moving average


def errno_name(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, "EIO")


def write_whole(fd: int, data: bytes, start: int, *, fsync: bool) -> None:
    """Append ``data`` at ``start`` (the file's size) and fsync; on failure truncate back to it."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if fsync:
            os.fsync(fd)
    except OSError:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, start)
        raise


class GroupCommit(Generic[T]):
    """Runs ``write(items)`` for everything submitted meanwhile, one round at a time.

    ``write`` runs in a worker thread, or inline (see the module), and is never called twice at
    once. A failed round fails every caller in it with ``StorageError`` naming ``what`` and the
    errno, and ``last_error`` holds the errno until a later round succeeds.
    """

    def __init__(
        self, write: Callable[[list[T]], None], *, what: str, event: str, inline_bytes: int = 0
    ) -> None:
        self._write = write
        self._what = what
        self._event = event
        self._inline_bytes = inline_bytes
        self._pending: list[tuple[list[T], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.last_error: str | None = None
        self.average_s: float | None = None  # a round's write + fsync, moving average
        self.inline_rounds = 0  # rounds written in the event loop's thread (for tests and metrics)

    async def submit(self, items: list[T], *, size: int | None = None) -> None:
        """Return once ``items`` are written; ``size``: their bytes, when an inline write may do."""
        if (
            size is not None
            and size <= self._inline_bytes
            and self.average_s is not None  # the first round, in the thread, measures the disk
            and self.average_s <= INLINE_MAX_S
            and not self._pending
            and (self._flusher is None or self._flusher.done())
        ):
            self._write_inline(items)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((items, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await future

    async def drain(self) -> None:
        """Wait for the round in progress and everything queued behind it."""
        if self._flusher is not None:
            await self._flusher

    def _timed_write(self, items: list[T]) -> None:
        started = time.perf_counter()
        try:
            self._write(items)
        finally:
            took = time.perf_counter() - started
            average = self.average_s
            self.average_s = took if average is None else average + (took - average) * _AVERAGE_WEIGHT

    def _write_inline(self, items: list[T]) -> None:
        try:
            self._timed_write(items)
        except OSError as exc:
            raise self._failed(exc) from None
        self.last_error = None
        self.inline_rounds += 1

    def _failed(self, exc: OSError) -> StorageError:
        self.last_error = errno_name(exc)
        log.error(self._event, file=self._what, errno=self.last_error)
        return StorageError(f"cannot write {self._what}: {self.last_error}")

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            group, self._pending = self._pending, []
            batch = [item for items, _ in group for item in items]
            try:
                await loop.run_in_executor(None, self._timed_write, batch)
            except OSError as exc:
                error = self._failed(exc)
                for _, future in group:
                    if not future.done():
                        future.set_exception(error)
            else:
                self.last_error = None
                for _, future in group:
                    if not future.done():
                        future.set_result(None)
