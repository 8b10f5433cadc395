"""What the records say, counted with bounded labels: scenario A replayed, then /metrics read."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pytest_aiohttp import AiohttpClient

from tests.conftest import (
    captured_bodies,
    enrichment_of,
    event_list,
    make_config,
    make_event,
    post_capture,
    records_in,
    settle,
)
from webhook.config import ClusterAuth
from webhook.core.findings import CATALOG, Finding
from webhook.enrich.settings import ActorsConfig, FindingsConfig
from webhook.filter import FilterSpec, Rule
from webhook.metrics import Metrics
from webhook.pipeline.cert_expiry import CertificateExpiry
from webhook.pipeline.record_metrics import ACTOR_KINDS, AUTH_REASONS, OTHER, RESOURCES, RecordMetrics
from webhook.record.audit import Record
from webhook.record.view import RecordView
from webhook.runtime import Runtime
from webhook.server.app import create_app

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
JSON: Final = {"Content-Type": "application/json"}
WRITES: Final = ("create", "update", "patch", "delete", "deletecollection")
CLUSTER: Final = "test-cluster"  # make_config's


def samples(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def counted(found: Samples, name: str) -> Counter[frozenset[tuple[str, str]]]:
    """Non-zero samples of one counter, by label set."""
    return Counter({labels: int(v) for (n, labels), v in found.items() if n == name and v})


def labels(**pairs: str) -> frozenset[tuple[str, str]]:
    return frozenset(pairs.items())


def expected(records: list[dict[str, Any]]) -> dict[str, Counter[frozenset[tuple[str, str]]]]:
    """The counters as the records' JSON implies them (docs/operations.md)."""
    findings: Counter[frozenset[tuple[str, str]]] = Counter()
    auth: Counter[frozenset[tuple[str, str]]] = Counter()
    changes: Counter[frozenset[tuple[str, str]]] = Counter()
    untrusted: Counter[frozenset[tuple[str, str]]] = Counter()
    for record in records:
        cluster = record["cluster"]
        for finding in record["findings"]:
            findings[labels(finding=finding["id"], severity=finding["severity"], cluster=cluster)] += 1
        code = record["outcome"]["code"]
        kind = record["actor"]["user"]["kind"]
        if code in (401, 403):
            reason = {401: "unauthenticated", 403: "forbidden"}[code]
            auth[labels(reason=reason, actor_kind=kind, cluster=cluster)] += 1
            continue
        if record["verb"] not in WRITES or record["dry_run"] or (code is not None and code >= 400):
            continue
        obj = record["object"] or {}
        resource: str = obj["resource"] if obj.get("resource") in RESOURCES else OTHER
        if obj.get("subresource"):
            resource = f"{resource}/status" if obj["subresource"] == "status" and resource != OTHER else OTHER
        changes[labels(resource=resource, verb=record["verb"], actor_kind=kind)] += 1
        if any(t["trust"] == "untrusted" for t in record["actor"]["source_ip_trust"]):
            untrusted[labels(resource=resource, cluster=cluster)] += 1
    return {
        "ingress_audit_findings_total": findings,
        "ingress_audit_auth_failures_total": auth,
        "ingress_audit_changes_total": changes,
        "ingress_audit_untrusted_changes_total": untrusted,
    }


async def test_scenario_counts_match_the_records(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    """Each counter equals what the written records say; the scenario exercises each of them."""
    config = make_config(tmp_path)
    config = replace(config, actors=ActorsConfig(trusted_cidrs=("10.0.0.0/8",)))
    client = await aiohttp_client(create_app(config))
    for body in captured_bodies():
        status, _ = await post_capture(client, body)
        assert status == 200
    await settle(client)
    found = samples(await (await client.get("/metrics")).text())
    records = records_in(config)

    for name, want in expected(records).items():
        assert want, f"scenario A exercises {name}"
        assert counted(found, name) == want, name
    tls_removed = labels(finding="tls-removed", severity="high", cluster=CLUSTER)
    assert counted(found, "ingress_audit_findings_total")[tls_removed] >= 1
    assert labels(reason="unauthenticated", actor_kind="unauthenticated", cluster=CLUSTER) in counted(
        found, "ingress_audit_auth_failures_total"
    )


async def test_certificate_expiry_follows_the_tls_secrets(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """The gauge is the earliest tls.crt not-after among the live TLS Secrets the records show."""
    config = make_config(tmp_path)
    client = await aiohttp_client(create_app(config))
    for body in captured_bodies():
        await post_capture(client, body)
    await settle(client)
    found = samples(await (await client.get("/metrics")).text())
    live: dict[tuple[str, str], list[str]] = {}
    for record in records_in(config):
        obj = record["object"] or {}
        if obj.get("resource") != "secrets" or record["verb"] not in ("create", "update", "patch", "delete"):
            continue
        if record["outcome"]["code"] is not None and record["outcome"]["code"] >= 400:
            continue
        key = (obj["namespace"], obj["name"])
        certs = [
            c["not_after"] for c in (record["secret"] or {}).get("certificates", []) if c["key"] == "tls.crt"
        ]
        if record["verb"] == "delete":
            live.pop(key, None)
        elif certs:
            live[key] = certs
    soonest = min(datetime.fromisoformat(t).timestamp() for certs in live.values() for t in certs)

    assert live, "scenario A writes TLS Secrets with the request-response profile"
    assert found[("ingress_audit_certificate_expiry_soonest_timestamp_seconds", frozenset())] == soonest
    assert found[("ingress_audit_certificate_secrets_tracked", frozenset())] == len(live)


async def test_alerted_series_exist_at_zero_before_any_event(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """increase() needs a first sample: findings, auth failures and untrusted changes start at 0."""
    config = make_config(tmp_path)
    config = replace(
        config,
        findings=FindingsConfig(
            disabled=frozenset({"change-by-human"}), severity={"tls-removed": "critical"}
        ),
    )
    client = await aiohttp_client(create_app(config))
    found = samples(await (await client.get("/metrics")).text())

    findings = {
        dict(k[1])["finding"]: dict(k[1])["severity"] for k in found if k[0] == "ingress_audit_findings_total"
    }
    assert findings == {
        **{f: s for f, s in CATALOG.items() if f != "change-by-human"},
        "tls-removed": "critical",
    }
    auth = {k[1] for k in found if k[0] == "ingress_audit_auth_failures_total"}
    assert auth == {
        labels(reason=r, actor_kind=k, cluster=CLUSTER) for r in AUTH_REASONS.values() for k in ACTOR_KINDS
    }
    untrusted = {k[1] for k in found if k[0] == "ingress_audit_untrusted_changes_total"}
    assert untrusted == {labels(resource=r, cluster=CLUSTER) for r in RESOURCES}
    assert {dict(k[1])["cluster"] for k in found if k[0] == "ingress_audit_findings_total"} == {CLUSTER}
    assert ("ingress_audit_certificate_expiry_soonest_timestamp_seconds", frozenset()) not in found
    assert all(
        v == 0
        for k, v in found.items()
        if k[0].startswith(("ingress_audit_findings", "ingress_audit_auth")) and k[0].endswith("_total")
    )


@pytest.mark.parametrize(
    ("event", "name", "want"),
    [
        (
            make_event(verb="create", api_group="apps", resource="deployments", code=201),
            "ingress_audit_changes_total",
            labels(resource=OTHER, verb="create", actor_kind="user"),
        ),
        (
            make_event(
                verb="update",
                resource="ingresses",
                code=200,
                objectRef={
                    "resource": "ingresses",
                    "apiGroup": "networking.k8s.io",
                    "apiVersion": "v1",
                    "namespace": "shop",
                    "name": "web",
                    "subresource": "status",
                },
            ),
            "ingress_audit_changes_total",
            labels(resource="ingresses/status", verb="update", actor_kind="user"),
        ),
        (
            make_event(
                verb="get", resource="secrets", api_group="", code=403, username="alice", groups=("dev",)
            ),
            "ingress_audit_auth_failures_total",
            labels(reason="forbidden", actor_kind="user", cluster=CLUSTER),
        ),
    ],
    ids=["unknown-resource", "status-subresource", "forbidden"],
)
async def test_labels_stay_in_their_sets(
    aiohttp_client: AiohttpClient,
    tmp_path: Path,
    event: dict[str, Any],
    name: str,
    want: frozenset[tuple[str, str]],
) -> None:
    """Resources outside the known set count as other; names never become label values."""
    config = replace(make_config(tmp_path), filter=FilterSpec(include=(Rule(),)))
    client = await aiohttp_client(create_app(config))
    resp = await client.post("/audit", data=event_list(event), headers=JSON)
    assert resp.status == 200
    text = await (await client.get("/metrics")).text()

    assert counted(samples(text), name) == Counter({want: 1})
    for value in ("shop", "web", "alice", "admin", "deployments"):
        assert f'"{value}"' not in text


def test_unknown_finding_ids_and_severities_are_bounded() -> None:
    """A finding id outside the catalog counts as other, not as a series of its own."""
    metrics = Metrics()
    counter = RecordMetrics(metrics, clusters=("c",))
    event = make_event()
    base = Record.from_event(
        event, record_id="r", cluster="c", received_at="2026-11-24T14:20:41Z", enrichment=enrichment_of(event)
    )
    findings = (
        Finding(id="made-up-finding", severity="high", message="m"),
        Finding(id="tls-removed", severity="high", message="m"),
    )
    counter.count([RecordView(replace(base, findings=findings))])
    found = samples(generate_latest(metrics.registry).decode())

    assert counted(found, "ingress_audit_findings_total") == Counter(
        {
            labels(finding=OTHER, severity="high", cluster="c"): 1,
            labels(finding="tls-removed", severity="high", cluster="c"): 1,
        }
    )
    assert counted(found, "ingress_audit_changes_total") == Counter(
        {labels(resource="ingresses", verb="create", actor_kind="user"): 1}
    )


def test_certificate_tracker_forgets_and_stays_bounded() -> None:
    """A Secret without certificates is forgotten; beyond the cap the oldest entry goes."""
    tracker = CertificateExpiry(max_secrets=2)
    tracker.seen("a", "one", ["2027-01-01T00:00:00Z", "2026-12-01T00:00:00Z"])
    tracker.seen("a", "two", ["2028-01-01T00:00:00Z"])
    assert tracker.soonest() == datetime.fromisoformat("2026-12-01T00:00:00Z").timestamp()
    tracker.seen("a", "three", ["2029-01-01T00:00:00Z"])  # evicts "one"
    assert len(tracker) == 2
    assert tracker.soonest() == datetime.fromisoformat("2028-01-01T00:00:00Z").timestamp()
    tracker.seen("a", "two", [])
    tracker.forget("a", "three")
    assert len(tracker) == 0
    assert tracker.soonest() is None


async def test_clusters_are_labels_from_the_config(tmp_path: Path) -> None:
    """The configured cluster and those credentials are bound to get their own series (at 0 from
    the start); a record of any other cluster counts as other."""
    config = make_config(tmp_path)
    auth = replace(config.server.auth, clusters={"prod-eu": ClusterAuth(bearer_token_files=(Path("t"),))})
    config = replace(config, server=replace(config.server, auth=auth))
    runtime = await Runtime.open(config)
    try:
        before = samples(generate_latest(runtime.metrics.registry).decode())
        for cluster in (None, "prod-eu", "somewhere-else"):
            await runtime.ingestor.ingest(
                [make_event(audit_id=f"a-{cluster}", verb="create", code=201)],
                received_at="2026-11-24T14:20:41Z",
                cluster=cluster,
            )
        found = samples(generate_latest(runtime.metrics.registry).decode())
    finally:
        await runtime.aclose()

    tls = {
        (n, ls)
        for n, ls in before
        if n == "ingress_audit_findings_total" and ("finding", "tls-removed") in ls
    }
    assert {dict(ls)["cluster"] for _, ls in tls} == {CLUSTER, "prod-eu"}
    assert counted(found, "ingress_audit_records_written_total") == Counter(
        {labels(cluster=CLUSTER): 1, labels(cluster="prod-eu"): 1, labels(cluster=OTHER): 1}
    )
    assert counted(found, "ingress_audit_events_received_total") == Counter(
        {labels(cluster=CLUSTER): 1, labels(cluster="prod-eu"): 1, labels(cluster=OTHER): 1}
    )
    assert {dict(ls)["cluster"] for ls in counted(found, "ingress_audit_findings_total")} == {
        CLUSTER,
        "prod-eu",
        OTHER,
    }
