"""The state store in memory: for tests and throwaway runs; bounded by object count."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from webhook.state.base import StateStore, StoredObject, is_newer

if TYPE_CHECKING:
    from webhook.state.settings import StateConfig

__all__ = ["MemoryStore", "build"]


def build(config: StateConfig, *, data_dir: Path, cluster: str, dedupe_ttl_s: float) -> StateStore:
    return MemoryStore(max_objects=config.max_objects, dedupe_ttl_s=dedupe_ttl_s)


class MemoryStore:
    name = "memory"
    remote = False

    def __init__(
        self, *, max_objects: int, dedupe_ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._objects: OrderedDict[str, StoredObject] = OrderedDict()
        self._keys: dict[str, float] = {}  # dedupe key -> expiry
        self._max_objects = max_objects
        self._ttl_s = dedupe_ttl_s
        self._clock = clock

    async def open(self) -> None:
        return None

    async def get_many(self, keys: Sequence[str]) -> dict[str, StoredObject]:
        return {key: self._objects[key] for key in keys if key in self._objects}

    async def put_many(self, items: Mapping[str, StoredObject]) -> None:
        for key, item in items.items():
            if is_newer(item, self._objects.get(key)):
                self._objects[key] = item
                self._objects.move_to_end(key)
        while len(self._objects) > self._max_objects:
            self._objects.popitem(last=False)

    async def scan(self, prefix: str, *, limit: int) -> dict[str, StoredObject]:
        found: dict[str, StoredObject] = {}
        for key, item in self._objects.items():
            if len(found) >= limit:
                break
            if key.startswith(prefix):
                found[key] = item
        return found

    async def claim(self, keys: Sequence[str]) -> set[str]:
        now = self._clock()
        return {key for key in keys if self._keys.get(key, 0.0) > now}

    async def commit(self, keys: Iterable[str]) -> None:
        now = self._clock()
        expiry = now + self._ttl_s
        self._keys.update(dict.fromkeys(keys, expiry))
        if len(self._keys) > 100_000:
            self._keys = {k: e for k, e in self._keys.items() if e > now}

    async def release(self, keys: Iterable[str]) -> None:
        return None

    async def problem(self) -> str | None:
        return None

    async def aclose(self) -> None:
        return None
