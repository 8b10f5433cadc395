"""Keeping the process's memory from creeping up: large buffers go back to the system, and
garbage in reference cycles is collected on a clock.

glibc's malloc serves requests of 128 KiB or more with ``mmap`` and returns them with ``munmap``
on free, but only until the first such block is freed: it then raises its threshold to that
block's size (up to 32 MiB) and serves later large requests from the heap, where freed space is
reused but rarely returned. Request bodies, decoded list responses and worker answers are
exactly such transient megabyte buffers, so the serve process grew by steps of 5 to 18 MB, one
every few minutes, with the largest lists it had seen (bench/RESULTS.md). Setting the
threshold explicitly turns that adjustment off; measured over a 4-minute soak the serve process
then stayed at 82 to 90 MB instead of climbing from 93 to 107+ MB.

The serve process's threads (the writer threads of the spool, the sinks and the state store)
would each get a malloc arena of their own, and each arena keeps its freed pieces: the serve
process peaked 8 MB higher under batch load than with one arena (93 against 85 MB in the same
benchmark, at the same throughput), so it keeps to one (``one_arena``); its threads allocate
little, mostly waiting on the disk.

The serve process and its workers run the cyclic collector rarely (``tune_collector``): start-up
objects are frozen and young objects are collected only after 100,000 net allocations, which
costs 20 % less CPU per event. Almost everything the pipeline allocates is freed by reference
counting, so that count rarely moves and the older generations were, in practice, never
collected. But a failing connection leaves cycles behind (an exception whose traceback holds
the frame that keeps it in a local, as asyncio's ``create_connection`` does), and those frames
hold the batch being sent: while a sink was down the serve process grew by 3 to 5 MB a second,
and a full collection freed 32 MB of it. ``CycleCollector`` therefore runs a full collection
once a second, which scans only what is not frozen (tens of thousands of objects, about a
millisecond).
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import sys
import time
from collections.abc import Callable
from typing import Final

__all__ = [
    "COLLECT_EVERY_S",
    "MMAP_THRESHOLD",
    "CycleCollector",
    "one_arena",
    "return_large_blocks",
    "tune_collector",
]

COLLECT_EVERY_S: Final = 1.0

MMAP_THRESHOLD: Final = 128 * 1024  # glibc's default, but fixed
_M_MMAP_THRESHOLD: Final = -3  # from <malloc.h>
_M_ARENA_MAX: Final = -8


def _mallopt(option: int, value: int) -> bool:
    """glibc's ``mallopt``; False where there is none (nothing changes)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(option, value))


def return_large_blocks() -> bool:
    """Fix glibc's mmap threshold; False where there is no glibc ``mallopt`` (nothing changes)."""
    return _mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def one_arena() -> bool:
    """One malloc arena for every thread (before any thread starts); False without glibc."""
    return _mallopt(_M_ARENA_MAX, 1)


def tune_collector() -> None:
    """Once start-up is over: freeze what exists, and collect young objects less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


class CycleCollector:
    """A full collection every ``interval_s``: garbage in cycles lives at most that long."""

    def __init__(
        self, interval_s: float = COLLECT_EVERY_S, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._last = clock()
        self.collections = 0

    def collect(self) -> int:
        """Collect now; the number of unreachable objects found."""
        found = gc.collect()
        self._last = self._clock()
        self.collections += 1
        return found

    def maybe_collect(self) -> int:
        """Collect if ``interval_s`` has passed since the last collection, else nothing (0)."""
        if self._clock() - self._last < self.interval_s:
            return 0
        return self.collect()

    async def run(self) -> None:
        """Collect every ``interval_s`` until cancelled (the event loop's process)."""
        while True:
            await asyncio.sleep(self.interval_s)
            self.collect()
