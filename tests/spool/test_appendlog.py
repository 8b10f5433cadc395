from __future__ import annotations

import asyncio
import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from webhook.core.files import ensure_private_dir
from webhook.errors import StorageError
from webhook.spool.appendlog import AppendLog


def line(n: int, width: int = 40) -> bytes:
    return f'{{"n":{n:05d},"pad":"{"x" * width}"}}\n'.encode()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def opened(tmp_path: Path, **options: int | bool) -> AppendLog:
    settings: dict[str, int | bool] = {"max_bytes": 1 << 20, "backups": 3} | options
    log = AppendLog(
        tmp_path / "data" / "records.jsonl",
        max_bytes=int(settings["max_bytes"]),
        backups=int(settings["backups"]),
        fsync=bool(settings.get("fsync", True)),
    )
    log.open()
    return log


def fail_writes_to(path: Path, monkeypatch: pytest.MonkeyPatch, *, half: bool = True) -> list[int]:
    """Make ``os.write`` on ``path`` write half its data, then fail with ENOSPC (a full disk).

    Writes to any other file descriptor go through untouched. Returns a list that counts the
    failures.
    """
    real_write: Callable[[int, bytes | memoryview], int] = os.write
    target = path.stat()
    failures: list[int] = []

    def write(fd: int, data: bytes | memoryview) -> int:
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino) != (target.st_dev, target.st_ino):
            return real_write(fd, data)
        failures.append(fd)
        if half and len(data) > 1:
            real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", write)
    return failures


async def test_append_writes_whole_lines(tmp_path: Path) -> None:
    """When ``append`` returns, its lines are in the file, in order."""
    log = opened(tmp_path)
    await log.append(line(1))
    await log.append(line(2) + line(3))
    await log.aclose()

    assert log.path.read_bytes() == line(1) + line(2) + line(3)


async def test_file_is_0600_in_a_0700_dir(tmp_path: Path) -> None:
    """Records may name secrets and users: only the owner reads them."""
    log = opened(tmp_path)
    await log.append(line(1))
    await log.aclose()

    assert mode(log.path) == 0o600
    assert mode(log.path.parent) == 0o700


async def test_an_existing_file_is_tightened_and_appended_to(tmp_path: Path) -> None:
    """A pre-existing 0644 file keeps its lines, becomes 0600, and grows at the end."""
    path = tmp_path / "data" / "records.jsonl"
    path.parent.mkdir(mode=0o700)
    path.write_bytes(line(0))
    path.chmod(0o644)

    log = opened(tmp_path)
    await log.append(line(1))
    await log.aclose()

    assert path.read_bytes() == line(0) + line(1)
    assert mode(path) == 0o600


def test_a_wide_data_dir_we_own_is_tightened(tmp_path: Path) -> None:
    """An existing 0755 data dir is narrowed to 0700, with a warning."""
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o755)

    with capture_logs() as logs:
        ensure_private_dir(data)

    assert mode(data) == 0o700
    assert [e["event"] for e in logs] == ["data_dir.permissions_tightened"]


async def test_concurrent_appends_all_land_whole(tmp_path: Path) -> None:
    """Many callers at once: every line appears exactly once and none is interleaved."""
    log = opened(tmp_path)
    await asyncio.gather(*(log.append(line(n)) for n in range(200)))
    await log.aclose()

    lines = log.path.read_bytes().splitlines(keepends=True)
    assert sorted(lines) == sorted(line(n) for n in range(200))


async def test_append_fsyncs_before_returning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``fsync`` on, the file is fsync'd before ``append`` returns; with it off, never."""
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.fstat(fd).st_size)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    log = opened(tmp_path)
    await log.append(line(1))
    assert synced == [len(line(1))]
    await log.aclose()

    synced.clear()
    quick = opened(tmp_path / "nosync", fsync=False)
    await quick.append(line(1))
    await quick.aclose()
    assert synced == []


async def test_a_failed_write_leaves_only_whole_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC half-way through: the partial line is cut off and ``append`` raises StorageError."""
    log = opened(tmp_path)
    await log.append(line(1))
    failures = fail_writes_to(log.path, monkeypatch)

    with pytest.raises(StorageError, match="ENOSPC"):
        await log.append(line(2) + line(3))

    assert failures
    assert log.path.read_bytes() == line(1)
    assert not log.healthy
    assert log.last_error == "ENOSPC"

    monkeypatch.undo()
    await log.append(line(4))
    await log.aclose()
    assert log.path.read_bytes() == line(1) + line(4)
    assert log.last_error is None


async def test_every_caller_of_a_failed_group_gets_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Callers grouped into one failed write all see it fail; none is told it was kept."""
    log = opened(tmp_path)
    await log.append(line(0))
    fail_writes_to(log.path, monkeypatch)

    outcomes = await asyncio.gather(*(log.append(line(n)) for n in range(1, 6)), return_exceptions=True)
    await log.aclose()

    assert all(isinstance(o, StorageError) for o in outcomes)
    assert log.path.read_bytes() == line(0)


async def test_append_after_close_raises(tmp_path: Path) -> None:
    """A closed log refuses data instead of losing it silently."""
    log = opened(tmp_path)
    await log.aclose()

    with pytest.raises(StorageError, match="closed"):
        await log.append(line(1))
    assert not log.healthy


async def test_rotation_keeps_n_backups(tmp_path: Path) -> None:
    """Past ``max_bytes`` the file moves to .1, .1 to .2 …; at most ``backups`` are kept."""
    size = len(line(0))
    log = opened(tmp_path, max_bytes=size * 3, backups=2)
    for n in range(20):
        await log.append(line(n))
    await log.aclose()

    names = sorted(p.name for p in log.path.parent.iterdir())
    assert names == ["records.jsonl", "records.jsonl.1", "records.jsonl.2"]
    kept = b"".join(log.path.with_name(name).read_bytes() for name in reversed(names[1:]))
    kept += log.path.read_bytes()
    # 3 lines fit in a file: 18-19 are current, 15-17 in .1, 12-14 in .2, the rest dropped
    assert kept == b"".join(line(n) for n in range(12, 20))
    for name in names:
        assert log.path.with_name(name).stat().st_size <= size * 3
        assert mode(log.path.with_name(name)) == 0o600


async def test_rotation_without_backups_starts_afresh(tmp_path: Path) -> None:
    """``backups: 0`` drops the full file; the new one has mode 0600."""
    size = len(line(0))
    log = opened(tmp_path, max_bytes=size * 2, backups=0)
    for n in range(5):
        await log.append(line(n))
    await log.aclose()

    assert sorted(p.name for p in log.path.parent.iterdir()) == ["records.jsonl"]
    assert log.path.read_bytes() == line(4)
    assert mode(log.path) == 0o600


class Follower:
    """What ``tail -F`` does: read to the end, and when the name points at a new file, finish
    the old one and reopen by name."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = path.open("rb")
        self.data = b""

    def poll(self) -> None:
        self.data += self.file.read()
        try:
            current = self.path.stat()
        except FileNotFoundError:
            return
        mine = os.fstat(self.file.fileno())
        if (current.st_dev, current.st_ino) != (mine.st_dev, mine.st_ino):
            self.data += self.file.read()
            self.file.close()
            self.file = self.path.open("rb")
            self.data += self.file.read()

    def close(self) -> None:
        self.file.close()


@pytest.mark.parametrize("backups", [0, 1, 3])
async def test_a_reader_following_by_name_sees_every_line(tmp_path: Path, backups: int) -> None:
    """Rotation renames (or unlinks) the full file and opens a new one: a follower misses nothing."""
    size = len(line(0))
    log = opened(tmp_path, max_bytes=size * 4, backups=backups)
    follower = Follower(log.path)
    try:
        for n in range(50):
            await log.append(line(n) + line(n + 1000) if n % 7 == 0 else line(n))
            if n % 3 == 0:
                follower.poll()
        follower.poll()
    finally:
        follower.close()
        await log.aclose()

    expected = b"".join(line(n) + line(n + 1000) if n % 7 == 0 else line(n) for n in range(50))
    assert follower.data == expected


async def test_a_failed_write_does_not_rotate_away_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a failure the size bookkeeping matches the file, so rotation happens on time."""
    size = len(line(0))
    log = opened(tmp_path, max_bytes=size * 2, backups=1)
    await log.append(line(0))
    fail_writes_to(log.path, monkeypatch)
    with pytest.raises(StorageError):
        await log.append(line(1))
    monkeypatch.undo()

    await log.append(line(2))
    await log.append(line(3))
    await log.aclose()

    assert log.path.with_name("records.jsonl.1").read_bytes() == line(0) + line(2)
    assert log.path.read_bytes() == line(3)


async def test_a_partial_last_line_left_by_a_crash_is_cut_at_open(tmp_path: Path) -> None:
    """kill -9 can stop a write between pages: the fragment (never acknowledged) goes, so the
    next record does not get glued to it."""
    path = tmp_path / "records.jsonl"
    path.write_bytes(line(1) + line(2) + line(3)[:17])
    log = AppendLog(path, max_bytes=1 << 20, backups=1)
    log.open()
    await log.append(line(4))
    await log.aclose()
    assert path.read_bytes() == line(1) + line(2) + line(4)

    path.write_bytes(b"no newline at all")
    log = AppendLog(path, max_bytes=1 << 20, backups=1)
    log.open()
    await log.append(line(5))
    await log.aclose()
    assert path.read_bytes() == line(5)


@pytest.mark.parametrize("fsync", [True, False])
async def test_a_planted_symlink_is_not_followed(tmp_path: Path, fsync: bool) -> None:
    """F2 (13): ``records.jsonl`` as a link to a file elsewhere: refused; the victim is neither
    appended to nor chmod'ed 0644 -> 0600."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"IMPORTANT\n")
    victim.chmod(0o644)
    (tmp_path / "data").mkdir(mode=0o700)
    (tmp_path / "data" / "records.jsonl").symlink_to(victim)

    with pytest.raises(StorageError, match="symbolic link"):
        opened(tmp_path, fsync=fsync)

    assert victim.read_bytes() == b"IMPORTANT\n"
    assert mode(victim) == 0o644


async def test_a_fifo_is_not_a_log(tmp_path: Path) -> None:
    """A FIFO in the log's place is refused without blocking on it."""
    (tmp_path / "data").mkdir(mode=0o700)
    os.mkfifo(tmp_path / "data" / "records.jsonl")

    with pytest.raises(StorageError, match="not a regular file"):
        opened(tmp_path)
