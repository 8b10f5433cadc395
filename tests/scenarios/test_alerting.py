"""End to end: a real Prometheus scrapes a running ``ingress-audit serve``, evaluates the shipped
rules, and fires the brute-force and TLS-removal alerts seconds after the events arrive, and the
edge 401/403 alert seconds after access lines are posted."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest
import yaml

from tests.conftest import (
    capture_bytes,
    capture_events,
    capture_headers,
    capture_path,
    captured_bodies,
    event_list,
)
from tests.scenarios.monitoring import RULES, access_lines, dashboard_exprs
from tests.servers import Prometheus, Serve, free_port, running_prometheus

ALERT_TIMEOUT_S: Final = 30.0
JSON: Final = {"Content-Type": "application/json"}


def write_config(directory: Path, port: int, *, access: bool = False) -> Path:
    raw: dict[str, Any] = {
        "cluster": "alerting",
        "data_dir": str(directory / "data"),
        "server": {"host": "127.0.0.1", "port": port, "shutdown_timeout_s": 5},
        "log": {"level": "warning"},
    }
    if access:  # POST /ingest/access only: the syslog listeners would need ports of their own
        raw["access"] = {"enabled": True, "syslog": {"udp": None, "tcp": None}}
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def brute_force(attempts: int) -> bytes:
    """The scenario's one 401 (a kubectl call without credentials), repeated as separate requests."""
    (failed,) = [e for e in capture_events("0032.json") if e.get("responseStatus", {}).get("code") == 401]
    return event_list(*({**failed, "auditID": str(uuid.uuid4())} for _ in range(attempts)))


async def wait_for(prometheus: Prometheus, session: aiohttp.ClientSession, check: Any, what: str) -> Any:
    deadline = time.monotonic() + ALERT_TIMEOUT_S
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}: not within {ALERT_TIMEOUT_S} s"
        await asyncio.sleep(0.25)


def serving(directory: Path, *, access: bool) -> Iterator[Serve]:
    port = free_port()
    server = Serve(write_config(directory, port, access=access), port)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    yield from serving(tmp_path, access=False)


@pytest.fixture
def serve_access(tmp_path: Path) -> Iterator[Serve]:
    yield from serving(tmp_path, access=True)


async def test_brute_force_and_tls_removal_fire_within_seconds(serve: Serve) -> None:
    """Scenario A (which removes an Ingress's TLS) and 12 failed logins: both alerts fire, the
    dashboard's queries evaluate, and its security panels show the events."""
    with running_prometheus([f"127.0.0.1:{serve.port}"], [RULES]) as prometheus:
        async with aiohttp.ClientSession() as session:

            async def scraped_at_zero() -> bool:
                result = await prometheus.query(
                    session, 'ingress_audit_findings_total{finding="tls-removed"}'
                )
                return bool(result) and float(result[0]["value"][1]) == 0

            await wait_for(prometheus, session, scraped_at_zero, "a first scrape")
            assert await prometheus.firing(session) == {}

            started = time.monotonic()
            for body in captured_bodies():
                async with session.post(
                    serve.url + capture_path(body), data=capture_bytes(body), headers=capture_headers(body)
                ) as resp:
                    assert resp.status == 200
            async with session.post(serve.url + "/audit", data=brute_force(11), headers=JSON) as resp:
                assert resp.status == 200

            async def both_firing() -> dict[str, Any]:
                firing = await prometheus.firing(session)
                return firing if {"IngressAuditBruteForce", "IngressAuditTlsRemoved"} <= set(firing) else {}

            firing = await wait_for(prometheus, session, both_firing, "brute-force and TLS-removal alerts")
            elapsed = time.monotonic() - started

            assert elapsed < 15, elapsed  # 1 s scrape + 1 s evaluation, and the replay itself
            assert firing["IngressAuditBruteForce"]["labels"]["severity"] == "critical"
            assert float(firing["IngressAuditBruteForce"]["value"]) >= 12  # 11 made + the scenario's
            assert "IngressAuditDown" not in firing
            panels = dashboard_exprs()
            for expr in panels.values():
                await prometheus.query(session, expr)  # fails on an error, with the query named
            for title in (
                "TLS removed / A",
                "Failed authentication (401) / A",
                "Findings in the time range / A",
            ):
                result = await prometheus.query(session, panels[title])
                assert result, title
                assert float(result[0]["value"][1]) > 0, title
            alerts = await prometheus.query(session, panels["Firing alerts / A"])
            assert {a["metric"]["alertname"] for a in alerts} >= {
                "IngressAuditBruteForce",
                "IngressAuditTlsRemoved",
            }


async def test_edge_auth_failures_fire_after_access_lines(serve_access: Serve) -> None:
    """401s and 403s posted to /ingest/access: IngressAuditEdgeAuthFailures fires for their
    ingress, and the edge row's 401/403 and status-class panels show them."""
    text = {"Content-Type": "text/plain"}
    with running_prometheus([f"127.0.0.1:{serve_access.port}"], [RULES]) as prometheus:
        async with aiohttp.ClientSession() as session:
            # A first 401 makes the series; the burst is then an increase Prometheus can see.
            async with session.post(
                serve_access.url + "/ingest/access", data=access_lines([(401, 0.001)]), headers=text
            ) as resp:
                assert resp.status == 200

            async def series_scraped() -> bool:
                result = await prometheus.query(session, "ingress_audit_access_auth_failures_total")
                return bool(result)

            await wait_for(prometheus, session, series_scraped, "the first 401 scraped")
            assert "IngressAuditEdgeAuthFailures" not in await prometheus.firing(session)

            started = time.monotonic()
            burst = [(401, 0.001)] * 250 + [(403, 0.002)] * 70 + [(200, 0.01)] * 30
            async with session.post(
                serve_access.url + "/ingest/access", data=access_lines(burst, first=1), headers=text
            ) as resp:
                assert resp.status == 200

            async def edge_firing() -> dict[str, Any]:
                firing = await prometheus.firing(session)
                return firing if "IngressAuditEdgeAuthFailures" in firing else {}

            firing = await wait_for(prometheus, session, edge_firing, "the edge 401/403 alert")
            assert time.monotonic() - started < 15
            alert = firing["IngressAuditEdgeAuthFailures"]
            assert alert["labels"]["ingress"] == "none"  # no Ingress known to this server
            assert alert["labels"]["severity"] == "warning"
            assert float(alert["value"]) >= 320
            panels = dashboard_exprs()
            for title in ("Edge 401 and 403 by ingress / A", "Edge requests by ingress and status class / A"):
                result = await prometheus.query(session, panels[title])
                assert result, title
                assert max(float(r["value"][1]) for r in result) > 0, title
