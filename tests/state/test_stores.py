"""The state stores keep the newest version of each object and the dedupe keys, each the same way."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from webhook.state import StoredObject, is_newer, object_key, open_store
from webhook.state.base import StateStore, cluster_key, split_key
from webhook.state.settings import StateConfig
from webhook.state.sqlite import SqliteStore

KEY = object_key("networking.k8s.io", "ingresses", "shop", "web")


def state(rv: str | None, when: str = "2026-11-24T14:20:00Z", *, deleted: bool = False) -> StoredObject:
    obj = None if deleted else {"kind": "Ingress", "metadata": {"name": "web", "resourceVersion": rv}}
    return StoredObject(object=obj, resource_version=rv, audit_id=f"a-{rv}", time=when, deleted=deleted)


@pytest.mark.parametrize(
    ("new", "old", "expected"),
    [
        (state("10"), None, True),
        (state("10"), state("9"), True),
        (state("9"), state("10"), False),  # numeric, not lexical: "9" > "10" as strings
        (state("10"), state("10"), False),
        (state("10", deleted=True), state("10"), True),  # the delete of that version
        (state(None, "2026-11-24T14:21:00Z", deleted=True), state("10"), True),
        (state("11", "2026-11-24T14:19:00Z"), state(None, "2026-11-24T14:21:00Z", deleted=True), False),
        (state("x2", "2026-11-24T14:22:00Z"), state("x1", "2026-11-24T14:21:00Z"), True),
    ],
)
def test_is_newer(new: StoredObject, old: StoredObject | None, expected: bool) -> None:
    """resourceVersions compare as integers, else the times; equal versions do not replace."""
    assert is_newer(new, old) is expected


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateStore]:
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        config = StateConfig(type="redis", url=url, key_prefix=f"t{uuid.uuid4().hex[:8]}")
    else:
        config = StateConfig(type=request.param)
    opened = open_store(config, data_dir=tmp_path, cluster="c", dedupe_ttl_s=60)
    await opened.open()
    yield opened
    await opened.aclose()


async def test_an_older_version_never_replaces_a_newer_one(store: StateStore) -> None:
    """Out-of-order writes leave the newest version in place."""
    await store.put_many({KEY: state("12")})
    await store.put_many({KEY: state("11")})
    assert (await store.get_many([KEY, "nothing/here//x"]))[KEY].resource_version == "12"
    await store.put_many({KEY: state("13")})
    got = (await store.get_many([KEY]))[KEY]
    assert (got.resource_version, got.audit_id, got.object) == ("13", "a-13", state("13").object)


async def test_dedupe_keys_are_claimed_committed_and_released(store: StateStore) -> None:
    """A committed key is a duplicate; a released claim is not."""
    assert await store.claim(["k1", "k2"]) == set()
    await store.commit(["k1"])
    await store.release(["k2"])
    assert await store.claim(["k1", "k2", "k3"]) == {"k1"}
    assert await store.problem() is None


async def test_scan_lists_the_states_under_a_prefix(store: StateStore) -> None:
    """Only keys under the prefix, at most ``limit`` of them, with their stored states."""
    keys = [object_key("networking.k8s.io", "ingresses", "shop", f"web-{n}") for n in range(5)]
    other = object_key("", "secrets", "shop", "tls")
    await store.put_many({**{key: state("7") for key in keys}, other: state("8")})

    everything = await store.scan("networking.k8s.io/ingresses/", limit=100)
    some = await store.scan("networking.k8s.io/ingresses/", limit=2)

    assert sorted(everything) == sorted(keys)
    assert everything[keys[0]].resource_version == "7"
    assert len(some) == 2
    assert set(some) <= set(keys)
    assert await store.scan("networking.k8s.io/ingresses/nope/", limit=10) == {}


async def test_sqlite_survives_a_restart_and_is_private(tmp_path: Path) -> None:
    """The default store keeps objects and keys across a reopen; the file is 0600, in WAL mode."""
    path = tmp_path / "state.sqlite3"
    first = SqliteStore(path, max_objects=10, max_age_s=3600, dedupe_ttl_s=60)
    await first.open()
    await first.put_many({KEY: state("5")})
    await first.commit(["k"])
    await first.aclose()
    again = SqliteStore(path, max_objects=10, max_age_s=3600, dedupe_ttl_s=60)
    await again.open()
    assert (await again.get_many([KEY]))[KEY].resource_version == "5"
    assert await again.claim(["k", "other"]) == {"k"}
    await again.aclose()
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.with_name("state.sqlite3-wal").exists() or path.read_bytes()[18:20] == b"\x02\x02"


async def test_sqlite_is_bounded(tmp_path: Path) -> None:
    """Beyond max_objects the least recently written objects go."""
    store = SqliteStore(tmp_path / "s.db", max_objects=3, max_age_s=3600, dedupe_ttl_s=60)
    await store.open()
    for n in range(6):
        store._last_evict = 0.0  # evict on every write in this test
        await store.put_many({f"g/r/ns/o{n}": state(str(n))})
    found = await store.get_many([f"g/r/ns/o{n}" for n in range(6)])
    await store.aclose()
    assert sorted(found) == ["g/r/ns/o3", "g/r/ns/o4", "g/r/ns/o5"]


async def test_redis_keys_are_namespaced_per_cluster_and_expire(redis_url: str, tmp_path: Path) -> None:
    """Two clusters on one Redis do not see each other's state; every key has a TTL."""
    import redis.asyncio as aioredis

    prefix = f"t{uuid.uuid4().hex[:8]}"
    stores = [
        open_store(
            StateConfig(type="redis", url=redis_url, key_prefix=prefix),
            data_dir=tmp_path,
            cluster=c,
            dedupe_ttl_s=60,
        )
        for c in ("east", "west")
    ]
    for s in stores:
        await s.open()
    await stores[0].put_many({KEY: state("1")})
    await stores[0].claim(["k"])
    await stores[0].commit(["k"])
    assert await stores[1].get_many([KEY]) == {}
    assert await stores[1].claim(["k"]) == set()
    client = aioredis.Redis.from_url(redis_url)
    keys = sorted(k.decode() if isinstance(k, bytes) else k for k in await client.keys(f"{prefix}:*"))
    ttls = [await client.pttl(k) for k in keys]
    await client.aclose()
    for s in stores:
        await s.aclose()
    assert keys == [f"{prefix}:east:dedupe:k", f"{prefix}:east:obj:{KEY}", f"{prefix}:west:dedupe:k"]
    assert all(ttl > 0 for ttl in ttls)


@pytest.mark.parametrize(
    ("cluster", "key", "stored"),
    [
        (None, KEY, KEY),  # the configured cluster's keys are what they always were
        ("prod-eu", KEY, f"@prod-eu/{KEY}"),
        (None, "@odd/r/ns/n", "@@odd/r/ns/n"),  # an API group cannot start with @; an event can
        ("prod-eu", "@odd/r/ns/n", "@prod-eu/@odd/r/ns/n"),
    ],
)
def test_cluster_keys_never_meet(cluster: str | None, key: str, stored: str) -> None:
    """Another cluster's keys carry its name; no key of the configured cluster can look like one."""
    assert cluster_key(cluster, key) == stored
    assert split_key(stored) == (cluster, key)


async def test_clusters_keep_their_own_objects(store: StateStore) -> None:
    """The same object of two clusters is two entries; a scan of one cluster's prefix sees its own."""
    eu = cluster_key("prod-eu", KEY)
    await store.put_many({KEY: state("5"), eu: state("3")})
    await store.put_many({eu: state("4")})

    found = await store.get_many([KEY, eu, cluster_key("prod-us", KEY)])

    assert {k: s.resource_version for k, s in found.items()} == {KEY: "5", eu: "4"}
    assert list(await store.scan(cluster_key("prod-eu", "networking.k8s.io/"), limit=10)) == [eu]
    assert list(await store.scan("networking.k8s.io/", limit=10)) == [KEY]


async def test_redis_keeps_another_clusters_objects_under_its_name(redis_url: str, tmp_path: Path) -> None:
    """In Redis, cluster prod-eu's objects are where a receiver configured as prod-eu keeps them."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    config = StateConfig(type="redis", url=redis_url, key_prefix=prefix)
    hub = open_store(config, data_dir=tmp_path, cluster="hub", dedupe_ttl_s=60)
    eu = open_store(config, data_dir=tmp_path, cluster="prod-eu", dedupe_ttl_s=60)
    for s in (hub, eu):
        await s.open()
    try:
        await hub.put_many({cluster_key("prod-eu", KEY): state("7"), KEY: state("1")})
        assert (await eu.get_many([KEY]))[KEY].resource_version == "7"
        assert (await hub.get_many([KEY]))[KEY].resource_version == "1"
        await eu.put_many({KEY: state("8")})
        scanned = await hub.scan(cluster_key("prod-eu", ""), limit=10)
        assert {k: s.resource_version for k, s in scanned.items()} == {cluster_key("prod-eu", KEY): "8"}
    finally:
        for s in (hub, eu):
            await s.aclose()
