"""Remembering which events already became records, so the apiserver's retries add nothing.

Bounded in both size and age. A key is remembered only after its record is durably written:
a batch that failed (and will be retried) must not be mistaken for one already kept.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

__all__ = ["Deduper"]


class Deduper:
    def __init__(
        self, *, max_entries: int, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._max_entries = max_entries
        self._ttl_s = ttl_s
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()  # key -> expiry, oldest first

    def __len__(self) -> int:
        return len(self._seen)

    def seen(self, key: str) -> bool:
        expiry = self._seen.get(key)
        return expiry is not None and expiry > self._clock()

    def remember(self, keys: Iterable[str]) -> None:
        now = self._clock()
        expiry = now + self._ttl_s
        for key in keys:
            self._seen[key] = expiry
            self._seen.move_to_end(key)
        self._evict(now)

    def _evict(self, now: float) -> None:
        seen = self._seen
        while seen and (len(seen) > self._max_entries or next(iter(seen.values())) <= now):
            seen.popitem(last=False)
