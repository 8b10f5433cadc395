"""Durable appends shared by the spool and the append-only logs.

``GroupCommit`` groups concurrent callers: while one write+fsync runs in a worker thread, new
data queues up, and the next round writes all of it with one fsync; each caller's ``submit``
returns only once its data is on disk. ``write_whole`` writes a buffer and fsyncs it, or cuts
the file back to where it was, so a reader never sees a partial line.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from collections.abc import Callable
from typing import Generic, TypeVar

import structlog

from webhook.errors import StorageError

__all__ = ["GroupCommit", "errno_name", "write_whole"]

log = structlog.get_logger(__name__)

T = TypeVar("T")


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

    ``write`` runs in a worker thread and is never called twice at once. A failed round fails
    every caller in it with ``StorageError`` naming ``what`` and the errno, and ``last_error``
    holds the errno until a later round succeeds.
    """

    def __init__(self, write: Callable[[list[T]], None], *, what: str, event: str) -> None:
        self._write = write
        self._what = what
        self._event = event
        self._pending: list[tuple[list[T], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.last_error: str | None = None

    async def submit(self, items: list[T]) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((items, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await future

    async def drain(self) -> None:
        """Wait for the round in progress and everything queued behind it."""
        if self._flusher is not None:
            await self._flusher

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            group, self._pending = self._pending, []
            batch = [item for items, _ in group for item in items]
            try:
                await loop.run_in_executor(None, self._write, batch)
            except OSError as exc:
                self.last_error = errno_name(exc)
                log.error(self._event, file=self._what, errno=self.last_error)
                error = StorageError(f"cannot write {self._what}: {self.last_error}")
                for _, future in group:
                    if not future.done():
                        future.set_exception(error)
            else:
                self.last_error = None
                for _, future in group:
                    if not future.done():
                        future.set_result(None)
