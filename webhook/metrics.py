"""Prometheus metrics, one registry per app (no module-level state, so tests can run many apps).

Every label takes its values from a fixed set (docs/operations.md lists them): never a user,
an address, a namespace or an object name; ``cluster`` is one the config names, else
``other``. webhook/pipeline/record_metrics.py counts what the records say.
A stage whose figures are a collector of its own (certificate expiry, access latency) registers
it on ``registry`` when it is built, so this module knows no stage.
"""

from __future__ import annotations

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)

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
        # The serve process's own figures (process_resident_memory_bytes, CPU, open files, the
        # collector's work, the Python version), as every Prometheus client exports them; read at
        # scrape time. Its worker processes are not in them.
        for collector in (PROCESS_COLLECTOR, GC_COLLECTOR, PLATFORM_COLLECTOR):
            r.register(collector)
        self.batches = Counter(
            "ingress_audit_batches_received", "EventList requests accepted (200).", registry=r
        )
        self.events = Counter(
            "ingress_audit_events_received",
            "Events in accepted batches, by cluster.",
            ["cluster"],
            registry=r,
        )
        self.matched = Counter("ingress_audit_events_matched", "Events kept by the filter rules.", registry=r)
        self.records = Counter(
            "ingress_audit_records_written",
            "Audit records durably written to the spool, by cluster.",
            ["cluster"],
            registry=r,
        )
        self.rejects = Counter(
            "ingress_audit_requests_rejected",
            "Requests answered with an error status, by reason.",
            ["reason"],
            registry=r,
        )
        self.tls_failures = Counter(
            "ingress_audit_tls_handshake_failures",
            "TLS handshakes refused (untrusted or expired client certificate, old protocol), by reason.",
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
        self.list_items = Counter(
            "ingress_audit_redaction_list_items",
            "Items of secrets list responses looked up in the redactor's memory of the items it"
            " redacted before, by result (hit: not read again).",
            ["result"],
            registry=r,
        )
        self.latency = Histogram(
            "ingress_audit_request_duration_seconds",
            "Time from request start to answer on the sources' routes (/audit, ...), by status code.",
            ["code"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "ingress_audit_requests_in_flight",
            "Requests to the sources' routes (/audit, ...) being processed.",
            registry=r,
        )
        self.spool_bytes = Gauge("ingress_audit_spool_bytes", "Bytes held by the spool.", registry=r)
        self.spool_max_bytes = Gauge("ingress_audit_spool_max_bytes", "The spool's size cap.", registry=r)
        self.spool_dropped = Counter(
            "ingress_audit_spool_dropped_records",
            "Records dropped from a drop_when_full sink's backlog when the spool was full.",
            ["sink"],
            registry=r,
        )
        self.sink_delivered = Counter(
            "ingress_audit_sink_delivered_records", "Records a sink accepted.", ["sink"], registry=r
        )
        self.sink_failures = Counter(
            "ingress_audit_sink_failures", "Failed delivery attempts.", ["sink"], registry=r
        )
        self.sink_retries = Counter(
            "ingress_audit_sink_retries", "Delivery attempts that were retries.", ["sink"], registry=r
        )
        self.sink_up = Gauge(
            "ingress_audit_sink_up", "1 when the sink's last delivery succeeded.", ["sink"], registry=r
        )
        self.sink_lag_records = Gauge(
            "ingress_audit_sink_lag_records", "Records in the spool not yet delivered.", ["sink"], registry=r
        )
        self.sink_lag_bytes = Gauge(
            "ingress_audit_sink_lag_bytes", "Bytes in the spool not yet delivered.", ["sink"], registry=r
        )
        self.sink_lag_seconds = Gauge(
            "ingress_audit_sink_lag_seconds",
            "Age of the oldest record not yet delivered (0 when caught up).",
            ["sink"],
            registry=r,
        )
        self.state_errors = Counter(
            "ingress_audit_state_errors",
            "State store operations that failed (records are still written), by operation.",
            ["operation"],
            registry=r,
        )
        self.dedupe_entries = Gauge(
            "ingress_audit_dedupe_entries", "Keys held by the in-memory dedupe window.", registry=r
        )
        # What the records say (webhook/pipeline/record_metrics.py): the security signals to alert on.
        self.findings = Counter(
            "ingress_audit_findings",
            "Findings raised, by finding id (unknown ids: other), severity and cluster.",
            ["finding", "severity", "cluster"],
            registry=r,
        )
        self.auth_failures = Counter(
            "ingress_audit_auth_failures",
            "Audited requests the apiserver refused: 401 (unauthenticated) or 403 (forbidden), "
            "by the kind of caller and cluster.",
            ["reason", "actor_kind", "cluster"],
            registry=r,
        )
        self.changes = Counter(
            "ingress_audit_changes",
            "Successful, non-dry-run writes recorded, by resource, verb and the caller's kind.",
            ["resource", "verb", "actor_kind"],
            registry=r,
        )
        self.untrusted_changes = Counter(
            "ingress_audit_untrusted_changes",
            "Successful writes from a source IP outside actors.trusted_cidrs, by resource and cluster.",
            ["resource", "cluster"],
            registry=r,
        )
        # Access logs: labels are inputs, reasons, status classes and at most
        # access.max_metric_ingresses ingress names (then "other"), never clients or hosts.
        self.access_lines = Counter(
            "ingress_audit_access_lines",
            "Access log lines received, by input and result (parsed, unparsed).",
            ["input", "result"],
            registry=r,
        )
        self.access_unparsed = Counter(
            "ingress_audit_access_unparsed_lines",
            "Access log lines that did not parse, by input and reason.",
            ["input", "reason"],
            registry=r,
        )
        self.access_requests = Counter(
            "ingress_audit_access_requests",
            "Requests in the access logs, by ingress (namespace/name, 'none', 'other') and status class.",
            ["ingress", "status_class"],
            registry=r,
        )
        self.access_auth_failures = Counter(
            "ingress_audit_access_auth_failures",
            "Requests in the access logs answered 401 or 403, by ingress and status.",
            ["ingress", "status"],
            registry=r,
        )
        self.access_records = Counter(
            "ingress_audit_access_records_written",
            "Access records written to the spool, by type (access, access_summary).",
            ["type"],
            registry=r,
        )
        self.access_dropped = Counter(
            "ingress_audit_access_records_dropped",
            "Access records of the syslog inputs that could not be written, by reason.",
            ["reason"],
            registry=r,
        )
        self.access_lines_dropped = Counter(
            "ingress_audit_access_lines_dropped",
            "Syslog lines dropped before parsing, by input and reason (rate-limited).",
            ["input", "reason"],
            registry=r,
        )
        self.access_windows = Counter(
            "ingress_audit_access_windows_flushed", "Aggregation windows summarized.", registry=r
        )
        self.access_syslog_connections = Gauge(
            "ingress_audit_access_syslog_connections", "Open syslog TCP connections.", registry=r
        )
        self.access_syslog_closed = Counter(
            "ingress_audit_access_syslog_connections_closed",
            "Syslog TCP connections the listener closed, by reason (idle, evicted, framing).",
            ["reason"],
            registry=r,
        )
        # The managed clouds' sources: source is firehose or pubsub, result one of a fixed few.
        self.cloud_items = Counter(
            "ingress_audit_cloud_items",
            "What the managed clouds' sources read, by source and result (event, rejected, "
            "repeated_reject, control_message, skipped).",
            ["source", "result"],
            registry=r,
        )
        self.alerts = Counter(
            "ingress_audit_alerts",
            "Alert records emitted by the detections, by detection, severity and status.",
            ["detection", "severity", "status"],
            registry=r,
        )
        self.detection_evictions = Counter(
            "ingress_audit_detection_keys_evicted",
            "Keys a detection forgot because it held max_keys (least recently used first).",
            ["detection"],
            registry=r,
        )
        self.detection_errors = Counter(
            "ingress_audit_detection_errors",
            "Records a detection failed on (the record is kept; only this detection skips it).",
            ["detection"],
            registry=r,
        )
        self.detection_keys = Gauge(
            "ingress_audit_detection_keys", "Keys a detection holds in memory.", ["detection"], registry=r
        )
        self.alerts_dropped = Counter(
            "ingress_audit_alerts_dropped",
            "Alert records lost because the spool refused them for too long.",
            registry=r,
        )
