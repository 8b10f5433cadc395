"""Prometheus metrics, one registry per app (no module-level state, so tests can run many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.batches = Counter(
            "ingress_audit_batches_received", "EventList requests accepted (200).", registry=r
        )
        self.events = Counter(
            "ingress_audit_events_received", "Events in accepted EventLists.", registry=r
        )
        self.matched = Counter(
            "ingress_audit_events_matched", "Events kept by the filter rules.", registry=r
        )
        self.records = Counter(
            "ingress_audit_records_written",
            "Records durably written, per sink.",
            ["sink"],
            registry=r,
        )
        self.rejects = Counter(
            "ingress_audit_requests_rejected",
            "Requests answered with an error status, by reason.",
            ["reason"],
            registry=r,
        )
        self.dead_letters = Counter(
            "ingress_audit_dead_letters",
            "Events or batches dead-lettered, by reason.",
            ["reason"],
            registry=r,
        )
        self.dedupe_hits = Counter(
            "ingress_audit_dedupe_hits", "Events already recorded (apiserver retries).", registry=r
        )
        self.latency = Histogram(
            "ingress_audit_request_duration_seconds",
            "Time from request start to answer on /audit, by status code.",
            ["code"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "ingress_audit_requests_in_flight", "Requests to /audit being processed.", registry=r
        )
        self.dedupe_entries = Gauge(
            "ingress_audit_dedupe_entries", "Keys held by the in-memory dedupe window.", registry=r
        )
