"""The floor: decoding the very bytes the senders post and applying the compiled filter, in-process.

No HTTP, no record building, no writes, one core. End-to-end throughput is reported as a ratio
to this, which keeps figures comparable across machines and across a noisy run.
"""

from __future__ import annotations

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
    """Median of ``repeats`` timings; each pass repeats the bodies until ``min_s`` has passed."""
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
