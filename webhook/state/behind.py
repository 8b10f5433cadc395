"""State writes after the answer: a batch's baselines and dedupe keys are stored behind it.

Once a batch's records are in the spool, the answer no longer depends on the state store: a
failed write was only ever logged (later diffs suffer, the records do not). So the writes go
to a queue and the answer leaves at once; a writer task stores what queued up meanwhile in one
round (the newest state per key, every dedupe key). Until a state is stored, ``overlay`` hands
it to the lookups of later batches, so their diffs start from it as if it had been read back.

A round waits ``linger_s`` for more batches first (not once half the queue is taken, nor
while draining): one write for many batches. Each write also costs every later read: SQLite's
reader drops its page cache whenever the file changed, and a lookup that would take 10 µs takes
60 (bench/RESULTS.md); in blocking mode, one request per event, that was a write per request.

The queue holds at most ``max_pending`` batches: beyond that ``submit`` waits for the writer,
so a slow or unreachable store slows ingestion down instead of growing memory. ``drain`` waits
until everything queued is stored (shutdown, tests). A crash loses what was queued: records
stay durable; the next change of such an object is diffed against the state before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Final

import structlog

from webhook.errors import StateError
from webhook.state.base import StateStore, StoredObject, lay_newer

__all__ = ["WriteBehind"]

log = structlog.get_logger(__name__)

MAX_PENDING: Final = 64
LINGER_S: Final = 0.05  # what the server passes: at most 20 rounds a second while batches arrive


class WriteBehind:
    def __init__(
        self,
        store: StateStore,
        *,
        on_error: Callable[[StateError], None] | None = None,
        max_pending: int = MAX_PENDING,
        linger_s: float = 0.0,
    ) -> None:
        self._store = store
        self._on_error = on_error
        self._max_pending = max_pending
        self._linger_s = linger_s
        self._hurry = asyncio.Event()  # set: write what is queued now (half full, or draining)
        self._draining = 0
        self._queue: list[tuple[Sequence[str], Mapping[str, StoredObject]]] = []
        self._unwritten: dict[str, StoredObject] = {}
        self._writer: asyncio.Task[None] | None = None
        self._room = asyncio.Event()

    @property
    def pending(self) -> int:
        """Batches queued and not yet taken by the writer."""
        return len(self._queue)

    def overlay(self, keys: Sequence[str], states: dict[str, StoredObject]) -> dict[str, StoredObject]:
        """``states`` (as read from the store), with the newer states still queued for ``keys``."""
        return lay_newer(states, self._unwritten, keys)

    async def submit(self, keys: Sequence[str], updates: Mapping[str, StoredObject]) -> None:
        """Queue one batch's dedupe keys and states; waits only while the queue is full."""
        if not keys and not updates:
            return
        while len(self._queue) >= self._max_pending:
            self._room.clear()
            await self._room.wait()
        self._queue.append((keys, updates))
        lay_newer(self._unwritten, updates)
        if len(self._queue) * 2 >= self._max_pending:
            self._hurry.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write())

    async def drain(self) -> None:
        """Return once everything queued so far is stored (or failed), without lingering."""
        self._draining += 1
        self._hurry.set()
        try:
            while self._writer is not None and not self._writer.done():
                await asyncio.shield(self._writer)
        finally:
            self._draining -= 1
            if not self._draining and len(self._queue) * 2 < self._max_pending:
                self._hurry.clear()

    async def _linger(self) -> None:
        if self._linger_s <= 0 or self._hurry.is_set():
            return
        try:
            async with asyncio.timeout(self._linger_s):
                await self._hurry.wait()
        except TimeoutError:
            pass

    async def _write(self) -> None:
        while self._queue:
            await self._linger()
            group, self._queue = self._queue, []
            if not self._draining:
                self._hurry.clear()
            self._room.set()
            keys = [key for batch_keys, _ in group for key in batch_keys]
            newest: dict[str, StoredObject] = {}
            for _, updates in group:
                lay_newer(newest, updates)
            try:
                await asyncio.gather(self._store.commit(keys), self._store.put_many(newest))
            except StateError as exc:
                # The records are durable and answered: only later diffs (and shared dedupe) suffer.
                log.warning("state.write_failed", store=self._store.name, code=exc.code)
                if self._on_error is not None:
                    self._on_error(exc)
            finally:
                # Stored (or given up on): lookups read the store again, unless a newer state
                # queued meanwhile.
                for _, updates in group:
                    for key, state in updates.items():
                        if self._unwritten.get(key) is state:
                            del self._unwritten[key]
