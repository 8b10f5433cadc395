"""The bounded windows and the capped LRU of keys: time is passed in, never slept."""

from __future__ import annotations

import pytest

from webhook.detect.windows import LruMap, Window


def test_a_token_counts_until_exactly_window_s_has_passed() -> None:
    """Seen at t, a token is live at t + window - epsilon and gone at t + window."""
    window = Window()
    window.add("a", 100.0, "r1", cap=10)

    window.expire(159.999, 60.0)
    assert window.tokens() == ["a"]
    window.expire(160.0, 60.0)
    assert window.tokens() == []


def test_expiry_drops_only_the_old_tokens() -> None:
    """Tokens are dropped oldest first, and only those at or beyond the horizon."""
    window = Window()
    for i, t in enumerate((0.0, 10.0, 20.0, 30.0)):
        window.add(f"t{i}", t, f"r{i}", cap=10)

    window.expire(75.0, 60.0)

    assert window.tokens() == ["t2", "t3"]
    assert window.first_time() == 20.0
    assert window.record_ids() == ["r2", "r3"]


def test_a_token_seen_again_is_counted_once_and_refreshed() -> None:
    """Distinct counting: the same token twice is one token, alive from its latest sighting."""
    window = Window()
    window.add("s:shop/a", 0.0, "r1", cap=10)
    window.add("s:shop/b", 10.0, "r2", cap=10)
    window.add("s:shop/a", 50.0, "r3", cap=10)

    window.expire(70.0, 60.0)  # b (at 10) is gone; a, first seen at 0, lives on from 50

    assert window.tokens() == ["s:shop/a"]
    assert window.record_ids() == ["r3"]


def test_the_cap_bounds_the_tokens_of_one_key() -> None:
    """However many events arrive, a key keeps at most ``cap`` tokens, the newest."""
    window = Window()
    for i in range(10_000):
        window.add(f"r{i}", float(i), f"r{i}", cap=5)

    assert len(window) == 5
    assert window.tokens() == [f"r{i}" for i in range(9_995, 10_000)]


def test_lru_evicts_the_least_recently_touched_key() -> None:
    """A key touched again survives; the coldest goes, is handed to on_evict and counted."""
    evicted: list[str] = []
    keys: LruMap[list[int]] = LruMap(3, lambda key, value: evicted.append(key))
    for key in ("a", "b", "c"):
        keys.touch(key, list)
    keys.touch("a", list)  # a is now the most recent

    keys.touch("d", list)

    assert evicted == ["b"]
    assert keys.evictions == 1
    assert "a" in keys
    assert "b" not in keys
    assert len(keys) == 3


def test_lru_memory_is_bounded_by_max_keys() -> None:
    """A flood of distinct keys never holds more than max_keys entries."""
    keys: LruMap[Window] = LruMap(100)
    for i in range(50_000):
        keys.touch(f"10.0.{i // 256}.{i % 256}", Window).add("x", float(i), "r", cap=3)

    assert len(keys) == 100
    assert keys.evictions == 50_000 - 100


def test_touch_returns_the_same_entry_for_a_known_key() -> None:
    """An existing key's entry is kept, not replaced by the factory."""
    keys: LruMap[list[int]] = LruMap(2)
    keys.touch("a", list).append(1)

    assert keys.touch("a", list) == [1]


def test_prune_stops_at_the_first_fresh_entry() -> None:
    """Idle entries at the cold end are dropped; it stops at the first one still in use."""
    keys: LruMap[int] = LruMap(10)
    for key, value in (("a", 1), ("b", 1), ("c", 5), ("d", 1)):
        keys.touch(key, lambda v=value: v)  # type: ignore[misc]

    assert keys.prune(lambda v: v < 3) == 2

    assert "c" in keys
    assert "d" in keys
    assert len(keys) == 2


def test_max_keys_must_be_positive() -> None:
    """A map that can hold nothing is a configuration error."""
    with pytest.raises(ValueError, match="max_keys"):
        LruMap[int](0)
