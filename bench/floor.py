"""The floor: decoding the very bytes the senders post and applying the compiled filter, in-process.

No HTTP, no record building, no writes, one core. End-to-end throughput is reported as a ratio
to this, which keeps figures comparable across machines and across a noisy run.

The cyclic collector is off while it is timed. Decoding makes no cycles, and the server runs
its collector tuned so that it rarely runs (webhook/core/heap.py). With the default thresholds,
the collector ran every 700 allocations of the decoded events and scanned the benchmark's own
heap: that cut the floor by 25-45 % and flattered every ratio to it.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from webhook.filter import DEFAULT_FILTER, compile_filter

__all__ = ["Floor", "measure_floor"]


@dataclass(frozen=True, slots=True)
class Floor:
    events_per_s: float  # median over the repeats
    mb_per_s: float
    runs: tuple[float, ...]  # events/s of each repeat
    matched: int  # what the filter kept in one pass (a check on the generator's count)


def measure_floor(bodies: Sequence[bytes], *, repeats: int = 3, min_s: float = 0.5) -> Floor:
    """Median of ``repeats`` timings; each pass repeats the bodies until ``min_s`` has passed.

    The cyclic collector is off meanwhile, and on again after if it was."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _measure(bodies, repeats, min_s)
    finally:
        if enabled:
            gc.enable()


def _measure(bodies: Sequence[bytes], repeats: int, min_s: float) -> Floor:
    keep = compile_filter(DEFAULT_FILTER)
    loads = orjson.loads
    size = sum(map(len, bodies))
    runs = []
    matched = 0
    for _ in range(repeats):
        events = passes = 0
        started = time.perf_counter()
        while True:
            matched = 0
            for body in bodies:
                items = loads(body)["items"]
                events += len(items)
                for event in items:
                    if keep(event):
                        matched += 1
            passes += 1
            elapsed = time.perf_counter() - started
            if elapsed >= min_s:
                break
        runs.append(events / elapsed)
    rate = statistics.median(runs)
    per_pass = events / passes
    return Floor(rate, rate * size / per_pass / 1e6, tuple(runs), matched)
