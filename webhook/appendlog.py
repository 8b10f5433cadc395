"""An append-only file of whole lines: group-committed fsyncs, size-based rotation, mode 0600.

Concurrent callers are grouped: while one write+fsync runs in a worker thread, new data
queues up, and the next round writes all of it with one fsync. A caller's ``append`` returns
only once its bytes are on disk. A failed write is cut back to the last whole line, so readers
(``tail -F``, Fluent Bit, Vector) never see a partial record.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from pathlib import Path

import structlog

from webhook.errors import StorageError

__all__ = ["AppendLog", "ensure_private_dir", "fsync_dir"]

log = structlog.get_logger(__name__)

_FILE_MODE = 0o600
_DIR_MODE = 0o700


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) with mode 0700; tighten it if we own it and it is wider."""
    path.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid == os.geteuid() and info.st_mode & 0o077:
        path.chmod(_DIR_MODE)
        log.warning("data_dir.permissions_tightened", path=str(path))


class AppendLog:
    def __init__(self, path: Path, *, max_bytes: int, backups: int, fsync: bool = True) -> None:
        self.path = path
        self._max_bytes = max_bytes
        self._backups = backups
        self._fsync = fsync
        self._fd: int | None = None
        self._size = 0
        self._pending: list[tuple[bytes, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False
        self.last_error: str | None = None

    def open(self) -> None:
        ensure_private_dir(self.path.parent)
        self._open_file()

    def _open_file(self) -> None:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        fd = os.open(self.path, flags, _FILE_MODE)
        os.fchmod(fd, _FILE_MODE)
        self._fd = fd
        self._size = os.fstat(fd).st_size

    @property
    def healthy(self) -> bool:
        return self._fd is not None and not self._closed and self.last_error is None

    async def append(self, data: bytes) -> None:
        """Return once ``data`` (whole lines) is written and fsync'd; raise StorageError if not."""
        if not data:
            return
        if self._closed or self._fd is None:
            raise StorageError(f"{self.path.name} is closed")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((data, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_pending())
        await future

    async def _flush_pending(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            group, self._pending = self._pending, []
            try:
                await loop.run_in_executor(None, self._write, b"".join(data for data, _ in group))
            except OSError as exc:
                self.last_error = errno.errorcode.get(exc.errno or 0, "EIO")
                log.error("appendlog.write_failed", file=self.path.name, errno=self.last_error)
                error = StorageError(f"cannot write {self.path.name}: {self.last_error}")
                for _, future in group:
                    if not future.done():
                        future.set_exception(error)
            else:
                self.last_error = None
                for _, future in group:
                    if not future.done():
                        future.set_result(None)

    def _write(self, data: bytes) -> None:
        """Runs in a worker thread; only one at a time (``_flush_pending`` awaits each)."""
        if self._size and self._size + len(data) > self._max_bytes:
            self._rotate()
        fd = self._fd
        if fd is None:
            raise OSError(errno.EBADF, "closed")
        start = self._size
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if self._fsync:
                os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)  # drop the partial line
            raise
        self._size = start + len(data)

    def _rotate(self) -> None:
        """records.jsonl → records.jsonl.1 → … → .N; ``tail -F`` follows the new file by name."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        path = self.path
        if self._backups == 0:
            path.unlink(missing_ok=True)
        else:
            for index in range(self._backups - 1, 0, -1):
                older = path.with_name(f"{path.name}.{index}")
                if older.exists():
                    older.replace(path.with_name(f"{path.name}.{index + 1}"))
            path.replace(path.with_name(f"{path.name}.1"))
        self._open_file()
        fsync_dir(path.parent)
        log.info("appendlog.rotated", file=path.name)

    async def aclose(self) -> None:
        """Write what is queued, then close."""
        self._closed = True
        if self._flusher is not None:
            await self._flusher
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
