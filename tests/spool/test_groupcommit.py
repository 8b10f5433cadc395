from __future__ import annotations

import asyncio
import errno
import threading

import pytest

from webhook.errors import StorageError
from webhook.spool.groupcommit import INLINE_MAX_S, GroupCommit


class Recorder:
    """A ``write`` that notes each round's items and the thread it ran on."""

    def __init__(self) -> None:
        self.rounds: list[tuple[list[bytes], bool]] = []
        self.fail: OSError | None = None

    def __call__(self, items: list[bytes]) -> None:
        if self.fail is not None:
            raise self.fail
        self.rounds.append((items, threading.current_thread() is threading.main_thread()))


def commit(write: Recorder, inline_bytes: int = 1024) -> GroupCommit[bytes]:
    return GroupCommit(write, what="test.log", event="test.write_failed", inline_bytes=inline_bytes)


async def test_the_first_round_measures_the_disk_in_a_thread() -> None:
    write = Recorder()
    commits = commit(write)
    await commits.submit([b"a"], size=2)
    assert write.rounds == [([b"a"], False)]
    assert commits.average_s is not None
    assert commits.inline_rounds == 0


async def test_a_small_write_on_a_fast_disk_is_written_in_the_event_loops_thread() -> None:
    write = Recorder()
    commits = commit(write)
    await commits.submit([b"a"], size=2)
    await commits.submit([b"b"], size=2)
    assert write.rounds[-1] == ([b"b"], True)
    assert commits.inline_rounds == 1


@pytest.mark.parametrize(
    ("size", "inline_bytes"),
    [(None, 1024), (1025, 1024), (2, 0)],
    ids=["size-unknown", "too-large", "inline-off"],
)
async def test_other_writes_go_to_the_thread(size: int | None, inline_bytes: int) -> None:
    write = Recorder()
    commits = commit(write, inline_bytes)
    await commits.submit([b"a"], size=2)
    await commits.submit([b"b"], size=size)
    assert write.rounds[-1] == ([b"b"], False)
    assert commits.inline_rounds == 0


async def test_a_slow_disk_sends_small_writes_to_the_thread_until_it_is_fast_again() -> None:
    write = Recorder()
    commits = commit(write)
    await commits.submit([b"a"], size=2)
    commits.average_s = INLINE_MAX_S * 10  # as after a few slow rounds
    await commits.submit([b"b"], size=2)
    assert write.rounds[-1] == ([b"b"], False)
    # Fast rounds bring the moving average down, and small writes back to the event loop.
    for n in range(40):
        await commits.submit([b"c%d" % n], size=3)
    assert write.rounds[-1][1] is True
    assert commits.average_s is not None
    assert commits.average_s <= INLINE_MAX_S


async def test_a_write_queued_behind_a_running_round_joins_the_next_round() -> None:
    started, release = threading.Event(), threading.Event()
    rounds: list[list[bytes]] = []

    def write(items: list[bytes]) -> None:
        rounds.append(items)
        if len(rounds) == 2:
            started.set()
            release.wait(5)

    commits: GroupCommit[bytes] = GroupCommit(write, what="t", event="t.failed", inline_bytes=1024)
    await commits.submit([b"first"], size=6)  # measured: later small writes may go inline
    slow = asyncio.create_task(commits.submit([b"slow"], size=None))
    await asyncio.to_thread(started.wait, 5)
    # A round is running: a small write must not overtake it in the event loop's thread.
    queued = asyncio.create_task(commits.submit([b"small"], size=6))
    await asyncio.sleep(0.01)
    assert rounds == [[b"first"], [b"slow"]]
    release.set()
    await asyncio.gather(slow, queued)
    assert rounds == [[b"first"], [b"slow"], [b"small"]]
    assert commits.inline_rounds == 0


async def test_an_inline_failure_raises_storage_error_and_is_remembered() -> None:
    write = Recorder()
    commits = commit(write)
    await commits.submit([b"a"], size=2)
    write.fail = OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(StorageError, match=r"cannot write test\.log: ENOSPC"):
        await commits.submit([b"b"], size=2)
    assert commits.last_error == "ENOSPC"
    write.fail = None
    await commits.submit([b"c"], size=2)
    assert commits.last_error is None
