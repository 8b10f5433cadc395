"""Keeping the process's memory from creeping up: large buffers go back to the system.

glibc's malloc serves requests of 128 KiB or more with ``mmap`` and returns them with ``munmap``
on free, but only until the first such block is freed: it then raises its threshold to that
block's size (up to 32 MiB) and serves later large requests from the heap, where freed space is
reused but rarely returned. Request bodies, decoded list responses and worker answers are
exactly such transient megabyte buffers, so the serve process grew by steps of 5 to 18 MB, one
every few minutes, with the largest lists it had seen (bench/RESULTS.md). Setting the
threshold explicitly turns that adjustment off; measured over a 4-minute soak the serve process
then stayed at 82 to 90 MB instead of climbing from 93 to 107+ MB.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Final

__all__ = ["MMAP_THRESHOLD", "return_large_blocks"]

MMAP_THRESHOLD: Final = 128 * 1024  # glibc's default, but fixed
_M_MMAP_THRESHOLD: Final = -3  # from <malloc.h>


def return_large_blocks() -> bool:
    """Fix glibc's mmap threshold; False where there is no glibc ``mallopt`` (nothing changes)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
