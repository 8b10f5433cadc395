"""The durable queue between the handler and the sinks.

Records are appended as JSON lines to numbered segment files and fsync'd before the handler
answers 200 (concurrent requests share one fsync). Each sink reads from its own cursor and
moves it only after delivery, so delivery is at-least-once per sink and a restart resumes
where each sink stopped. Cursors are small JSON files replaced atomically. A segment is
deleted once every cursor is past it.

Ahead of the end of the segment being written, the file holds up to ``AHEAD_BYTES`` of zeros
already on disk, written by a worker thread before they are needed: an append that lands there
changes neither the file's size nor its blocks, so its fdatasync writes the data and nothing
else. An append that makes the file grow has to commit the filesystem's journal, and on ext4
that commit waits for other files' new blocks too (the JSONL sink's, the state store's): the
long tail of blocking mode's fsyncs. Records are JSON and never hold a NUL byte, so recovery
reads a segment up to its first NUL; the zeros are cut from a segment once it is left, and
from the last one on close. No zeros are written ahead on a filesystem with less than
``AHEAD_MIN_FREE`` free.

When the spool holds ``max_bytes``, appends fail with ``SpoolFullError`` (503: the apiserver
keeps the batch and retries) — unless the lagging sinks are ``drop_when_full``, whose backlog
is then dropped (counted and logged) so an optional sink cannot stall the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import orjson
import structlog

from webhook.core.files import ensure_private_dir, fsync_dir, open_private, replace_private
from webhook.errors import ConfigError, SpoolFullError, StorageError
from webhook.record.line import RecordLine
from webhook.spool.groupcommit import GroupCommit, errno_name

__all__ = ["AHEAD_BYTES", "AHEAD_MIN_FREE", "INLINE_BYTES", "Position", "Spool", "SpoolBatch"]

log = structlog.get_logger(__name__)

_SUFFIX = ".seg"
# Appends up to this size (blocking mode's one-event requests) are written in the event loop's
# thread while the disk is fast (GroupCommit): a record or two, never a 400-event batch's.
INLINE_BYTES: Final = 64 * 1024
# Zeros kept on disk ahead of the end of the segment being written (see the module), written
# again once less than half of them is left; none on a filesystem with less than this free.
AHEAD_BYTES: Final = 256 * 1024
AHEAD_MIN_FREE: Final = 64 * 1024 * 1024
_AHEAD_RETRY_S: Final = 5.0  # after a failed or skipped write of zeros
_FILE_MODE = 0o600
_datasync: Final[Callable[[int], None]] = getattr(os, "fdatasync", os.fsync)


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """A place in the spool: segment number, byte offset in it, and records before it."""

    segment: int
    offset: int
    seq: int


@dataclass(slots=True)
class SpoolBatch:
    records: list[RecordLine]
    end: Position


@dataclass(slots=True)
class _Cursor:
    position: Position
    drop_when_full: bool
    dropped: int = 0
    waiter: asyncio.Event = field(default_factory=asyncio.Event)


class Spool:
    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        segment_bytes: int,
        fsync: bool = True,
        on_drop: Callable[[str, int], None] | None = None,
    ) -> None:
        self.directory = directory
        self._on_drop = on_drop
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._fsync = fsync
        self._segments: dict[int, int] = {}  # segment number -> committed size in bytes
        self._bases: dict[int, int] = {}  # segment number -> number of its first record
        self._fd: int | None = None
        # The current segment's size on disk: its committed records, then zeros. Changed only
        # under the lock, but for a write that stays below it (which needs no lock).
        self._zeroed = 0
        self._tail_lock = threading.Lock()
        self._ahead: asyncio.Future[None] | None = None
        self._ahead_after = 0.0  # monotonic time before which no zeros are written ahead
        self._last_round = 0  # bytes of the last write
        self._lock_fd: int | None = None
        self._end = Position(1, 0, 0)  # committed: readers never go past it
        self._cursors: dict[str, _Cursor] = {}
        self._commits: GroupCommit[bytes] = GroupCommit(
            self._write, what="the spool", event="spool.write_failed", inline_bytes=INLINE_BYTES
        )
        self._closed = False

    # -- opening and recovery ------------------------------------------------------------

    def open(self) -> None:
        """Find the segments, cut a partial last line left by a crash, open for appending."""
        ensure_private_dir(self.directory)
        self._lock()
        (self.directory / "cursors").mkdir(mode=0o700, exist_ok=True)
        numbers = sorted(int(p.stem) for p in self.directory.glob(f"*{_SUFFIX}") if p.stem.isdigit())
        seq = 0  # record numbers count from the oldest segment on disk
        for number in numbers:
            path = self._path(number)
            fd = open_private(path, os.O_RDWR)
            try:
                data = _read_all(fd)
                # Records never hold a NUL: from the first one on, zeros written ahead (and
                # whatever a crash left beyond them, never acknowledged) are cut.
                nul = data.find(b"\0")
                written = len(data) if nul < 0 else nul
                whole = data.rfind(b"\n", 0, written) + 1
                if whole != len(data):
                    os.ftruncate(fd, whole)
            finally:
                os.close(fd)
            if whole != written:
                log.warning("spool.partial_line_cut", segment=number, bytes=written - whole)
            self._segments[number] = whole
            self._bases[number] = seq
            seq += data.count(b"\n", 0, whole)
        last = numbers[-1] if numbers else 1
        self._segments.setdefault(last, 0)
        self._bases.setdefault(last, seq)
        self._end = Position(last, self._segments[last], seq)
        self._open_segment(last)

    def _lock(self) -> None:
        """One process per spool: a second serve or replay on the same data dir would corrupt it."""
        fd = open_private(self.directory / "lock", os.O_RDWR | os.O_CREAT, _FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ConfigError(
                f"the spool in {self.directory} is in use by another ingress-audit process "
                "(a running server: stop it, or send events to it with `replay --server URL`)"
            ) from None
        self._lock_fd = fd

    def _seq_at(self, segment: int, offset: int) -> int:
        return self._bases[segment] + self._pread(segment, offset, 0).count(b"\n")

    def _pread(self, segment: int, size: int, offset: int) -> bytes:
        fd = open_private(self._path(segment), os.O_RDONLY)
        try:
            return _pread_all(fd, size, offset)
        finally:
            os.close(fd)

    def _path(self, number: int) -> Path:
        return self.directory / f"{number:020d}{_SUFFIX}"

    def _open_segment(self, number: int) -> None:
        self._fd = open_private(self._path(number), os.O_WRONLY | os.O_CREAT, _FILE_MODE)
        self._zeroed = os.fstat(self._fd).st_size

    def register(self, name: str, *, drop_when_full: bool = False) -> Position:
        """Attach a sink; it resumes from its persisted cursor, or starts at the oldest record."""
        path = self.directory / "cursors" / f"{name}.json"
        first = min(self._segments)
        start = Position(first, 0, self._bases[first])
        if path.exists() or path.is_symlink():
            fd = open_private(path, os.O_RDONLY)
            try:
                raw = orjson.loads(_read_all(fd))
            finally:
                os.close(fd)
            segment, offset = int(raw["segment"]), int(raw["offset"])
            if segment in self._segments and offset <= self._segments[segment]:
                start = Position(segment, offset, self._seq_at(segment, offset))
            elif segment > self._end.segment or (segment == self._end.segment and offset >= self._end.offset):
                start = self._end
        self._cursors[name] = _Cursor(position=min(start, self._end), drop_when_full=drop_when_full)
        return self._cursors[name].position

    # -- appending -----------------------------------------------------------------------

    @property
    def size(self) -> int:
        return sum(self._segments.values())

    @property
    def last_error(self) -> str | None:
        return self._commits.last_error

    @property
    def healthy(self) -> bool:
        return not self._closed and self.last_error is None

    async def append(self, lines: Sequence[bytes]) -> None:
        """Return once ``lines`` (JSON, no newline) are fsync'd; SpoolFullError/StorageError if not."""
        if not lines:
            return
        if self._closed:
            raise StorageError("spool is closed")
        incoming = sum(len(line) + 1 for line in lines)
        if self.size + incoming > self.max_bytes:
            self._drop_optional_backlogs()
            if self.size + incoming > self.max_bytes:
                behind = self.lagging()
                log.warning("spool.full", size=self.size, max_bytes=self.max_bytes, behind=behind)
                raise SpoolFullError(f"spool holds {self.size} bytes; sinks behind: {', '.join(behind)}")
        # A small append may be written inline (GroupCommit) into the zeros or not: it must not
        # wait for a free thread. Beyond the zeros it waits for a write of zeros in progress,
        # if there is one (right after a roll, or when appends outrun them): one at most.
        await self._commits.submit(list(lines), size=incoming)
        for cursor in self._cursors.values():
            cursor.waiter.set()
        self._write_ahead()

    def _write(self, lines: list[bytes]) -> None:
        """Worker thread, one round at a time (GroupCommit): append whole lines, fsync, move the end."""
        end = self._end
        data = b"\n".join(lines) + b"\n"
        self._last_round = len(data)
        fd = self._fd
        if fd is None:
            raise OSError(errno.EBADF, "spool is closed")
        if end.offset and end.offset + len(data) > self.segment_bytes:
            self._roll(end, data, len(lines))
            return
        stop = end.offset + len(data)
        try:
            if stop <= self._zeroed:  # into the zeros ahead: the file neither grows nor moves
                _write_at(fd, data, end.offset, sync=self._fsync)
            else:
                with self._tail_lock:
                    _write_at(fd, data, end.offset, sync=self._fsync)
                    self._zeroed = max(self._zeroed, stop)
        except OSError:
            with self._tail_lock:  # cut back to the last whole line; zeros are written again later
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, end.offset)
                self._zeroed = end.offset
            raise
        self._segments[end.segment] = stop
        self._end = Position(end.segment, stop, end.seq + len(lines))

    def _write_ahead(self) -> None:
        """Start writing zeros ahead of the end in a thread, if less than half are left and the
        writes are small: batch mode's rounds of many batches would rarely fit, and every byte
        of zeros they write over is a byte written twice."""
        if not self._fsync or self._ahead is not None or self._closed or self._fd is None:
            return
        if self._last_round > INLINE_BYTES:
            return
        if self._zeroed >= min(self._end.offset + AHEAD_BYTES // 2, self.segment_bytes):
            return
        if time.monotonic() < self._ahead_after:
            return
        self._ahead = asyncio.ensure_future(asyncio.to_thread(self._zero_ahead))
        self._ahead.add_done_callback(self._written_ahead)

    def _zero_ahead(self) -> None:
        """Worker thread: zeros from the current segment's size on, fdatasync'd.

        Under the lock, so that no write that grows the file, no roll and no cut runs meanwhile;
        a write below ``_zeroed`` may, and never touches these bytes."""
        with self._tail_lock:
            fd, start = self._fd, self._zeroed
            if fd is None:
                return
            stop = min(start + AHEAD_BYTES, self.segment_bytes)
            if stop <= start:
                return
            free = os.fstatvfs(fd)
            if free.f_bavail * free.f_frsize < AHEAD_MIN_FREE:
                raise _LowSpace
            try:
                _write_at(fd, bytes(stop - start), start, sync=True)
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, start)
                raise
            self._zeroed = stop

    def _written_ahead(self, done: asyncio.Future[None]) -> None:
        self._ahead = None
        error = None if done.cancelled() else done.exception()
        if error is not None:
            # Appends go on growing the file, as without zeros ahead; try again later.
            self._ahead_after = time.monotonic() + _AHEAD_RETRY_S
            if isinstance(error, OSError):
                log.info("spool.zeros_ahead_failed", errno=errno_name(error))

    def _roll(self, end: Position, data: bytes, count: int) -> None:
        """Start the next segment with ``data``; only once that is durable does it become the
        one written to. If it fails, the current segment stays current: a smaller batch that
        still fits it must land where the positions say, not in the new file."""
        number = end.segment + 1
        path = self._path(number)
        # O_TRUNC: a file left by an earlier failed roll never holds acknowledged records.
        fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _FILE_MODE)
        try:
            _write_at(fd, data, 0, sync=self._fsync)
            fsync_dir(self.directory)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        with self._tail_lock:
            if self._fd is not None:
                with contextlib.suppress(OSError):  # its zeros ahead: recovery would cut them too
                    os.ftruncate(self._fd, end.offset)
                os.close(self._fd)
            self._fd = fd
            self._zeroed = len(data)
        self._segments[number] = len(data)
        self._bases[number] = end.seq
        self._end = Position(number, len(data), end.seq + count)

    # -- reading and delivery ------------------------------------------------------------

    def read(self, name: str, *, max_events: int, max_bytes: int) -> SpoolBatch:
        """Up to ``max_events`` committed records after the sink's cursor (no waiting)."""
        cursor = self._cursors[name]
        position, end = cursor.position, self._end
        records: list[RecordLine] = []
        size = 0
        while position < end and len(records) < max_events and size < max_bytes:
            limit = end.offset if position.segment == end.segment else self._segments[position.segment]
            if position.offset >= limit:
                position = Position(position.segment + 1, 0, position.seq)
                continue
            want = min(limit - position.offset, max(max_bytes - size, 64 * 1024))
            chunk = self._pread(position.segment, want, position.offset)
            cut = chunk.rfind(b"\n") + 1
            if cut == 0:  # one record larger than what we asked for: read it whole
                chunk = self._pread(position.segment, limit - position.offset, position.offset)
                cut = chunk.find(b"\n") + 1
            offset = position.offset
            seq = position.seq
            full = False
            for line in chunk[:cut].splitlines():
                if len(records) >= max_events or (records and size + len(line) > max_bytes):
                    full = True
                    break
                records.append(RecordLine(line))
                size += len(line) + 1
                offset += len(line) + 1
                seq += 1
            position = Position(position.segment, offset, seq)
            if full:
                break
        return SpoolBatch(records=records, end=position)

    async def wait(self, name: str) -> None:
        """Until records the sink has not read are committed (wrap it in a timeout)."""
        cursor = self._cursors[name]
        # Records, not bytes: after a crash between rolling a segment and writing to it, the
        # cursor sits at the end of the previous segment, before an empty one; that is nothing
        # to read, and returning here would make the delivery loop spin without yielding.
        if cursor.position.seq < self._end.seq:
            return
        cursor.waiter.clear()
        await cursor.waiter.wait()

    def commit(self, name: str, position: Position) -> None:
        """Persist that the sink has everything before ``position``; free unneeded segments."""
        self._cursors[name].position = position
        self._write_cursor(name, position)
        self._collect()

    async def commit_async(self, name: str, position: Position) -> None:
        """``commit``, with the cursor file's write + fsync + rename in a worker thread: the
        event loop (and every request in flight) does not wait for the disk.

        The cursor moves in memory only once its file is written (or the write failed, as
        ``commit`` does): another sink's commit meanwhile must not delete segments that this
        sink's file still points into, or a crash right then would lose them for this sink."""
        cursor = self._cursors[name]
        try:
            await asyncio.to_thread(self._write_cursor, name, position)
        finally:
            if cursor.position < position:
                cursor.position = position
        if position < cursor.position:  # moved further meanwhile (a dropped backlog): keep that
            self._write_cursor(name, cursor.position)
        self._collect()

    def _write_cursor(self, name: str, position: Position) -> None:
        path = self.directory / "cursors" / f"{name}.json"
        replace_private(path, orjson.dumps({"segment": position.segment, "offset": position.offset}))

    def _collect(self) -> None:
        """Delete segments that every cursor has passed (never the one being written)."""
        if not self._cursors:
            return
        oldest = min(c.position for c in self._cursors.values())
        for number in sorted(self._segments):
            if number >= oldest.segment or number >= self._end.segment:
                break
            self._path(number).unlink(missing_ok=True)
            del self._segments[number]
            del self._bases[number]

    # -- lag and backpressure --------------------------------------------------------------

    def lag(self, name: str) -> tuple[int, int]:
        """Records and bytes the sink still has to deliver."""
        position = self._cursors[name].position
        end = self._end
        size = (
            sum(size for number, size in self._segments.items() if position.segment <= number)
            - position.offset
        )
        return end.seq - position.seq, max(size, 0)

    def lagging(self) -> list[str]:
        """Sinks holding the oldest segment, most behind first."""
        if not self._cursors:
            return []
        ordered = sorted(self._cursors.items(), key=lambda item: item[1].position)
        oldest = ordered[0][1].position.segment
        return [name for name, cursor in ordered if cursor.position.segment == oldest]

    def dropped(self, name: str) -> int:
        return self._cursors[name].dropped

    def _drop_optional_backlogs(self) -> None:
        for name, cursor in self._cursors.items():
            if cursor.drop_when_full and cursor.position < self._end:
                lost = self._end.seq - cursor.position.seq
                cursor.dropped += lost
                log.warning("spool.backlog_dropped", sink=name, records=lost, intentional=True)
                if self._on_drop is not None:
                    self._on_drop(name, lost)
                self.commit(name, self._end)

    async def aclose(self) -> None:
        self._closed = True
        await self._commits.drain()
        if self._ahead is not None:
            with contextlib.suppress(Exception):
                await self._ahead
        if self._fd is not None:
            with contextlib.suppress(OSError):  # the zeros ahead: a segment ends with its last record
                os.ftruncate(self._fd, self._end.offset)
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None


class _LowSpace(Exception):
    """Too little free space on the spool's filesystem to write zeros ahead."""


def _write_at(fd: int, data: bytes, offset: int, *, sync: bool) -> None:
    """``data`` at ``offset``, then fdatasync (the size too, when the file grew)."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written
    if sync:
        _datasync(fd)


def _read_all(fd: int) -> bytes:
    return _pread_all(fd, os.fstat(fd).st_size, 0)


def _pread_all(fd: int, size: int, offset: int) -> bytes:
    """``size`` bytes at ``offset`` (fewer only at the end of the file)."""
    chunks = []
    while size > 0 and (chunk := os.pread(fd, size, offset)):
        chunks.append(chunk)
        size -= len(chunk)
        offset += len(chunk)
    return b"".join(chunks)
