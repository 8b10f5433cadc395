"""The Alertmanager sink against the real ``prometheus-alertmanager`` on loopback.

The shared Alertmanager (``alertmanager_server``) has no receiver; each test tells its alerts
apart by a ``cluster`` label of its own. Tests that stop Alertmanager, or need a receiver,
start their own. Alertmanager keeps time itself, so the resolve tests wait on its clock, with
deadlines.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpClient, AiohttpServer

from tests.conftest import Client, alerts_in, dead_letters_in, event_list, records_in, settle
from tests.servers import Alertmanager, Certs, make_record, running_alertmanager, spooled
from tests.sinks.fake_servers import app_config, base_url, events
from webhook.config import parse_config
from webhook.errors import ConfigError, PartialDeliveryError, SinkError
from webhook.server.app import RUNTIME, create_app
from webhook.sinks._alertmanager_alerts import AlertShape, LinkTemplate, alertname, to_alert
from webhook.sinks.alertmanager import AlertmanagerOptions, AlertmanagerSink
from webhook.sinks.http import ClientOptions

JSON = {"Content-Type": "application/json"}


def _rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def alert_record(cluster: str, **fields: Any) -> dict[str, Any]:
    """A firing alert record (the detection engine's contract) that ends in ten minutes."""
    now = datetime.now(UTC).replace(microsecond=0)  # Alertmanager lists times in milliseconds
    doc: dict[str, Any] = {
        "schema_version": 1,
        "type": "alert",
        "id": str(uuid.uuid4()),
        "fingerprint": "9f86d081884c7d65",
        "cluster": cluster,
        "status": "firing",
        "detection": "brute-force-source-ip",
        "severity": "high",
        "summary": "12 refused requests from 10.0.0.7 in 60 s",
        "description": "Requests refused with 401/403 from one source address.",
        "labels": {"source_ip": "10.0.0.7"},
        "namespace": "shop",
        "actor": {"username": "alice", "kind": "user", "source_ips": ["10.0.0.7", "10.0.0.8"]},
        "object": {
            "api_group": "networking.k8s.io",
            "resource": "ingresses",
            "namespace": "shop",
            "name": "web",
        },
        "count": 12,
        "threshold": 10,
        "window_s": 60,
        "starts_at": _rfc3339(now - timedelta(seconds=30)),
        "ends_at": _rfc3339(now + timedelta(minutes=10)),
        "time": _rfc3339(now),
        "received_at": _rfc3339(now),
        "records": ["r-1", "r-2"],
        "records_total": 12,
    }
    doc.update(fields)
    return doc


def resolved(record: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """The resolved record of the same alert instance, resolving now."""
    now = _rfc3339(datetime.now(UTC))
    return {**record, "id": str(uuid.uuid4()), "status": "resolved", "ends_at": now, "time": now, **fields}


def _cluster() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


async def _sink(*urls: str, **options: Any) -> AlertmanagerSink:
    sink = AlertmanagerSink("alertmanager", AlertmanagerOptions(urls=urls, **options))
    await sink.open()
    return sink


async def _eventually(check: Callable[[], Any], what: str, timeout_s: float = 10.0) -> Any:
    """Poll ``check()`` (without blocking the loop between tries) until truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not (result := check()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        await asyncio.sleep(0.1)
    return result


# -- the alert -------------------------------------------------------------------------------


def test_alertname_is_the_detection_in_camel_case() -> None:
    """Prometheus's naming: each kebab-case word capitalised."""
    assert alertname("brute-force-source-ip") == "BruteForceSourceIp"
    assert alertname("untrusted-source-change") == "UntrustedSourceChange"


def test_labels_match_between_firing_and_resolved() -> None:
    """The label set (what Alertmanager identifies an alert by) is the same for both records."""
    shape = AlertShape(static_labels=(("team", "platform"),))
    firing = alert_record("c1", labels={"source-ip": "10.0.0.7", "1st": "x", "empty": ""})
    firing_alert = to_alert(firing, shape)
    resolved_alert = to_alert(resolved(firing, count=40, summary="other"), shape)

    assert (
        firing_alert["labels"]
        == resolved_alert["labels"]
        == {
            "alertname": "BruteForceSourceIp",
            "severity": "high",
            "cluster": "c1",
            "namespace": "shop",
            "source_ip": "10.0.0.7",
            "_1st": "x",
            "team": "platform",
        }
    )
    assert firing_alert["endsAt"] == firing["ends_at"]
    assert resolved_alert["annotations"]["summary"] == "other"


def test_fixed_labels_win_and_a_null_namespace_is_no_label() -> None:
    """``alertname``, ``severity``, ``cluster`` come from the record; no namespace, no label."""
    record = alert_record("c1", namespace=None, labels={"severity": "low", "namespace": "x"})
    labels = to_alert(record, AlertShape(static_labels=(("cluster", "static"),)))["labels"]
    assert labels == {"alertname": "BruteForceSourceIp", "severity": "high", "cluster": "c1"}


def test_annotations_and_link() -> None:
    """Actor, object, record ids (at most 20, then a count) and a link with escaped values."""
    link = LinkTemplate("https://grafana.example/d/x?var-record={id}&var-ns={namespace}&from={starts_at_ms}")
    record = alert_record(
        "c1",
        id="a b&c",
        namespace="shop/x",
        records=[f"r-{i}" for i in range(25)],
        records_total=30,
        starts_at="2026-11-24T14:20:40.463Z",
    )
    alert = to_alert(
        record, AlertShape(link=link, generator_url=LinkTemplate("https://x.example/{detection}"))
    )

    notes = alert["annotations"]
    assert (
        notes["link"] == "https://grafana.example/d/x?var-record=a%20b%26c&var-ns=shop%2Fx&from=1795530040463"
    )
    assert notes["actor"] == "alice (user) from 10.0.0.7, 10.0.0.8"
    assert notes["object"] == "ingresses.networking.k8s.io shop/web"
    assert notes["records"] == ", ".join(f"r-{i}" for i in range(20)) + " (+10 more)"
    assert (notes["records_total"], notes["count"], notes["threshold"], notes["window_s"]) == (
        "30",
        "12",
        "10",
        "60",
    )
    assert alert["generatorURL"] == "https://x.example/brute-force-source-ip"
    assert alert["startsAt"] == "2026-11-24T14:20:40.463000Z"


CHANGE = {
    "record_id": "c-1",
    "time": "2026-11-24T14:21:09.395862Z",
    "verb": "patch",
    "actor": "admin",
    "object": {"api_group": "networking.k8s.io", "resource": "ingresses", "namespace": "shop", "name": "web"},
    "diff": [{"op": "remove", "path": f"/spec/tls/{i}"} for i in range(12)],
    "diff_total": 14,
    "finding_ids": ["tls-removed"],
}
EFFECT = {
    "kind": "error-rate",
    "host": "www.shop.example.test",
    "ingress": "shop/web",
    "upstream": None,
    "window_start": "2026-11-24T14:21:00.000Z",
    "window_end": "2026-11-24T14:22:00.000Z",
    "summary_id": "s-1",
    "requests": 30,
    "errors_5xx": 20,
    "error_ratio": 0.6667,
    "requests_per_s": 0.5,
    "baseline": {
        "windows": 3,
        "requests": 300,
        "errors_5xx": 3,
        "error_ratio": 0.01,
        "requests_per_s": 1.6667,
    },
}


def correlated(cluster: str) -> dict[str, Any]:
    return alert_record(
        cluster,
        detection="change-correlation",
        labels={"host": "www.shop.example.test", "ingress": "shop/web", "change": "c-1"},
        change=CHANGE,
        effect=EFFECT,
    )


def test_change_and_effect_annotations() -> None:
    """change-correlation names the change (who, what, the diff's paths) and the effect."""
    notes = to_alert(correlated("c1"), AlertShape())["annotations"]
    paths = ", ".join(f"/spec/tls/{i}" for i in range(10))
    assert notes["change"] == (
        "patch ingresses.networking.k8s.io shop/web by admin at 2026-11-24T14:21:09.395862Z "
        f"(record c-1); changed {paths} (+4 more)"
    )
    assert notes["effect"] == (
        "error-rate on www.shop.example.test (ingress shop/web), window 2026-11-24T14:21:00.000Z to "
        "2026-11-24T14:22:00.000Z: 30 requests, 66.7 % 5xx; before: 300 requests in 3 window(s), 1.0 % 5xx"
    )
    # other detections: no such annotations; a mistyped field is left out, not an error
    plain = to_alert(alert_record("c1", change=None, effect="x"), AlertShape())["annotations"]
    assert "change" not in plain
    assert "effect" not in plain


def test_a_firing_record_without_ends_at_has_no_end() -> None:
    """Alertmanager then applies its own ``resolve_timeout``; an end before the start is clamped."""
    assert "endsAt" not in to_alert(alert_record("c1", ends_at=None), AlertShape())
    early = alert_record(
        "c1", status="resolved", starts_at="2026-11-24T14:20:40Z", ends_at="2026-11-24T14:00:00Z"
    )
    assert to_alert(early, AlertShape())["endsAt"] == "2026-11-24T14:20:40.000000Z"


@pytest.mark.parametrize(
    "template",
    ["https://x/{user}", "https://x/{id!r}", "https://x/{id:>9}", "https://x/{id", "https://x/%zz{id}"],
)
def test_bad_templates_are_refused(template: str) -> None:
    """Unknown placeholders, conversions, format specs, unbalanced braces, broken escapes."""
    with pytest.raises(ValueError, match=r"placeholder|unbalanced|escape"):
        LinkTemplate(template)


# -- the real Alertmanager -------------------------------------------------------------------


async def test_a_firing_alert_is_received(alertmanager_server: Alertmanager) -> None:
    """Labels, annotations and times as Alertmanager lists them; non-alert records skipped."""
    cluster = _cluster()
    record = alert_record(cluster)
    sink = await _sink(
        alertmanager_server.url,
        shape=AlertShape(
            static_labels=(("job", "ingress-audit"),),
            link=LinkTemplate("https://grafana.example/d/x?var-alert={id}"),
        ),
    )

    await sink.send(spooled(make_record(cluster=cluster), record, make_record(type="access")))
    await sink.aclose()

    (alert,) = alertmanager_server.alerts(cluster=cluster)
    assert alert["labels"] == {
        "alertname": "BruteForceSourceIp",
        "severity": "high",
        "cluster": cluster,
        "namespace": "shop",
        "source_ip": "10.0.0.7",
        "job": "ingress-audit",
    }
    assert alert["annotations"]["summary"] == record["summary"]
    assert alert["annotations"]["link"] == f"https://grafana.example/d/x?var-alert={record['id']}"
    assert alert["annotations"]["records"] == "r-1, r-2 (+10 more)"
    assert alert["status"]["state"] == "active"
    assert datetime.fromisoformat(alert["endsAt"]) == datetime.fromisoformat(record["ends_at"])


async def test_a_correlated_alert_carries_change_and_effect(alertmanager_server: Alertmanager) -> None:
    cluster = _cluster()
    record = correlated(cluster)
    sink = await _sink(alertmanager_server.url)
    await sink.send(spooled(record))
    await sink.aclose()

    (alert,) = alertmanager_server.alerts(cluster=cluster)
    assert alert["labels"]["alertname"] == "ChangeCorrelation"
    assert alert["labels"]["change"] == "c-1"
    assert alert["annotations"]["change"].startswith("patch ingresses.networking.k8s.io shop/web by admin")
    assert alert["annotations"]["effect"].startswith("error-rate on www.shop.example.test")


async def test_the_same_alert_twice_is_one_alert(alertmanager_server: Alertmanager) -> None:
    """A resend, and a later record of the same instance, update the one alert."""
    cluster = _cluster()
    first = alert_record(cluster)
    later = {**first, "id": str(uuid.uuid4()), "count": 20, "starts_at": _rfc3339(datetime.now(UTC))}
    sink = await _sink(alertmanager_server.url)

    await sink.send(spooled(first))
    await sink.send(spooled(first))
    await sink.send(spooled(later))
    await sink.aclose()

    (alert,) = alertmanager_server.alerts(cluster=cluster)
    assert alert["annotations"]["alert_id"] == later["id"]
    assert alert["annotations"]["count"] == "20"
    assert datetime.fromisoformat(alert["startsAt"]) == datetime.fromisoformat(first["starts_at"])


async def test_a_resolved_record_resolves_it(alertmanager_server: Alertmanager) -> None:
    """After the resolved record, Alertmanager no longer lists the alert as active."""
    cluster = _cluster()
    record = alert_record(cluster)
    other = alert_record(cluster, labels={"source_ip": "10.0.0.9"}, fingerprint="other")
    sink = await _sink(alertmanager_server.url)
    await sink.send(spooled(record, other))
    assert len(alertmanager_server.alerts(cluster=cluster)) == 2

    await sink.send(spooled(resolved(record)))
    await sink.aclose()

    (left,) = alertmanager_server.alerts(cluster=cluster)
    assert left["labels"]["source_ip"] == "10.0.0.9"
    assert alertmanager_server.alerts(cluster=cluster, source_ip="10.0.0.7") == []


async def test_a_firing_alert_resolves_when_its_window_passes(alertmanager_server: Alertmanager) -> None:
    """No resolved record needed: ``endsAt`` is the record's ``ends_at``."""
    cluster = _cluster()
    soon = _rfc3339(datetime.now(UTC) + timedelta(seconds=1.5))
    sink = await _sink(alertmanager_server.url)

    await sink.send(spooled(alert_record(cluster, ends_at=soon)))
    await sink.aclose()

    assert len(alertmanager_server.alerts(cluster=cluster)) == 1
    await _eventually(lambda: alertmanager_server.alerts(cluster=cluster) == [], "the alert resolves")


async def test_only_alerts_at_or_above_min_severity(alertmanager_server: Alertmanager) -> None:
    """``min_severity: high`` skips a medium alert and takes a critical one."""
    cluster = _cluster()
    sink = await _sink(alertmanager_server.url, min_severity="high")

    await sink.send(
        spooled(alert_record(cluster, severity="medium"), alert_record(cluster, severity="critical"))
    )
    await sink.aclose()

    assert [a["labels"]["severity"] for a in alertmanager_server.alerts(cluster=cluster)] == ["critical"]


async def test_batches_without_alerts_send_nothing() -> None:
    """Audit, dead-letter and access records are acknowledged without a request."""
    sink = await _sink("http://127.0.0.1:9")  # nothing listens: a request would fail

    await sink.send(spooled(make_record(), make_record(type="dead_letter"), make_record(type="access")))
    await sink.send([])
    await sink.aclose()


async def test_a_malformed_alert_record_is_refused_alone(alertmanager_server: Alertmanager) -> None:
    """Refused by index (dead-lettered), the others delivered; skipped records are not refused."""
    cluster = _cluster()
    batch = spooled(make_record(), alert_record(cluster, status="open"), alert_record(cluster))
    sink = await _sink(alertmanager_server.url)

    with pytest.raises(PartialDeliveryError) as info:
        await sink.send(batch)
    await sink.aclose()

    assert info.value.retry == ()
    assert info.value.retryable is False
    assert list(info.value.rejected) == [1]
    assert "status" in info.value.rejected[1]
    assert len(alertmanager_server.alerts(cluster=cluster)) == 1


async def test_a_payload_alertmanager_refuses_is_not_retried(alertmanager_server: Alertmanager) -> None:
    """Alertmanager's 400 (a label name it refuses, which the config schema would not let through)."""
    cluster = _cluster()
    batch = spooled(make_record(), alert_record(cluster), alert_record(cluster, fingerprint="b"))
    sink = await _sink(alertmanager_server.url, shape=AlertShape(static_labels=(("bad-name", "x"),)))

    with pytest.raises(PartialDeliveryError) as info:
        await sink.send(batch)
    await sink.aclose()

    assert info.value.retryable is False
    assert sorted(info.value.rejected) == [1, 2]  # each tried alone; the audit record is not refused
    assert all("400" in reason for reason in info.value.rejected.values())
    assert alertmanager_server.alerts(cluster=cluster) == []


async def test_down_is_retryable_then_it_recovers(tmp_path: Path) -> None:
    """Connection refused: a retryable SinkError; the same batch goes through once it is back."""
    cluster = _cluster()
    batch = spooled(alert_record(cluster))
    with running_alertmanager(tmp_path) as am:
        port = am.port
        sink = await _sink(am.url)
        assert (await sink.health()).ok
    try:
        with pytest.raises(SinkError) as info:
            await sink.send(batch)
        assert info.value.retryable is True
        assert not (await sink.health()).ok

        with running_alertmanager(tmp_path, port=port) as again:
            await sink.send(batch)
            assert len(again.alerts(cluster=cluster)) == 1
    finally:
        await sink.aclose()


async def test_ha_pair_delivered_when_one_peer_takes_it(tmp_path: Path) -> None:
    """Both peers get each batch; one down still delivers; both down is retryable."""
    cluster = _cluster()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with running_alertmanager(tmp_path / "a") as a:
        with running_alertmanager(tmp_path / "b") as b:
            sink = await _sink(a.url, b.url)
            await sink.send(spooled(alert_record(cluster, fingerprint="1", labels={"n": "1"})))
            assert len(a.alerts(cluster=cluster)) == len(b.alerts(cluster=cluster)) == 1
        await sink.send(spooled(alert_record(cluster, fingerprint="2", labels={"n": "2"})))
        assert len(a.alerts(cluster=cluster)) == 2
        health = await sink.health()
        assert health.ok
        assert b.url in health.detail
    with pytest.raises(SinkError) as info:
        await sink.send(spooled(alert_record(cluster)))
    await sink.aclose()
    assert info.value.retryable is True
    assert a.url in info.value.message
    assert b.url in info.value.message


async def test_mutual_tls(tmp_path: Path, server_certs: Certs) -> None:
    """HTTPS with the test CA and a client certificate, which this Alertmanager requires."""
    cluster = _cluster()
    with running_alertmanager(tmp_path, certs=server_certs) as am:
        plain = await _sink(am.url, client=ClientOptions(ca_file=server_certs.ca_file))
        assert not (await plain.health()).ok  # no client certificate: the handshake fails
        with pytest.raises(SinkError) as info:
            await plain.send(spooled(alert_record(cluster)))
        await plain.aclose()
        assert info.value.retryable is True

        client = ClientOptions(
            ca_file=server_certs.ca_file, cert_file=server_certs.client_cert, key_file=server_certs.client_key
        )
        sink = await _sink(am.url, client=client)
        assert (await sink.health()).ok
        await sink.send(spooled(alert_record(cluster)))
        await sink.aclose()
        assert len(am.alerts(cluster=cluster)) == 1


async def test_retry_after_is_kept(aiohttp_server: AiohttpServer) -> None:
    """A 429 with ``Retry-After`` (a proxy in front of Alertmanager): retried no sooner."""
    app = web.Application()

    async def busy(request: web.Request) -> web.Response:
        return web.Response(status=429, headers={"Retry-After": "7"})

    app.router.add_post("/api/v2/alerts", busy)
    server = await aiohttp_server(app)
    sink = await _sink(base_url(server))

    with pytest.raises(SinkError) as info:
        await sink.send(spooled(alert_record("c1")))
    await sink.aclose()
    assert info.value.retryable is True
    assert info.value.retry_after_s == 7.0


async def test_notifications_fire_and_resolve(aiohttp_server: AiohttpServer, tmp_path: Path) -> None:
    """Alertmanager's webhook receiver gets the firing, then the resolved notification."""
    notifications: list[dict[str, Any]] = []
    hook = web.Application()

    async def receive(request: web.Request) -> web.Response:
        notifications.append(await request.json())
        return web.Response()

    hook.router.add_post("/hook", receive)
    receiver = await aiohttp_server(hook)
    cluster = _cluster()
    record = alert_record(cluster)
    with running_alertmanager(tmp_path, webhook_url=f"{base_url(receiver)}/hook") as am:
        sink = await _sink(am.url)
        try:
            await sink.send(spooled(record))
            await _eventually(lambda: notifications, "the firing notification")
            await sink.send(spooled(resolved(record)))
            await _eventually(lambda: notifications[-1]["status"] == "resolved", "the resolved notification")
        finally:
            await sink.aclose()

    first, last = notifications[0], notifications[-1]
    assert first["status"] == "firing"
    assert first["commonLabels"]["alertname"] == "BruteForceSourceIp"
    assert first["alerts"][0]["annotations"]["alert_id"] == record["id"]
    assert last["alerts"][0]["status"] == "resolved"
    assert last["alerts"][0]["labels"] == first["alerts"][0]["labels"]


async def test_end_to_end_from_the_spool(
    aiohttp_client: AiohttpClient, alertmanager_server: Alertmanager, tmp_path: Path
) -> None:
    """A running app: audit records and an alert record in the spool; only the alert reaches Alertmanager."""
    cluster = _cluster()
    sink = {
        "type": "alertmanager",
        "urls": [alertmanager_server.url],
        "static_labels": {"env": "test"},
        "link_template": "https://grafana.example/d/x?var-alert={id}",
    }
    config = app_config(tmp_path, sink)
    client: Client = await aiohttp_client(create_app(config))
    record = alert_record(cluster)

    assert (await client.post("/audit", data=event_list(*events(3)), headers=JSON)).status == 200
    await client.app[RUNTIME].writer.spool.append([orjson.dumps(record)])
    await settle(client)

    (alert,) = alertmanager_server.alerts(cluster=cluster)
    assert alert["labels"]["env"] == "test"
    assert alert["annotations"]["alert_id"] == record["id"]
    assert dead_letters_in(config) == []
    assert (len(records_in(config)), len(alerts_in(config))) == (3, 1)  # the JSONL sink keeps every type


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "path", "words"),
    [
        ({"urls": []}, "$.sinks[0].urls", "minItems"),
        ({"urls": ["alertmanager:9093"]}, "$.sinks[0].urls[0]", "pattern"),
        ({"urls": ["http://user:pw@am:9093"]}, "$.sinks[0].urls[0]", "pattern"),
        ({"static_labels": {"bad-name": "x"}}, "$.sinks[0].static_labels", "pattern"),
        ({"min_severity": "urgent"}, "$.sinks[0].min_severity", "enum"),
        ({"link_template": "grafana/x"}, "$.sinks[0].link_template", "pattern"),
        ({"gzip": True}, "$.sinks[0]", "'gzip'"),
    ],
)
def test_invalid_options_are_reported_with_a_path(options: dict[str, Any], path: str, words: str) -> None:
    """The schema refuses what Alertmanager would, naming where."""
    sink = {"type": "alertmanager", "urls": ["http://am:9093"], **options}
    with pytest.raises(ConfigError) as info:
        parse_config({"sinks": [sink]})
    assert any(line.startswith(f"{path}: ") and words in line for line in info.value.errors), (
        info.value.errors
    )


def test_a_bad_placeholder_is_a_config_error() -> None:
    """Templates are checked at load time, not at the first alert."""
    sink = {"type": "alertmanager", "urls": ["http://am:9093"], "generator_url": "https://x/{user}"}
    with pytest.raises(ConfigError) as info:
        parse_config({"sinks": [sink]})
    assert info.value.errors == (
        "$.sinks[type=alertmanager].generator_url: unknown placeholder {user}: use one of id, fingerprint, "
        "detection, severity, cluster, namespace, record, starts_at_ms, ends_at_ms",
    )


def test_defaults() -> None:
    """Every severity, one static label ``job``, no link, no generator URL."""
    config = parse_config(
        {
            "sinks": [
                {"type": "alertmanager", "urls": ["http://am-0:9093", "http://am-1:9093"], "timeout_s": 3}
            ]
        }
    )
    options = config.sinks[0].options
    assert isinstance(options, AlertmanagerOptions)
    assert options.urls == ("http://am-0:9093", "http://am-1:9093")
    assert options.min_severity == "info"
    assert options.shape == AlertShape(static_labels=(("job", "ingress-audit"),))
    assert options.client.timeout_s == 3
