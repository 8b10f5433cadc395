"""The shipped Prometheus rules and Grafana dashboard: promtool checks and unit tests, copies in
manifests/ kept equal, and only metrics that ingress-audit exports."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

import pytest
import yaml
from pytest_aiohttp import AiohttpClient

from tests.conftest import captured_bodies, make_config, post_capture, settle
from tests.paths import ROOT
from tests.scenarios.monitoring import (
    DASHBOARD,
    PROMETHEUS_NAMES,
    RULES,
    access_lines,
    dashboard,
    dashboard_exprs,
    exported_names,
    grafana_expr,
    metric_names,
    rule_exprs,
    rules,
    served_registry,
)
from tests.servers import require_binary
from webhook.access.settings import AccessConfig, AccessSyslogConfig
from webhook.server.app import METRICS, create_app

COMPONENT: Final = ROOT / "manifests" / "components" / "monitoring"
RULES_TEST: Final = ROOT / "tests" / "prometheus" / "rules-test.yaml"
KUBE_STATE_METRICS: Final = frozenset({"kube_pod_status_ready"})
SECURITY_ALERTS: Final = frozenset(
    {
        "IngressAuditBruteForce",
        "IngressAuditUntrustedChange",
        "IngressAuditTlsRemoved",
        "IngressAuditCertificateExpiringSoon",
        "IngressAuditCertificateExpired",
    }
)
# Access lines for the live-app check: every status class the edge panels split, 401 and
# 403, and request times in several buckets.
EVERY_CLASS: Final = ((200, 0.004), (301, 0.02), (401, 0.001), (403, 0.001), (404, 0.3), (503, 2.0))
# What a security engineer and an operator look for, as words of the panel titles.
PANELS: Final = (
    "changes by resource",
    "changes by actor kind",
    "authentication and authorization failures",
    "findings by severity",
    "firing alerts",
    "detection alerts",
    "sink lag",
    "spool usage",
    "request latency",
    "dead letters",
    "edge requests by ingress and status class",
    "edge 4xx and 5xx ratio",
    "edge 401 and 403",
    "edge latency",
    "unparseable access lines",
    "dropped syslog records",
    "edge detection alerts",
)


def promtool() -> str:
    return require_binary("/usr/bin/promtool", "prometheus")


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def exported() -> set[str]:
    """The names a fresh registry can export; the live app's are checked against these below."""
    return exported_names(served_registry())


def test_rules_pass_promtool_check() -> None:
    """promtool accepts config/prometheus-rules.yaml and the PrometheusRule's groups."""
    done = run(promtool(), "check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_rules_unit_tests_pass() -> None:
    """tests/prometheus/rules-test.yaml: each alert fires on its signal and stays quiet below it."""
    done = run(promtool(), "test", "rules", str(RULES_TEST))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_firing_unit_test() -> None:
    """No alert ships without a promtool case in which it fires."""
    doc = yaml.safe_load(RULES_TEST.read_text())
    fired = {
        case["alertname"]
        for test in doc["tests"]
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert fired == set(rule_exprs())
    assert set(rule_exprs()) >= SECURITY_ALERTS


def test_unit_tests_catch_a_broken_threshold(tmp_path: Path) -> None:
    """The unit tests fail when the brute-force threshold is raised: they test something."""
    broken = RULES.read_text().replace(
        '{reason="unauthenticated"}[2m])) >= 10', '{reason="unauthenticated"}[2m])) >= 1000'
    )
    assert broken != RULES.read_text()
    (tmp_path / "config").mkdir()
    (tmp_path / "tests" / "prometheus").mkdir(parents=True)
    (tmp_path / "config" / RULES.name).write_text(broken)
    (tmp_path / "tests" / "prometheus" / RULES_TEST.name).write_text(RULES_TEST.read_text())
    done = run(promtool(), "test", "rules", str(tmp_path / "tests" / "prometheus" / RULES_TEST.name))
    assert done.returncode != 0
    assert "IngressAuditBruteForce" in done.stdout + done.stderr


def test_manifest_copies_are_current() -> None:
    """The PrometheusRule holds the same groups as the rules file, the component the same dashboard."""
    done = run(sys.executable, str(ROOT / "scripts" / "sync-monitoring.py"), "--check")
    assert done.returncode == 0, "run scripts/sync-monitoring.py: " + done.stderr
    rule = yaml.safe_load((COMPONENT / "prometheusrule.yaml").read_text())
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"]["groups"] == rules()
    assert (COMPONENT / "grafana-dashboard.json").read_bytes() == DASHBOARD.read_bytes()


def test_sync_script_writes_stale_copies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--check reports a stale copy; without it the script rewrites the copy."""
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    import importlib

    sync: Any = importlib.import_module("sync-monitoring")
    monkeypatch.setattr(sync, "COMPONENT", tmp_path)
    assert sync.main(["--check"]) == 1
    assert sync.main([]) == 0
    assert sync.main(["--check"]) == 0
    assert yaml.safe_load((tmp_path / "prometheusrule.yaml").read_text())["spec"]["groups"] == rules()


def test_every_metric_is_documented() -> None:
    """docs/ names every metric a registry exports, as Prometheus sees it (operations.md, or
    the page of the feature, such as access-logs.md)."""
    text = "".join(path.read_text() for path in sorted((ROOT / "docs").glob("*.md")))
    suffix = {"counter": "_total", "gauge": "", "histogram": ""}
    for family in served_registry().collect():
        assert f"`{family.name}{suffix[family.type]}`" in text, family.name


def test_rules_name_only_exported_metrics(exported: set[str]) -> None:
    """Every metric a rule selects is ours, or made by Prometheus or kube-state-metrics."""
    for alert, expr in rule_exprs().items():
        names = metric_names(expr)
        assert names, alert
        assert names <= exported | PROMETHEUS_NAMES | KUBE_STATE_METRICS, (alert, names - exported)


def test_metric_names_reads_promql() -> None:
    """The name extraction skips functions, label names, strings, durations and keywords."""
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(a_bucket{job=~"$x", code="5.."}[5m])))'
        ' / on (instance) group_left b_total offset 5m > bool 1 and c unless d{e="f(g)"}'
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c", "d"}
    assert metric_names('ALERTS{alertname=~"IngressAudit.*"}') == {"ALERTS"}


def test_dashboard_structure() -> None:
    """Unique panel ids inside a 24-column grid, no overlap, every query on the datasource variable."""
    doc = dashboard()
    panels = doc["panels"]
    variables = {v["name"]: v for v in doc["templating"]["list"]}

    assert doc["uid"] == "ingress-audit"
    assert 36 <= doc["schemaVersion"] <= 41
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] < grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["description"], panel["title"]
        targets = panel["targets"]
        assert targets, panel["title"]
        assert len({t["refId"] for t in targets}) == len(targets)
        for target in targets:
            assert target["datasource"] == panel["datasource"]
            assert target["expr"].strip()
    titles = " | ".join(p["title"].lower() for p in panels)
    for words in PANELS:
        assert words in titles, words


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    """promtool parses every dashboard query (as a recording rule), its variables replaced."""
    exprs = dashboard_exprs()
    group = {
        "name": "dashboard",
        "rules": [{"record": f"dashboard:q{i}", "expr": e} for i, e in enumerate(exprs.values())],
    }
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [group]}))

    done = run(promtool(), "check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(exprs)} rules found" in done.stdout


def test_dashboard_queries_name_only_exported_metrics(exported: set[str]) -> None:
    """Every metric a panel queries is one ingress-audit exports (or Prometheus' ALERTS)."""
    used: set[str] = set()
    for where, expr in dashboard_exprs().items():
        names = metric_names(expr)
        assert names, where
        assert names <= exported | PROMETHEUS_NAMES, (where, names - exported)
        used |= names
    for suffix in ("_bucket", "_total"):
        assert any(n.endswith(suffix) for n in used)


def test_grafana_variables_are_replaced() -> None:
    """A query keeps no Grafana variable the parse test does not know."""
    with pytest.raises(AssertionError):
        grafana_expr("rate(x[$__unknown])")


async def test_a_running_app_exports_what_the_checks_assume(
    aiohttp_client: AiohttpClient, tmp_path: Path, exported: set[str]
) -> None:
    """After scenario A and a body of access lines, every sample the app exports is in the set
    the checks above use, and the metrics the panels and alerts watch have samples."""
    syslog_off = AccessSyslogConfig(udp=None, tcp=None)
    config = replace(make_config(tmp_path), access=AccessConfig(enabled=True, syslog=syslog_off))
    app = create_app(config)
    client = await aiohttp_client(app)
    for body in captured_bodies():
        await post_capture(client, body)
    await settle(client)
    await client.post("/audit", data=b"{", headers={"Content-Type": "application/json"})  # a reject
    access = await client.post(
        "/ingest/access", data=access_lines(EVERY_CLASS, bad=1), headers={"Content-Type": "text/plain"}
    )
    assert access.status == 200
    assert (await access.json())["dead_lettered"] == 1
    await (await client.get("/metrics")).read()
    registry = app[METRICS].registry
    samples = {s.name for family in registry.collect() for s in family.samples}

    assert samples <= exported
    watched = set().union(
        *(metric_names(e) for e in rule_exprs().values()), *map(metric_names, dashboard_exprs().values())
    )
    missing = {n for n in watched - PROMETHEUS_NAMES - KUBE_STATE_METRICS if n not in samples}
    # Nothing in scenario A fails a sink, fills the spool or raises a detection alert.
    assert missing <= {
        "ingress_audit_spool_dropped_records_total",
        "ingress_audit_sink_failures_total",
        "ingress_audit_alerts_total",
    }, missing
