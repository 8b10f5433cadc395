"""``POST /firehose`` through the real app: Firehose's requests as CloudWatch Logs and Firehose
build them around the captured events, Firehose's answers, and what ends up on disk.

Every event the webhook path records, the Firehose path records the same (same id, same
content but for when it arrived); a retry adds nothing; refusals are the JSON Firehose reads,
never a 413.
"""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp import AiohttpClient
from structlog.testing import capture_logs

from tests.conftest import (
    Client,
    captured_bodies,
    dead_letters_in,
    make_config,
    records_in,
    scenario_secrets,
    settle,
)
from tests.sources.cloud_apps import (
    EKS_CLUSTER,
    FIREHOSE_KEY,
    OTHER_KEY,
    capture_lists,
    firehose_settings,
    sans_arrival,
    webhook_records,
    with_sources,
)
from tests.sources.envelopes import (
    CONTROL_MESSAGE,
    capture_event_bytes,
    cwl_message,
    firehose_body,
    gz,
    record,
    scenario_event_bytes,
)
from webhook.config import Config
from webhook.filter import DEFAULT_FILTER, compile_filter
from webhook.redact.leaks import scan
from webhook.server.app import METRICS, create_app

REQUEST_ID: Final = "ed4acda5-034f-9f42-bba1-f29aea6d7d8f"
CAPTURE_EVENTS: Final = capture_event_bytes(captured_bodies()[0])
# The scenario's events the default filter keeps: each becomes a record.
KEPT: Final = [e for e in scenario_event_bytes() if compile_filter(DEFAULT_FILTER)(orjson.loads(e))]


T = TypeVar("T")


def _chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _log_backend(event: bytes) -> bytes:
    """The event as EKS's apiserver writes it to CloudWatch: the log backend's kind first."""
    return b'{"kind":"Event","apiVersion":"audit.k8s.io/v1",' + event[1:]


ENVELOPES: Final[dict[str, Callable[[Sequence[bytes]], list[dict[str, Any]]]]] = {
    # CloudWatch Logs → Firehose as configured by default: base64(gzip(subscription message))
    "cwl-gzip": lambda events: [record(gz(cwl_message(c))) for c in _chunks(events, 25)],
    # the events as the log backend writes them, kind and apiVersion first
    "cwl-gzip-log-backend": lambda events: [
        record(gz(cwl_message([_log_backend(e) for e in c]))) for c in _chunks(events, 25)
    ],
    # Firehose with decompression on: base64(subscription message)
    "cwl-plain": lambda events: [record(cwl_message(c)) for c in _chunks(events, 25)],
    # Firehose with decompression and message extraction: one bare message a record
    "extracted": lambda events: [record(e) for e in events],
    # message extraction with several messages to a record, one a line
    "extracted-joined": lambda events: [record(b"\n".join(c) + b"\n") for c in _chunks(events, 25)],
}


def _config(tmp_path: Path, clusters: Sequence[str] = (EKS_CLUSTER,), **server: Any) -> Config:
    return with_sources(make_config(tmp_path, **server), firehose=firehose_settings(tmp_path, clusters))


async def _client(aiohttp_client: AiohttpClient, config: Config) -> Client:
    client: Client = await aiohttp_client(create_app(config))
    return client


async def post(
    client: Client,
    body: bytes,
    *,
    key: str | None = FIREHOSE_KEY,
    request_id: str = REQUEST_ID,
    gzipped: bool = False,
) -> tuple[int, dict[str, Any]]:
    """POST as Firehose does: its headers, the key (if any), gzip if the stream says so."""
    headers = {
        "Content-Type": "application/json",
        "X-Amz-Firehose-Protocol-Version": "1.0",
        "X-Amz-Firehose-Request-Id": request_id,
        "X-Amz-Firehose-Source-Arn": "arn:aws:firehose:eu-west-1:111111111111:deliverystream/audit",
    }
    if key is not None:
        headers["X-Amz-Firehose-Access-Key"] = key
    if gzipped:
        headers["Content-Encoding"] = "gzip"
        body = gzip.compress(body)
    # Large bodies as a stream: aiohttp warns of raw bytes over 1 MiB.
    resp = await client.post("/firehose", data=io.BytesIO(body), headers=headers)
    assert resp.content_type == "application/json"
    answer: dict[str, Any] = orjson.loads(await resp.read())
    return resp.status, answer


def _cloud_items(client: Client, result: str) -> float:
    value = client.app[METRICS].registry.get_sample_value(
        "ingress_audit_cloud_items_total", {"source": "firehose", "result": result}
    )
    return value or 0.0


# --- the captured scenario, both paths ----------------------------------------------------------------


@pytest.mark.parametrize("envelope", list(ENVELOPES))
async def test_every_captured_event_is_recorded_as_the_webhook_records_it(
    aiohttp_client: AiohttpClient, tmp_path: Path, envelope: str
) -> None:
    """The whole scenario in Firehose requests: the same records (ids and content) as /audit."""
    config = _config(tmp_path)
    expected = await webhook_records(tmp_path / "webhook", capture_lists(), key_for=config)
    client = await _client(aiohttp_client, config)
    records = ENVELOPES[envelope](scenario_event_bytes())

    answers = [
        await post(client, firehose_body(chunk, request_id=f"req-{n}"), request_id=f"req-{n}")
        for n, chunk in enumerate(_chunks(records, 40))
    ]
    await settle(client)

    assert {status for status, _ in answers} == {200}
    assert len(expected) > 30
    assert sans_arrival(records_in(config)) == sans_arrival(expected)
    assert {r["cluster"] for r in records_in(config)} == {EKS_CLUSTER}
    assert dead_letters_in(config) == []


async def test_a_retry_of_the_same_request_adds_nothing(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """Firehose resends a request (same id, same bytes): 200 again, no second record, and its
    rejected record is not dead-lettered twice."""
    config = _config(tmp_path)
    client = await _client(aiohttp_client, config)
    body = firehose_body(
        [
            record(gz(cwl_message(CAPTURE_EVENTS))),
            record(gz(cwl_message(CAPTURE_EVENTS[:1], cluster="other"))),
        ]
    )

    first = await post(client, body)
    again = await post(client, body, gzipped=True)
    await settle(client)

    assert (first[0], again[0]) == (200, 200)
    kept = records_in(config)
    assert len(kept) == len({r["id"] for r in kept}) > 0
    assert [d["reason"] for d in dead_letters_in(config)] == ["cluster-not-allowed"]
    assert _cloud_items(client, "repeated_reject") == 1


async def test_the_answer_is_what_firehose_reads(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    """200 with the request's id and a timestamp in ms (a number), nothing else."""
    client = await _client(aiohttp_client, _config(tmp_path))

    status, answer = await post(client, firehose_body([record(gz(cwl_message(CAPTURE_EVENTS[:3])))]))

    assert status == 200
    assert set(answer) == {"requestId", "timestamp"}
    assert answer["requestId"] == REQUEST_ID
    assert type(answer["timestamp"]) is int
    assert answer["timestamp"] > 1_600_000_000_000  # ms, not s


@pytest.mark.parametrize("key", [None, "", OTHER_KEY, FIREHOSE_KEY.upper(), FIREHOSE_KEY[:-1]])
async def test_a_wrong_or_missing_key_is_401_json(
    aiohttp_client: AiohttpClient, tmp_path: Path, key: str | None
) -> None:
    """No record, no dead letter, and Firehose's answer shape with the reason."""
    config = _config(tmp_path)
    client = await _client(aiohttp_client, config)

    with capture_logs() as logs:
        status, answer = await post(client, firehose_body([record(gz(cwl_message(CAPTURE_EVENTS)))]), key=key)
    await settle(client)

    assert status == 401
    assert answer["requestId"] == REQUEST_ID
    assert type(answer["timestamp"]) is int
    assert answer["errorMessage"].startswith("unauthenticated: X-Amz-Firehose-Access-Key")
    assert records_in(config) == []
    assert dead_letters_in(config) == []
    assert FIREHOSE_KEY not in orjson.dumps(logs, default=str).decode()


async def test_a_cluster_not_on_the_keys_list_is_dead_lettered_and_the_rest_kept(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """Another cluster's log group in the stream: its events are dead letters naming the
    group, the listed cluster's events are recorded, and the request is a 200."""
    config = _config(tmp_path)
    client = await _client(aiohttp_client, config)
    body = firehose_body(
        [
            record(gz(cwl_message(CAPTURE_EVENTS[:2], cluster="staging"))),
            record(gz(cwl_message(CAPTURE_EVENTS))),
        ]
    )

    status, _ = await post(client, body)
    await settle(client)

    assert status == 200
    assert {r["cluster"] for r in records_in(config)} == {EKS_CLUSTER}
    letters = dead_letters_in(config)
    assert [d["reason"] for d in letters] == ["cluster-not-allowed", "cluster-not-allowed"]
    assert letters[0]["event"]["logGroup"] == "/aws/eks/staging/cluster"
    assert letters[0]["event"]["input"] == "firehose"
    assert letters[0]["event"]["record"] == "0"
    assert "auditID" in letters[0]["event"]
    assert _cloud_items(client, "rejected") == 2


async def test_a_key_of_several_clusters_records_each_under_its_own(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """One stream carrying two clusters' groups: each event is recorded as its group's cluster."""
    config = _config(tmp_path, clusters=(EKS_CLUSTER, "prod-us"))
    client = await _client(aiohttp_client, config)
    body = firehose_body(
        [
            record(gz(cwl_message(KEPT[:4], cluster="prod-us"))),
            record(gz(cwl_message(KEPT[4:10]))),
        ]
    )

    assert (await post(client, body))[0] == 200
    await settle(client)

    clusters = [r["cluster"] for r in records_in(config)]
    assert clusters == ["prod-us"] * 4 + [EKS_CLUSTER] * 6


async def test_a_gzip_body_is_inflated_by_the_server(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    """``Content-Encoding: gzip`` (the stream's GZIP content encoding): the same records."""
    config = _config(tmp_path)
    client = await _client(aiohttp_client, config)

    status, _ = await post(client, firehose_body([record(gz(cwl_message(CAPTURE_EVENTS)))]), gzipped=True)
    await settle(client)

    assert status == 200
    assert len(records_in(config)) > 0


@pytest.mark.parametrize("wrap", [gz, lambda data: data], ids=["gzip", "decompressed"])
async def test_a_control_message_alone_is_200_and_records_nothing(
    aiohttp_client: AiohttpClient, tmp_path: Path, wrap: Callable[[bytes], bytes]
) -> None:
    """AWS's real CONTROL_MESSAGE: acknowledged, counted, no record and no dead letter."""
    config = _config(tmp_path)
    client = await _client(aiohttp_client, config)

    status, answer = await post(client, firehose_body([record(wrap(CONTROL_MESSAGE))]))
    await settle(client)

    assert (status, set(answer)) == (200, {"requestId", "timestamp"})
    assert records_in(config) == []
    assert dead_letters_in(config) == []
    assert _cloud_items(client, "control_message") == 1


async def test_other_streams_of_the_group_are_skipped_and_counted(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    config = _config(tmp_path)
    client = await _client(aiohttp_client, config)
    other = cwl_message([b"time=... authenticator line", b"another"], stream="authenticator-abc")

    assert (await post(client, firehose_body([record(gz(other))])))[0] == 200
    await settle(client)

    assert records_in(config) == []
    assert _cloud_items(client, "skipped") == 2


async def test_a_body_over_the_limit_is_400_never_413(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    """Firehose drops a batch answered 413 without backing it up: a 400 is retried, then backed up.
    The refusal leaves a dead letter, as the gap it is."""
    config = _config(tmp_path, max_body_bytes=4096)
    client = await _client(aiohttp_client, config)

    status, answer = await post(client, firehose_body([record(gz(cwl_message(CAPTURE_EVENTS)))] * 8))
    await settle(client)

    assert status == 400
    assert answer["errorMessage"].startswith("body-too-large:")
    assert "buffering size" in answer["errorMessage"]
    assert [d["reason"] for d in dead_letters_in(config)] == ["body-too-large"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[1, 2]", "not-firehose-body"),
        (b'{"requestId": "x", "records": {}}', "records-not-list"),
        (b'{"records": []}', "missing-request-id"),
        (b'{"requestId": "x", "records": [', "not-json"),
    ],
)
async def test_a_body_that_is_not_a_delivery_is_400_with_its_reason(
    aiohttp_client: AiohttpClient, tmp_path: Path, body: bytes, reason: str
) -> None:
    config = _config(tmp_path)
    client = await _client(aiohttp_client, config)

    status, answer = await post(client, body)

    assert status == 400
    assert answer["errorMessage"].startswith(f"{reason}:")
    assert answer["requestId"] == REQUEST_ID


async def test_a_damaged_record_costs_only_itself(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    config = _config(tmp_path)
    client = await _client(aiohttp_client, config)
    body = firehose_body([{"data": "!!not base64!!"}, record(gz(cwl_message(CAPTURE_EVENTS)))])

    assert (await post(client, body))[0] == 200
    await settle(client)

    assert [d["reason"] for d in dead_letters_in(config)] == ["record-not-base64"]
    assert len(records_in(config)) > 0


async def test_a_storage_failure_is_503_and_the_retry_is_recorded(
    aiohttp_client: AiohttpClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spool cannot write: 503 with an errorMessage (Firehose retries); the retry records it all."""
    config = _config(tmp_path)
    client = await _client(aiohttp_client, config)
    real_pwrite = os.pwrite
    spool = (config.data_dir / "spool").resolve()

    def failing(fd: int, data: bytes | memoryview, offset: int) -> int:
        if Path(os.readlink(f"/proc/self/fd/{fd}")).parent == spool:
            raise OSError(28, os.strerror(28))
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", failing)
    status, answer = await post(client, firehose_body([record(gz(cwl_message(CAPTURE_EVENTS)))]))
    monkeypatch.undo()

    assert status == 503
    assert answer["errorMessage"].startswith("storage:")
    assert answer["requestId"] == REQUEST_ID

    status, _ = await post(client, firehose_body([record(gz(cwl_message(CAPTURE_EVENTS)))]))
    await settle(client)
    assert status == 200
    assert len(records_in(config)) > 0


async def test_routes_exist_only_when_configured(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    client = await _client(aiohttp_client, make_config(tmp_path))
    resp = await client.post("/firehose", data=b"{}", headers={"Content-Type": "application/json"})
    assert resp.status == 404


# --- no secret value anywhere -------------------------------------------------------------------------


async def test_no_secret_value_reaches_any_output(tmp_path: Path) -> None:
    """Every capture in every envelope, plus rejected copies: records, dead letters, the spool,
    answers, metrics and log lines hold none of the scenario's secret values."""
    config = _config(tmp_path)
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(config)))
    await client.start_server()
    said: list[bytes] = []
    try:
        with capture_logs() as logs:
            for n, wrap in enumerate(ENVELOPES.values()):
                body = firehose_body(wrap(scenario_event_bytes()), request_id=f"leak-{n}")
                said.append(orjson.dumps(await post(client, body, request_id=f"leak-{n}")))
            stray = firehose_body([record(gz(cwl_message(scenario_event_bytes(), cluster="staging")))])
            said.append(orjson.dumps(await post(client, stray, request_id="leak-stray")))
            said.append(orjson.dumps(await post(client, stray, key=OTHER_KEY)))
            await settle(client)
            said.append(await (await client.get("/metrics")).read())
        said.append(orjson.dumps(logs, default=str))
    finally:
        await client.close()

    assert len(dead_letters_in(config)) > 100
    assert [orjson.loads(s)[0] for s in said[: len(ENVELOPES) + 2]] == [200] * (len(ENVELOPES) + 1) + [401]
    answers = tmp_path / "answers-and-logs"
    answers.write_bytes(b"\n".join(said))
    assert scan([config.data_dir, answers], scenario_secrets()) == []
    assert FIREHOSE_KEY.encode() not in answers.read_bytes()
