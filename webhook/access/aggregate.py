"""Windowed counts of access lines: exact per host/ingress, bounded per client.

Per host (at most ``max_hosts`` per window, the rest under ``(other)``): requests by status
class, 401/403, bytes, and a latency histogram of fixed log-spaced buckets (each bucket 19 %
wider than the last, 0.25 ms to ~10 min), so percentiles cost 87 integers per host whatever
the traffic.

Per client: Misra-Gries counters, ``max_clients`` of them, one set for requests and one for
401/403. A client already counted is incremented; a new one takes a free counter; when none
is free, every counter is decremented by one and those at zero are freed. Each count is then a
lower bound at most ``decrements`` below the truth, and every client with more than
``n / (max_clients + 1)`` requests in the window is guaranteed to be listed. Memory is
``O(max_clients)`` for a million distinct clients or ten, and the cost per line is O(1)
amortized (a decrement pass over K counters is paid for by the K increments before it).

Windows are keyed by the request's own time; the caller says what "now" is (the clock when
live, the newest line's time when replaying), and a window is closed once ``now`` passes its
end by ``grace_s``. A line for a window already closed is counted as ``late`` in the oldest
open one rather than reopening it.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Final

__all__ = ["LATENCY_BOUNDS_S", "OTHER_HOST", "Aggregator", "ClosedWindow", "HostStats", "MisraGries"]

OTHER_HOST: Final = "(other)"
LATENCY_BOUNDS_S: Final = tuple(0.00025 * 2 ** (i / 4) for i in range(86))  # up to ~ 10 min
_NO_LATENCY: Final = -1


class MisraGries:
    __slots__ = ("counts", "decrements", "k")

    def __init__(self, k: int) -> None:
        self.k = k
        self.counts: dict[str, int] = {}
        self.decrements = 0  # how far below the truth any count may be

    def add(self, key: str) -> None:
        counts = self.counts
        count = counts.get(key)
        if count is not None:
            counts[key] = count + 1
        elif len(counts) < self.k:
            counts[key] = 1
        else:
            self.decrement()

    def decrement(self) -> None:
        """A new key and no free counter: every count goes down by one, the zeros are freed."""
        self.decrements += 1
        self.counts = {k: c - 1 for k, c in self.counts.items() if c > 1}

    def top(self, n: int) -> list[tuple[str, int]]:
        return sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))[:n]


@dataclass(slots=True)
class HostStats:
    classes: list[int] = field(default_factory=lambda: [0] * 6)  # 1xx..5xx, other
    auth_failures: int = 0
    bytes_sent: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS_S) + 1))
    max_latency_s: float = 0.0

    @property
    def requests(self) -> int:
        return sum(self.classes)

    @property
    def timed(self) -> int:
        """Requests with a latency (the histogram's total)."""
        return sum(self.latency)

    def percentile(self, q: float) -> float:
        """The upper bound of the bucket holding the q-quantile, seconds (0 when nothing timed)."""
        timed = self.timed
        if not timed:
            return 0.0
        rank = max(1, math.ceil(q * timed))
        seen = 0
        for index, count in enumerate(self.latency):
            seen += count
            if seen >= rank:
                bound = LATENCY_BOUNDS_S[index] if index < len(LATENCY_BOUNDS_S) else self.max_latency_s
                return min(bound, self.max_latency_s)
        return self.max_latency_s


@dataclass(slots=True)
class _Window:
    start: float
    hosts: dict[object, HostStats]
    clients: MisraGries
    auth: MisraGries
    late: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ClosedWindow:
    start: float
    end: float
    hosts: dict[object, HostStats]
    clients: list[tuple[str, int]]  # heaviest first
    client_error_bound: int
    auth: list[tuple[str, int]]
    auth_error_bound: int
    late: int


class Aggregator:
    def __init__(
        self, *, window_s: float, max_clients: int, max_hosts: int, grace_s: float | None = None
    ) -> None:
        self.window_s = window_s
        self.max_clients = max_clients
        self.max_hosts = max_hosts
        self.grace_s = min(5.0, window_s / 4) if grace_s is None else grace_s
        self._open: dict[float, _Window] = {}
        self._closed_before = -math.inf  # windows starting before this are summarized
        self._none = self._current = _Window(  # the window the last line fell in, checked first
            start=math.inf, hosts={}, clients=MisraGries(1), auth=MisraGries(1)
        )
        self._current_start = math.inf
        self._current_end = -math.inf

    def __len__(self) -> int:
        return len(self._open)

    def _window(self, t: float) -> _Window:
        start = t - t % self.window_s
        window = self._open.get(start)
        if window is not None:
            return window
        if start < self._closed_before:
            oldest = min(self._open) if self._open else None
            window = self._open[oldest] if oldest is not None else self._new(self._closed_before)
            window.late += 1
            return window
        return self._new(start)

    def _new(self, start: float) -> _Window:
        window = _Window(
            start=start, hosts={}, clients=MisraGries(self.max_clients), auth=MisraGries(self.max_clients)
        )
        self._open[start] = window
        return window

    def add(
        self,
        t: float,
        host: object,  # a str, or an opaque key such as the ingress rule that served it
        client: str,
        status: int,
        latency_s: float | None,
        bytes_sent: int | None,
    ) -> None:
        if self._current_start <= t < self._current_end:
            window = self._current
        else:
            window = self._open.get(t - t % self.window_s) or self._window(t)
            if window.start <= t < window.start + self.window_s:
                self._current, self._current_start = window, window.start
                self._current_end = window.start + self.window_s
        hosts = window.hosts
        stats = hosts.get(host)
        if stats is None:
            if len(hosts) >= self.max_hosts:
                host = OTHER_HOST
                stats = hosts.get(host)
            if stats is None:
                stats = hosts[host] = HostStats()
        index = status // 100 - 1
        stats.classes[index if 0 <= index < 5 else 5] += 1
        # MisraGries.add, inlined: this runs for every line.
        sketch = window.clients
        count = sketch.counts.get(client)
        if count is not None:
            sketch.counts[client] = count + 1
        elif len(sketch.counts) < sketch.k:
            sketch.counts[client] = 1
        else:
            sketch.decrement()
        if status == 401 or status == 403:
            stats.auth_failures += 1
            window.auth.add(client)
        if bytes_sent:
            stats.bytes_sent += bytes_sent
        if latency_s is not None and latency_s >= 0:
            stats.latency[bisect_left(LATENCY_BOUNDS_S, latency_s)] += 1
            if latency_s > stats.max_latency_s:
                stats.max_latency_s = latency_s

    def flush(self, now: float, *, everything: bool = False) -> list[ClosedWindow]:
        """Close the windows that ended ``grace_s`` before ``now`` (all of them at shutdown)."""
        closed = []
        for start in sorted(self._open):
            end = start + self.window_s
            if not everything and end + self.grace_s > now:
                break
            window = self._open.pop(start)
            if window is self._current:
                self._current, self._current_start, self._current_end = self._none, math.inf, -math.inf
            self._closed_before = max(self._closed_before, end)
            closed.append(
                ClosedWindow(
                    start=start,
                    end=end,
                    hosts=window.hosts,
                    clients=window.clients.top(self.max_clients),
                    client_error_bound=window.clients.decrements,
                    auth=window.auth.top(self.max_clients),
                    auth_error_bound=window.auth.decrements,
                    late=window.late,
                )
            )
        return closed
