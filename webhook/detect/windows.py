"""Sliding windows per key, and a capped LRU map of keys: the detections' whole memory.

Why an LRU of exact windows and not a count-min sketch: an alert must name its key (the
source IP, the user) and the records that triggered it, and must resolve per key. A sketch
counts without keys, so finding *which* key crossed a threshold needs a second structure of
keys anyway, and its over-estimates turn into false alerts. Here each key holds at most
``cap`` timestamped tokens (a rule needs no more than its threshold to decide), and a rule
holds at most ``max_keys`` keys, so memory is bounded by ``max_keys * cap`` whatever arrives.
When a new key would exceed ``max_keys``, the least recently touched key is evicted (and
counted): a key under attack is touched on every attempt, so it stays; an attacker who sprays
more than ``max_keys`` distinct keys between two of a slow key's events can push that key out,
which the evictions metric shows.

Time is whatever the caller passes (seconds, float): wall time when serving, event time in
replays; nothing here reads a clock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

__all__ = ["LruMap", "Window"]

V = TypeVar("V")


class Window:
    """The tokens of one key seen within the window, oldest first, each with its time and record.

    A token counts while ``now - seen < window_s``; seeing a token again refreshes it (so a
    distinct-count rule counts each token once). At most ``cap`` tokens are kept, the oldest
    dropped first.
    """

    __slots__ = ("_seen", "last")

    def __init__(self) -> None:
        self._seen: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self.last = float("-inf")  # the latest time anything was added

    def add(self, token: str, now: float, record_id: str, *, cap: int) -> None:
        seen = self._seen
        if token in seen:
            seen.move_to_end(token)
        seen[token] = (now, record_id)
        while len(seen) > cap:
            seen.popitem(last=False)
        self.last = max(self.last, now)

    def expire(self, now: float, window_s: float) -> None:
        """Forget the tokens seen ``window_s`` or longer before ``now``."""
        seen = self._seen
        horizon = now - window_s
        while seen:
            first = next(iter(seen.values()))
            if first[0] > horizon:
                break
            seen.popitem(last=False)

    def clear(self) -> None:
        self._seen.clear()

    def __len__(self) -> int:
        return len(self._seen)

    def tokens(self) -> list[str]:
        return list(self._seen)

    def first_time(self) -> float | None:
        return min((t for t, _ in self._seen.values()), default=None)

    def record_ids(self) -> list[str]:
        """The records behind the tokens, oldest first, each once."""
        return list(dict.fromkeys(record_id for _, record_id in self._seen.values()))


class LruMap(Generic[V]):
    """At most ``max_keys`` entries; touching a key makes it the most recent; the least recent
    is evicted (and handed to ``on_evict``) when a new key does not fit."""

    __slots__ = ("_entries", "evictions", "max_keys", "on_evict")

    def __init__(self, max_keys: int, on_evict: Callable[[str, V], None] | None = None) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.max_keys = max_keys
        self.on_evict = on_evict
        self.evictions = 0
        self._entries: OrderedDict[str, V] = OrderedDict()

    def touch(self, key: str, factory: Callable[[], V]) -> V:
        """The entry for ``key`` (created if new), now the most recently used."""
        entries = self._entries
        entry = entries.get(key)
        if entry is not None:
            entries.move_to_end(key)
            return entry
        while len(entries) >= self.max_keys:
            old_key, old = entries.popitem(last=False)
            self.evictions += 1
            if self.on_evict is not None:
                self.on_evict(old_key, old)
        entry = entries[key] = factory()
        return entry

    def get(self, key: str) -> V | None:
        return self._entries.get(key)

    def pop(self, key: str) -> V | None:
        return self._entries.pop(key, None)

    def prune(self, stale: Callable[[V], bool]) -> int:
        """Drop least recently used entries while ``stale`` says so; stops at the first fresh one."""
        entries = self._entries
        dropped = 0
        while entries:
            key, entry = next(iter(entries.items()))
            if not stale(entry):
                break
            del entries[key]
            dropped += 1
        return dropped

    def values(self) -> Iterator[V]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries
