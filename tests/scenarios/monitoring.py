"""What the shipped rules and dashboard may name: the metrics a real registry exports, and the
metric names a PromQL expression selects."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson
import yaml
from prometheus_client import CollectorRegistry

from tests.paths import ROOT
from webhook.access.request_metrics import RequestMetrics
from webhook.metrics import Metrics
from webhook.pipeline.record_metrics import RecordMetrics
from webhook.sources.aks_source import AksMetrics

__all__ = [
    "DASHBOARD",
    "PROMETHEUS_NAMES",
    "RULES",
    "access_lines",
    "dashboard",
    "dashboard_exprs",
    "exported_names",
    "metric_names",
    "rule_exprs",
    "rules",
    "served_registry",
]

RULES: Final = ROOT / "config" / "prometheus-rules.yaml"
DASHBOARD: Final = ROOT / "config" / "grafana-dashboard.json"
# Series Prometheus makes itself (scrape health, alert state), not ingress-audit.
PROMETHEUS_NAMES: Final = frozenset({"up", "ALERTS"})
# Grafana's variables, as values that parse: what Grafana puts in their place.
GRAFANA_VARIABLES: Final = {"$__rate_interval": "1m", "$__range": "6h", "$__interval": "15s", "$job": ".*"}

_SUFFIXES: Final = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
}
_STRING: Final = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS: Final = re.compile(r"\{[^}]*\}")
_RANGES: Final = re.compile(r"\[[^\]]*\]")
_GROUPING: Final = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT: Final = re.compile(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?")
_KEYWORDS: Final = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "group_left", "group_right", "inf", "nan"}
)


def served_registry() -> CollectorRegistry:
    """Every metric ``serve`` can export: the kernel's, and the collectors its stages register."""
    metrics = Metrics()
    RecordMetrics(metrics, clusters=("default",))
    RequestMetrics(metrics)
    AksMetrics(metrics)
    return metrics.registry


def access_lines(requests: Sequence[tuple[int, float]], *, bad: int = 0, first: int = 0) -> bytes:
    """ingress-nginx lines (its default format), one per (status, request time), stamped now,
    each with its own request id from ``first`` on; then ``bad`` lines that do not parse."""
    now = datetime.now(UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
    lines = [
        f'203.0.113.{n % 250} - - [{now}] "GET /shop?page={n} HTTP/1.1" {status} 612 "-" "curl/8.5.0" '
        f"523 {took:.3f} [shop-web-80] [] 10.244.1.7:8080 612 {took:.3f} {status} {n:032x}"
        for n, (status, took) in enumerate(requests, start=first)
    ]
    return "\n".join([*lines, *["not an access log line"] * bad]).encode()


def exported_names(registry: CollectorRegistry) -> set[str]:
    """Every sample name the registry's metrics can export, whether or not they have a sample yet."""
    names = set()
    for family in registry.collect():
        names |= {family.name + suffix for suffix in _SUFFIXES[family.type]}
        names |= {sample.name for sample in family.samples}
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (functions, keywords and label names left out)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGES.sub("", text)
    text = _GROUPING.sub("", text)
    found = set()
    for match in _IDENT.finditer(text):
        name, call = match.groups()
        if call or name.lower() in _KEYWORDS:
            continue
        found.add(name)
    return found


def grafana_expr(expr: str) -> str:
    """The expression as Grafana sends it, its variables replaced."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, expr
    return expr


def rules(path: Path = RULES) -> list[dict[str, Any]]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    groups: list[dict[str, Any]] = doc["groups"]
    return groups


def rule_exprs() -> dict[str, str]:
    return {rule["alert"]: rule["expr"] for group in rules() for rule in group["rules"]}


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(DASHBOARD.read_bytes())
    return doc


def dashboard_exprs() -> dict[str, str]:
    """``"<panel title> / <refId>"`` → the query, its Grafana variables replaced."""
    return {
        f"{panel['title']} / {target['refId']}": grafana_expr(target["expr"])
        for panel in dashboard()["panels"]
        for target in panel.get("targets", ())
    }
