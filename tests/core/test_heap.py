"""glibc's mmap threshold is fixed, so large transient buffers go back to the system; garbage in
reference cycles is collected on a clock even though the collector is tuned to run rarely."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from webhook.core.heap import CycleCollector, return_large_blocks

# A process that allocates and frees a 4 MiB buffer, then 50 buffers of 1 MiB, each followed by
# a small one that outlives it (as the records of a batch outlive its body): with the dynamic
# threshold the 1 MiB buffers come from the heap, where the small ones pin them after the free.
_PROBE = """
import sys
from webhook.core.heap import CycleCollector, return_large_blocks
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
if sys.argv[1] == "fixed":
    assert return_large_blocks()
big = bytearray(4 << 20)
del big
before = rss()
blocks, keep = [], []
for _ in range(50):
    blocks.append(bytearray(1 << 20))
    keep.append(bytearray(2000))
del blocks
print(rss() - before)
"""


def _grown_kib(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True)
    return int(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_large_buffers_leave_the_rss() -> None:
    assert _grown_kib("dynamic") > 40 * 1024  # the problem: 50 MiB kept after the free
    assert _grown_kib("fixed") < 5 * 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_it_says_whether_it_applied() -> None:
    assert return_large_blocks() is True


# After tune_collector (as the serve process and its workers run), cycles like the one a failed
# connection leaves (an exception whose traceback holds the frame that keeps it in a local, and
# with that frame the batch being sent) are not collected by the thresholds; the clock does.
_CYCLES = """
import gc, weakref
from webhook.core.heap import CycleCollector, tune_collector
tune_collector()
collector = CycleCollector(interval_s=3600)

def send(batch):
    try:
        raise OSError("connection refused")
    except OSError as exc:
        caught = [exc]  # the cycle: caught -> exc -> traceback -> this frame -> caught
        raise RuntimeError("failed") from None

class Batch(bytearray):
    pass

batches = []
for _ in range(200):
    batch = Batch(100_000)
    batches.append(weakref.ref(batch))
    try:
        send(batch)
    except RuntimeError:
        pass
    del batch
alive = sum(ref() is not None for ref in batches)
assert collector.maybe_collect() == 0  # not due
found = collector.collect()
print(alive, sum(ref() is not None for ref in batches), found > 0, collector.collections)
"""


def test_cycles_left_by_failures_are_collected_on_the_clock() -> None:
    out = subprocess.run([sys.executable, "-c", _CYCLES], capture_output=True, text=True, check=True)
    alive_before, alive_after, found, collections = out.stdout.split()
    assert int(alive_before) == 200  # 20 MB the tuned thresholds would keep
    assert int(alive_after) == 0
    assert found == "True"
    assert collections == "1"


def test_maybe_collect_waits_for_the_interval() -> None:
    now = [100.0]
    collector = CycleCollector(interval_s=1.0, clock=lambda: now[0])
    assert collector.maybe_collect() == 0
    assert collector.collections == 0
    now[0] += 0.5
    collector.maybe_collect()
    assert collector.collections == 0
    now[0] += 0.6
    collector.maybe_collect()
    assert collector.collections == 1
    collector.maybe_collect()  # the interval starts again from that collection
    assert collector.collections == 1


async def test_run_collects_every_interval() -> None:
    collector = CycleCollector(interval_s=0.01)
    task = asyncio.create_task(collector.run())
    try:
        for _ in range(500):
            if collector.collections >= 3:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert collector.collections >= 3


# Threads that allocate at once, then glibc's own account of its arenas (``malloc_info``).
_ARENAS = """
import ctypes, sys, tempfile, threading
from webhook.core.heap import one_arena
if sys.argv[1] == "one":
    assert one_arena()
barrier = threading.Barrier(4)
def work():
    barrier.wait()
    kept = [bytearray(100) for _ in range(20000)]
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = (ctypes.c_char_p, ctypes.c_char_p)
libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
libc.fclose.argtypes = (ctypes.c_void_p,)
with tempfile.NamedTemporaryFile() as out:
    fp = libc.fopen(out.name.encode(), b"w")
    libc.malloc_info(0, fp)
    libc.fclose(fp)
    print(open(out.name).read().count("<heap nr="))
"""


def _arenas(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _ARENAS, mode], capture_output=True, text=True, check=True)
    return int(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_threads_share_one_arena() -> None:
    assert _arenas("default") > 1  # the problem: an arena per thread, each keeping its free pieces
    assert _arenas("one") == 1
