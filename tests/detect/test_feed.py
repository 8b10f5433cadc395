"""Detections in the running service and in replays: records in, alert records out to the sinks."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from tests.conftest import (
    CAPTURES,
    alerts_in,
    capture_events,
    captured_bodies,
    make_config,
    post_capture,
    records_in,
    settle,
)
from tests.detect.detect_records import T0, audit
from webhook.commands.replay import replay
from webhook.config import Config, parse_config
from webhook.detect.engine import Detector
from webhook.detect.feed import AlertFeed, record_seconds
from webhook.detect.rules import Hit, Rule
from webhook.detect.settings import Exceptions, RuleSettings
from webhook.metrics import Metrics
from webhook.runtime import Runtime, alert_feed
from webhook.server.app import RUNTIME, create_app
from webhook.spool.segments import Spool

AiohttpClient = Any

LOW = {"rules": {"brute-force-source-ip": {"threshold": 1}, "brute-force-user": {"threshold": 2}}}


def with_detections(tmp_path: Path, detections: dict[str, Any]) -> Config:
    base = make_config(tmp_path)
    return replace(base, detections=parse_config({"detections": detections}).detections)


async def post_scenario(client: TestClient[Any, Any]) -> None:
    for body in captured_bodies():
        status, _ = await post_capture(client, body)
        assert status == 200


async def test_the_scenarios_401_and_403s_fire_brute_force_alerts(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """Scenario A through the app at a low threshold: the 401 fires brute-force-source-ip, alice's
    403s (her own and while impersonated) brute-force-user; both reach the JSONL sink."""
    config = with_detections(tmp_path, LOW)
    client = await aiohttp_client(create_app(config))

    await post_scenario(client)
    await settle(client)

    records = {r["id"]: r for r in records_in(config)}
    alerts = {a["detection"]: a for a in alerts_in(config) if a["status"] == "firing"}
    by_ip = alerts["brute-force-source-ip"]
    assert by_ip["labels"] == {"source_ip": "127.0.0.1"}
    (unauthorized,) = (records[i] for i in by_ip["records"])
    assert (unauthorized["outcome"]["code"], unauthorized["stage"]) == (401, "ResponseStarted")
    by_user = alerts["brute-force-user"]
    assert by_user["labels"] == {"user": "alice"}
    assert by_user["cluster"] == "test-cluster"
    assert all(records[i]["outcome"]["code"] == 403 for i in by_user["records"])
    assert by_user["count"] == 2  # the third 403 for alice counts into the firing alert
    resolved = await _resolved_after_window(client, config)
    assert {a["detection"] for a in resolved} >= {"brute-force-source-ip", "brute-force-user"}


async def _resolved_after_window(client: TestClient[Any, Any], config: Config) -> list[dict[str, Any]]:
    """Move the feed's clock past every window; the next tick writes the resolutions."""
    feed = client.app[RUNTIME].alerts
    feed.clock = lambda: 4_000_000_000.0
    await feed.tick()
    await settle(client)
    return [a for a in alerts_in(config) if a["status"] == "resolved"]


async def test_tls_removal_alerts_by_default(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    """With the default config, the JSON patch that removes TLS (A14) raises a high alert at once."""
    config = make_config(tmp_path)
    client = await aiohttp_client(create_app(config))
    body = next(b for b in captured_bodies() if b.name == "0019.json")

    status, _ = await post_capture(client, body)
    await settle(client)

    assert status == 200
    (alert,) = [a for a in alerts_in(config) if a["labels"].get("finding") == "tls-removed"]
    assert alert["status"] == "firing"
    assert alert["severity"] == "high"
    assert alert["object"] == {
        "api_group": "networking.k8s.io",
        "resource": "ingresses",
        "namespace": "shop",
        "name": "shop-web",
    }
    assert not [a for a in alerts_in(config) if a["detection"].startswith("brute-force")]


async def test_the_background_tick_resolves(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    """The service's own tick task (about once a second) writes the resolution, unprompted."""
    config = with_detections(tmp_path, LOW)
    client = await aiohttp_client(create_app(config))
    body = next(b for b in captured_bodies() if b.name == "0032.json")
    await post_capture(client, body)
    feed = client.app[RUNTIME].alerts
    feed.clock = lambda: 4_000_000_000.0  # every window has passed

    for _ in range(100):  # the tick runs every second: at most 5 s
        await settle(client)
        if any(a["status"] == "resolved" for a in alerts_in(config)):
            break
        await asyncio.sleep(0.05)

    assert [a["status"] for a in alerts_in(config)] == ["firing", "resolved"]


async def test_a_retried_batch_is_not_counted_twice(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    """The apiserver resends a batch byte for byte: deduped records do not reach the detector."""
    config = with_detections(tmp_path, {"rules": {"brute-force-user": {"threshold": 4}}})
    client = await aiohttp_client(create_app(config))
    body = next(b for b in captured_bodies() if b.name == "0028.json")  # one 403 for alice

    for _ in range(5):
        await post_capture(client, body)
    await settle(client)

    assert alerts_in(config) == []


async def test_replays_use_the_events_own_time(tmp_path: Path) -> None:
    """In a replay the windows run on event time: the 403s of minutes ago are minutes apart, and
    the end of the input resolves what still fires."""
    config = with_detections(tmp_path, LOW)
    log = tmp_path / "audit.log"
    events = [e for body in captured_bodies() for e in capture_events(body.name)]
    log.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))

    await replay(config, [log])

    alerts = alerts_in(config)
    by_user = [a for a in alerts if a["detection"] == "brute-force-user"]
    assert [a["status"] for a in by_user] == ["firing", "resolved"]
    firing, resolved = by_user
    assert firing["time"].startswith("2026-11-24T14:2")  # the scenario's own hour, not today
    assert firing["starts_at"].startswith("2026-11-24T14:2")
    assert resolved["time"] == resolved["ends_at"]


async def test_alerts_wait_in_memory_when_the_spool_refuses_them(tmp_path: Path) -> None:
    """A full spool does not fail the batch (its records are written); the alerts are kept and
    written by a later tick."""
    config = with_detections(tmp_path, LOW)
    runtime = await Runtime.open(config)
    try:
        feed = runtime.alerts
        runtime.writer.spool.max_bytes = 1  # full
        await feed.records([audit(code=401, user=None, name=None)])
        assert len(feed._pending) == 1

        runtime.writer.spool.max_bytes = 1 << 30
        await feed.tick()
        assert feed._pending == []
        assert await runtime.sinks.drain(10.0)
    finally:
        await runtime.aclose()

    (alert,) = alerts_in(config)
    assert alert["detection"] == "brute-force-source-ip"


def test_record_seconds_reads_the_event_time_else_the_receive_time() -> None:
    """time first, then received_at, in seconds since the epoch; None if neither is readable."""
    assert record_seconds({"time": "2026-11-18T11:06:40Z"}) == T0
    assert record_seconds({"time": None, "received_at": "2026-11-18T11:06:40.000000Z"}) == T0
    assert record_seconds({"time": "yesterday"}) is None


async def test_no_rules_means_no_detector(tmp_path: Path) -> None:
    """detections.enabled: false builds no detector and starts no task."""
    config = with_detections(tmp_path, {"enabled": False})
    spool = Spool(tmp_path / "spool", max_bytes=1 << 20, segment_bytes=1 << 16)
    feed: AlertFeed = alert_feed(config, spool, Metrics(), event_time=False)

    assert feed.detector is None


class _Broken(Rule):
    id = "broken"

    def match(self, record: Mapping[str, Any], now: float) -> list[Hit]:
        raise KeyError("a bug")


async def test_a_broken_rule_does_not_fail_the_batch(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    """The records are written before detection: a rule that raises is logged (its type only,
    once per record it failed on), the answer is 200."""
    config = make_config(tmp_path)
    client = await aiohttp_client(create_app(config))
    broken = _Broken(RuleSettings(), max_keys=10, exceptions=Exceptions())
    client.app[RUNTIME].alerts.detector = Detector([broken], cluster="c")

    with capture_logs() as logs:
        status, answer = await post_capture(client, CAPTURES / "0019.json")
    await settle(client)

    assert status == 200
    assert answer["records"] == len(records_in(config)) > 0
    errors = [e for e in logs if e["log_level"] == "error"]
    assert [(e["event"], e["detection"], e["error"]) for e in errors] == [
        ("detection.failed", "broken", "KeyError")
    ] * answer["records"]
