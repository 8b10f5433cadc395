"""Remembering which events already became records, so the apiserver's retries add nothing.

Bounded in both size and age. A key is remembered only after its record is durably written:
a batch that failed (and will be retried) must not be mistaken for one already kept.

Each key is held as its 16-byte BLAKE2b digest (collisions: ~2^-128 per pair), with the
insertion order in two deques beside the dict instead of an ``OrderedDict``: 200 000 keys take
~20 MB instead of ~50 MB (bench/RESULTS.md).
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["DedupeConfig", "Deduper"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DedupeConfig:
    """The apiserver retries a batch for ~90 s; ten minutes covers that with margin. The state
    store keeps the keys for ``ttl_s`` too: the in-memory window only spares a resend the work."""

    max_entries: int = 50_000
    ttl_s: float = 600.0


def _digest(key: str) -> bytes:
    return hashlib.blake2b(key.encode(), digest_size=16).digest()


class Deduper:
    def __init__(
        self, *, max_entries: int, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._max_entries = max_entries
        self._ttl_s = ttl_s
        self._clock = clock
        self._seen: dict[bytes, float] = {}  # digest -> expiry
        # Oldest first: each remember appends (digest, expiry); an entry whose expiry is no
        # longer the dict's is stale (the key was remembered again later) and is skipped.
        self._order: deque[bytes] = deque()
        self._expiries: deque[float] = deque()

    def __len__(self) -> int:
        return len(self._seen)

    def seen(self, key: str) -> bool:
        expiry = self._seen.get(_digest(key))
        return expiry is not None and expiry > self._clock()

    def remember(self, keys: Iterable[str]) -> None:
        now = self._clock()
        expiry = now + self._ttl_s  # one float object shared by the whole batch
        seen, order, expiries = self._seen, self._order, self._expiries
        for key in keys:
            digest = _digest(key)
            seen[digest] = expiry
            order.append(digest)
            expiries.append(expiry)
        self._evict(now)

    def _evict(self, now: float) -> None:
        seen, order, expiries = self._seen, self._order, self._expiries
        while order and (len(seen) > self._max_entries or expiries[0] <= now):
            digest = order.popleft()
            expiry = expiries.popleft()
            if seen.get(digest) == expiry:
                del seen[digest]
