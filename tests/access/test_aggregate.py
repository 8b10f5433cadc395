"""Window counts: exact per host, bounded per client, percentiles from fixed buckets."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from webhook.access.aggregate import LATENCY_BOUNDS_S, OTHER_HOST, Aggregator, HostStats, MisraGries


def test_heavy_hitters_survive_a_flood_of_distinct_clients() -> None:
    """200k one-off clients cost K counters; the three heavy ones are listed, within the bound."""
    sketch = MisraGries(100)
    heavy = {"198.51.100.1": 5000, "198.51.100.2": 3000, "198.51.100.3": 2000}
    stream = [f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}" for n in range(200_000)]
    stream += [ip for ip, count in heavy.items() for _ in range(count)]
    random.Random(4).shuffle(stream)  # noqa: S311 - a test stream, not a secret
    largest = 0

    for ip in stream:
        sketch.add(ip)
        largest = max(largest, len(sketch.counts))

    assert largest <= 100
    top = dict(sketch.top(3))
    assert set(top) == set(heavy)
    for ip, count in heavy.items():
        assert count - sketch.decrements <= top[ip] <= count


@given(st.lists(st.integers(0, 30), max_size=400), st.integers(1, 8))
def test_misra_gries_bounds_hold(stream: list[int], k: int) -> None:
    """Every count is a lower bound at most ``decrements`` short; anything above n/(k+1) is kept."""
    sketch = MisraGries(k)
    for item in stream:
        sketch.add(str(item))
    truth = {str(i): stream.count(i) for i in set(stream)}

    assert len(sketch.counts) <= k
    assert sketch.decrements <= len(stream) / (k + 1)
    for key, count in truth.items():
        got = sketch.counts.get(key, 0)
        assert count - sketch.decrements <= got <= count


def test_percentiles_come_from_the_bucket_bounds() -> None:
    """p50/p99 are the upper bound of their bucket: at most 19 % above, never below."""
    agg = Aggregator(window_s=60, max_clients=10, max_hosts=10)
    times = [0.010] * 90 + [2.0] * 10
    for n, took in enumerate(times):
        agg.add(float(n % 60), "h", "c", 200, took, 100)
    (window,) = agg.flush(1000.0)
    stats = window.hosts["h"]

    assert 0.010 <= stats.percentile(0.5) <= 0.010 * 1.19
    assert 2.0 <= stats.percentile(0.99) <= 2.0 * 1.19
    assert stats.max_latency_s == 2.0
    assert stats.bytes_sent == 10_000
    assert HostStats().percentile(0.5) == 0.0
    assert LATENCY_BOUNDS_S[-1] > 600


def test_hosts_past_the_cap_count_as_other() -> None:
    """Attacker-chosen Host headers cannot grow a window past max_hosts (+ one "(other)")."""
    agg = Aggregator(window_s=60, max_clients=10, max_hosts=5)
    for n in range(1000):
        agg.add(1.0, f"host-{n}.example", "c", 404, None, None)
    (window,) = agg.flush(1000.0)

    assert len(window.hosts) == 6
    assert window.hosts[OTHER_HOST].requests == 995
    assert sum(s.requests for s in window.hosts.values()) == 1000


def test_windows_close_after_their_end_plus_grace() -> None:
    """A window is kept open for grace_s after its end, then summarized once."""
    agg = Aggregator(window_s=60, max_clients=10, max_hosts=10, grace_s=5)
    agg.add(10.0, "h", "c", 500, None, None)
    agg.add(70.0, "h", "c", 500, None, None)

    assert agg.flush(64.0) == []
    assert [w.start for w in agg.flush(65.0)] == [0.0]
    assert [w.start for w in agg.flush(200.0, everything=True)] == [60.0]
    assert len(agg) == 0
