"""The edge detections (webhook/detect/edge.py) through the engine, with injected time.

Records are the JSON shapes the access pipeline writes (docs/record.md): ``access`` records for
kept requests, ``access_summary`` windows per host and for the clients.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from webhook.access.hosts import ChangeRef
from webhook.config import parse_config
from webhook.detect.edge import HISTORY, MAX_CHANGES, ChangeCorrelation, build_edge_rules
from webhook.detect.engine import Detector
from webhook.detect.settings import DetectionsConfig, Exceptions, default_rules
from webhook.errors import ConfigError
from webhook.record.alert import Alert

T0 = datetime(2026, 11, 25, 21, 0, tzinfo=UTC).timestamp()
WINDOW = 60.0
HOST = "shop.example.com"
INGRESS = {
    "namespace": "shop",
    "name": "web",
    "ingress_class": "nginx",
    "tls": True,
    "tls_secret": "shop-tls",
}


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def access(
    n: int,
    *,
    ip: str = "203.0.113.7",
    status: int = 401,
    host: str | None = HOST,
    trust: str = "unknown",
    kept: tuple[str, ...] = ("status",),
    ingress: dict[str, Any] | None = INGRESS,
) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "type": "access",
        "id": f"00000000-0000-5000-8000-{n:012d}",
        "cluster": "c",
        "time": iso(T0 + n),
        "client": {"ip": ip, "trust": trust, "peer": None},
        "request": {"method": "POST", "host": host, "path": "/login", "status": status, "remote_user": None},
        "upstream": {"name": "shop-web-80", "addresses": [], "statuses": [], "times_s": []},
        "ingress": ingress,
        "kept_because": list(kept),
    }


def host_window(
    index: int, requests: int, errors: int, *, host: str = HOST, ingress: dict[str, Any] | None = INGRESS
) -> dict[str, Any]:
    start = T0 + index * WINDOW
    return {
        "schema_version": 1,
        "type": "access_summary",
        "id": f"11111111-0000-5000-8000-{index:012d}",
        "cluster": "c",
        "time": iso(start + WINDOW),
        "window_start": iso(start),
        "window_end": iso(start + WINDOW),
        "scope": "host",
        "host": host,
        "upstream": None,
        "ingress": ingress,
        "requests": requests,
        "statuses": {k: v for k, v in (("2xx", requests - errors), ("5xx", errors)) if v},
        "auth_failures": 0,
    }


def clients_window(index: int, counts: dict[str, int], *, error_bound: int = 0) -> dict[str, Any]:
    start = T0 + index * WINDOW
    return {
        "schema_version": 1,
        "type": "access_summary",
        "id": f"22222222-0000-5000-8000-{index:012d}",
        "cluster": "c",
        "time": iso(start + WINDOW),
        "window_start": iso(start),
        "window_end": iso(start + WINDOW),
        "scope": "clients",
        "requests": sum(counts.values()),
        "statuses": {},
        "auth_failures": 0,
        "clients": [
            {"ip": ip, "trust": "unknown", "requests": n, "auth_failures": 0} for ip, n in counts.items()
        ],
        "error_bound": error_bound,
    }


def detector(
    rule_id: str, *, exceptions: Exceptions | None = None, sensitive: bool = True, **settings: Any
) -> Detector:
    rules = dict(default_rules())
    rules[rule_id] = replace(rules[rule_id], **settings)
    config = DetectionsConfig(rules=rules, exceptions=exceptions or Exceptions())
    built = [r for r in build_edge_rules(config, sensitive=sensitive, trusted=sensitive) if r.id == rule_id]
    assert len(built) == 1
    return Detector(built, cluster="c")


def feed(d: Detector, records: list[dict[str, Any]], *, at: float | None = None) -> list[Alert]:
    out: list[Alert] = []
    for record in records:
        now = at if at is not None else datetime.fromisoformat(record["time"]).timestamp()
        out += d.observe(record, now)
    return out


def firing(alerts: list[Alert]) -> list[Alert]:
    return [a for a in alerts if a.status == "firing"]


# --- brute force -------------------------------------------------------------------------------


def test_brute_force_client_fires_at_the_threshold_within_the_window() -> None:
    d = detector("edge-brute-force-client", threshold=5, window_s=60.0)
    assert feed(d, [access(i) for i in range(4)]) == []
    (alert,) = feed(d, [access(4)])
    assert (alert.detection, alert.status, alert.labels) == (
        "edge-brute-force-client",
        "firing",
        {"client_ip": "203.0.113.7"},
    )
    assert alert.count == 5
    assert alert.threshold == 5
    assert alert.records == tuple(access(i)["id"] for i in range(5))
    assert alert.actor is not None
    assert alert.actor.source_ips == ("203.0.113.7",)
    assert alert.object is not None
    assert (alert.object.namespace, alert.object.name) == ("shop", "web")
    assert alert.namespace == "shop"
    assert "POST shop.example.com/login -> 401" in alert.description
    # quiet for a window: resolved
    (resolved,) = d.tick(T0 + 4 + 60.0)
    assert resolved.status == "resolved"
    assert resolved.fingerprint == alert.fingerprint


def test_brute_force_client_window_edges_and_what_does_not_count() -> None:
    d = detector("edge-brute-force-client", threshold=3, window_s=10.0)
    # 200s, other clients' 401s: not counted for this client
    assert feed(d, [access(0, status=200), access(1, ip="198.51.100.1"), access(2)]) == []
    assert d.observe(access(3), T0 + 5) == []
    # exactly window_s after access(2): it has expired, so two are live, not three
    assert d.observe(access(4), T0 + 12) == []
    assert firing(d.observe(access(5, status=403), T0 + 13))  # 3, 4 and 5 within 10 s


def test_brute_force_exceptions_by_client_network_and_ingress_namespace() -> None:
    d = detector(
        "edge-brute-force-client", threshold=2, exceptions=Exceptions(source_cidrs=("203.0.113.0/24",))
    )
    assert feed(d, [access(i) for i in range(5)]) == []
    d = detector("edge-brute-force-client", threshold=2, exceptions=Exceptions(namespaces=("shop",)))
    assert feed(d, [access(i) for i in range(5)]) == []
    assert firing(feed(d, [access(i, ingress=None) for i in range(5, 7)]))


def test_brute_force_host_spread_over_clients() -> None:
    d = detector("edge-brute-force-host", threshold=4, window_s=60.0)
    records = [access(i, ip=f"198.51.100.{i}") for i in range(4)]
    (alert,) = feed(d, records)
    assert alert.labels == {"host": HOST, "ingress": "shop/web"}
    assert alert.summary == "4 refused request(s) (401/403) on shop.example.com (ingress shop/web)"
    # ingress-nginx's default format logs no Host: the ingress (or the upstream) names it
    d = detector("edge-brute-force-host", threshold=2)
    (alert,) = feed(d, [access(i, host=None) for i in range(2)])
    assert alert.labels == {"ingress": "shop/web"}
    d = detector("edge-brute-force-host", threshold=2)
    (alert,) = feed(d, [access(i, host=None, ingress=None) for i in range(2)])
    assert alert.labels == {"upstream": "shop-web-80"}


def test_brute_force_rules_need_401_and_403_kept() -> None:
    config = DetectionsConfig()
    ids = {r.id for r in build_edge_rules(config, keep_statuses=(401,))}
    assert not ids & {"edge-brute-force-client", "edge-brute-force-host"}
    assert {"edge-brute-force-client", "edge-brute-force-host"} <= {r.id for r in build_edge_rules(config)}
    assert "edge-brute-force-client" in {
        r.id for r in build_edge_rules(config, keep_statuses=(), keep_all=True)
    }
    assert build_edge_rules(replace(config, enabled=False)) == []


# --- sensitive access --------------------------------------------------------------------------


def test_sensitive_access_needs_an_untrusted_client() -> None:
    d = detector("edge-sensitive-access")
    assert feed(d, [access(0, status=200, kept=("sensitive",), trust="unknown")]) == []
    assert feed(d, [access(1, status=200, kept=("status",), trust="untrusted")]) == []
    (alert,) = feed(d, [access(2, status=200, kept=("sensitive",), trust="untrusted")])
    assert alert.labels == {"client_ip": "203.0.113.7", "host": HOST, "ingress": "shop/web"}
    assert alert.summary == "untrusted 203.0.113.7 reached sensitive shop.example.com (ingress shop/web)"


def test_sensitive_access_is_not_started_without_sensitive_hosts_or_trusted_networks() -> None:
    config = DetectionsConfig()
    assert "edge-sensitive-access" not in {r.id for r in build_edge_rules(config, sensitive=True)}
    assert "edge-sensitive-access" not in {r.id for r in build_edge_rules(config, trusted=True)}
    assert "edge-sensitive-access" in {r.id for r in build_edge_rules(config, sensitive=True, trusted=True)}


# --- request rate ------------------------------------------------------------------------------


def test_request_rate_per_client_from_the_window_counts() -> None:
    d = detector("edge-request-rate", threshold=100)
    assert feed(d, [clients_window(0, {"203.0.113.7": 99, "198.51.100.1": 5})]) == []
    (alert,) = feed(d, [clients_window(1, {"203.0.113.7": 100, "198.51.100.1": 5}, error_bound=3)])
    assert alert.labels == {"client_ip": "203.0.113.7"}
    assert alert.summary == "203.0.113.7 sent 100 requests in 60 s (at most 3 more)"
    assert alert.records == (clients_window(1, {})["id"],)
    d = detector("edge-request-rate", threshold=100, exceptions=Exceptions(source_cidrs=("203.0.113.7/32",)))
    assert feed(d, [clients_window(1, {"203.0.113.7": 500})]) == []


# --- 5xx spike ---------------------------------------------------------------------------------


def test_5xx_spike_against_the_baseline() -> None:
    d = detector("edge-5xx-spike", min_requests=20, ratio=0.1, factor=3.0)
    # a steady 4 % of errors: below the ratio, and the baseline
    assert feed(d, [host_window(i, 100, 4) for i in range(3)]) == []
    (alert,) = feed(d, [host_window(3, 100, 30)])
    assert alert.labels == {"host": HOST, "ingress": "shop/web"}
    assert (
        alert.summary == "5xx spike on shop.example.com (ingress shop/web): 30.0 % 5xx of 100 requests, "
        "against 4.0 % of 300 before"
    )
    assert alert.effect is not None
    assert alert.effect["kind"] == "error-rate"
    assert (alert.effect["requests"], alert.effect["errors_5xx"], alert.effect["error_ratio"]) == (
        100,
        30,
        0.3,
    )
    assert alert.effect["baseline"] == {
        "windows": 3,
        "requests": 300,
        "errors_5xx": 12,
        "error_ratio": 0.04,
        "requests_per_s": 1.6667,
    }
    assert alert.change is None


def test_5xx_spike_floor_factor_and_no_baseline() -> None:
    d = detector("edge-5xx-spike", min_requests=20, ratio=0.1, factor=3.0)
    assert feed(d, [host_window(0, 19, 19)]) == []  # below the floor of requests
    # a host that always fails 20 %: at the ratio, but not 3 times its baseline
    d = detector("edge-5xx-spike", min_requests=20, ratio=0.1, factor=3.0)
    assert len(firing(feed(d, [host_window(0, 50, 10)]))) == 1  # no baseline yet: the ratio decides
    assert feed(d, [host_window(i, 50, 10) for i in range(1, 4)]) == []
    assert len(firing(feed(d, [host_window(4, 50, 35)], at=T0 + 10_000))) == 1  # 70 % >= 3 x 20 %


def test_5xx_spike_baseline_is_bounded_and_keys_are_capped() -> None:
    d = detector("edge-5xx-spike", min_requests=20, ratio=0.1, factor=3.0, max_keys=2)
    # HISTORY quiet windows then old failures fall out: only the last HISTORY count
    records = [host_window(i, 100, 50) for i in range(2)] + [
        host_window(i, 100, 0) for i in range(2, 2 + HISTORY)
    ]
    feed(d, records)
    rule = d.rules[0]
    for n in range(3):
        feed(d, [host_window(0, 100, 0, host=f"h{n}.example.com")])
    assert len(rule._hosts) == 2  # type: ignore[attr-defined]


# --- change correlation ------------------------------------------------------------------------

CHANGE_T = T0 + 5 * WINDOW + 30  # in the middle of window 5
CHANGE_ID = "33333333-0000-5000-8000-000000000001"


def change_record(t: float = CHANGE_T, *, verb: str = "patch", user: str = "alice") -> dict[str, Any]:
    return {
        "schema_version": 1,
        "type": "audit",
        "id": CHANGE_ID,
        "time": iso(t),
        "verb": verb,
        "dry_run": False,
        "outcome": {"code": 200},
        "object": {
            "api_group": "networking.k8s.io",
            "resource": "ingresses",
            "subresource": None,
            "namespace": "shop",
            "name": "web",
        },
        "actor": {
            "user": {"username": user, "groups": ["admins"], "kind": "user"},
            "source_ips": ["10.0.0.9"],
        },
        "change": {
            "operations": [
                {
                    "op": "replace",
                    "path": "/spec/rules/0/http/paths/0/backend/service/port/number",
                    "old": 80,
                    "new": 8443,
                }
            ],
            "omitted_operations": 0,
        },
        "findings": [{"id": "ingress-backend-changed", "severity": "low"}],
    }


def change_ref(t: float = CHANGE_T) -> ChangeRef:
    return ChangeRef(
        record_id=CHANGE_ID,
        time=iso(t),
        actor="alice",
        verb="patch",
        resource="ingresses",
        namespace="shop",
        name="web",
        finding_ids=(),
        changed_paths=("/spec/rules/0/http/paths/0/backend/service/port/number",),
    )


def correlation(changes: dict[str, ChangeRef], **settings: Any) -> Detector:
    d = detector(
        "change-correlation",
        **{"min_requests": 20, "ratio": 0.1, "factor": 3.0, "window_s": 600.0, **settings},
    )
    rule = d.rules[0]
    assert isinstance(rule, ChangeCorrelation)
    rule.changes = changes.get
    return d


def test_an_error_jump_after_the_change_is_one_correlated_alert() -> None:
    d = correlation({HOST: change_ref()})
    assert feed(d, [change_record()]) == []
    assert feed(d, [host_window(i, 100, 1) for i in range(5)]) == []  # before the change
    (alert,) = feed(d, [host_window(5, 100, 40)])  # the window the change falls in
    assert alert.detection == "change-correlation"
    assert alert.labels == {"host": HOST, "ingress": "shop/web", "change": CHANGE_ID}
    assert alert.records == (CHANGE_ID, host_window(5, 0, 0)["id"])
    assert alert.actor is not None
    assert alert.actor.username == "alice"
    assert alert.actor.source_ips == ("10.0.0.9",)
    assert alert.object is not None
    assert (alert.object.resource, alert.object.name) == ("ingresses", "web")
    assert alert.change is not None
    assert alert.effect is not None
    assert alert.change["record_id"] == CHANGE_ID
    assert alert.change["actor"] == "alice"
    assert alert.change["diff"] == [
        {
            "op": "replace",
            "path": "/spec/rules/0/http/paths/0/backend/service/port/number",
            "old": 80,
            "new": 8443,
        }
    ]
    assert alert.change["finding_ids"] == ["ingress-backend-changed"]
    assert alert.effect["kind"] == "error-rate"
    assert (alert.effect["error_ratio"], alert.effect["baseline"]["error_ratio"]) == (0.4, 0.01)
    assert (
        alert.summary
        == "shop.example.com (ingress shop/web): 5xx 1.0 % -> 40.0 % of 100 requests after alice "
        "changed ingresses shop/web"
    )
    # later bad windows of the same change: no second alert
    assert firing(feed(d, [host_window(6, 100, 50), host_window(7, 100, 60)])) == []


def test_no_change_no_shift_or_too_late_no_correlated_alert() -> None:
    # errors without any change
    d = correlation({})
    assert feed(d, [host_window(i, 100, 1) for i in range(5)] + [host_window(5, 100, 40)]) == []
    # a change but the traffic stays as it was
    d = correlation({HOST: change_ref()})
    assert feed(d, [change_record(), *[host_window(i, 100, 1) for i in range(8)]]) == []
    # the jump comes after window_s has passed since the change
    d = correlation({HOST: change_ref()}, window_s=60.0)
    feed(d, [change_record(), *[host_window(i, 100, 1) for i in range(6)]])
    assert feed(d, [host_window(7, 100, 40)]) == []
    # a window that ended before the change is not "after" it
    d = correlation({HOST: change_ref(T0 + 10 * WINDOW)})
    assert feed(d, [change_record(T0 + 10 * WINDOW), host_window(3, 100, 80)]) == []
    # another host's errors
    d = correlation({HOST: change_ref()})
    assert feed(d, [change_record(), host_window(5, 100, 80, host="other.example.com", ingress=None)]) == []


def test_a_traffic_drop_or_surge_after_the_change() -> None:
    d = correlation({HOST: change_ref()})
    feed(d, [change_record(), *[host_window(i, 600, 0) for i in range(5)]])
    (alert,) = feed(d, [host_window(5, 100, 0)])
    assert alert.effect is not None
    assert alert.effect["kind"] == "traffic-drop"
    assert "requests 10.00/s -> 1.67/s (traffic drop)" in alert.summary
    d = correlation({HOST: change_ref()})
    feed(d, [change_record(), *[host_window(i, 100, 0) for i in range(5)]])
    (alert,) = feed(d, [host_window(5, 400, 0)])
    assert alert.effect is not None
    assert alert.effect["kind"] == "traffic-surge"


def test_a_change_the_rule_did_not_see_is_named_from_the_host_index() -> None:
    """After a restart the index (loaded from the state store) may know a change the rule lacks."""
    d = correlation({HOST: change_ref()})
    (alert,) = feed(d, [host_window(5, 100, 40)])
    assert alert.change is not None
    assert alert.change["actor"] == "alice"
    assert alert.change["diff"] == [
        {"op": None, "path": "/spec/rules/0/http/paths/0/backend/service/port/number"}
    ]
    assert alert.effect is not None
    assert alert.effect["baseline"] is None


def test_excepted_changes_are_not_correlated_and_secret_diffs_carry_no_values() -> None:
    d = correlation({HOST: change_ref()}, exceptions=Exceptions(users=("alice",)))
    rule = d.rules[0]
    feed(d, [change_record()])
    assert len(rule._changes) == 0  # type: ignore[attr-defined]
    secret = change_record()
    secret["object"] = {"api_group": "", "resource": "secrets", "namespace": "shop", "name": "shop-tls"}
    secret["change"] = {"operations": [{"op": "replace", "path": "/data/tls.key", "old": "x", "new": "y"}]}
    d = correlation({HOST: replace(change_ref(), resource="secrets", name="shop-tls")})
    feed(d, [secret, *[host_window(i, 100, 0) for i in range(5)]])
    (alert,) = feed(d, [host_window(5, 100, 50)])
    assert alert.change is not None
    assert alert.change["diff"] == [{"op": "replace", "path": "/data/tls.key"}]
    assert alert.change["object"]["resource"] == "secrets"


def test_changes_are_kept_only_with_access_logs_and_at_most_max_changes() -> None:
    d = detector("change-correlation")
    rule = d.rules[0]
    assert isinstance(rule, ChangeCorrelation)
    feed(d, [change_record()])
    assert len(rule._changes) == 0  # no host index: no access logs to correlate with
    rule.changes = dict[str, ChangeRef]().get
    for n in range(MAX_CHANGES + 5):
        feed(d, [{**change_record(), "id": f"change-{n}"}])
    assert len(rule._changes) == MAX_CHANGES
    assert rule._changes.get("change-0") is None  # the oldest went first


@pytest.mark.parametrize("verb", ["get", "list"])
def test_reads_are_not_changes(verb: str) -> None:
    d = correlation({})
    rule = d.rules[0]
    feed(d, [change_record(verb=verb)])
    assert len(rule._changes) == 0  # type: ignore[attr-defined]


# --- config --------------------------------------------------------------------------------------


def test_edge_rules_are_configured_under_detections() -> None:
    raw = {
        "detections": {
            "rules": {
                "edge-5xx-spike": {"min_requests": 50, "ratio": 0.2, "factor": 2.0, "severity": "critical"},
                "change-correlation": {"window_s": 120.0},
                "edge-brute-force-client": {"threshold": 5, "exceptions": {"source_cidrs": ["10.0.0.0/8"]}},
            }
        }
    }
    rules = parse_config(raw).detections.rules
    assert (rules["edge-5xx-spike"].min_requests, rules["edge-5xx-spike"].ratio) == (50, 0.2)
    assert rules["edge-5xx-spike"].severity == "critical"
    assert rules["change-correlation"].window_s == 120.0
    assert rules["change-correlation"].factor == 3.0  # the default stays
    assert rules["edge-brute-force-client"].exceptions.source_cidrs == ("10.0.0.0/8",)
    with pytest.raises(ConfigError):
        parse_config({"detections": {"rules": {"edge-5xx-spike": {"ratio": 1.5}}}})
    with pytest.raises(ConfigError):
        parse_config({"detections": {"rules": {"edge-brute-force-client": {"min_requests": 5}}}})
