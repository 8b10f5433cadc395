"""The report's aggregates stay bounded."""

from __future__ import annotations

from webhook.review.collect import TopCounter


def test_top_counter_is_exact_until_full_then_bounded() -> None:
    """Exact while keys fit; past twice the capacity it keeps the heaviest and says approximate."""
    counter: TopCounter[list[int]] = TopCounter(4, list)
    for key, n in (("a", 5), ("b", 3), ("c", 1)):
        counter.add(key, n)
    exact = not counter.approximate
    assert [(k, n) for k, n, _ in counter.top(2)] == [("a", 5), ("b", 3)]

    for i in range(100):
        counter.add(f"noise-{i}")
    counter.add("a")

    assert len(counter.counts) <= 8
    assert (exact, counter.approximate) == (True, True)
    assert counter.top(1)[0][:2] == ("a", 6)
