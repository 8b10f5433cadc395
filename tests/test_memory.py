"""glibc's mmap threshold is fixed, so large transient buffers go back to the system."""

from __future__ import annotations

import subprocess
import sys

import pytest

from webhook.memory import return_large_blocks

# A process that allocates and frees a 4 MiB buffer, then 50 buffers of 1 MiB, each followed by
# a small one that outlives it (as the records of a batch outlive its body): with the dynamic
# threshold the 1 MiB buffers come from the heap, where the small ones pin them after the free.
_PROBE = """
import sys
from webhook.memory import return_large_blocks
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
