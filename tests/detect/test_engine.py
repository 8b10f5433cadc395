"""The detector: firing, re-emission, resolution, ids, eviction and record types."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonschema
import orjson
from prometheus_client import generate_latest
from structlog.testing import capture_logs

from tests.conftest import enrichment_of, find_event
from tests.detect.detect_records import T0, audit, detector
from webhook.detect.engine import Detector, fingerprint
from webhook.detect.rules import Hit, Rule
from webhook.detect.settings import Exceptions, RuleSettings
from webhook.metrics import Metrics
from webhook.record.alert import alert_json
from webhook.record.audit import Record, record_id, record_schema

BRUTE = {"rules": {"brute-force-source-ip": {"threshold": 2, "window_s": 60}}}


def failure(ip: str = "10.0.0.7") -> dict[str, Any]:
    return audit(code=401, verb="list", user=None, ips=(ip,), name=None)


def test_an_alert_resolves_once_a_window_passes_without_activity() -> None:
    """tick() before firing.ends_at changes nothing; at ends_at it emits the resolved record."""
    d = detector(BRUTE)
    d.observe(failure(), T0)
    (firing,) = d.observe(failure(), T0 + 10)
    assert firing.ends_at == "2026-11-18T11:07:50.000000Z"  # T0 + 10 + 60

    assert d.tick(T0 + 69.9) == []
    (resolved,) = d.tick(T0 + 70)

    assert resolved.status == "resolved"
    assert resolved.fingerprint == firing.fingerprint
    assert resolved.id != firing.id
    assert resolved.ends_at == firing.ends_at
    assert resolved.time == "2026-11-18T11:07:50.000000Z"
    assert resolved.starts_at == firing.starts_at == "2026-11-18T11:06:40.000000Z"
    assert d.tick(T0 + 1000) == []


def test_an_alerts_namespace_stays_that_of_the_hit_that_fired_it() -> None:
    """Alertmanager matches alerts by labels (namespace included): later hits elsewhere don't move it."""
    d = detector(BRUTE)
    first = audit(code=401, verb="list", user=None, ips=("10.0.0.7",), namespace="shop", name=None)
    d.observe(first, T0)
    (firing,) = d.observe(
        audit(code=401, verb="list", user=None, ips=("10.0.0.7",), namespace="blog", name=None), T0 + 1
    )
    d.observe(audit(code=401, verb="list", user=None, ips=("10.0.0.7",), namespace="ops", name=None), T0 + 2)

    later = d.tick(T0 + 61.5) + d.tick(T0 + 200)

    assert [a.status for a in later][-1] == "resolved"
    assert {a.namespace for a in [firing, *later]} == {"blog"}


def test_activity_keeps_an_alert_firing_and_moves_its_end() -> None:
    """Each new event for the key pushes the resolution back by window_s."""
    d = detector(BRUTE)
    d.observe(failure(), T0)
    d.observe(failure(), T0 + 1)
    d.observe(failure(), T0 + 50)

    (update,) = d.tick(T0 + 100)  # grown since T0 + 1 and a window later: re-emitted
    assert (update.status, update.count, update.ends_at) == ("firing", 3, "2026-11-18T11:08:30.000000Z")
    assert d.tick(T0 + 109.9) == []
    (resolved,) = d.tick(T0 + 110)  # 50 + 60
    assert resolved.count == 3
    assert resolved.records_total == 3


def test_a_growing_alert_is_re_emitted_at_most_once_per_window() -> None:
    """Same fingerprint, new id; only once window_s has passed since the last emission."""
    d = detector(BRUTE)
    d.observe(failure(), T0)
    (first,) = d.observe(failure(), T0 + 1)
    quiet = [a for t in range(2, 61) for a in d.observe(failure(), T0 + t)]
    assert quiet == []

    (again,) = d.observe(failure(), T0 + 61)

    assert again.status == "firing"
    assert again.fingerprint == first.fingerprint
    assert again.id != first.id
    assert again.count == 62
    assert len(again.records) == 20
    assert again.records_total == 62
    assert d.observe(failure(), T0 + 62) == []


def test_a_grown_alert_is_re_emitted_by_the_tick_too() -> None:
    """With no new event to carry it, the next tick past the re-emission time sends the update."""
    d = detector({"rules": {"brute-force-source-ip": {"threshold": 2, "window_s": 60}}})
    d.observe(failure(), T0)
    d.observe(failure(), T0 + 1)
    d.observe(failure(), T0 + 30)

    (update,) = d.tick(T0 + 61)

    assert (update.status, update.count) == ("firing", 3)
    assert d.tick(T0 + 62) == []


def test_ids_are_deterministic_for_the_same_input() -> None:
    """Two detectors fed the same records at the same times emit the same ids."""
    records = [failure() for _ in range(3)]

    def run() -> list[str]:
        d = detector(BRUTE)
        alerts = [a for i, r in enumerate(records) for a in d.observe(r, T0 + i)]
        alerts += d.tick(T0 + 500)
        return [a.id for a in alerts]

    first, second = run(), run()
    assert first == second
    assert len(set(first)) == 2


def test_after_resolution_the_threshold_must_be_reached_again() -> None:
    """A resolved key starts from an empty window: one more failure does not fire."""
    d = detector(BRUTE)
    d.observe(failure(), T0)
    d.observe(failure(), T0 + 1)
    d.tick(T0 + 100)

    assert d.observe(failure(), T0 + 200) == []
    (again,) = d.observe(failure(), T0 + 201)
    assert again.starts_at == "2026-11-18T11:10:00.000000Z"


def test_flush_resolves_everything_at_its_own_end() -> None:
    """At the end of a replay, each firing alert resolves at its ends_at."""
    d = detector(BRUTE)
    for ip, t in (("10.0.0.1", 0.0), ("10.0.0.2", 100.0)):
        d.observe(failure(ip), T0 + t)
        d.observe(failure(ip), T0 + t + 1)

    resolved = d.flush()

    assert [(a.labels["source_ip"], a.time) for a in resolved] == [
        ("10.0.0.1", "2026-11-18T11:07:41.000000Z"),
        ("10.0.0.2", "2026-11-18T11:09:21.000000Z"),
    ]
    assert d.flush() == []


def test_max_keys_bounds_memory_and_counts_evictions() -> None:
    """A spray of distinct addresses holds at most max_keys; the evictions metric counts the rest,
    and an evicted firing alert is resolved rather than left hanging."""
    metrics = Metrics()
    config = {"rules": {"brute-force-source-ip": {"threshold": 2, "window_s": 60, "max_keys": 50}}}
    d = detector(config)
    d.metrics = metrics
    d.observe(failure("192.0.2.1"), T0)
    (firing,) = d.observe(failure("192.0.2.1"), T0 + 1)

    out = [a for i in range(1000) for a in d.observe(failure(f"10.0.{i // 250}.{i % 250}"), T0 + 2)]

    assert [(a.status, a.fingerprint) for a in out] == [("resolved", firing.fingerprint)]
    d.tick(T0 + 2)
    sample = metrics.registry.get_sample_value
    assert sample("ingress_audit_detection_keys", {"detection": "brute-force-source-ip"}) == 50
    assert sample("ingress_audit_detection_keys_evicted_total", {"detection": "brute-force-source-ip"}) == 951


def test_idle_keys_are_forgotten_by_the_tick() -> None:
    """Keys with nothing in their window leave memory at the next tick."""
    d = detector(BRUTE)
    d.metrics = Metrics()
    for i in range(10):
        d.observe(failure(f"10.0.0.{i}"), T0)

    d.tick(T0 + 60)

    assert (
        d.metrics.registry.get_sample_value(
            "ingress_audit_detection_keys", {"detection": "brute-force-source-ip"}
        )
        == 0
    )


def test_alert_metrics_have_bounded_labels() -> None:
    """alerts_total counts by detection, severity and status; never a user or an address."""
    metrics = Metrics()
    d = detector(BRUTE)
    d.metrics = metrics
    d.observe(failure(), T0)
    d.observe(failure(), T0 + 1)
    d.tick(T0 + 1000)

    labels = {"detection": "brute-force-source-ip", "severity": "high"}
    assert (
        metrics.registry.get_sample_value("ingress_audit_alerts_total", {**labels, "status": "firing"}) == 1
    )
    assert (
        metrics.registry.get_sample_value("ingress_audit_alerts_total", {**labels, "status": "resolved"}) == 1
    )
    assert b"10.0.0.7" not in generate_latest(metrics.registry)


def test_every_alert_matches_the_record_schema() -> None:
    """Firing and resolved alerts validate against record.schema.json (type alert)."""
    d = detector({**BRUTE, "findings_min_severity": "low"})
    alerts = d.observe(failure(), T0) + d.observe(failure(), T0 + 1)
    alerts += d.observe(audit(findings=(("tls-removed", "high"), ("change-by-human", "low"))), T0 + 2)
    alerts += d.tick(T0 + 1000)
    validator = jsonschema.Draft202012Validator(
        record_schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )

    assert len(alerts) == 6
    for alert in alerts:
        doc = orjson.loads(alert_json(alert))
        validator.validate(doc)
        assert list(doc)[:2] == ["schema_version", "type"]
        assert doc["type"] == "alert"


def test_observe_takes_the_record_dataclass_too() -> None:
    """The pipeline's Record works as well as its JSON dict."""
    event = find_event("0032.json", stage="ResponseStarted")  # the captured 401, user: {}
    record = Record.from_event(
        event,
        record_id=record_id(event["auditID"], event["stage"], "x"),
        cluster="c",
        received_at="2026-11-24T14:21:42Z",
        enrichment=enrichment_of(event),
    )
    d = detector({"rules": {"brute-force-source-ip": {"threshold": 1}}})

    (alert,) = d.observe(record, T0)

    assert alert.labels == {"source_ip": "127.0.0.1"}
    assert alert.records == (record.id,)


class _SlowPages(Rule):
    """A rule over another record type, as access-log detections will be."""

    id = "slow-pages"
    consumes = frozenset({"access"})

    def match(self, record: Mapping[str, Any], now: float) -> list[Hit]:
        return [Hit(labels={"host": str(record["host"])})] if record.get("duration_s", 0) > 1 else []

    def text(self, labels: Mapping[str, str], count: int, hit: Hit) -> tuple[str, str]:
        return f"{count} slow pages on {labels['host']}", "slow"


def test_rules_only_see_the_record_types_they_consume() -> None:
    """An access rule ignores audit records; audit rules ignore access records."""
    rule = _SlowPages(
        RuleSettings(threshold=2, window_s=10, severity="low"), max_keys=10, exceptions=Exceptions()
    )
    d = Detector([rule, *detector(BRUTE).rules], cluster="c")
    access = {"type": "access", "id": "a1", "host": "shop.example.test", "duration_s": 3}

    assert d.consumes == {"access", "audit"}
    assert d.observe(failure(), T0) == []
    assert d.observe({**access, "code": 401}, T0) == []  # not a 401 to the audit rule
    (alert,) = d.observe({**access, "id": "a2"}, T0 + 1)
    assert alert.detection == "slow-pages"
    assert alert.records == ("a1", "a2")


def test_an_event_after_a_quiet_window_resolves_before_the_tick_does() -> None:
    """With no tick in between, an event a full window after the last one first resolves the
    old alert, then counts in a fresh window (it does not extend a lapsed alert)."""
    d = detector(BRUTE)
    d.observe(failure(), T0)
    (firing,) = d.observe(failure(), T0 + 1)

    (resolved,) = d.observe(failure(), T0 + 61)

    assert (resolved.status, resolved.fingerprint) == ("resolved", firing.fingerprint)
    assert resolved.ends_at == firing.ends_at
    (again,) = d.observe(failure(), T0 + 62)
    assert again.status == "firing"
    assert again.id != firing.id
    assert again.count == 2


class _Fragile(Rule):
    """A rule with a bug: it raises on every record without a ``host`` (all audit records)."""

    id = "fragile"
    consumes = frozenset({"audit"})

    def match(self, record: Mapping[str, Any], now: float) -> list[Hit]:
        return [Hit(labels={"host": record["host"]})]

    def text(self, labels: Mapping[str, str], count: int, hit: Hit) -> tuple[str, str]:
        return "fragile", "fragile"


def test_a_rule_that_raises_skips_only_that_record_for_that_rule() -> None:
    """The other rules still see the record; the failure is counted and logged by type only."""
    metrics = Metrics()
    fragile = _Fragile(RuleSettings(threshold=1, window_s=10), max_keys=10, exceptions=Exceptions())
    d = Detector([fragile, *detector(BRUTE).rules], cluster="c", metrics=metrics)

    with capture_logs() as logs:
        assert d.observe(failure(), T0) == []
        (alert,) = d.observe(failure(), T0 + 1)

    assert alert.detection == "brute-force-source-ip"
    assert (
        logs
        == [{"event": "detection.failed", "detection": "fragile", "error": "KeyError", "log_level": "error"}]
        * 2
    )
    assert b'ingress_audit_detection_errors_total{detection="fragile"} 2.0' in generate_latest(
        metrics.registry
    )


def test_a_burst_split_between_clusters_fires_in_neither() -> None:
    """Windows are per cluster: one failure in each of two clusters is not two from one IP."""
    d = detector(BRUTE)
    assert d.observe(failure() | {"cluster": "prod-eu"}, T0) == []
    assert d.observe(failure() | {"cluster": "prod-us"}, T0 + 1) == []
    assert d.observe(failure(), T0 + 2) == []  # the detector's own cluster, a third window

    (alert,) = d.observe(failure() | {"cluster": "prod-eu"}, T0 + 3)
    assert (alert.cluster, alert.count) == ("prod-eu", 2)


def test_an_alert_is_about_the_cluster_of_its_records() -> None:
    """The same key in two clusters: two alert instances, each with its cluster, fingerprint and ids;
    a record that names no cluster is the detector's."""
    d = detector(BRUTE)
    eu = [d.observe(failure() | {"cluster": "prod-eu"}, T0 + n) for n in (0, 1)][-1]
    mine = [d.observe(failure() | {"cluster": None}, T0 + n) for n in (2, 3)][-1]
    (eu_alert,), (alert,) = eu, mine

    assert (eu_alert.cluster, alert.cluster) == ("prod-eu", "test-cluster")
    assert eu_alert.fingerprint == fingerprint("prod-eu", "brute-force-source-ip", {"source_ip": "10.0.0.7"})
    assert alert.fingerprint == fingerprint(
        "test-cluster", "brute-force-source-ip", {"source_ip": "10.0.0.7"}
    )
    assert eu_alert.id != alert.id
    resolved = d.tick(T0 + 1000)
    assert sorted((a.status, a.cluster) for a in resolved) == [
        ("resolved", "prod-eu"),
        ("resolved", "test-cluster"),
    ]
