"""The spool keeps what it acknowledged, hands each sink every record once, and pushes back when full."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from webhook.errors import SpoolFullError, StorageError
from webhook.spool import groupcommit, segments
from webhook.spool.segments import AHEAD_BYTES, Spool


def _spool(path: Path, **kw: Any) -> Spool:
    options: dict[str, Any] = {"max_bytes": 1024 * 1024, "segment_bytes": 4096, **kw}
    spool = Spool(path, **options)
    spool.open()
    return spool


def _lines(start: int, count: int, pad: int = 0) -> list[bytes]:
    return [orjson.dumps({"id": f"r{n}", "pad": "x" * pad}) for n in range(start, start + count)]


def _ids(spool: Spool, name: str, max_events: int = 10_000) -> list[str]:
    batch = spool.read(name, max_events=max_events, max_bytes=1 << 30)
    return [r.record["id"] for r in batch.records]


async def test_records_round_trip_in_order(tmp_path: Path) -> None:
    """What was appended is read back whole and in order, across segments."""
    spool = _spool(tmp_path)
    spool.register("a")
    for start in range(0, 100, 10):
        await spool.append(_lines(start, 10, pad=100))

    assert _ids(spool, "a") == [f"r{n}" for n in range(100)]
    assert len(list(tmp_path.glob("*.seg"))) > 1  # 4 KiB segments rolled
    await spool.aclose()


async def test_batches_respect_their_limits(tmp_path: Path) -> None:
    """A read returns at most max_events records and about max_bytes, never a partial record."""
    spool = _spool(tmp_path)
    spool.register("a")
    await spool.append(_lines(0, 50, pad=50))

    first = spool.read("a", max_events=7, max_bytes=1 << 20)
    assert [r.record["id"] for r in first.records] == [f"r{n}" for n in range(7)]
    small = spool.read("a", max_events=100, max_bytes=200)
    assert 1 <= len(small.records) <= 3
    await spool.aclose()


async def test_each_sink_resumes_from_its_cursor_after_restart(tmp_path: Path) -> None:
    """Committed cursors survive a restart; each sink gets what it had not delivered."""
    spool = _spool(tmp_path)
    spool.register("fast")
    spool.register("slow")
    await spool.append(_lines(0, 30, pad=80))
    batch = spool.read("fast", max_events=20, max_bytes=1 << 20)
    spool.commit("fast", batch.end)
    await spool.aclose()

    reopened = _spool(tmp_path)
    reopened.register("fast")
    reopened.register("slow")
    assert _ids(reopened, "fast") == [f"r{n}" for n in range(20, 30)]
    assert _ids(reopened, "slow") == [f"r{n}" for n in range(30)]
    assert reopened.lag("fast")[0] == 10
    assert reopened.lag("slow")[0] == 30
    await reopened.aclose()


async def test_an_empty_last_segment_after_a_crash_is_nothing_to_wait_for(tmp_path: Path) -> None:
    """Killed between rolling a segment and writing to it: a sink at the end of the previous
    segment waits for new records (it used to return at once, and its loop spun forever)."""
    spool = _spool(tmp_path, segment_bytes=64 * 1024)
    spool.register("sink")
    await spool.append(_lines(0, 3))
    spool.commit("sink", spool.read("sink", max_events=10, max_bytes=1 << 20).end)
    await spool.aclose()
    (last,) = tmp_path.glob("*.seg")
    (tmp_path / f"{int(last.stem) + 1:020d}.seg").touch()  # what _roll leaves before the write

    reopened = _spool(tmp_path, segment_bytes=64 * 1024)
    reopened.register("sink")
    assert reopened.lag("sink")[0] == 0
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await reopened.wait("sink")
    await reopened.append(_lines(3, 2))
    await reopened.wait("sink")
    assert _ids(reopened, "sink") == ["r3", "r4"]
    await reopened.aclose()


async def test_a_partial_last_line_is_cut_on_open(tmp_path: Path) -> None:
    """A crash mid-write leaves a partial line; recovery drops it and keeps every whole record."""
    spool = _spool(tmp_path)
    await spool.append(_lines(0, 3))
    await spool.aclose()
    (segment,) = tmp_path.glob("*.seg")
    with segment.open("ab") as handle:
        handle.write(b'{"id":"torn","pa')

    reopened = _spool(tmp_path)
    reopened.register("a")
    assert _ids(reopened, "a") == ["r0", "r1", "r2"]
    assert segment.read_bytes().endswith(b"\n")
    await reopened.aclose()


async def _written_ahead(spool: Spool) -> None:
    """Until the zeros being written ahead (if any) are on disk."""
    if spool._ahead is not None:
        async with asyncio.timeout(10):
            await asyncio.wait([spool._ahead])


async def test_appends_land_in_zeros_written_ahead(tmp_path: Path) -> None:
    """Once the first records are in, zeros are written ahead of them; the next appends land
    there, and the file's size and blocks do not change: nothing for the journal to commit."""
    spool = _spool(tmp_path, segment_bytes=8 * AHEAD_BYTES)
    spool.register("a")
    await spool.append(_lines(0, 3))
    await _written_ahead(spool)
    (segment,) = tmp_path.glob("*.seg")
    before = segment.stat()
    records = segment.read_bytes().rstrip(b"\0")
    assert before.st_size >= len(records) + AHEAD_BYTES // 2
    assert segment.read_bytes()[len(records) :] == bytes(before.st_size - len(records))

    for start in range(3, 30, 3):
        await spool.append(_lines(start, 3, pad=100))
    after = segment.stat()
    assert (after.st_size, after.st_blocks) == (before.st_size, before.st_blocks)
    assert _ids(spool, "a") == [f"r{n}" for n in range(30)]
    await spool.aclose()
    assert not segment.read_bytes().endswith(b"\0")  # closed: it ends with its last record

    reopened = _spool(tmp_path, segment_bytes=8 * AHEAD_BYTES)
    reopened.register("a")
    assert _ids(reopened, "a") == [f"r{n}" for n in range(30)]
    await reopened.aclose()


async def test_zeros_ahead_and_anything_beyond_them_are_cut_on_open(tmp_path: Path) -> None:
    """After a crash a segment may hold, after its records, a torn line, the zeros written
    ahead, and bytes of a write never acknowledged beyond them: only the whole records before
    the first zero are kept, and nothing beyond them ever reads as a record."""
    spool = _spool(tmp_path)
    await spool.append(_lines(0, 3))
    await spool.aclose()
    (segment,) = tmp_path.glob("*.seg")
    with segment.open("ab") as handle:
        handle.write(b'{"id":"torn","pa' + bytes(1000) + b'{"id":"ghost"}\n' + bytes(500))

    with capture_logs() as logs:
        reopened = _spool(tmp_path)
    reopened.register("a")
    assert _ids(reopened, "a") == ["r0", "r1", "r2"]
    assert [e["bytes"] for e in logs if e["event"] == "spool.partial_line_cut"] == [len('{"id":"torn","pa')]
    await reopened.append([orjson.dumps({"id": "r3"})])  # shorter than what was cut
    await reopened.aclose()

    again = _spool(tmp_path)
    again.register("a")
    assert _ids(again, "a") == ["r0", "r1", "r2", "r3"]
    await again.aclose()


async def test_a_segment_left_behind_ends_with_its_last_record(tmp_path: Path) -> None:
    """Rolling to the next segment cuts the zeros ahead of the previous one."""
    spool = _spool(tmp_path, segment_bytes=64 * 1024)
    spool.register("a")
    await spool.append(_lines(0, 10, pad=900))
    await _written_ahead(spool)
    first = min(tmp_path.glob("*.seg"))
    assert first.read_bytes().endswith(b"\0")
    for start in range(10, 100, 10):
        await spool.append(_lines(start, 10, pad=900))
        await _written_ahead(spool)

    *left, _ = sorted(tmp_path.glob("*.seg"))
    assert left
    assert all(segment.read_bytes().endswith(b"\n") for segment in left)
    assert _ids(spool, "a") == [f"r{n}" for n in range(100)]
    await spool.aclose()


async def test_no_zeros_ahead_of_large_writes(tmp_path: Path) -> None:
    """Rounds larger than an inline write (batch mode's) would rarely fit in the zeros: none
    are written for them, and the next small write starts them again."""
    spool = _spool(tmp_path, segment_bytes=8 * AHEAD_BYTES)
    spool.register("a")
    await spool.append(_lines(0, 100, pad=1000))  # ~100 KiB in one round
    await _written_ahead(spool)
    (segment,) = tmp_path.glob("*.seg")
    assert not segment.read_bytes().endswith(b"\0")

    await spool.append(_lines(100, 1))
    await _written_ahead(spool)
    assert segment.read_bytes().endswith(b"\0")
    assert _ids(spool, "a") == [f"r{n}" for n in range(101)]
    await spool.aclose()


async def test_small_appends_are_written_inline_into_zeros_or_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small append is written by the event loop itself, whether it lands in zeros, grows
    the file (no zeros: too little free space) or is not fsync'd: it never waits for a free
    worker thread, which the sinks and the state store may all be holding."""
    monkeypatch.setattr(groupcommit, "INLINE_MAX_S", 10.0)  # however slow this disk is
    for name, fsync, min_free in (("zeros", True, 0), ("no-zeros", True, 1 << 62), ("no-fsync", False, 0)):
        monkeypatch.setattr(segments, "AHEAD_MIN_FREE", min_free)
        spool = _spool(tmp_path / name, segment_bytes=8 * AHEAD_BYTES, fsync=fsync)
        spool.register("a")
        await spool.append(_lines(0, 1))  # the first round, in the thread, measures the disk
        await _written_ahead(spool)
        (segment,) = (tmp_path / name).glob("*.seg")
        assert segment.read_bytes().endswith(b"\0") is (name == "zeros")
        for start in range(1, 20):
            await spool.append(_lines(start, 1))
        assert spool._commits.inline_rounds == 19, name
        assert _ids(spool, "a") == [f"r{n}" for n in range(20)]
        await spool.aclose()


async def test_a_small_append_waits_for_no_thread_while_zeros_are_on_their_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Right after the first append the zeros are still being written; a small append then
    grows the file in the event loop, even with every worker thread busy."""
    monkeypatch.setattr(groupcommit, "INLINE_MAX_S", 10.0)  # however slow this disk is
    spool = _spool(tmp_path, segment_bytes=8 * AHEAD_BYTES)
    spool.register("a")
    started, release = threading.Event(), threading.Event()
    zero_ahead = spool._zero_ahead

    def held() -> None:
        started.set()
        assert release.wait(10)
        zero_ahead()

    monkeypatch.setattr(spool, "_zero_ahead", held)
    await spool.append(_lines(0, 1))  # the first round, in the thread; the zeros start after it
    assert await asyncio.to_thread(started.wait, 10)
    loop = asyncio.get_running_loop()
    busy = ThreadPoolExecutor(max_workers=1)
    blocker = loop.run_in_executor(busy, release.wait, 10)
    loop.set_default_executor(busy)
    try:
        async with asyncio.timeout(5):
            await spool.append(_lines(1, 1))
    finally:
        release.set()
        await blocker
        await _written_ahead(spool)
    assert _ids(spool, "a") == ["r0", "r1"]
    (segment,) = tmp_path.glob("*.seg")
    assert segment.read_bytes().endswith(b"\0")  # the zeros came after, beyond r1
    await spool.aclose()


async def test_no_zeros_ahead_on_a_filesystem_short_of_space(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Below the free space it needs, or when writing them fails, no zeros are written ahead
    (none are left half-written) and appends go on growing the file."""
    monkeypatch.setattr(segments, "AHEAD_MIN_FREE", 1 << 62)
    spool = _spool(tmp_path, segment_bytes=8 * AHEAD_BYTES)
    spool.register("a")
    await spool.append(_lines(0, 3))
    await _written_ahead(spool)
    (segment,) = tmp_path.glob("*.seg")
    assert not segment.read_bytes().endswith(b"\0")
    await spool.aclose()

    monkeypatch.undo()
    real_pwrite: Callable[[int, Any, int], int] = os.pwrite

    def no_room_for_zeros(fd: int, data: Any, offset: int) -> int:
        if not any(data):
            real_pwrite(fd, bytes(data[: len(data) // 2]), offset)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", no_room_for_zeros)
    reopened = _spool(tmp_path, segment_bytes=8 * AHEAD_BYTES)
    reopened.register("a")
    with capture_logs() as logs:
        await reopened.append(_lines(3, 3))
        await _written_ahead(reopened)
    await reopened.append(_lines(6, 3))
    assert not segment.read_bytes().endswith(b"\0")
    assert [e.get("errno") for e in logs if e["event"] == "spool.zeros_ahead_failed"] == ["ENOSPC"]
    assert _ids(reopened, "a") == [f"r{n}" for n in range(9)]
    await reopened.aclose()


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(sizes=st.lists(st.tuples(st.integers(1, 40), st.integers(0, 3000)), min_size=1, max_size=30))
async def test_concurrent_appends_and_zeros_ahead_keep_every_record(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[tuple[int, int]]
) -> None:
    """Appends of any size, concurrent with the zeros written ahead and with rolls: every
    record read back once and in its batch's order, before and after a reopen."""
    directory = tmp_path_factory.mktemp("spool")
    spool = _spool(directory, segment_bytes=48 * 1024, max_bytes=1 << 30)
    spool.register("a")
    batches, start = [], 0
    for count, pad in sizes:
        batches.append(_lines(start, count, pad=pad))
        start += count
    for group in range(0, len(batches), 4):
        await asyncio.gather(*(spool.append(batch) for batch in batches[group : group + 4]))
    expected = sorted(f"r{n}" for n in range(start))
    assert sorted(_ids(spool, "a")) == expected
    await spool.aclose()

    reopened = _spool(directory, segment_bytes=48 * 1024, max_bytes=1 << 30)
    reopened.register("a")
    assert sorted(_ids(reopened, "a")) == expected
    await reopened.aclose()


async def test_segments_are_deleted_once_every_sink_passed_them(tmp_path: Path) -> None:
    """Old segments go only when the slowest cursor is past them."""
    spool = _spool(tmp_path)
    spool.register("a")
    spool.register("b")
    for start in range(0, 200, 20):
        await spool.append(_lines(start, 20, pad=100))
    before = len(list(tmp_path.glob("*.seg")))

    spool.commit("a", spool.read("a", max_events=10_000, max_bytes=1 << 30).end)
    assert len(list(tmp_path.glob("*.seg"))) == before
    spool.commit("b", spool.read("b", max_events=10_000, max_bytes=1 << 30).end)
    assert len(list(tmp_path.glob("*.seg"))) == 1
    assert spool.lag("a") == (0, 0)
    await spool.aclose()


async def test_full_spool_refuses_and_names_the_sink_behind(tmp_path: Path) -> None:
    """At the cap, appends raise SpoolFullError naming the lagging sink; delivery frees room."""
    spool = _spool(tmp_path, max_bytes=8192, segment_bytes=2048)
    spool.register("down")

    async def fill() -> None:
        for start in range(0, 1000, 10):
            await spool.append(_lines(start, 10, pad=40))

    with pytest.raises(SpoolFullError, match="down"):
        await fill()
    held = _ids(spool, "down")

    spool.commit("down", spool.read("down", max_events=10_000, max_bytes=1 << 30).end)
    await spool.append(_lines(5000, 10, pad=40))
    assert _ids(spool, "down") == [f"r{n}" for n in range(5000, 5010)]
    assert held == [f"r{n}" for n in range(len(held))]
    await spool.aclose()


async def test_drop_when_full_sinks_lose_their_backlog_not_the_others(tmp_path: Path) -> None:
    """An optional sink's backlog is dropped (and reported) so the spool keeps accepting."""
    dropped: list[tuple[str, int]] = []
    spool = _spool(tmp_path, max_bytes=8192, segment_bytes=2048, on_drop=lambda s, n: dropped.append((s, n)))
    spool.register("optional", drop_when_full=True)
    spool.register("main")
    for start in range(0, 400, 10):
        await spool.append(_lines(start, 10, pad=40))
        spool.commit("main", spool.read("main", max_events=10_000, max_bytes=1 << 30).end)

    assert dropped
    assert all(name == "optional" for name, _ in dropped)
    assert spool.dropped("optional") == sum(n for _, n in dropped)
    await spool.aclose()


async def test_a_failed_write_leaves_no_partial_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC mid-write: StorageError, the segment is cut back, and later appends work."""
    spool = _spool(tmp_path)
    spool.register("a")
    await spool.append(_lines(0, 2))
    real_pwrite: Callable[[int, Any, int], int] = os.pwrite

    def half_then_enospc(fd: int, data: Any, offset: int) -> int:
        real_pwrite(fd, bytes(data[: len(data) // 2]), offset)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", half_then_enospc)
    with pytest.raises(StorageError, match="ENOSPC"):
        await spool.append(_lines(2, 5))
    healthy_after_failure = spool.healthy
    assert healthy_after_failure is False
    monkeypatch.undo()

    await spool.append(_lines(7, 1))
    assert spool.healthy
    assert _ids(spool, "a") == ["r0", "r1", "r7"]
    await spool.aclose()


async def test_a_write_that_fails_after_a_roll_leaves_the_segments_consistent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC on a new segment, then a smaller batch that fits the old one: it is written where
    the spool's positions say (it used to land in the new segment, and reading hung)."""
    spool = _spool(tmp_path, segment_bytes=64 * 1024)
    spool.register("a")
    await spool.append(_lines(0, 60, pad=900))  # about 56 KiB: the next large batch rolls
    real_pwrite: Callable[[int, Any, int], int] = os.pwrite

    def enospc(fd: int, data: Any, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", enospc)
    with pytest.raises(StorageError, match="ENOSPC"):
        await spool.append(_lines(60, 20, pad=900))  # would not fit: rolls, then fails
    monkeypatch.setattr(os, "pwrite", real_pwrite)

    (segment,) = tmp_path.glob("*.seg")
    size = segment.stat().st_size
    await spool.append(_lines(80, 2))  # fits the old segment, so it must go there
    assert list(tmp_path.glob("*.seg")) == [segment]  # (checked first: reading used to hang)
    assert segment.stat().st_size > size
    await spool.append(_lines(82, 20, pad=900))  # rolls for real
    ids = _ids(spool, "a")
    assert ids == [f"r{n}" for n in (*range(60), *range(80, 102))]
    await spool.aclose()

    reopened = _spool(tmp_path, segment_bytes=64 * 1024)
    reopened.register("a")
    assert _ids(reopened, "a") == ids
    await reopened.aclose()


async def test_concurrent_appends_share_fsyncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Many concurrent appends are committed with fewer fsyncs than appends."""
    import asyncio

    spool = _spool(tmp_path)
    spool.register("a")
    calls = 0
    real_fdatasync = os.fdatasync

    def counting(fd: int) -> None:
        nonlocal calls
        calls += 1
        real_fdatasync(fd)

    monkeypatch.setattr(segments, "_datasync", counting)
    await asyncio.gather(*(spool.append(_lines(n * 10, 10)) for n in range(50)))

    assert 1 <= calls < 50
    assert sorted(_ids(spool, "a"), key=lambda i: int(i[1:])) == [f"r{n}" for n in range(500)]
    await spool.aclose()


async def test_a_cursor_written_off_the_loop_keeps_its_segments_until_it_is_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While one sink's cursor file is being written, another sink's commit must not delete
    the segments that file still points into: a crash then would lose them for that sink."""
    import threading

    spool = _spool(tmp_path)
    spool.register("a")
    spool.register("b")
    for start in range(0, 100, 10):
        await spool.append(_lines(start, 10, pad=100))
    segments = len(list(tmp_path.glob("*.seg")))
    assert segments > 2
    end = spool.read("b", max_events=100, max_bytes=1 << 30).end
    release = threading.Event()
    write = spool._write_cursor

    def slow_write(name: str, position: Any) -> None:
        if name == "a":
            assert release.wait(10)
        write(name, position)

    monkeypatch.setattr(spool, "_write_cursor", slow_write)
    a_end = spool.read("a", max_events=100, max_bytes=1 << 30).end
    committing = asyncio.create_task(spool.commit_async("a", a_end))
    await asyncio.sleep(0.05)  # a's write is in its thread now
    spool.commit("b", end)  # b is done with everything
    assert len(list(tmp_path.glob("*.seg"))) == segments  # a's file still says the start
    release.set()
    await committing
    assert len(list(tmp_path.glob("*.seg"))) == 1  # both on disk: only the live segment is left
    await spool.aclose()

    reopened = _spool(tmp_path)
    reopened.register("a")
    assert _ids(reopened, "a") == []
    await reopened.aclose()


def _victim(tmp_path: Path, name: str) -> Path:
    """A file outside the data dir that a planted link points to: it must stay as it is."""
    victim = tmp_path / "victim" / name
    victim.parent.mkdir(exist_ok=True)
    victim.write_bytes(b"IMPORTANT " + name.encode() + b"\n")
    victim.chmod(0o644)
    return victim


def _unchanged(victim: Path, name: str) -> bool:
    return (
        victim.read_bytes() == b"IMPORTANT " + name.encode() + b"\n"
        and victim.stat().st_mode & 0o777 == 0o644
    )


@pytest.mark.parametrize("name", ["lock", f"{1:020d}.seg", f"{2:020d}.seg", "cursors/a.json"])
async def test_planted_symlinks_are_refused_on_open(tmp_path: Path, name: str) -> None:
    """F2 (13): a symlink in the spool (lock, a segment, a cursor) is refused, not followed:
    no victim file is appended to, chmod'ed, truncated or replayed into the sinks."""
    directory = tmp_path / "spool"
    (directory / "cursors").mkdir(parents=True)
    victim = _victim(tmp_path, name.replace("/", "-"))
    (directory / name).symlink_to(victim)

    spool = Spool(directory, max_bytes=1 << 20, segment_bytes=4096)

    def open_and_register() -> None:
        spool.open()
        spool.register("a")

    with pytest.raises(StorageError, match="symbolic link"):
        open_and_register()
    await spool.aclose()

    assert _unchanged(victim, name.replace("/", "-"))


async def test_a_planted_cursor_tmp_is_not_truncated(tmp_path: Path) -> None:
    """F2 (13): ``cursors/<sink>.tmp`` as a link: the commit fails, the victim keeps its content."""
    spool = _spool(tmp_path)
    spool.register("a")
    await spool.append(_lines(0, 3))
    victim = _victim(tmp_path, "cursor")
    (tmp_path / "cursors" / "a.tmp").symlink_to(victim)

    batch = spool.read("a", max_events=10, max_bytes=1 << 20)
    with pytest.raises(StorageError, match="symbolic link"):
        spool.commit("a", batch.end)
    await spool.aclose()

    assert _unchanged(victim, "cursor")


async def test_a_segment_that_is_not_a_file_is_refused(tmp_path: Path) -> None:
    """A directory (or FIFO) named like a segment is not read as one."""
    (tmp_path / f"{1:020d}.seg").mkdir()
    os.mkfifo(tmp_path / f"{2:020d}.seg")

    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=4096)
    with pytest.raises(StorageError, match="not a regular file"):
        spool.open()
    await spool.aclose()
