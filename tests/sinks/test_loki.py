"""The Loki sink: push API body, labels, tenant, answers, health, and delivery through the app.

No Loki runs here: ``fake_servers.FakeLoki`` is a loopback aiohttp server implementing the
documented push API (``POST /loki/api/v1/push``, JSON streams of ``[ns, line]`` values, 204),
``GET /ready``, the tenant header, Loki's dropping of an entry equal to one already in its
stream, and failures on command (429 + Retry-After, 5xx, slow answers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from pytest_aiohttp import AiohttpClient, AiohttpServer

from tests.conftest import Client, event_list, records_in, settle
from tests.sinks.fake_servers import FakeLoki, Fault, app_config, base_url, events, sample_records, tls_setup
from webhook.config import parse_config
from webhook.errors import ConfigError, SinkError
from webhook.server.app import create_app
from webhook.sinks.http import ClientOptions, TokenAuth
from webhook.sinks.loki import LokiOptions, LokiSink, labels_of, timestamp_ns

JSON = {"Content-Type": "application/json"}


def _entries(body: bytes) -> set[tuple[frozenset[tuple[str, str]], str, str]]:
    streams = orjson.loads(body)["streams"]
    return {(frozenset(s["stream"].items()), ts, line) for s in streams for ts, line in s["values"]}


async def _sink(url: str, **options: Any) -> LokiSink:
    sink = LokiSink("loki", LokiOptions(url=url, **options))
    await sink.open()
    return sink


def test_timestamps_are_exact_nanoseconds() -> None:
    """``time`` to the microsecond, as nanoseconds; ``received_at`` when ``time`` is missing."""
    assert timestamp_ns({"time": "2026-11-24T14:20:40.463683Z"}) == 1795530040463683000
    assert timestamp_ns({"time": None, "received_at": "1970-01-01T00:00:01.000001Z"}) == 1_000_001_000


def test_labels_come_from_the_chosen_fields_only() -> None:
    """The outcome is a code class; missing values leave the label out; static labels are added."""
    record = sample_records(1)[0].record
    every = labels_of(
        record, ("cluster", "type", "resource", "verb", "namespace", "outcome"), {"job": "audit"}
    )
    assert every == {
        "job": "audit",
        "cluster": "test-cluster",
        "type": "audit",
        "resource": "ingresses",
        "verb": "create",
        "namespace": "shop",
        "outcome": "2xx",
    }
    cluster_scoped = {**record, "object": {**record["object"], "namespace": None}}
    assert "namespace" not in labels_of(cluster_scoped, ("namespace", "verb"), {})
    assert labels_of({"object": None}, ("namespace",), {}) == {"job": "ingress-audit"}  # never empty


async def test_a_push_groups_streams_by_label_set_sorted_by_time(aiohttp_server: AiohttpServer) -> None:
    """One stream per label set, entries sorted by time, the lines unchanged, the tenant header sent."""
    fake = FakeLoki(tenant="team-a")
    server = await aiohttp_server(fake.app())
    batch = list(reversed(sample_records(6)))  # newest first: the sink must sort
    sink = await _sink(
        base_url(server), labels=("namespace", "verb"), static_labels=(("env", "prod"),), tenant_id="team-a"
    )

    await sink.send(batch)
    await sink.aclose()

    body = orjson.loads(fake.requests[0].body)
    streams = {frozenset(s["stream"].items()): s["values"] for s in body["streams"]}
    assert set(streams) == {
        frozenset({"env": "prod", "namespace": "shop", "verb": "create"}.items()),
        frozenset({"env": "prod", "namespace": "blog", "verb": "create"}.items()),
    }
    for values in streams.values():
        stamps = [int(ts) for ts, _ in values]
        assert stamps == sorted(stamps)
        for ts, line in values:
            assert int(ts) == timestamp_ns(orjson.loads(line))
    assert sorted(line for values in streams.values() for _, line in values) == sorted(
        r.json.decode() for r in batch
    )
    assert fake.requests[0].headers["X-Scope-OrgID"] == "team-a"


async def test_a_resent_batch_is_the_same_entries(aiohttp_server: AiohttpServer) -> None:
    """Same stream, timestamp and line on a resend: the entries Loki keeps only once."""
    fake = FakeLoki()
    server = await aiohttp_server(fake.app())
    batch = sample_records(5)
    sink = await _sink(base_url(server))

    await sink.send(batch)
    await sink.send(batch[2:])
    await sink.aclose()

    first, second = (_entries(r.body) for r in fake.requests)
    assert second <= first
    assert len(second) == 3
    assert sorted(r["id"] for r in fake.lines()) == sorted(r.record["id"] for r in batch)


@pytest.mark.parametrize(
    ("fault", "retryable", "retry_after_s"),
    [
        (Fault(429, headers={"Retry-After": "3"}), True, 3.0),
        (Fault(500), True, None),
        (Fault(503), True, None),
        (Fault(400, body=b"entry too far behind"), False, None),
        (Fault(401, body=b"no org id"), True, None),
    ],
)
async def test_answers(
    aiohttp_server: AiohttpServer, fault: Fault, retryable: bool, retry_after_s: float | None
) -> None:
    """429/5xx retried (Retry-After kept), 400 refused; Loki's text is not quoted back."""
    fake = FakeLoki()
    fake.faults.append(fault)
    server = await aiohttp_server(fake.app())
    sink = await _sink(base_url(server))

    with pytest.raises(SinkError) as info:
        await sink.send(sample_records(2))
    await sink.aclose()

    assert info.value.retryable is retryable
    assert info.value.retry_after_s == retry_after_s
    assert fault.body.decode() not in info.value.message or not fault.body


async def test_a_slow_loki_times_out(aiohttp_server: AiohttpServer) -> None:
    """A push slower than ``timeout_s`` is a retryable failure."""
    fake = FakeLoki()
    fake.faults.append(Fault(0, delay_s=2.0))
    server = await aiohttp_server(fake.app())
    sink = await _sink(base_url(server), client=ClientOptions(timeout_s=0.2))

    with pytest.raises(SinkError, match="timed out") as info:
        await sink.send(sample_records(1))
    await sink.aclose()
    assert info.value.retryable is True


async def test_health_asks_ready(aiohttp_server: AiohttpServer) -> None:
    """``/ready`` 200: healthy; 503 (an ingester starting): not; unreachable: not."""
    fake = FakeLoki()
    server = await aiohttp_server(fake.app())
    sink = await _sink(base_url(server))

    assert (await sink.health()).ok
    fake.ready = False
    assert not (await sink.health()).ok
    await sink.aclose()
    assert fake.requests[-1].path == "/ready"
    assert not fake.streams


async def test_tls_and_bearer_token(aiohttp_server: AiohttpServer, tmp_path: Path) -> None:
    """HTTPS with a private CA, and the token from its file as a bearer credential."""
    tls = tls_setup(tmp_path)
    token = tmp_path / "token"
    token.write_text("loki-token-123\n")
    fake = FakeLoki(authorization="Bearer loki-token-123")
    server = await aiohttp_server(fake.app(), ssl=tls.server_context())
    auth = TokenAuth(scheme="Bearer", file=token, option="bearer_token_file")
    sink = await _sink(base_url(server), client=ClientOptions(auth=auth, ca_file=tls.ca_file, gzip=True))

    await sink.send(sample_records(3))
    await sink.aclose()
    assert len(fake.lines()) == 3


async def test_end_to_end_labels_and_recovery(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    """Through /audit: Loki down (503), then up; each record once, in its stream, with its labels."""
    fake = FakeLoki(tenant="audit")
    fake.down = True
    server = await aiohttp_server(fake.app())
    sink = {
        "type": "loki",
        "url": base_url(server),
        "tenant_id": "audit",
        "labels": ["cluster", "namespace", "outcome"],
        "static_labels": {"source": "ingress-audit"},
        "batch": {"max_events": 4, "timeout_s": 0},
    }
    config = app_config(tmp_path, sink)
    client: Client = await aiohttp_client(create_app(config))

    assert (await client.post("/audit", data=event_list(*events(10)), headers=JSON)).status == 200
    await fake.wait_for_requests(3)
    fake.down = False
    await settle(client)

    lines = fake.lines()
    assert sorted(r["id"] for r in lines) == sorted(r["id"] for r in records_in(config))
    assert len(lines) == 10
    for labels, entries in fake.streams.items():
        stream = dict(labels)
        assert set(stream) == {"cluster", "namespace", "outcome", "source"}
        assert stream["outcome"] == "2xx"
        for _, line in entries:
            assert orjson.loads(line)["object"]["namespace"] == stream["namespace"]


@pytest.mark.parametrize(
    ("options", "path", "words"),
    [
        ({"labels": ["user"]}, "$.sinks[0].labels[0]", "'namespace'"),
        ({"labels": ["name"]}, "$.sinks[0].labels[0]", "allowed"),
        ({"labels": ["verb", "verb"]}, "$.sinks[0].labels", "uniqueItems"),
        ({"static_labels": {"bad-name": "x"}}, "$.sinks[0].static_labels", "pattern"),
        ({"static_labels": {"__reserved": "x"}}, "$.sinks[0].static_labels", "not"),
        ({"tenant": "a"}, "$.sinks[0]", "'tenant'"),
        ({"url": None}, "$.sinks[0].url", "type"),
    ],
)
def test_invalid_options_are_reported_with_a_path(options: dict[str, Any], path: str, words: str) -> None:
    """High-cardinality labels and unknown keys are refused by the schema, naming where."""
    sink = {"type": "loki", "url": "http://loki:3100", **options}
    with pytest.raises(ConfigError) as info:
        parse_config({"sinks": [sink]})
    assert any(line.startswith(f"{path}: ") and words in line for line in info.value.errors), (
        info.value.errors
    )


def test_defaults() -> None:
    """Default labels: cluster, resource, verb; one static label ``job``."""
    config = parse_config({"sinks": [{"type": "loki", "url": "http://loki:3100"}]})
    options = config.sinks[0].options
    assert isinstance(options, LokiOptions)
    assert options.labels == ("cluster", "resource", "verb")
    assert options.static_labels == (("job", "ingress-audit"),)
