"""The per-peer token bucket of the syslog inputs: bounded rate, bounded table, folded log."""

from __future__ import annotations

import structlog

from webhook.access.settings import AccessRateLimitConfig
from webhook.sources.ratelimit import LOG_EVERY_S, PeerLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(clock: Clock, lines_per_s: float = 10.0) -> PeerLimiter:
    config = AccessRateLimitConfig(lines_per_s=lines_per_s, burst=20, max_peers=4)
    return PeerLimiter(config, input="syslog-udp", clock=clock)


def test_burst_then_the_rate() -> None:
    """A new peer may send ``burst`` lines at once, then ``lines_per_s``."""
    clock = Clock()
    limit = limiter(clock)

    assert limit.admit("192.0.2.1", 25) == 20
    assert limit.admit("192.0.2.1", 1) == 0
    clock.now += 1.0
    assert limit.admit("192.0.2.1", 100) == 10
    clock.now += 60.0
    assert limit.admit("192.0.2.1", 100) == 20  # refilled up to the burst, not beyond


def test_one_peer_does_not_spend_another_peers_tokens() -> None:
    """A flooder's empty bucket does not slow a second peer."""
    clock = Clock()
    limit = limiter(clock)
    assert limit.admit("192.0.2.1", 1000) == 20

    assert [limit.admit("192.0.2.2") for _ in range(20)] == [1] * 20


def test_the_table_is_bounded() -> None:
    """Spoofed source addresses cost at most ``max_peers`` entries; the least recent goes first."""
    clock = Clock()
    limit = limiter(clock)
    limit.admit("192.0.2.1", 20)
    for n in range(2, 1000):
        limit.admit(f"192.0.2.{n % 250}.{n}", 1)
        assert len(limit) <= 4


def test_zero_lines_per_s_is_no_limit() -> None:
    clock = Clock()
    limit = limiter(clock, lines_per_s=0)

    assert not limit.enabled
    assert limit.admit("192.0.2.1", 10**6) == 10**6
    assert len(limit) == 0


def test_drops_are_logged_folded() -> None:
    """The first drop is logged at once; then one line per interval sums the rest, no address."""
    clock = Clock()
    limit = limiter(clock)
    with structlog.testing.capture_logs() as logs:
        limit.admit("192.0.2.1", 25)  # 5 dropped: logged
        limit.admit("192.0.2.1", 7)  # folded
        limit.admit("192.0.2.2", 30)  # folded
        clock.now += LOG_EVERY_S
        limit.admit("192.0.2.2", 1000)

    lines = [line for line in logs if line["event"] == "access.syslog_rate_limited"]
    assert [(line["dropped"], line["peers"]) for line in lines] == [(5, 1), (7 + 10 + 980, 2)]
    assert not any("192.0.2" in str(value) for line in lines for value in line.values())
