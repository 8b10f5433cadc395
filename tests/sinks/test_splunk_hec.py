"""The Splunk HEC sink: event bodies, HEC status codes, indexer acknowledgement, health, end to end.

No Splunk runs here: ``fake_servers.FakeHec`` is a loopback aiohttp server implementing the
documented HTTP Event Collector endpoints (``/services/collector/event`` with concatenated JSON
events and ``Authorization: Splunk <token>``, ``/services/collector/ack`` with channels and ack
ids, ``/services/collector/health``), its status codes in the JSON body (also with HTTP 200),
and failures on command (server busy, 5xx, slow answers, TLS).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient, AiohttpServer

from tests.conftest import Client, event_list, records_in, settle
from tests.sinks.fake_servers import FakeHec, Fault, app_config, base_url, events, sample_records, tls_setup
from webhook.config import parse_config
from webhook.errors import ConfigError, PartialDeliveryError, SinkError
from webhook.server.app import create_app
from webhook.sinks.http import ClientOptions, TokenAuth
from webhook.sinks.splunk_hec import HecOptions, SplunkHecSink, event_time

TOKEN = "11111111-2222-3333-4444-555555555555"
JSON = {"Content-Type": "application/json"}


def _client(tmp_path: Path, token: str = TOKEN, **options: Any) -> ClientOptions:
    path = tmp_path / "hec-token"
    path.write_text(token + "\n")
    return ClientOptions(auth=TokenAuth(scheme="Splunk", file=path, option="token_file"), **options)


async def _sink(
    url: str, tmp_path: Path, client: ClientOptions | None = None, **options: Any
) -> SplunkHecSink:
    sink = SplunkHecSink("splunk_hec", HecOptions(url=url, client=client or _client(tmp_path), **options))
    await sink.open()
    return sink


def _body(code: int, **extra: Any) -> bytes:
    return json.dumps({"text": "x", "code": code, **extra}).encode()


def test_event_time_is_exact_epoch_seconds() -> None:
    """``time`` as seconds with microseconds, without float rounding; ``received_at`` as fallback."""
    assert event_time({"time": "2026-11-24T14:20:40.463683Z"}) == "1795530040.463683"
    assert event_time({"time": None, "received_at": "1970-01-01T00:00:01.000001Z"}) == "1.000001"


async def test_events_carry_time_host_source_and_the_record(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    """One JSON object per record: time, host (the cluster), source, sourcetype, index, event."""
    fake = FakeHec(token=TOKEN)
    server = await aiohttp_server(fake.app())
    batch = sample_records(3)
    sink = await _sink(base_url(server), tmp_path, index="audit", sourcetype="k8s:audit")

    await sink.send(batch)
    await sink.aclose()

    assert fake.requests[0].headers["Authorization"] == f"Splunk {TOKEN}"
    assert "X-Splunk-Request-Channel" not in fake.requests[0].headers
    assert [e["event"] for e in fake.events] == [r.record for r in batch]
    first = fake.events[0]
    assert {k: v for k, v in first.items() if k != "event"} == {
        "time": float(event_time(batch[0].record)),
        "host": "test-cluster",
        "source": "ingress-audit",
        "sourcetype": "k8s:audit",
        "index": "audit",
    }


@pytest.mark.parametrize(
    ("fault", "retryable"),
    [
        (Fault(200, body=_body(9)), True),  # server busy, although HTTP 200
        (Fault(503, body=_body(9)), True),
        (Fault(503, body=_body(18)), True),
        (Fault(500, body=_body(8)), True),
        (Fault(400, body=_body(7)), False),  # incorrect index
        (Fault(400, body=_body(14)), False),  # ACK is disabled
        (Fault(200, body=_body(99)), False),  # undocumented
        (Fault(502), True),  # a proxy, no HEC body
        (Fault(404), False),
    ],
)
async def test_hec_codes_decide(
    aiohttp_server: AiohttpServer, tmp_path: Path, fault: Fault, retryable: bool
) -> None:
    """A non-zero ``code`` fails even with HTTP 200; busy and internal errors are retried."""
    fake = FakeHec(token=TOKEN)
    fake.faults.append(fault)
    server = await aiohttp_server(fake.app())
    sink = await _sink(base_url(server), tmp_path)

    with pytest.raises(SinkError) as info:
        await sink.send(sample_records(2))
    await sink.aclose()
    assert info.value.retryable is retryable


async def test_a_wrong_token_is_retried_after_reading_the_file_again(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    """Code 4 (invalid token, 403): retryable, and the next attempt uses the rotated file."""
    fake = FakeHec(token=TOKEN)
    server = await aiohttp_server(fake.app())
    client = _client(tmp_path, token="old-token")
    sink = await _sink(base_url(server), tmp_path, client=client)

    with pytest.raises(SinkError, match="HEC code 4") as info:
        await sink.send(sample_records(1))
    assert info.value.retryable is True
    assert client.auth is not None
    assert isinstance(client.auth, TokenAuth)
    client.auth.file.write_text(TOKEN)
    await sink.send(sample_records(1))
    await sink.aclose()
    assert len(fake.events) == 1


async def test_an_invalid_event_is_refused_alone(aiohttp_server: AiohttpServer, tmp_path: Path) -> None:
    """``invalid-event-number``: that event is refused, the others resent (HEC may have some)."""
    fake = FakeHec(token=TOKEN)
    fake.faults.append(Fault(400, body=_body(6, **{"invalid-event-number": 1})))
    server = await aiohttp_server(fake.app())
    sink = await _sink(base_url(server), tmp_path)

    with pytest.raises(PartialDeliveryError) as info:
        await sink.send(sample_records(3))
    await sink.aclose()
    assert info.value.retry == (0, 2)
    assert info.value.rejected == {1: "HEC code 6 (invalid data format)"}


async def test_acknowledgement_is_awaited(aiohttp_server: AiohttpServer, tmp_path: Path) -> None:
    """With ``ack``: a channel on every request, then ack polls until the batch is indexed."""
    fake = FakeHec(token=TOKEN, ack=True)
    fake.ack_after_polls = 2
    server = await aiohttp_server(fake.app())
    sink = await _sink(base_url(server), tmp_path, ack=True, ack_poll_interval_s=0.01)

    await sink.send(sample_records(2))
    await sink.send(sample_records(1))
    await sink.aclose()

    paths = [r.path for r in fake.requests]
    assert paths == ["/services/collector/event", *["/services/collector/ack"] * 3] * 2
    channels = {r.headers["X-Splunk-Request-Channel"] for r in fake.requests}
    assert len(channels) == 1
    assert json.loads(fake.requests[1].body) == {"acks": [0]}


async def test_no_acknowledgement_in_time_is_retryable(aiohttp_server: AiohttpServer, tmp_path: Path) -> None:
    """An ack that never comes: after ``ack_timeout_s``, a retryable failure."""
    fake = FakeHec(token=TOKEN, ack=True)
    fake.ack_after_polls = None
    server = await aiohttp_server(fake.app())
    sink = await _sink(base_url(server), tmp_path, ack=True, ack_timeout_s=0.1, ack_poll_interval_s=0.02)

    with pytest.raises(SinkError, match="did not acknowledge") as info:
        await sink.send(sample_records(1))
    await sink.aclose()
    assert info.value.retryable is True


async def test_health_and_tls(aiohttp_server: AiohttpServer, tmp_path: Path) -> None:
    """``/services/collector/health`` over HTTPS: 17 healthy, 18 (queues full, 503) not."""
    tls = tls_setup(tmp_path)
    fake = FakeHec(token=TOKEN)
    server = await aiohttp_server(fake.app(), ssl=tls.server_context())
    sink = await _sink(base_url(server), tmp_path, client=_client(tmp_path, ca_file=tls.ca_file))

    assert (await sink.health()).ok
    fake.busy = True
    busy = await sink.health()
    await sink.aclose()
    assert not busy.ok
    assert "503" in busy.detail
    assert not fake.events


async def test_a_slow_collector_times_out(aiohttp_server: AiohttpServer, tmp_path: Path) -> None:
    """An answer slower than ``timeout_s``: retryable."""
    fake = FakeHec(token=TOKEN)
    fake.faults.append(Fault(0, delay_s=2.0))
    server = await aiohttp_server(fake.app())
    sink = await _sink(base_url(server), tmp_path, client=_client(tmp_path, timeout_s=0.2))

    with pytest.raises(SinkError, match="timed out") as info:
        await sink.send(sample_records(1))
    await sink.aclose()
    assert info.value.retryable is True


async def test_end_to_end_with_ack_after_a_busy_spell(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    """Through /audit: HEC busy (code 9) twice, then acknowledged; every record once."""
    fake = FakeHec(token=TOKEN, ack=True)
    fake.ack_after_polls = 1
    fake.faults.extend([Fault(503, body=_body(9)), Fault(200, body=_body(9))])
    server = await aiohttp_server(fake.app())
    token = tmp_path / "token"
    token.write_text(TOKEN)
    sink = {
        "type": "splunk_hec",
        "url": base_url(server),
        "token_file": str(token),
        "ack": True,
        "ack_poll_interval_s": 0.01,
        "index": "k8s_audit",
    }
    config = app_config(tmp_path, sink)
    client: Client = await aiohttp_client(create_app(config))

    assert (await client.post("/audit", data=event_list(*events(6)), headers=JSON)).status == 200
    await settle(client)

    assert sorted(e["event"]["id"] for e in fake.events) == sorted(r["id"] for r in records_in(config))
    assert len(fake.events) == 6
    assert {e["index"] for e in fake.events} == {"k8s_audit"}


@pytest.mark.parametrize(
    ("options", "path", "words"),
    [
        ({"token_file": None}, "$.sinks[0]", "'token_file'"),
        ({"token": "abc"}, "$.sinks[0]", "'token'"),
        ({"basic": {"username": "u", "password_file": "/p"}}, "$.sinks[0]", "'basic'"),
        ({"ack": "yes"}, "$.sinks[0].ack", "type"),
        ({"ack_timeout_s": 0}, "$.sinks[0].ack_timeout_s", "exclusiveMinimum"),
        ({"sourcetype": ""}, "$.sinks[0].sourcetype", "minLength"),
    ],
)
def test_invalid_options_are_reported_with_a_path(options: dict[str, Any], path: str, words: str) -> None:
    """``token_file`` is required; unknown keys and bad values are refused with a path."""
    sink = {"type": "splunk_hec", "url": "https://splunk:8088", "token_file": "/t", **options}
    sink = {k: v for k, v in sink.items() if v is not None}
    with pytest.raises(ConfigError) as info:
        parse_config({"sinks": [sink]})
    assert any(line.startswith(f"{path}: ") and words in line for line in info.value.errors), (
        info.value.errors
    )
