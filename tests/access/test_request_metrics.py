"""Per-ingress request metrics: status classes, 401/403, the latency histogram, and their bound."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.access.access_lines import T0, ingress_object, nginx_line, pipeline
from tests.sources.test_access_http import NDJSON, access_config, fluent_bit
from webhook.access.hosts import HostIndex
from webhook.access.request_metrics import LATENCY_BOUNDS, RequestMetrics
from webhook.access.service import DROP_REASONS
from webhook.access.settings import AccessConfig
from webhook.metrics import Metrics
from webhook.server.app import create_app
from webhook.state.base import StoredObject

LATENCY = "ingress_audit_access_request_duration_seconds"


def counted(config: AccessConfig | None = None, index: HostIndex | None = None, *lines: bytes) -> Metrics:
    """The metrics after one batch through a pipeline, as the service counts them."""
    p = pipeline(config, index)
    p.process(list(lines), input="http", received_at="x", now=T0 + 60)
    metrics = Metrics()
    requests = RequestMetrics(metrics)
    for ingress, slots in p.take_request_counts().items():
        requests.observe(ingress, slots)
    return metrics


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def index_of(count: int) -> HostIndex:
    """``count`` Ingresses shop/web0… each with its own Service (upstream ``shop-webN-80``)."""
    index = HostIndex()
    index.load(
        {
            f"networking.k8s.io/ingresses/shop/web{i}": StoredObject(
                object=ingress_object(f"web{i}", host=f"web{i}.example.com", service=f"web{i}"),
                resource_version="1",
                audit_id="a",
                time=None,
            )
            for i in range(count)
        }
    )
    return index


def test_status_classes_auth_failures_and_latency_per_ingress() -> None:
    """401 and 403 are counted apart (and in 4xx); request times land in their buckets."""
    lines = [
        nginx_line(status=200, took=0.012, req_id="1" * 32),
        nginx_line(status=200, took=0.7, req_id="2" * 32),
        nginx_line(status=401, took=0.001, req_id="3" * 32),
        nginx_line(status=401, took=0.001, req_id="4" * 32),
        nginx_line(status=403, took=0.001, req_id="5" * 32),
        nginx_line(status=503, took=45.0, req_id="6" * 32),
    ]
    metrics = counted(None, None, *lines)
    requests = "ingress_audit_access_requests_total"
    auth = "ingress_audit_access_auth_failures_total"

    assert value(metrics, requests, ingress="shop/web", status_class="2xx") == 2
    assert value(metrics, requests, ingress="shop/web", status_class="4xx") == 3
    assert value(metrics, requests, ingress="shop/web", status_class="5xx") == 1
    assert value(metrics, auth, ingress="shop/web", status="401") == 2
    assert value(metrics, auth, ingress="shop/web", status="403") == 1
    bucket = LATENCY + "_bucket"
    assert value(metrics, bucket, ingress="shop/web", le="0.005") == 3
    assert value(metrics, bucket, ingress="shop/web", le="0.025") == 4
    assert value(metrics, bucket, ingress="shop/web", le="0.5") == 4
    assert value(metrics, bucket, ingress="shop/web", le="1.0") == 5
    assert value(metrics, bucket, ingress="shop/web", le="30.0") == 5
    assert value(metrics, bucket, ingress="shop/web", le="+Inf") == 6
    assert value(metrics, LATENCY + "_count", ingress="shop/web") == 6
    assert abs((value(metrics, LATENCY + "_sum", ingress="shop/web") or 0) - 45.715) < 1e-9


def test_an_ingress_has_every_status_series_from_its_first_line() -> None:
    """A series born with a burst hides it from ``increase()``: they all start at 0 instead."""
    metrics = counted(None, None, nginx_line(status=200, took=0.01, req_id="1" * 32))
    requests = "ingress_audit_access_requests_total"
    auth = "ingress_audit_access_auth_failures_total"

    assert value(metrics, requests, ingress="shop/web", status_class="2xx") == 1
    for status_class in ("1xx", "3xx", "4xx", "5xx"):
        assert value(metrics, requests, ingress="shop/web", status_class=status_class) == 0
    assert value(metrics, auth, ingress="shop/web", status="401") == 0
    assert value(metrics, auth, ingress="shop/web", status="403") == 0


def test_a_format_without_request_time_has_no_latency_series() -> None:
    """``combined`` logs no request time: requests are counted, no histogram is made up."""
    config = AccessConfig(enabled=True, format="combined")
    line = b'203.0.113.7 - - [25/Nov/2026:21:00:00 +0000] "GET / HTTP/1.1" 401 12 "-" "curl/8.5.0"'
    metrics = counted(config, None, line)

    assert value(metrics, "ingress_audit_access_auth_failures_total", ingress="none", status="401") == 1
    assert value(metrics, LATENCY + "_count", ingress="none") is None


def test_labels_stay_bounded_whatever_the_traffic() -> None:
    """Five ingresses with max_metric_ingresses 2, 2,000 clients, 500 hosts: the series are
    the first two names seen, ``other`` and ``none``; no client, host or path is a label value."""
    config = AccessConfig(enabled=True, max_metric_ingresses=2)
    lines = [
        nginx_line(
            addr=f"198.51.{i // 250}.{i % 250}",
            request=f"GET /u/{i} HTTP/1.1",
            status=(200, 401, 403, 500, 302)[i % 5],
            upstream=f"[shop-web{i % 5}-80]" if i % 7 else f"[host-{i % 500}-80]",
            took=(i % 97) / 10,
            req_id=f"{i:032x}",
        )
        for i in range(2000)
    ]
    metrics = counted(config, index_of(5), *lines)

    seen: dict[str, set[str]] = {}
    series = 0
    for family in metrics.registry.collect():
        if not family.name.startswith("ingress_audit_access_"):
            continue
        for sample in family.samples:
            series += 1
            for label, text in sample.labels.items():
                seen.setdefault(label, set()).add(text)
    assert seen["ingress"] == {"shop/web1", "shop/web2", "other", "none"}  # line 0 is not an ingress
    assert seen["status"] == {"401", "403"}
    assert seen["status_class"] <= {"1xx", "2xx", "3xx", "4xx", "5xx", "other"}
    per_ingress = 6 + 2 + (len(LATENCY_BOUNDS) + 1) + 2  # classes, 401/403, buckets, sum, count
    assert series <= 4 * per_ingress + 40  # + the counters without an ingress label


def test_an_ingress_keeps_its_label_across_batches() -> None:
    """The first ingresses seen keep their names; one seen later is ``other`` from then on."""
    config = AccessConfig(enabled=True, max_metric_ingresses=1)
    p = pipeline(config, index_of(2))
    labels: list[set[str]] = []
    for upstream in ("[shop-web1-80]", "[shop-web0-80]", "[shop-web1-80]"):
        p.process([nginx_line(upstream=upstream)], input="http", received_at="x", now=T0 + 60)
        labels.append(set(p.take_request_counts()))
    assert labels == [{"shop/web1"}, {"other"}, {"shop/web1"}]


async def test_served_metrics_after_posting_access_lines(aiohttp_client: Any, tmp_path: Path) -> None:
    """Through ``POST /ingest/access``: the new series are on /metrics, and the drop reasons
    are there at 0 before anything is dropped (so an alert's increase() sees the first)."""
    config = access_config(tmp_path)
    client = await aiohttp_client(create_app(config))
    before = await (await client.get("/metrics")).text()
    for reason in DROP_REASONS:
        assert f'ingress_audit_access_records_dropped_total{{reason="{reason}"}} 0.0' in before
    assert "# TYPE ingress_audit_access_request_duration_seconds histogram" in before

    body = fluent_bit(*(nginx_line(status=s, req_id=f"{i:032x}") for i, s in enumerate([200, 401, 403])))
    resp = await client.post("/ingest/access", data=body, headers=NDJSON)
    assert resp.status == 200
    text = await (await client.get("/metrics")).text()

    assert 'ingress_audit_access_auth_failures_total{ingress="none",status="401"} 1.0' in text
    assert 'ingress_audit_access_auth_failures_total{ingress="none",status="403"} 1.0' in text
    assert 'ingress_audit_access_request_duration_seconds_bucket{ingress="none",le="0.025"} 3.0' in text
    assert 'ingress_audit_access_request_duration_seconds_count{ingress="none"} 3.0' in text
    assert "203.0.113.7" not in text
