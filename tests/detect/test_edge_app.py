"""Edge detections and change correlation on the real app: captured audit changes, access lines.

The captured scenario creates ``shop/shop-web`` (A05) and patches it (A14 at 14:21:09: TLS
removed, host www.shop.example.test, backend shop-frontend:8443). Access lines for that host
after the patch carry a 5xx jump: one ``change-correlation`` alert names the patch (actor,
record id, diff) and the effect; without the change only ``edge-5xx-spike`` fires; with the
change but no shift, nothing correlates. Then a real nginx (tests/sources/test_syslog_nginx.py) sends
401s and dead-upstream 502s over syslog, and the brute-force and 5xx alerts are in the JSONL.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema
import orjson

from tests.access.access_lines import ingress_object, nginx_line
from tests.commands.test_replay import run_cli
from tests.commands.test_replay_access import AFTER, BEFORE, CHANGE_CAPTURES, _access_file, _audit_file
from tests.conftest import CAPTURES, alerts_in, delivered, event_list, make_event, post_capture, records_in
from tests.sources.test_access_http import access_config, fluent_bit
from tests.sources.test_syslog_nginx import DEAD, GOOD, MISSING, UNAUTHORIZED, _config, _drive, _lines_parsed
from tests.sources.test_syslog_nginx import nginx as nginx  # the fixture, for pytest
from webhook.config import Config
from webhook.record.audit import record_schema
from webhook.server.app import RUNTIME, create_app

NDJSON = {"Content-Type": "application/x-ndjson"}
HOST = "www.shop.example.test"
SCHEMA = record_schema()


def _lines(*, errors_after: bool) -> list[bytes]:
    before = [
        nginx_line(t=BEFORE + i, upstream="[shop-shop-frontend-80]", req_id=f"a{i:031x}") for i in range(30)
    ]
    after = [
        nginx_line(
            t=AFTER + i,
            status=502 if errors_after and i % 3 else 200,
            upstream="[shop-shop-frontend-8443]",
            req_id=f"b{i:031x}",
        )
        for i in range(30)
    ]
    return before + after


async def _run(client: Any, config: Config, captures: list[str], lines: list[bytes]) -> list[dict[str, Any]]:
    """Post the captures as the apiserver did, then the access lines as Fluent Bit; the alerts."""
    for name in captures:
        assert (await post_capture(client, CAPTURES / name))[0] == 200
    assert (await client.post("/ingest/access", data=fluent_bit(*lines), headers=NDJSON)).status == 200
    runtime = client.app[RUNTIME]
    await runtime.access.flush(everything=True)
    await runtime.alerts.drain()
    await delivered(client, config)
    return alerts_in(config)


def _firing(alerts: list[dict[str, Any]], detection: str) -> list[dict[str, Any]]:
    return [a for a in alerts if a["detection"] == detection and a["status"] == "firing"]


async def test_a_5xx_jump_after_the_captured_patch_is_one_correlated_alert(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    config = access_config(tmp_path)
    client = await aiohttp_client(create_app(config))
    alerts = await _run(client, config, CHANGE_CAPTURES, _lines(errors_after=True))

    patch = next(r for r in records_in(config) if r["type"] == "audit" and r["verb"] == "patch")
    after = next(
        r
        for r in records_in(config)
        if r["type"] == "access_summary" and r["scope"] == "host" and r["host"] == HOST
    )
    (alert,) = _firing(alerts, "change-correlation")
    assert alert["labels"] == {"host": HOST, "ingress": "shop/shop-web", "change": patch["id"]}
    assert alert["records"] == [patch["id"], after["id"]]
    assert alert["actor"]["username"] == "admin"
    assert alert["object"] == {
        "api_group": "networking.k8s.io",
        "resource": "ingresses",
        "namespace": "shop",
        "name": "shop-web",
    }
    change = alert["change"]
    assert (change["record_id"], change["actor"], change["verb"], change["time"]) == (
        patch["id"],
        "admin",
        "patch",
        patch["time"],
    )
    assert [op["path"] for op in change["diff"]] == [op["path"] for op in patch["change"]["operations"]]
    assert any(op["path"].startswith("/spec/tls") for op in change["diff"])
    effect = alert["effect"]
    assert effect["kind"] == "error-rate"
    assert (effect["requests"], effect["errors_5xx"], effect["summary_id"]) == (30, 20, after["id"])
    assert effect["host"] == HOST
    assert "after admin changed ingresses shop/shop-web" in alert["summary"]
    jsonschema.validate(alert, SCHEMA)
    # the spike itself is an alert of its own, without a change
    (spike,) = _firing(alerts, "edge-5xx-spike")
    assert spike["change"] is None
    assert spike["effect"]["errors_5xx"] == 20
    jsonschema.validate(spike, SCHEMA)


async def test_errors_without_a_change_spike_but_do_not_correlate(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    config = access_config(tmp_path)
    client = await aiohttp_client(create_app(config))
    alerts = await _run(client, config, [], _lines(errors_after=True))
    assert _firing(alerts, "change-correlation") == []
    (spike,) = _firing(alerts, "edge-5xx-spike")
    assert spike["labels"] == {"upstream": "shop-shop-frontend-8443"}


async def test_a_change_without_a_shift_does_not_correlate(aiohttp_client: Any, tmp_path: Path) -> None:
    config = access_config(tmp_path)
    client = await aiohttp_client(create_app(config))
    alerts = await _run(client, config, CHANGE_CAPTURES, _lines(errors_after=False))
    # the patch removes TLS: a finding's alert, but nothing at the edge
    assert [a["detection"] for a in alerts if a["status"] == "firing"] == ["high-severity-finding"]


def test_replay_correlates_once_and_a_second_replay_adds_nothing(tmp_path: Path) -> None:
    """``replay`` audit files then ``--access``: the windows run on the events' own time."""
    config_file = tmp_path / "config.yaml"
    data = tmp_path / "data"
    config_file.write_text("access:\n  enabled: true\n", "utf-8")
    args = ["--config", str(config_file), "--data-dir", str(data), str(_audit_file(tmp_path))]
    for _ in range(2):
        done = run_cli(*args, "--access", str(_access_file(tmp_path)), cwd=tmp_path)
        assert done.returncode == 0, done.stderr

    records = [orjson.loads(line) for line in (data / "records.jsonl").read_bytes().splitlines()]
    alerts = [r for r in records if r["type"] == "alert"]
    patch = next(r for r in records if r["type"] == "audit" and r["verb"] == "patch")
    (alert,) = _firing(alerts, "change-correlation")
    assert alert["change"]["record_id"] == patch["id"]
    assert alert["actor"]["username"] == "admin"
    assert alert["records"][0] == patch["id"]
    assert alert["time"] == "2026-11-24T14:22:00.000000Z"  # the window's end: event time
    resolved = [a for a in alerts if a["detection"] == "change-correlation" and a["status"] == "resolved"]
    assert [a["fingerprint"] for a in resolved] == [alert["fingerprint"]]


async def test_nginx_brute_force_and_dead_upstream_fire(
    aiohttp_client: Any, tmp_path: Path, nginx: tuple[int, int]
) -> None:
    """A real nginx: 401s from one client and 502s of a dead upstream become alert records."""
    port, udp_port = nginx
    base = _config(tmp_path, udp_port, 0)
    rules = dict(base.detections.rules)
    for rule in ("edge-brute-force-client", "edge-brute-force-host"):
        rules[rule] = replace(rules[rule], threshold=10)
    access = replace(base.access, syslog=replace(base.access.syslog, tcp=None))
    config = replace(base, access=access, detections=replace(base.detections, rules=rules))
    client = await aiohttp_client(create_app(config))
    created = make_event(level="RequestResponse", responseObject=ingress_object())
    json = {"Content-Type": "application/json"}
    assert (await client.post("/audit", data=event_list(created), headers=json)).status == 200

    await _drive(port)
    await _lines_parsed(client, GOOD + UNAUTHORIZED + MISSING + DEAD, "syslog-udp")
    runtime = client.app[RUNTIME]
    await runtime.access.flush(everything=True)
    await runtime.alerts.drain()
    await delivered(client, config)
    alerts = alerts_in(config)

    (client_alert,) = _firing(alerts, "edge-brute-force-client")
    assert client_alert["labels"] == {"client_ip": "127.0.0.1"}
    assert client_alert["count"] >= 10
    assert client_alert["object"]["name"] == "web"
    access_ids = {r["id"] for r in records_in(config) if r["type"] == "access"}
    assert set(client_alert["records"]) <= access_ids
    (host_alert,) = _firing(alerts, "edge-brute-force-host")
    assert host_alert["labels"] == {"ingress": "shop/web"}  # ingress-nginx logs no Host
    (spike,) = _firing(alerts, "edge-5xx-spike")
    assert spike["labels"] == {"host": "shop.example.com", "ingress": "shop/web"}
    assert (spike["effect"]["requests"], spike["effect"]["errors_5xx"]) == (
        GOOD + UNAUTHORIZED + MISSING + DEAD,
        DEAD,
    )
    for alert in alerts:
        jsonschema.validate(alert, SCHEMA)
    assert b"t0ps3cret" not in (config.data_dir / "records.jsonl").read_bytes()
    metrics = await (await client.get("/metrics")).text()
    assert (
        'ingress_audit_alerts_total{detection="edge-5xx-spike",severity="high",status="firing"} 1.0'
        in metrics
    )
