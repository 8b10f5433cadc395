"""The Elasticsearch/OpenSearch sink: ``_bulk`` bodies, per-item answers, auth, health, end to end.

No Elasticsearch runs here: ``fake_servers.FakeElasticsearch`` is a loopback aiohttp server
implementing the documented ``_bulk`` API (NDJSON ``index``/``create`` actions, one answer item
per action, 409 on ``create`` of an existing id, ``errors`` flag), ``GET /``, credential checks,
and failures on command: per-item 429 and 400 (partial bulk failures), 5xx, slow answers, TLS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from pytest_aiohttp import AiohttpClient, AiohttpServer

from tests.conftest import Client, dead_letters_in, event_list, records_in, settle
from tests.sinks.fake_servers import (
    FakeElasticsearch,
    Fault,
    app_config,
    base_url,
    events,
    sample_records,
    tls_setup,
)
from webhook.config import parse_config
from webhook.errors import ConfigError, PartialDeliveryError, SinkError
from webhook.server.app import create_app
from webhook.sinks.elasticsearch import ElasticsearchOptions, ElasticsearchSink, index_name
from webhook.sinks.http import ClientOptions, TokenAuth

JSON = {"Content-Type": "application/json"}


async def _sink(url: str, **options: Any) -> ElasticsearchSink:
    sink = ElasticsearchSink("elasticsearch", ElasticsearchOptions(url=url, **options))
    await sink.open()
    return sink


def test_index_names_take_the_record_time_in_utc() -> None:
    """The date pattern is filled from ``time`` (UTC), else ``received_at``; no pattern, no change."""
    assert index_name("audit-%Y.%m.%d", {"time": "2026-11-24T23:59:59.999999Z"}) == "audit-2026.11.24"
    assert index_name("audit-%Y.%m.%d", {"time": "2026-11-25T01:00:00+02:00"}) == "audit-2026.11.24"
    assert index_name("audit-%G-%V", {"time": None, "received_at": "2027-01-01T00:00:00Z"}) == "audit-2026-53"
    assert index_name("audit", {"time": "2026-11-24T00:00:00Z"}) == "audit"


async def test_a_bulk_request_indexes_by_record_id(aiohttp_server: AiohttpServer) -> None:
    """NDJSON: one ``index`` action with ``_index`` and ``_id`` = record id, then the record line."""
    fake = FakeElasticsearch()
    server = await aiohttp_server(fake.app())
    batch = sample_records(3)
    sink = await _sink(base_url(server), index="audit-%Y.%m.%d")

    await sink.send(batch)
    await sink.send(batch)  # a resend replaces, it does not add
    await sink.aclose()

    seen = fake.requests[0]
    assert seen.path == "/_bulk"
    assert seen.headers["Content-Type"] == "application/x-ndjson"
    lines = seen.body.splitlines()
    assert seen.body.endswith(b"\n")
    for action, source, record in zip(lines[::2], lines[1::2], batch, strict=True):
        assert orjson.loads(action) == {"index": {"_index": "audit-2026.11.24", "_id": record.record["id"]}}
        assert source == record.json
    assert sorted(fake.indices["audit-2026.11.24"]) == sorted(r.record["id"] for r in batch)


async def test_partial_failures_are_reported_item_by_item(aiohttp_server: AiohttpServer) -> None:
    """429 and 5xx items are to resend, 4xx items refused (type only, no reason); the rest delivered."""
    fake = FakeElasticsearch()
    server = await aiohttp_server(fake.app())
    batch = sample_records(5)
    ids = [r.record["id"] for r in batch]
    fake.item_faults = {ids[1]: [429], ids[2]: [400], ids[4]: [503]}
    sink = await _sink(base_url(server))

    with pytest.raises(PartialDeliveryError) as info:
        await sink.send(batch)
    await sink.aclose()

    assert info.value.retry == (1, 4)
    assert info.value.rejected == {2: "400 document_parsing_exception"}
    assert info.value.retryable is True
    assert sorted(fake.documents(), key=lambda d: d["id"]) == sorted(
        (batch[i].record for i in (0, 3)), key=lambda d: d["id"]
    )


async def test_only_refused_items_is_not_retryable(aiohttp_server: AiohttpServer) -> None:
    """Every failed item refused for good: nothing to resend."""
    fake = FakeElasticsearch()
    server = await aiohttp_server(fake.app())
    batch = sample_records(2)
    fake.item_faults = {batch[0].record["id"]: [400]}
    sink = await _sink(base_url(server))

    with pytest.raises(PartialDeliveryError) as info:
        await sink.send(batch)
    await sink.aclose()
    assert info.value.retry == ()
    assert info.value.retryable is False


async def test_create_treats_a_conflict_as_already_there(aiohttp_server: AiohttpServer) -> None:
    """``op_type: create`` (data streams): a 409 on resend means the document is stored."""
    fake = FakeElasticsearch()
    server = await aiohttp_server(fake.app())
    batch = sample_records(3)
    sink = await _sink(base_url(server), op_type="create", index="logs-audit")

    await sink.send(batch[:2])
    await sink.send(batch)
    await sink.aclose()

    second = orjson.loads(fake.requests[1].body.splitlines()[0])
    assert list(second) == ["create"]
    assert [item["create"]["status"] for item in fake.answers[1]["items"]] == [409, 409, 201]
    assert len(fake.indices["logs-audit"]) == 3


async def test_an_errors_flag_with_every_item_ok_is_delivered(aiohttp_server: AiohttpServer) -> None:
    """``errors: true`` but no failed item (should not happen): delivered, nothing resent."""
    fake = FakeElasticsearch()
    fake.answer_errors_flag = True
    server = await aiohttp_server(fake.app())
    sink = await _sink(base_url(server))

    await sink.send(sample_records(2))
    await sink.aclose()
    assert len(fake.documents()) == 2


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b'{"took":1,"errors":false}',
        b'{"took":1,"errors":false,"items":[{"index":{"status":201}}]}',
    ],
)
async def test_an_unusable_bulk_answer_is_retried(aiohttp_server: AiohttpServer, body: bytes) -> None:
    """A 200 that is not JSON, has no items, or too few: retryable (the ids make resending safe)."""
    fake = FakeElasticsearch()
    fake.faults.append(Fault(200, body=body, headers=JSON))
    server = await aiohttp_server(fake.app())
    sink = await _sink(base_url(server))

    with pytest.raises(SinkError, match="one item per record") as info:
        await sink.send(sample_records(2))
    await sink.aclose()
    assert info.value.retryable is True


@pytest.mark.parametrize(
    ("fault", "retryable"),
    [
        (Fault(429, headers={"Retry-After": "2"}), True),
        (Fault(503), True),
        (Fault(413), False),
        (Fault(400), False),
    ],
)
async def test_whole_request_answers(aiohttp_server: AiohttpServer, fault: Fault, retryable: bool) -> None:
    """The bulk request itself: 429/5xx retried, 413 and 400 refused."""
    fake = FakeElasticsearch()
    fake.faults.append(fault)
    server = await aiohttp_server(fake.app())
    sink = await _sink(base_url(server))

    with pytest.raises(SinkError) as info:
        await sink.send(sample_records(1))
    await sink.aclose()
    assert not isinstance(info.value, PartialDeliveryError)
    assert info.value.retryable is retryable


async def test_api_key_over_tls_and_health(aiohttp_server: AiohttpServer, tmp_path: Path) -> None:
    """``api_key_file`` is sent as ``ApiKey``; ``GET /`` answers health; refused credentials are unhealthy."""
    tls = tls_setup(tmp_path)
    key = tmp_path / "api-key"
    key.write_text("aWQ6a2V5\n")
    fake = FakeElasticsearch(authorization="ApiKey aWQ6a2V5")
    server = await aiohttp_server(fake.app(), ssl=tls.server_context())
    auth = TokenAuth(scheme="ApiKey", file=key, option="api_key_file")
    sink = await _sink(base_url(server), client=ClientOptions(auth=auth, ca_file=tls.ca_file))

    assert (await sink.health()).ok
    await sink.send(sample_records(2))
    fake.authorization = "ApiKey rotated"
    health = await sink.health()
    await sink.aclose()

    assert not health.ok
    assert "401" in health.detail
    assert len(fake.documents()) == 2
    assert fake.requests[0].method == "GET"
    assert fake.requests[0].path == "/"


async def test_end_to_end_partial_failures(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    """Through /audit: throttled items delivered on retry, refused ones dead-lettered, none twice."""
    fake = FakeElasticsearch()
    server = await aiohttp_server(fake.app())
    sink = {"type": "elasticsearch", "url": base_url(server), "index": "ingress-audit-%Y.%m"}
    config = app_config(tmp_path, sink)
    fake.item_faults = {"web-1": [429], "web-4": [400]}
    client: Client = await aiohttp_client(create_app(config))

    assert (await client.post("/audit", data=event_list(*events(8)), headers=JSON)).status == 200
    await settle(client)

    records = {r["object"]["name"]: r["id"] for r in records_in(config)}
    stored = fake.indices["ingress-audit-2026.11"]
    assert sorted(stored) == sorted(i for name, i in records.items() if name != "web-4")
    (letter,) = dead_letters_in(config)
    assert letter["record"]["id"] == records["web-4"]
    assert letter["detail"] == "elasticsearch: 400 document_parsing_exception"
    sent = [orjson.loads(a)["index"]["_id"] for r in fake.requests for a in r.body.splitlines()[::2]]
    assert len(sent) == 8 + 1  # only the throttled item was sent again
    assert sent[-1] == records["web-1"]


async def test_end_to_end_outage_then_recovery(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    """Elasticsearch answering 503 for a while: everything indexed after, once, in the right index."""
    fake = FakeElasticsearch()
    fake.down = True
    server = await aiohttp_server(fake.app())
    config = app_config(
        tmp_path,
        {"type": "elasticsearch", "url": base_url(server), "batch": {"max_events": 3, "timeout_s": 0}},
    )
    client: Client = await aiohttp_client(create_app(config))

    assert (await client.post("/audit", data=event_list(*events(7)), headers=JSON)).status == 200
    await fake.wait_for_requests(3)
    fake.down = False
    await settle(client)

    assert sorted(fake.indices) == ["ingress-audit-2026.11.24"]
    assert sorted(fake.indices["ingress-audit-2026.11.24"]) == sorted(r["id"] for r in records_in(config))


@pytest.mark.parametrize(
    ("options", "path", "words"),
    [
        ({"index": "Audit-%Y"}, "$.sinks[0].index", "pattern"),
        ({"index": "audit-%b"}, "$.sinks[0].index", "pattern"),
        ({"index": "-audit"}, "$.sinks[0].index", "pattern"),
        ({"index": "audit/x"}, "$.sinks[0].index", "pattern"),
        ({"op_type": "update"}, "$.sinks[0].op_type", "'create'"),
        ({"api_key": "abc"}, "$.sinks[0]", "'api_key'"),
        ({"basic": {"username": "a:b", "password_file": "/p"}}, "$.sinks[0].basic.username", "pattern"),
    ],
)
def test_invalid_options_are_reported_with_a_path(options: dict[str, Any], path: str, words: str) -> None:
    """Index names that Elasticsearch would refuse, unknown keys, a bad op_type: refused with a path."""
    sink = {"type": "elasticsearch", "url": "https://es:9200", **options}
    with pytest.raises(ConfigError) as info:
        parse_config({"sinks": [sink]})
    assert any(line.startswith(f"{path}: ") and words in line for line in info.value.errors), (
        info.value.errors
    )


def test_api_key_and_basic_exclude_each_other() -> None:
    """One credential per sink."""
    sink = {
        "type": "elasticsearch",
        "url": "https://es:9200",
        "api_key_file": "/k",
        "basic": {"username": "u", "password_file": "/p"},
    }
    with pytest.raises(ConfigError) as info:
        parse_config({"sinks": [sink]})
    assert info.value.errors == ("$.sinks[type=elasticsearch]: set one of api_key_file, basic, not several",)
