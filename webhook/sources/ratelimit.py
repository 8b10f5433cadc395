"""A token bucket per syslog peer, so that one sender (or a forged flood) cannot drown the rest.

Syslog has no authentication and no flow control: whoever reaches the port decides the rate.
Each peer (a UDP source address, a TCP peer address) refills ``lines_per_s`` up to ``burst``;
lines beyond it are dropped before they are parsed. The table holds at most ``max_peers``
entries, the least recently seen forgotten first, so spoofed source addresses cost bounded
memory (a forgotten peer starts again with a full bucket: spoofing is not stopped here, but by
binding to loopback or a NetworkPolicy).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

import structlog

from webhook.access.settings import AccessRateLimitConfig

__all__ = ["LOG_EVERY_S", "PeerLimiter"]

log = structlog.get_logger(__name__)

LOG_EVERY_S: Final = 10.0


class PeerLimiter:
    """``admit(peer, lines)`` says how many of ``lines`` may go on; the rest are dropped."""

    def __init__(
        self, config: AccessRateLimitConfig, *, input: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = config.lines_per_s
        self._burst = float(config.burst)
        self._max_peers = config.max_peers
        self._input = input
        self._clock = clock
        self._peers: OrderedDict[str, tuple[float, float]] = OrderedDict()  # peer -> (tokens, at)
        self._unlogged = 0  # dropped since the last log line
        self._limited: set[str] = set()  # peers that lost lines since then (at most max_peers)
        self._next_log = 0.0

    @property
    def enabled(self) -> bool:
        return self._rate > 0

    def __len__(self) -> int:
        return len(self._peers)

    def admit(self, peer: str, lines: int = 1) -> int:
        if self._rate <= 0:
            return lines
        now = self._clock()
        entry = self._peers.pop(peer, None)
        if entry is None:
            tokens = self._burst
            if len(self._peers) >= self._max_peers:
                self._peers.popitem(last=False)
        else:
            tokens = min(self._burst, entry[0] + (now - entry[1]) * self._rate)
        allowed = min(lines, int(tokens))
        self._peers[peer] = (tokens - allowed, now)
        if allowed < lines:
            self._dropped(peer, lines - allowed, now)
        return allowed

    def _dropped(self, peer: str, count: int, now: float) -> None:
        """Fold the log: the first drop is logged at once, then one line per LOG_EVERY_S."""
        self._unlogged += count
        if len(self._limited) < self._max_peers:
            self._limited.add(peer)
        if now < self._next_log:
            return
        log.warning(
            "access.syslog_rate_limited",
            input=self._input,
            dropped=self._unlogged,
            peers=len(self._limited),
            lines_per_s=self._rate,
            burst=int(self._burst),
        )
        self._unlogged = 0
        self._limited.clear()
        self._next_log = now + LOG_EVERY_S
