"""Per-ingress request counters for Prometheus: status classes, 401/403 and a latency histogram.

The pipeline adds each line to a flat list of slots per ingress rule (one dict lookup and a few
index increments per line, see ``AccessPipeline.process``); the service hands the lists to
``RequestMetrics.observe`` after every batch. Labels are the pipeline's ingress labels (at most
``access.max_metric_ingresses`` names, then ``other``, and ``none``), so the series stay
bounded: 6 classes + 2 statuses + ``len(LATENCY_BOUNDS) + 3`` histogram series per ingress.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Final

from prometheus_client.metrics_core import HistogramMetricFamily
from prometheus_client.registry import Collector

from webhook.metrics import Metrics

__all__ = [
    "CLASS_NAMES",
    "FORBIDDEN",
    "LATENCY",
    "LATENCY_BOUNDS",
    "LATENCY_SUM",
    "SLOTS",
    "UNAUTHORIZED",
    "AccessLatency",
    "RequestMetrics",
    "latency_slot",
]

CLASS_NAMES: Final = ("1xx", "2xx", "3xx", "4xx", "5xx", "other")
# Edge latency as users see it: from 5 ms to 30 s; slower requests fall in +Inf.
LATENCY_BOUNDS: Final = (0.005, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Slots of a per-ingress list: the classes, then 401 and 403, then one per latency bucket
# (not cumulative; the last is +Inf), then the latency sum.
UNAUTHORIZED: Final = len(CLASS_NAMES)
FORBIDDEN: Final = UNAUTHORIZED + 1
LATENCY: Final = FORBIDDEN + 1
LATENCY_SUM: Final = LATENCY + len(LATENCY_BOUNDS) + 1
SLOTS: Final = LATENCY_SUM + 1

_NAME: Final = "ingress_audit_access_request_duration_seconds"
_BOUND_LABELS: Final = (*(str(b) for b in LATENCY_BOUNDS), "+Inf")  # "1.0", as the client writes it


def latency_slot(seconds: float) -> int:
    """The slot of a request time: its bucket is the first bound at or above it."""
    return LATENCY + bisect_left(LATENCY_BOUNDS, seconds)


class AccessLatency(Collector):
    """``request_time`` of access lines by ingress, as a Prometheus histogram.

    A collector rather than a ``Histogram``: the pipeline counts buckets itself (a bisect per
    line) and hands over whole batches, which a ``Histogram`` can only take one value at a time.
    """

    def __init__(self) -> None:
        self._series: dict[str, list[float]] = {}  # ingress -> per-bucket counts, then the sum

    def add(self, ingress: str, buckets: Sequence[float], total: float) -> None:
        """``buckets``: counts per bucket, not cumulative, +Inf last; ``total``: their sum of seconds."""
        series = self._series.get(ingress)
        if series is None:
            series = self._series[ingress] = [0.0] * (len(_BOUND_LABELS) + 1)
        for index, n in enumerate(buckets):
            series[index] += n
        series[-1] += total

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(
            _NAME,
            "Request time of the access log lines (request_time), by ingress.",
            labels=["ingress"],
        )
        for ingress, series in self._series.items():
            cumulative, running = [], 0.0
            for bound, n in zip(_BOUND_LABELS, series, strict=False):
                running += n
                cumulative.append((bound, running))
            family.add_metric([ingress], cumulative, sum_value=series[-1])
        yield family


class RequestMetrics:
    """The per-ingress series on one ``Metrics``; registers its latency histogram there."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self.latency = AccessLatency()
        metrics.registry.register(self.latency)

    def observe(self, ingress: str, slots: Sequence[float]) -> None:
        """Add one ingress's slots (see the module doc) to the metrics.

        Every status class and both auth-failure series of an ingress exist from its first line
        on, at 0 where nothing was counted: ``increase()`` ignores the first sample of a series,
        so a series born with a burst of 403s (or 5xx) would hide that burst from the alert rules."""
        metrics = self._metrics
        for name, n in zip(CLASS_NAMES, slots, strict=False):
            metrics.access_requests.labels(ingress=ingress, status_class=name).inc(n)
        metrics.access_auth_failures.labels(ingress=ingress, status="401").inc(slots[UNAUTHORIZED])
        metrics.access_auth_failures.labels(ingress=ingress, status="403").inc(slots[FORBIDDEN])
        buckets = slots[LATENCY:LATENCY_SUM]
        if any(buckets):
            self.latency.add(ingress, buckets, slots[LATENCY_SUM])
