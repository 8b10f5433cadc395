"""Each detection: what fires it, what does not, the window's edges and the exceptions."""

from __future__ import annotations

from typing import Any

import pytest

from tests.detect.detect_records import T0, audit, detector
from webhook.detect.engine import Detector
from webhook.record.alert import Alert


def feed(d: Detector, records: list[dict[str, Any]], *, start: float = T0, step: float = 1.0) -> list[Alert]:
    """Observe ``records`` ``step`` seconds apart; every alert they raise."""
    alerts: list[Alert] = []
    for i, record in enumerate(records):
        alerts += d.observe(record, start + i * step)
    return alerts


def fired(alerts: list[Alert], detection: str) -> list[Alert]:
    return [a for a in alerts if a.detection == detection and a.status == "firing"]


def unauthenticated(ip: str = "10.0.0.7") -> dict[str, Any]:
    """A 401 as recorded from its ResponseStarted event: ``user: {}``, only the source IP."""
    return audit(code=401, verb="list", user=None, ips=(ip,), name=None)


# -- brute force ----------------------------------------------------------------------------------


def test_brute_force_by_source_ip_fires_at_the_threshold() -> None:
    """N 401s from one address within the window fire once, naming the address and the records."""
    d = detector({"rules": {"brute-force-source-ip": {"threshold": 3, "window_s": 60}}})
    records = [unauthenticated() for _ in range(3)]

    alerts = feed(d, records, step=10.0)

    (alert,) = fired(alerts, "brute-force-source-ip")
    assert alert.labels == {"source_ip": "10.0.0.7"}
    assert alert.count == 3
    assert alert.threshold == 3
    assert alert.records == tuple(r["id"] for r in records)
    assert alert.actor is not None
    assert alert.actor.username is None
    assert alert.actor.source_ips == ("10.0.0.7",)
    assert alert.severity == "high"
    assert not fired(feed(d, [unauthenticated()], start=T0 + 25), "brute-force-source-ip")  # no re-fire


def test_brute_force_by_source_ip_window_edges() -> None:
    """The first and last failure must be less than window_s apart: at exactly window_s, no alert."""
    rules = {"rules": {"brute-force-source-ip": {"threshold": 3, "window_s": 60}}}
    late = detector(rules)
    assert not feed(late, [unauthenticated() for _ in range(3)], step=30.0)  # 0, 30, 60

    just_in = detector(rules)
    assert fired(feed(just_in, [unauthenticated() for _ in range(3)], step=29.999), "brute-force-source-ip")


def test_brute_force_by_source_ip_counts_each_address_apart() -> None:
    """Failures spread over addresses do not add up; 403s and successes do not count."""
    d = detector({"rules": {"brute-force-source-ip": {"threshold": 3}}})
    records = [unauthenticated("10.0.0.1"), unauthenticated("10.0.0.2"), unauthenticated("10.0.0.3")]
    records += [audit(code=403, ips=("10.0.0.1",)), audit(code=200, ips=("10.0.0.1",))]

    assert not fired(feed(d, records), "brute-force-source-ip")


def test_brute_force_by_source_ip_exception_by_cidr() -> None:
    """An address inside an exception network is not counted."""
    d = detector(
        {"rules": {"brute-force-source-ip": {"threshold": 2, "exceptions": {"source_cidrs": ["10.0.0.0/8"]}}}}
    )

    assert not feed(d, [unauthenticated("10.1.2.3") for _ in range(5)])
    assert fired(feed(d, [unauthenticated("192.0.2.1") for _ in range(2)]), "brute-force-source-ip")


def test_brute_force_by_user_fires_on_403s_of_the_effective_identity() -> None:
    """403s for alice, directly or while admin impersonates her, count for alice."""
    d = detector({"rules": {"brute-force-user": {"threshold": 3, "window_s": 60}}})
    records = [
        audit(code=403, user="alice", verb="get", resource="secrets", api_group="", name="db"),
        audit(code=403, user="admin", impersonated="alice", verb="get"),
        audit(code=403, user="alice", verb="create"),
    ]

    (alert,) = fired(feed(d, records), "brute-force-user")

    assert alert.labels == {"user": "alice"}
    assert alert.count == 3
    assert alert.actor is not None
    assert alert.actor.username == "alice"


def test_brute_force_by_user_negative_and_window() -> None:
    """Different users, 401s and 403s further apart than the window raise nothing."""
    d = detector({"rules": {"brute-force-user": {"threshold": 2, "window_s": 60}}})
    assert not feed(d, [audit(code=403, user="alice"), audit(code=403, user="bob"), unauthenticated()])
    assert not feed(d, [audit(code=403, user="carol"), audit(code=403, user="carol")], start=T0, step=60.0)


def test_brute_force_by_user_exception_by_user_and_group() -> None:
    """Exceptions match the authenticated caller by name or group (shell patterns)."""
    d = detector(
        {
            "exceptions": {"groups": ["ci-*"]},
            "rules": {
                "brute-force-user": {"threshold": 2, "exceptions": {"users": ["system:serviceaccount:*"]}}
            },
        }
    )
    robot = "system:serviceaccount:shop:builder"
    records = [audit(code=403, user=robot) for _ in range(3)]
    records += [audit(code=403, user="dave", groups=("ci-runners",)) for _ in range(3)]

    assert not feed(d, records)
    assert fired(feed(d, [audit(code=403, user="erin") for _ in range(2)]), "brute-force-user")


# -- secret enumeration ---------------------------------------------------------------------------


def secret_get(user: str, name: str, namespace: str = "shop", code: int = 200) -> dict[str, Any]:
    return audit(
        code=code, verb="get", user=user, api_group="", resource="secrets", namespace=namespace, name=name
    )


def secret_list(user: str, namespace: str | None, names: tuple[str, ...] = ()) -> dict[str, Any]:
    listed = {"count": len(names), "names": list(names), "truncated": False}
    return audit(
        verb="list",
        user=user,
        api_group="",
        resource="secrets",
        namespace=namespace,
        name=None,
        secret_list=listed,
    )


def test_secret_enumeration_counts_distinct_secrets() -> None:
    """Reading the same Secret again does not count; N distinct Secrets fire."""
    d = detector({"rules": {"secret-enumeration": {"threshold": 3, "window_s": 300}}})
    assert not feed(d, [secret_get("mallory", "a") for _ in range(10)])

    (alert,) = fired(
        feed(d, [secret_get("mallory", n) for n in ("b", "c")], start=T0 + 20), "secret-enumeration"
    )

    assert alert.labels == {"user": "mallory"}
    assert alert.count == 3


def test_secret_enumeration_counts_the_names_a_list_returned() -> None:
    """A list in one namespace that returned N Secrets is N Secrets read."""
    d = detector({"rules": {"secret-enumeration": {"threshold": 3}}})

    alerts = feed(d, [secret_list("mallory", "shop", ("shop/a", "shop/b", "shop/c"))])

    assert fired(alerts, "secret-enumeration")


def test_secret_enumeration_lists_across_namespaces() -> None:
    """Lists in namespace_threshold namespaces fire; a list across all namespaces fires alone."""
    d = detector({"rules": {"secret-enumeration": {"threshold": 50, "namespace_threshold": 3}}})
    assert not feed(d, [secret_list("mallory", ns) for ns in ("a", "b")])
    assert fired(feed(d, [secret_list("mallory", "c")], start=T0 + 5), "secret-enumeration")

    assert fired(feed(detector(), [secret_list("eve", None)]), "secret-enumeration")


def test_secret_enumeration_negative() -> None:
    """Denied reads, reads by different users, other resources and the apiserver do not count."""
    d = detector({"rules": {"secret-enumeration": {"threshold": 2}}})
    records = [secret_get("mallory", "a", code=403), secret_get("mallory", "b", code=403)]
    records += [secret_get("u1", "a"), secret_get("u2", "b")]
    records += [audit(verb="get", user="u3", name="x"), audit(verb="get", user="u3", name="y")]
    records += [secret_list("system:apiserver", None)]

    assert not fired(feed(d, records), "secret-enumeration")


def test_secret_enumeration_window_edge() -> None:
    """Distinct reads further apart than the window do not add up."""
    d = detector({"rules": {"secret-enumeration": {"threshold": 2, "window_s": 100}}})

    assert not feed(d, [secret_get("mallory", "a"), secret_get("mallory", "b")], step=100.0)


# -- untrusted source -----------------------------------------------------------------------------


def test_untrusted_source_change_fires_for_a_change_from_outside() -> None:
    """With trusted_cidrs set, a successful change from an untrusted address fires at once."""
    d = detector(trusted_cidrs=("10.0.0.0/8",))

    (alert,) = fired(
        feed(d, [audit(verb="patch", ips=("203.0.113.9",), trust="untrusted")]), "untrusted-source-change"
    )

    assert alert.labels == {"source_ip": "203.0.113.9"}
    assert alert.object is not None
    assert alert.object.name == "shop-web"


@pytest.mark.parametrize(
    "record",
    [
        audit(verb="patch", ips=("10.1.1.1",), trust="trusted"),
        audit(verb="get", ips=("203.0.113.9",), trust="untrusted"),
        audit(verb="patch", code=403, ips=("203.0.113.9",), trust="untrusted"),
        audit(verb="patch", ips=("203.0.113.9",), trust="untrusted", dry_run=True),
    ],
    ids=["trusted", "a-read", "refused", "dry-run"],
)
def test_untrusted_source_change_negative(record: dict[str, Any]) -> None:
    """Trusted addresses, reads, refused changes and dry runs raise nothing."""
    assert not feed(detector(trusted_cidrs=("10.0.0.0/8",)), [record])


def test_untrusted_source_change_needs_trusted_cidrs() -> None:
    """Without trusted networks every address is unknown: the rule does not run."""
    d = detector()
    assert "untrusted-source-change" not in {r.id for r in d.rules}


def test_the_untrusted_source_finding_is_not_alerted_twice() -> None:
    """When untrusted-source-change runs, the untrusted-source-ip finding raises no second alert."""
    record = audit(ips=("203.0.113.9",), trust="untrusted", findings=(("untrusted-source-ip", "high"),))

    alerts = feed(detector(trusted_cidrs=("10.0.0.0/8",)), [record])

    assert [a.detection for a in alerts] == ["untrusted-source-change"]


# -- drift ----------------------------------------------------------------------------------------

GITOPS = {"deployment_identities": {"service_accounts": ["argocd/argocd-*"], "groups": ["ci"]}}


@pytest.mark.parametrize(
    "record",
    [
        audit(verb="patch", resource="ingresses"),
        audit(verb="create", resource="ingressclasses", namespace=None, name="nginx"),
        audit(verb="delete", api_group="gateway.networking.k8s.io", resource="gateways", name="gw"),
        audit(
            verb="update", api_group="", resource="secrets", name="tls", secret={"type": "kubernetes.io/tls"}
        ),
        audit(verb="update", api_group="", resource="configmaps", namespace="kube-system", name="coredns"),
    ],
    ids=["ingress", "ingressclass", "gateway", "tls-secret", "coredns"],
)
def test_drift_identity_fires_for_a_change_by_someone_else(record: dict[str, Any]) -> None:
    """A change to an ingress object by a non-deployment identity fires, keyed by user and object."""
    (alert,) = fired(feed(detector(GITOPS), [record]), "drift-identity")

    assert alert.labels["user"] == "admin"
    assert alert.labels["resource"] == record["object"]["resource"]


@pytest.mark.parametrize(
    "record",
    [
        audit(user="system:serviceaccount:argocd:argocd-application-controller"),
        audit(user="jenkins", groups=("ci",)),
        audit(verb="get"),
        audit(api_group="", resource="secrets", name="db", secret={"type": "Opaque"}),
        audit(api_group="", resource="configmaps", namespace="shop", name="coredns"),
        audit(code=403),
    ],
    ids=["gitops-sa", "ci-group", "read", "opaque-secret", "other-configmap", "refused"],
)
def test_drift_identity_negative(record: dict[str, Any]) -> None:
    """Deployment identities, reads, other objects and refused changes raise nothing."""
    assert not fired(feed(detector(GITOPS), [record]), "drift-identity")


def test_drift_identity_impersonating_the_deployer_is_still_drift() -> None:
    """admin acting as the GitOps service account is not the GitOps service account."""
    record = audit(impersonated="system:serviceaccount:argocd:argocd-server")

    assert fired(feed(detector(GITOPS), [record]), "drift-identity")


def test_drift_rules_do_not_run_unconfigured() -> None:
    """Without deployment identities or change windows, the drift rules stay off."""
    ids = {rule.id for rule in detector().rules}
    assert not ids & {"drift-identity", "drift-change-window"}


WINDOW = {"change_windows": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00"}]}


@pytest.mark.parametrize(
    ("time", "fires"),
    [
        ("2026-11-24T08:59:59Z", True),  # Tuesday, a second early
        ("2026-11-24T09:00:00Z", False),
        ("2026-11-24T16:59:59Z", False),
        ("2026-11-24T17:00:00Z", True),  # the end is exclusive
        ("2026-11-28T12:00:00Z", True),  # Saturday
    ],
)
def test_drift_change_window_edges(time: str, fires: bool) -> None:
    """A change outside every window (by its own event time) fires; start inclusive, end exclusive."""
    alerts = feed(detector(WINDOW), [audit(time=time)])

    assert bool(fired(alerts, "drift-change-window")) is fires


def test_change_window_in_a_time_zone_and_past_midnight() -> None:
    """Windows are local time in their zone; an end before the start runs into the next day."""
    night = {
        "change_windows": [{"days": ["fri"], "start": "22:00", "end": "02:00", "timezone": "Europe/Berlin"}]
    }
    # Friday 2026-11-27 22:30 in Berlin is 21:30 UTC; Saturday 01:30 Berlin is Friday 00:30 UTC
    inside = [audit(time="2026-11-27T21:30:00Z"), audit(time="2026-11-28T00:30:00Z")]
    outside = [audit(time="2026-11-27T20:30:00Z"), audit(time="2026-11-28T01:00:00Z")]

    assert not feed(detector(night), inside)
    assert len(fired(feed(detector(night), outside), "drift-change-window")) == 1  # one key: same object


# -- bursts ---------------------------------------------------------------------------------------


def test_ingress_change_burst_counts_changes_across_the_cluster() -> None:
    """N changes to ingress objects (any namespace, user, kind) within the window fire one alert."""
    d = detector({"rules": {"ingress-change-burst": {"threshold": 4, "window_s": 60}}})
    records = [
        audit(namespace="a"),
        audit(namespace="b", user="bob"),
        audit(api_group="gateway.networking.k8s.io", resource="httproutes"),
        audit(verb="delete", resource="ingressclasses", namespace=None),
    ]

    (alert,) = fired(feed(d, records, step=15.0), "ingress-change-burst")

    assert alert.labels == {}
    assert alert.count == 4
    assert alert.severity == "medium"


def test_ingress_change_burst_negative_and_edge() -> None:
    """Reads, other resources and changes spread wider than the window do not fire."""
    d = detector({"rules": {"ingress-change-burst": {"threshold": 3, "window_s": 60}}})
    assert not feed(d, [audit(verb="get"), audit(verb="list"), audit(api_group="", resource="configmaps")])
    assert not feed(d, [audit(), audit(), audit()], start=T0 + 1000, step=30.0)


# -- findings -------------------------------------------------------------------------------------


def test_high_severity_findings_fire_with_their_own_severity() -> None:
    """Each finding at or above the minimum fires once per finding and object; lower ones do not."""
    d = detector()
    record = audit(
        findings=(("tls-removed", "high"), ("change-by-anonymous", "critical"), ("wildcard-host", "medium"))
    )

    alerts = fired(feed(d, [record]), "high-severity-finding")

    assert {(a.labels["finding"], a.severity) for a in alerts} == {
        ("tls-removed", "high"),
        ("change-by-anonymous", "critical"),
    }
    tls = next(a for a in alerts if a.labels["finding"] == "tls-removed")
    assert tls.labels == {
        "finding": "tls-removed",
        "resource": "ingresses",
        "namespace": "shop",
        "name": "shop-web",
    }
    assert tls.records == (record["id"],)


def test_findings_min_severity_is_configurable() -> None:
    """findings_min_severity: medium also alerts medium findings; critical only critical ones."""
    record = audit(findings=(("wildcard-host", "medium"), ("tls-removed", "high")))

    medium = fired(feed(detector({"findings_min_severity": "medium"}), [record]), "high-severity-finding")
    critical = fired(feed(detector({"findings_min_severity": "critical"}), [record]), "high-severity-finding")

    assert len(medium) == 2
    assert critical == []


def test_a_disabled_rule_does_not_run() -> None:
    """enabled: false removes a rule; detections.enabled: false removes them all."""
    assert "brute-force-user" not in {
        r.id for r in detector({"rules": {"brute-force-user": {"enabled": False}}}).rules
    }
    assert detector({"enabled": False}).rules == []


def test_namespace_exceptions_apply_to_every_rule() -> None:
    """A namespace listed in detections.exceptions is ignored by all detections."""
    d = detector({"exceptions": {"namespaces": ["sandbox-*"]}})
    record = audit(namespace="sandbox-1", findings=(("tls-removed", "high"),))

    assert not feed(d, [record])
