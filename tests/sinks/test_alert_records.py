"""Alert records through every sink type at once: each takes them, and stores them sensibly.

The TLS removal of scenario A (capture 0019, step A14) raises a ``tls-removed`` alert with the
default config; the app delivers it, next to the audit records, to a JSONL file, stdout, an
HTTP receiver, Loki, Elasticsearch, a Splunk HEC, rsyslog, PostgreSQL, NATS JetStream and
Alertmanager, and to a second JSONL sink that takes alerts only (``record_types``).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import nats
import orjson
from pytest_aiohttp import AiohttpClient, AiohttpServer

from tests.conftest import CAPTURES, alerts_in, post_capture, read_jsonl, records_in, settle
from tests.servers import Alertmanager, NatsServer, Postgres, Rsyslog
from tests.sinks.fake_servers import FakeElasticsearch, FakeHec, FakeLoki, FakeReceiver, base_url
from webhook.config import parse_config
from webhook.server.app import create_app
from webhook.sinks.syslog import ERROR, severity_of

FAST = {"retry": {"initial_backoff_s": 0.01, "max_backoff_s": 0.05}, "batch": {"timeout_s": 0}}


async def test_every_sink_takes_alert_records(
    aiohttp_client: AiohttpClient,
    aiohttp_server: AiohttpServer,
    tmp_path: Path,
    rsyslog_server: Rsyslog,
    postgres_server: Postgres,
    nats_server: NatsServer,
    alertmanager_server: Alertmanager,
) -> None:
    """One TLS removal: the firing alert arrives in every sink, in the form each stores."""
    receiver, loki, elastic, hec = FakeReceiver(), FakeLoki(), FakeElasticsearch(), FakeHec(token="t" * 16)
    urls = [base_url(await aiohttp_server(fake.app())) for fake in (receiver, loki, elastic, hec)]
    (tmp_path / "hec-token").write_text("t" * 16)
    table = f"alerts_{uuid.uuid4().hex[:12]}"
    stream = f"ALERTS_{uuid.uuid4().hex[:8].upper()}"
    sinks: list[dict[str, Any]] = [
        {"type": "jsonl"},
        {"type": "jsonl", "name": "alerts-only", "path": "alerts.jsonl", "record_types": ["alert"]},
        {"type": "stdout"},
        {"type": "http", "url": f"{urls[0]}/ingest", "format": "ndjson"},
        {"type": "loki", "url": urls[1], "labels": ["type", "detection", "severity", "status"]},
        {"type": "elasticsearch", "url": urls[2], "index": "ingress-audit-{type}-%Y.%m"},
        {"type": "splunk_hec", "url": urls[3], "token_file": str(tmp_path / "hec-token")},
        {"type": "syslog", "host": "127.0.0.1", "port": rsyslog_server.tcp_port, "transport": "tcp"},
        {
            "type": "postgres",
            "dsn": postgres_server.dsn,
            "password_file": str(postgres_server.password_file),
            "table": table,
            "sslmode": "disable",
        },
        {
            "type": "nats",
            "servers": [nats_server.url],
            "subject": stream.lower() + ".{type}.{cluster}",
            "create_stream": {"name": stream, "subjects": [stream.lower() + ".>"]},
        },
    ]
    sinks.append({"type": "alertmanager", "urls": [alertmanager_server.url]})
    cluster = f"alerts-{uuid.uuid4().hex[:8]}"
    config = parse_config(
        {
            "cluster": cluster,
            "data_dir": str(tmp_path / "data"),
            "sinks": [sinks[0], *({**FAST, **sink} for sink in sinks[1:])],
        }
    )
    client = await aiohttp_client(create_app(config))

    status, _ = await post_capture(client, CAPTURES / "0019.json")
    await settle(client, timeout_s=30)

    assert status == 200
    (alert,) = [a for a in alerts_in(config) if a["labels"].get("finding") == "tls-removed"]
    alert_ids = {a["id"] for a in alerts_in(config)}
    every_id = alert_ids | {r["id"] for r in records_in(config)}
    # record_types: the alerts-only sink has exactly the alerts, nothing else
    assert {r["id"] for r in read_jsonl(config.data_dir / "alerts.jsonl")} == alert_ids
    # http, splunk: the whole record
    assert alert in receiver.records
    assert alert in [event["event"] for event in hec.events]
    # loki: labelled by detection, severity and status
    (labels,) = [
        dict(key) for key, entries in loki.streams.items() if any(alert["id"] in e[1] for e in entries)
    ]
    assert labels == {"job": "ingress-audit", "type": "alert", "detection": "high-severity-finding",
                      "severity": "high", "status": "firing"}  # fmt: skip

    # elasticsearch: an index of its own by {type} and the record's own month, the id as _id.
    # An alert is dated when it fires, its records when their events happened: never assume
    # both fall in one month.
    def index_of(record: dict[str, Any]) -> str:
        return f"ingress-audit-{record['type']}-{record['time'][:7].replace('-', '.')}"

    assert elastic.indices[index_of(alert)][alert["id"]] == alert
    audit_ids = {
        doc_id
        for name, docs in elastic.indices.items()
        if name.startswith("ingress-audit-audit-")
        for doc_id in docs
    }
    assert audit_ids == every_id - alert_ids
    assert all(record["id"] in elastic.indices[index_of(record)] for record in records_in(config))
    # syslog: severity from the alert (high: err), the alert's fields as structured data
    assert severity_of(alert) == ERROR
    (message,) = rsyslog_server.wait_for_ids({alert["id"]})
    params = next(iter(message["sd"].values()))
    assert params["detection"] == "high-severity-finding"
    assert (params["severity"], params["status"], params["namespace"]) == ("high", "firing", "shop")
    assert orjson.loads(message["msg"]) == alert
    # postgres: its own columns, the audit-shaped ones where they fit
    conn = await postgres_server.connect()
    try:
        row = await conn.fetchrow(f'SELECT * FROM "{table}" WHERE id = $1', uuid.UUID(alert["id"]))  # noqa: S608
        audit_rows = await conn.fetchval(f"SELECT count(*) FROM \"{table}\" WHERE type = 'audit'")  # noqa: S608
    finally:
        await conn.close()
    assert (row["type"], row["detection"], row["severity"], row["status"]) == (
        "alert",
        "high-severity-finding",
        "high",
        "firing",
    )
    assert (row["username"], row["resource"], row["namespace"], row["name"]) == (
        "admin",
        "ingresses",
        "shop",
        "shop-web",
    )
    assert (row["verb"], row["code"], row["findings"]) == (None, None, [])
    assert orjson.loads(row["record"]) == alert
    assert audit_rows == len(every_id - alert_ids)
    # nats: on the {type} subject
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        messages = [
            await js.get_msg(stream, seq) for seq in range(info.state.first_seq, info.state.last_seq + 1)
        ]
    finally:
        await nc.close()
    (published,) = [m for m in messages if (m.subject or "").startswith(stream.lower() + ".alert.")]
    assert orjson.loads(published.data or b"null") == alert
    # alertmanager: the instance, labelled by its grouping key
    (active,) = alertmanager_server.alerts(cluster=cluster)
    assert active["labels"] == {
        "alertname": "HighSeverityFinding",
        "severity": "high",
        "cluster": cluster,
        "namespace": "shop",
        "finding": "tls-removed",
        "resource": "ingresses",
        "name": "shop-web",
        "job": "ingress-audit",
    }
    assert active["annotations"]["summary"] == alert["summary"]
