from __future__ import annotations

from webhook.dedupe import Deduper


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_is_seen_only_once_remembered() -> None:
    """Nothing is a duplicate until ``remember`` (i.e. until its record is durable)."""
    deduper = Deduper(max_entries=10, ttl_s=60, clock=Clock())
    assert not deduper.seen("a/ResponseComplete/x")
    deduper.remember(["a/ResponseComplete/x"])
    assert deduper.seen("a/ResponseComplete/x")
    assert not deduper.seen("a/ResponseStarted/x")


def test_keys_expire_after_the_ttl() -> None:
    """A key is forgotten ``ttl_s`` after it was remembered."""
    clock = Clock()
    deduper = Deduper(max_entries=10, ttl_s=60, clock=clock)
    deduper.remember(["a"])

    clock.now += 59.9
    assert deduper.seen("a")
    clock.now += 0.1
    assert not deduper.seen("a")


def test_expired_keys_are_dropped_from_memory() -> None:
    """Expired entries do not linger: the next ``remember`` evicts them."""
    clock = Clock()
    deduper = Deduper(max_entries=10, ttl_s=60, clock=clock)
    deduper.remember(["a", "b"])
    clock.now += 30
    deduper.remember(["c"])
    clock.now += 31

    deduper.remember(["d"])

    assert len(deduper) == 2
    assert [k for k in "abcd" if deduper.seen(k)] == ["c", "d"]


def test_size_is_bounded_oldest_first() -> None:
    """Past ``max_entries`` the oldest keys go, however fresh."""
    deduper = Deduper(max_entries=3, ttl_s=600, clock=Clock())
    deduper.remember(["a", "b", "c", "d", "e"])

    assert len(deduper) == 3
    assert [k for k in "abcde" if deduper.seen(k)] == ["c", "d", "e"]


def test_remembering_again_refreshes_a_key() -> None:
    """A re-remembered key gets a new expiry and moves to the young end."""
    clock = Clock()
    deduper = Deduper(max_entries=2, ttl_s=60, clock=clock)
    deduper.remember(["a", "b"])
    clock.now += 50
    deduper.remember(["a"])
    deduper.remember(["c"])  # evicts the oldest: b, not the refreshed a

    assert [k for k in "abc" if deduper.seen(k)] == ["a", "c"]
    clock.now += 59
    assert deduper.seen("a")
