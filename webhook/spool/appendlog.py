"""An append-only file of whole lines: group-committed fsyncs, size-based rotation, mode 0600.

A caller's ``append`` returns only once its bytes are on disk; concurrent callers share one
fsync (webhook/spool/groupcommit.py). A failed write is cut back to the last whole line, so readers
(``tail -F``, Fluent Bit, Vector) never see a partial record.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import structlog

from webhook.core.files import ensure_private_dir, fsync_dir, open_private
from webhook.errors import StorageError
from webhook.record.files import backup
from webhook.spool.groupcommit import GroupCommit, write_whole

__all__ = ["AppendLog"]

log = structlog.get_logger(__name__)


class AppendLog:
    def __init__(
        self, path: Path, *, max_bytes: int, backups: int, fsync: bool = True, inline_bytes: int = 0
    ) -> None:
        """``inline_bytes``: appends up to this size may be written in the event loop's thread
        (``GroupCommit``); 0 for a file whose writes no request waits for."""
        self.path = path
        self._max_bytes = max_bytes
        self._backups = backups
        self._fsync = fsync
        self._fd: int | None = None
        self._size = 0
        self._commits: GroupCommit[bytes] = GroupCommit(
            self._write, what=path.name, event="appendlog.write_failed", inline_bytes=inline_bytes
        )
        self._closed = False

    def open(self) -> None:
        ensure_private_dir(self.path.parent)
        self._open_file()

    def _open_file(self) -> None:
        fd = open_private(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT)  # read: _whole_lines
        os.fchmod(fd, 0o600)
        self._fd = fd
        self._size = os.fstat(fd).st_size
        whole = _whole_lines(fd, self._size)
        if whole < self._size:
            # A write cut short by a crash (kill -9 can stop a write between pages): it was never
            # acknowledged, and whatever follows must not be glued to its fragment.
            os.ftruncate(fd, whole)
            os.fsync(fd)
            log.warning("appendlog.partial_line_cut", file=self.path.name, bytes=self._size - whole)
            self._size = whole

    @property
    def last_error(self) -> str | None:
        return self._commits.last_error

    @property
    def healthy(self) -> bool:
        return self._fd is not None and not self._closed and self.last_error is None

    async def append(self, data: bytes) -> None:
        """Return once ``data`` (whole lines) is written and fsync'd; raise StorageError if not."""
        if not data:
            return
        if self._closed or self._fd is None:
            raise StorageError(f"{self.path.name} is closed")
        await self._commits.submit([data], size=len(data))

    def _write(self, chunks: list[bytes]) -> None:
        """Runs in a worker thread, one round at a time (GroupCommit)."""
        data = b"".join(chunks)
        if self._size and self._size + len(data) > self._max_bytes:
            self._rotate()
        fd = self._fd
        if fd is None:
            raise OSError(errno.EBADF, "closed")
        start = self._size
        write_whole(fd, data, start, fsync=self._fsync)
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
                older = backup(path, index)
                if older.exists():
                    older.replace(backup(path, index + 1))
            path.replace(backup(path, 1))
        self._open_file()
        fsync_dir(path.parent)
        log.info("appendlog.rotated", file=path.name)

    async def aclose(self) -> None:
        """Write what is queued, then close."""
        self._closed = True
        await self._commits.drain()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _whole_lines(fd: int, size: int, chunk: int = 64 * 1024) -> int:
    """Length of the file's first ``size`` bytes up to and including its last newline."""
    end = size
    while end > 0:
        start = max(0, end - chunk)
        data = os.pread(fd, end - start, start)
        newline = data.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0
