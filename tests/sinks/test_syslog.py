"""The syslog sink against a real rsyslogd (TCP, TLS with client certificates, UDP) on loopback.

rsyslog parses what it receives (RFC 5424 header, structured data via mmpstrucdata) and writes
its own parse as JSON lines: the tests check our messages through a real receiver's eyes.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
import trustme

from tests.conftest import captured_bodies, post_capture, read_jsonl, settle
from tests.servers import Certs, Rsyslog, make_record, spooled, wait_until
from webhook.config import parse_config
from webhook.errors import SinkError
from webhook.server.app import create_app
from webhook.sinks.syslog import NOTICE, WARNING, SyslogOptions, SyslogSink, SyslogTls, format_message

LOCAL0 = 16


def _sink(rsyslog: Rsyslog, **options: Any) -> SyslogSink:
    transport = options.get("transport", "tcp")
    port = {"tcp": rsyslog.tcp_port, "tls": rsyslog.tls_port, "udp": rsyslog.udp_port}[transport]
    return SyslogSink("syslog", SyslogOptions(host="127.0.0.1", port=port, **options))


def _tls(certs: Certs, **overrides: Any) -> SyslogTls:
    fields = {
        "ca_file": certs.ca_file,
        "cert_file": certs.client_cert,
        "key_file": certs.client_key,
        "server_name": "localhost",
    }
    return SyslogTls(**{**fields, **overrides})


def _params(message: dict[str, Any]) -> dict[str, str]:
    params: dict[str, str] = message["sd"]["audit@32473"]
    return params


def test_the_message_is_rfc5424_with_escaped_structured_data() -> None:
    """PRI, version, timestamp, host, APP-NAME, MSGID, SD with '"', '\\' and ']' escaped, then the JSON."""
    doc = make_record(object={"resource": "ingresses", "namespace": "shop", "name": 'a"b]c\\d'})
    (record,) = spooled(doc)

    message = format_message(record, facility=LOCAL0, hostname="node-1", sd_id="audit@32473")

    header, rest = message.split(b" [", 1)
    assert header == b"<134>1 2026-11-24T14:20:40.463683Z node-1 ingress-audit - audit"
    assert rest.endswith(b"] " + record.json)
    sd = rest.removesuffix(b"] " + record.json)
    assert b' name="a\\"b\\]c\\\\d" ' in sd
    assert f'id="{doc["id"]}"'.encode() in sd
    assert b"impersonated" not in sd  # null fields are left out


@pytest.mark.parametrize(
    ("code", "findings", "severity"),
    [
        (200, [], 6),
        (403, [], NOTICE),
        (401, [], NOTICE),
        (200, [{"id": "tls-secret-replaced", "severity": "medium"}], NOTICE),
        (200, [{"id": "wildcard-host", "severity": "high"}], WARNING),
        (403, [{"id": "x", "severity": "critical"}, {"id": "y", "severity": "low"}], WARNING),
    ],
)
def test_severity_follows_outcome_and_findings(code: int, findings: list[Any], severity: int) -> None:
    """high/critical findings warn; 401/403 and medium findings are notices; the rest is info."""
    doc = make_record(outcome={"code": code}, findings=findings)
    message = format_message(spooled(doc)[0], facility=LOCAL0, hostname="h", sd_id="audit@32473")
    assert message.startswith(b"<%d>1 " % (LOCAL0 * 8 + severity))


async def test_tcp_messages_arrive_parsed_with_structured_data(rsyslog_server: Rsyslog) -> None:
    """Octet-counted frames over TCP: rsyslog sees each record once, with our header and SD."""
    docs = [make_record(verb=verb) for verb in ("create", "patch", "delete")]
    docs.append(make_record(object={"resource": "secrets", "namespace": "shop", "name": 'x"y]z\\'}))
    docs.append(make_record(findings=[{"id": "wildcard-host", "severity": "high"}], outcome={"code": 403}))
    sink = _sink(rsyslog_server, hostname="node-1")
    await sink.open()
    await sink.send(spooled(*docs[:2]))
    await sink.send(spooled(*docs[2:]))
    await sink.aclose()

    received = rsyslog_server.wait_for_ids({d["id"] for d in docs})
    assert len(received) == len(docs)
    by_id = {_params(m)["id"]: m for m in received}
    for doc in docs:
        message = by_id[doc["id"]]
        assert message["input"] == "tcp"
        assert (message["hostname"], message["app_name"], message["msgid"]) == (
            "node-1",
            "ingress-audit",
            "audit",
        )
        assert orjson.loads(message["msg"]) == doc
        params = _params(message)
        assert params["verb"] == doc["verb"]
        assert params["name"] == doc["object"]["name"]  # unescaped by rsyslog: the round trip holds
        assert params["user"] == "admin"
        assert params["code"] == str(doc["outcome"]["code"])
    assert int(by_id[docs[-1]["id"]]["pri"]) == LOCAL0 * 8 + WARNING
    assert _params(by_id[docs[-1]["id"]])["findings"] == "wildcard-host"


async def test_tls_with_a_client_certificate(rsyslog_server: Rsyslog, server_certs: Certs) -> None:
    """RFC 5425: the server is verified against ca_file, and we present our certificate."""
    docs = [make_record() for _ in range(3)]
    sink = _sink(rsyslog_server, transport="tls", tls=_tls(server_certs), facility="audit")
    await sink.open()
    assert (await sink.health()).ok
    await sink.send(spooled(*docs))
    await sink.aclose()

    received = rsyslog_server.wait_for_ids({d["id"] for d in docs})
    assert {m["input"] for m in received} == {"tls"}
    assert {int(m["pri"]) for m in received} == {13 * 8 + 6}
    assert sorted(orjson.loads(m["msg"])["id"] for m in received) == sorted(d["id"] for d in docs)


async def test_tls_with_the_wrong_ca_fails_retryably(
    rsyslog_server: Rsyslog, server_certs: Certs, tmp_path: Path
) -> None:
    """A server we cannot verify is a retryable failure (and unhealthy), never a plaintext fallback."""
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    sink = _sink(rsyslog_server, transport="tls", tls=_tls(server_certs, ca_file=other))

    with pytest.raises(SinkError) as failure:
        await sink.open()
    assert failure.value.retryable
    assert "SSL" in failure.value.message
    health = await sink.health()
    assert not health.ok
    await sink.aclose()


async def test_udp_is_one_datagram_per_record_truncated(rsyslog_server: Rsyslog) -> None:
    """UDP: each message is cut at max_message_bytes (lossy, documented); short ones are whole."""
    short = make_record()
    long = make_record(request_uri="/api/v1/" + "x" * 4000)
    sink = _sink(rsyslog_server, transport="udp")
    await sink.open()
    try:
        assert (await sink.health()).detail == "udp: unconfirmed"
        await sink.send(spooled(short, long))
    finally:
        await sink.aclose()

    received = {_params(m)["id"]: m for m in rsyslog_server.wait_for_ids({short["id"], long["id"]})}
    assert received[short["id"]]["input"] == "udp"
    assert orjson.loads(received[short["id"]]["msg"]) == short
    truncated = received[long["id"]]["msg"]
    assert len(truncated) < 2048
    assert orjson.dumps(long).decode().startswith(truncated)


async def test_reconnects_after_the_server_restarts(rsyslog_server: Rsyslog) -> None:
    """A connection the server closed is noticed before the next batch: retryable, then back."""
    sink = _sink(rsyslog_server)
    await sink.open()
    try:
        first = make_record()
        await sink.send(spooled(first))
        rsyslog_server.wait_for_ids({first["id"]})

        rsyslog_server.stop()
        try:
            await asyncio.sleep(0.05)  # the server's FIN reaches us, as it would in real life
            with pytest.raises(SinkError) as failure:
                await sink.send(spooled(make_record()))
            assert failure.value.retryable
            assert not (await sink.health()).ok
        finally:
            rsyslog_server.start()
        second = make_record()
        await sink.send(spooled(second))
    finally:
        await sink.aclose()

    rsyslog_server.wait_for_ids({second["id"]})


async def test_health_is_a_connect(rsyslog_server: Rsyslog) -> None:
    """health() connects like send does; a closed port is reported, with the reason."""
    assert (await _sink(rsyslog_server).health()).ok
    closed = SyslogSink("syslog", SyslogOptions(host="127.0.0.1", port=1))
    health = await closed.health()
    assert not health.ok
    assert "ConnectionRefusedError" in health.detail


async def test_end_to_end_every_captured_record_arrives_once(
    aiohttp_client: Any, tmp_path: Path, rsyslog_server: Rsyslog
) -> None:
    """The captured scenario through the app: rsyslog gets each record of the JSONL file, once."""
    cluster = f"syslog-{uuid.uuid4().hex[:8]}"
    config = parse_config(
        {
            "cluster": cluster,
            "data_dir": str(tmp_path / "data"),
            "sinks": [
                {"type": "jsonl"},
                {"type": "syslog", "host": "127.0.0.1", "port": rsyslog_server.tcp_port},
            ],
        }
    )
    client = await aiohttp_client(create_app(config))
    for body in captured_bodies():
        assert (await post_capture(client, body))[0] == 200
    await settle(client)

    records = read_jsonl(tmp_path / "data" / "records.jsonl")
    ids = {r["id"] for r in records}
    assert len(ids) == len(records) > 10

    def arrived() -> list[dict[str, Any]]:
        return [m for m in rsyslog_server.received() if _params(m).get("cluster") == cluster]

    wait_until(lambda: len(arrived()) >= len(ids), 10, "every record at rsyslog")
    messages = arrived()
    assert sorted(_params(m)["id"] for m in messages) == sorted(ids)
    assert {orjson.loads(m["msg"])["id"] for m in messages} == ids
