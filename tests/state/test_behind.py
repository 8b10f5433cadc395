"""State writes behind the answer: later batches see them at once, the store gets them in order."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

from webhook.errors import StateError
from webhook.state.base import StoredObject
from webhook.state.behind import WriteBehind
from webhook.state.memory import MemoryStore


def state(rv: str, name: str = "a") -> StoredObject:
    return StoredObject(
        object={"metadata": {"name": name, "resourceVersion": rv}},
        resource_version=rv,
        audit_id=f"audit-{rv}",
        time=f"2026-11-24T14:30:0{rv}.000000Z",
    )


class SlowStore(MemoryStore):
    """A memory store whose writes wait for ``go``, or fail while ``failing``."""

    def __init__(self) -> None:
        super().__init__(max_objects=100, dedupe_ttl_s=60)
        self.go = asyncio.Event()
        self.failing = False
        self.rounds: list[tuple[list[str], dict[str, StoredObject]]] = []

    async def put_many(self, items: Mapping[str, StoredObject]) -> None:
        await self.go.wait()
        if self.failing:
            raise StateError("down")
        self.rounds.append(([], dict(items)))
        await super().put_many(items)

    async def commit(self, keys: Iterable[str]) -> None:
        await self.go.wait()
        if not self.failing:
            await super().commit(keys)


async def test_a_queued_state_is_the_baseline_of_later_lookups_until_stored() -> None:
    store = SlowStore()
    behind = WriteBehind(store)
    await behind.submit(["k1"], {"obj": state("2")})
    assert await store.get_many(["obj"]) == {}  # not stored yet
    looked_up = behind.overlay(["obj"], {"obj": state("1")})
    assert looked_up["obj"].resource_version == "2"
    # An older state queued later does not replace the newer one.
    await behind.submit(["k2"], {"obj": state("1")})
    assert behind.overlay(["obj"], {})["obj"].resource_version == "2"
    store.go.set()
    await behind.drain()
    assert (await store.get_many(["obj"]))["obj"].resource_version == "2"
    assert behind.overlay(["obj"], {}) == {}
    assert await store.claim(["k1", "k2", "k3"]) == {"k1", "k2"}


async def test_what_queues_meanwhile_is_stored_in_one_round_newest_first() -> None:
    store = SlowStore()
    behind = WriteBehind(store)
    await behind.submit(["k1"], {"obj": state("1")})
    await asyncio.sleep(0)  # the writer takes the first batch and waits for the store
    for rv in ("2", "4", "3"):
        await behind.submit([f"k{rv}"], {"obj": state(rv)})
    store.go.set()
    await behind.drain()
    assert [r[1]["obj"].resource_version for r in store.rounds] == ["1", "4"]


async def test_a_full_queue_makes_submit_wait() -> None:
    store = SlowStore()
    behind = WriteBehind(store, max_pending=2)
    await behind.submit(["k0"], {})
    await asyncio.sleep(0)  # taken by the writer, which waits for the store
    await behind.submit(["k1"], {})
    await behind.submit(["k2"], {})
    third = asyncio.ensure_future(behind.submit(["k3"], {}))
    await asyncio.sleep(0.01)
    assert not third.done()
    store.go.set()
    await asyncio.wait_for(third, 5)
    await behind.drain()
    assert behind.pending == 0


async def test_a_failed_write_is_reported_and_forgotten() -> None:
    store = SlowStore()
    store.failing = True
    errors: list[StateError] = []
    behind = WriteBehind(store, on_error=errors.append)
    await behind.submit(["k1"], {"obj": state("2")})
    store.go.set()
    await behind.drain()
    assert [e.code for e in errors] == [StateError("x").code]
    assert behind.overlay(["obj"], {}) == {}  # lookups read the store again


async def test_nothing_to_store_starts_no_writer() -> None:
    behind = WriteBehind(MemoryStore(max_objects=10, dedupe_ttl_s=60))
    await behind.submit([], {})
    assert behind._writer is None


async def test_a_lingering_writer_stores_what_arrives_meanwhile_in_one_round() -> None:
    store = SlowStore()
    store.go.set()
    behind = WriteBehind(store, linger_s=0.2)
    for rv in ("1", "2", "3"):
        await behind.submit([f"k{rv}"], {"obj": state(rv)})
        await asyncio.sleep(0.01)  # the writer is lingering, not writing
    assert store.rounds == []
    assert behind.overlay(["obj"], {})["obj"].resource_version == "3"  # read as if stored
    await asyncio.sleep(0.4)
    assert [r[1]["obj"].resource_version for r in store.rounds] == ["3"]
    assert await store.claim(["k1", "k2", "k3"]) == {"k1", "k2", "k3"}


async def test_drain_does_not_wait_for_the_linger() -> None:
    store = SlowStore()
    store.go.set()
    behind = WriteBehind(store, linger_s=30.0)
    await behind.submit(["k1"], {"obj": state("1")})
    await asyncio.sleep(0)
    await asyncio.wait_for(behind.drain(), 2)
    assert [r[1]["obj"].resource_version for r in store.rounds] == ["1"]
    # The next round lingers again.
    await behind.submit(["k2"], {"obj": state("2")})
    await asyncio.sleep(0.05)
    assert len(store.rounds) == 1
    await asyncio.wait_for(behind.drain(), 2)
    assert len(store.rounds) == 2


async def test_a_half_full_queue_is_written_without_lingering() -> None:
    store = SlowStore()
    store.go.set()
    behind = WriteBehind(store, max_pending=4, linger_s=30.0)
    await behind.submit(["k1"], {"obj": state("1")})
    await behind.submit(["k2"], {"obj": state("2")})  # half of max_pending
    for _ in range(20):
        if store.rounds:
            break
        await asyncio.sleep(0.01)
    assert [r[1]["obj"].resource_version for r in store.rounds] == ["2"]
