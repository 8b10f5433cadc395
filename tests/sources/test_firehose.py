from __future__ import annotations

import base64
import gzip
import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import captured_bodies, scenario_secrets
from tests.sources.envelopes import (
    AUDIT_STREAM,
    CONTROL_MESSAGE,
    capture_event_bytes,
    cwl_message,
    firehose_body,
    gz,
    record,
    scenario_event_bytes,
)
from webhook.dedupe import Deduper
from webhook.errors import BadRequestError
from webhook.record.audit import record_id
from webhook.sources.cloud import CloudEvent, CloudReject
from webhook.sources.firehose import (
    FirehoseBatch,
    FirehoseBodyError,
    decode_firehose,
    firehose_answer,
    safe_request_id,
)
from webhook.sources.firehose_keys import FirehoseGrant

PROD = FirehoseGrant(Path("/etc/ingress-audit/firehose/prod.key"), frozenset({"prod-eu"}))
FLEET = FirehoseGrant(Path("/etc/ingress-audit/firehose/fleet.key"), frozenset({"prod-eu", "prod-us"}))
EVENTS = capture_event_bytes(captured_bodies()[0])


def chunks(events: Sequence[bytes], size: int) -> list[Sequence[bytes]]:
    return [events[i : i + size] for i in range(0, len(events), size)]


def cwl_gzip(events: Sequence[bytes]) -> list[dict[str, Any]]:
    """CloudWatch Logs → Firehose as configured by default: base64(gzip(subscription message))."""
    return [record(gz(cwl_message(chunk))) for chunk in chunks(events, 7)]


def cwl_plain(events: Sequence[bytes]) -> list[dict[str, Any]]:
    """Firehose with decompression on: base64(subscription message)."""
    return [record(cwl_message(chunk)) for chunk in chunks(events, 7)]


def extracted(events: Sequence[bytes]) -> list[dict[str, Any]]:
    """Firehose with decompression and message extraction: one bare message a record."""
    return [record(event) for event in events]


def extracted_joined(events: Sequence[bytes]) -> list[dict[str, Any]]:
    """Message extraction with several messages to a record, one a line."""
    return [record(b"\n".join(chunk) + b"\n") for chunk in chunks(events, 7)]


ENVELOPES: dict[str, Callable[[Sequence[bytes]], list[dict[str, Any]]]] = {
    "cwl-gzip": cwl_gzip,
    "cwl-plain": cwl_plain,
    "extracted": extracted,
    "extracted-joined": extracted_joined,
}


def decode(records: Sequence[dict[str, Any]], grant: FirehoseGrant = PROD, **limits: int) -> FirehoseBatch:
    return decode_firehose(firehose_body(records), grant, **limits)


def events_of(batch: FirehoseBatch) -> list[bytes]:
    assert all(isinstance(item, CloudEvent) for item in batch.items), rejects_of(batch)
    return [item.event for item in batch.items if isinstance(item, CloudEvent)]


def rejects_of(batch: FirehoseBatch) -> list[CloudReject]:
    return [item for item in batch.items if isinstance(item, CloudReject)]


@pytest.mark.parametrize("envelope", ENVELOPES)
@pytest.mark.parametrize("body", captured_bodies(), ids=lambda p: p.stem)
def test_every_captured_event_comes_back_byte_for_byte(body: Path, envelope: str) -> None:
    """Each captured event, in each envelope, is handed back unchanged, as its key's cluster."""
    events = capture_event_bytes(body)
    assert events

    batch = decode(ENVELOPES[envelope](events))

    assert events_of(batch) == list(events)
    assert {item.cluster for item in batch.items if isinstance(item, CloudEvent)} == {"prod-eu"}
    assert batch.request_id == "ed4acda5-034f-9f42-bba1-f29aea6d7d8f"
    assert batch.timestamp == 1795530041599
    assert (batch.control_messages, batch.skipped_events, batch.rejects) == (0, 0, 0)


def test_the_whole_scenario_in_one_request() -> None:
    """Every event of the scenario in one request of real size comes back in order."""
    events = scenario_event_bytes()

    batch = decode(cwl_gzip(events))

    assert events_of(batch) == events
    assert batch.records == len(chunks(events, 7))


def test_control_message_is_counted_and_dropped() -> None:
    """AWS's real health check, gzip'd or already inflated by Firehose, becomes no item."""
    records = [record(gz(CONTROL_MESSAGE)), *cwl_gzip(EVENTS[:3]), record(CONTROL_MESSAGE)]

    batch = decode(records)

    assert events_of(batch) == list(EVENTS[:3])
    assert batch.control_messages == 2


def test_other_streams_of_the_group_are_skipped() -> None:
    """Authenticator and apiserver log lines are counted, neither recorded nor dead-lettered."""
    lines = ['time="2026-11-24T14:20:40Z" level=info msg="access granted"', "I1124 14:20:40.457 1 x.go:1] ok"]
    records = [
        record(gz(cwl_message(lines, stream="authenticator-71976ca11bea5d3083393f7d32dab75b"))),
        record(gz(cwl_message(lines, stream="kube-apiserver-71976ca11bea5d3083393f7d32dab75b"))),
        *cwl_gzip(EVENTS[:2]),
        record("\n".join(lines).encode()),  # extracted by Firehose: no stream name left
    ]

    batch = decode(records)

    assert events_of(batch) == list(EVENTS[:2])
    assert batch.skipped_events == 6


def test_cluster_not_on_the_key_list_is_dead_lettered() -> None:
    """An event of a log group whose cluster the key may not carry is rejected, with its auditID."""
    records = [*cwl_gzip(EVENTS[:2]), record(gz(cwl_message(EVENTS[2:4], cluster="staging")))]

    batch = decode(records)

    assert [i.event for i in batch.items if isinstance(i, CloudEvent)] == list(EVENTS[:2])
    rejects = rejects_of(batch)
    assert [r.reason for r in rejects] == ["cluster-not-allowed"] * 2
    assert all("not on the list" in r.detail for r in rejects)
    assert [r.identity["auditID"] for r in rejects] == [orjson.loads(e)["auditID"] for e in EVENTS[2:4]]
    assert {r.identity["logGroup"] for r in rejects} == {"/aws/eks/staging/cluster"}
    assert {r.identity["logStream"] for r in rejects} == {AUDIT_STREAM}
    assert all(r.cluster is None for r in rejects)


def test_a_key_of_many_clusters_takes_each_from_its_log_group() -> None:
    records = [record(gz(cwl_message(EVENTS[:1], cluster="prod-us"))), *cwl_gzip(EVENTS[1:2])]

    batch = decode(records, FLEET)

    assert [(i.cluster, i.event) for i in batch.items if isinstance(i, CloudEvent)] == [
        ("prod-us", EVENTS[0]),
        ("prod-eu", EVENTS[1]),
    ]


def test_extracted_records_need_a_key_of_one_cluster() -> None:
    """Without a log group, only a key bound to one cluster says whose events they are."""
    batch = decode(extracted(EVENTS[:2]), FLEET)

    rejects = rejects_of(batch)
    assert [r.reason for r in rejects] == ["cluster-unknown"] * 2
    assert "more than one cluster" in rejects[0].detail
    assert [r.identity["auditID"] for r in rejects] == [orjson.loads(e)["auditID"] for e in EVENTS[:2]]


def test_log_group_that_is_not_an_eks_control_plane_is_rejected() -> None:
    records = [record(gz(cwl_message(EVENTS[:3], log_group="/aws/lambda/ingest"))), *cwl_gzip(EVENTS[3:4])]

    batch = decode(records)

    assert [(r.reason, dict(r.identity)) for r in rejects_of(batch)] == [
        ("log-group-not-eks", {"record": "0"})
    ]
    assert [i.event for i in batch.items if isinstance(i, CloudEvent)] == [EVENTS[3]]


def test_truncated_event_is_rejected_with_its_audit_id() -> None:
    """CloudWatch's cut lines end with [Truncated...]: rejected, naming auditID and stage."""
    event = max(scenario_event_bytes(), key=len)
    cut = event[:4000] + b"[Truncated...]"

    batch = decode([record(gz(cwl_message([cut, EVENTS[0]])))])

    (reject,) = rejects_of(batch)
    assert reject.reason == "event-truncated"
    assert reject.cluster == "prod-eu"
    parsed = orjson.loads(event)
    assert reject.identity["auditID"] == parsed["auditID"]
    assert reject.identity["stage"] == parsed["stage"]
    assert reject.identity["logEventId"].isdigit()
    assert batch.events == 1


def bomb(size: int) -> bytes:
    return gz(b"{" + b" " * size + b"}")


DAMAGED: dict[str, tuple[Any, str]] = {
    "not-base64": ({"data": "not base64!"}, "record-not-base64"),
    "no-data": ({"payload": "e30="}, "record-malformed"),
    "not-an-object": (["e30="], "record-malformed"),
    "empty": ({"data": ""}, "record-empty"),
    "truncated-gzip": (record(gz(cwl_message(EVENTS[:2]))[:-9]), "record-not-gzip"),
    "gzip-bad-crc": (record(gz(cwl_message(EVENTS[:2]))[:-8] + b"\0\0\0\0" + b"\0\0\0\0"), "record-not-gzip"),
    "gzip-then-garbage": (record(gz(cwl_message(EVENTS[:2])) + b"garbage"), "record-not-gzip"),
    "bomb": (record(bomb(2 * 1024 * 1024)), "record-too-large"),
    "gzip-not-json": (record(gz(b"not json")), "record-not-json"),
    "gzip-json-not-object": (record(gz(b"[1, 2]")), "record-not-json"),
    "unknown-message-type": (record(gz(cwl_message(EVENTS[:1], message_type="X"))), "unknown-message-type"),
    "message-not-object": (record(gz(cwl_message(["[1, 2]"]))), "event-not-object"),
    "message-not-json": (record(gz(cwl_message(['{"auditID":"a-1", nope']))), "event-not-json"),
    "message-too-deep": (record(gz(cwl_message(["[" * 2000 + "]" * 2000]))), "event-too-deep"),
    "no-log-events": (
        record(gz(orjson.dumps({"messageType": "DATA_MESSAGE", "logGroup": "/aws/eks/prod-eu/cluster"}))),
        "record-malformed",
    ),
    "log-event-without-message": (
        record(
            gz(
                orjson.dumps(
                    {
                        "messageType": "DATA_MESSAGE",
                        "logGroup": "/aws/eks/prod-eu/cluster",
                        "logStream": AUDIT_STREAM,
                        "logEvents": [{"id": "1"}],
                    }
                )
            )
        ),
        "log-event-malformed",
    ),
    "binary-not-gzip": (record(b"\x00\xff" * 40), "record-undecodable"),
    "damaged-gzip-magic": (record(b"\x1e" + gz(cwl_message(EVENTS[:2]))[1:]), "record-undecodable"),
}


@pytest.mark.parametrize("damage", DAMAGED)
def test_a_damaged_record_costs_only_itself(damage: str) -> None:
    """Each kind of damage rejects the record (or message) alone; the records around it are kept."""
    bad, reason = DAMAGED[damage]

    batch = decode([*cwl_gzip(EVENTS[:3]), bad, *cwl_gzip(EVENTS[3:5])], max_record_bytes=1024 * 1024)

    assert [i.event for i in batch.items if isinstance(i, CloudEvent)] == list(EVENTS[:5])
    rejects = rejects_of(batch)
    assert [r.reason for r in rejects] == [reason]
    assert rejects[0].identity["record"] == "1"
    assert rejects[0].detail


def test_a_record_that_does_not_decode_with_the_body_is_rejected_alone() -> None:
    """Invalid UTF-8 inside one record's data: the body is split into records, each decoded alone."""
    first, second = (orjson.dumps(record(gz(cwl_message([e])))) for e in EVENTS[:2])
    body = (
        b'{"requestId":"r-1","timestamp":1,"records":['
        + first
        + b',{"data":"\xff\xfe\x00"},'
        + second
        + b"]}"
    )

    batch = decode_firehose(body, PROD)

    assert [r.reason for r in rejects_of(batch)] == ["record-not-json"]
    assert batch.events == 2
    assert batch.request_id == "r-1"


# What may go wrong with one record's bytes on the way: each damage is confined to that record.
damages = st.one_of(
    st.tuples(st.just("flip"), st.integers(min_value=0), st.integers(1, 255)),
    st.tuples(st.just("cut"), st.integers(min_value=0)),
    st.tuples(st.just("payload"), st.binary(max_size=200)),
    st.tuples(st.just("data"), st.text(max_size=200)),
    st.tuples(st.just("raw"), st.binary(max_size=200).filter(lambda b: b'"' not in b and b"\\" not in b)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged=st.integers(0, 4), damage=damages, plain=st.booleans())
def test_any_damage_to_one_record_costs_only_that_record(
    damaged: int, damage: tuple[Any, ...], plain: bool
) -> None:
    """Whatever happens to one record's bytes, every other record's events come back intact."""
    groups = chunks(EVENTS[:15], 3)
    payloads = [cwl_message(g) if plain else gz(cwl_message(g)) for g in groups]
    parts = [orjson.dumps(record(p)) for p in payloads]
    kind = damage[0]
    if kind == "flip":
        data = bytearray(payloads[damaged])
        data[damage[1] % len(data)] ^= damage[2]
        parts[damaged] = orjson.dumps(record(bytes(data)))
    elif kind == "cut":
        parts[damaged] = orjson.dumps(record(payloads[damaged][: damage[1] % len(payloads[damaged])]))
    elif kind == "payload":
        parts[damaged] = orjson.dumps(record(damage[1]))
    elif kind == "data":
        parts[damaged] = orjson.dumps({"data": damage[1]})
    else:
        parts[damaged] = b'{"data":"' + damage[1] + b'"}'
    body = b'{"requestId":"r-1","timestamp":1,"records":[' + b",".join(parts) + b"]}"

    batch = decode_firehose(body, PROD)

    before = [e for g in groups[:damaged] for e in g]
    after = [e for g in groups[damaged + 1 :] for e in g]
    items = list(batch.items)
    head, tail = items[: len(before)], items[len(items) - len(after) :] if after else []
    assert [i.event for i in head if isinstance(i, CloudEvent)] == before
    assert [i.event for i in tail if isinstance(i, CloudEvent)] == after
    assert all(r.identity["record"] == str(damaged) for r in rejects_of(batch))


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not-json"),
        (b"not json at all", "not-json"),
        (b'{"requestId": "r", "records": [', "not-json"),
        (b"[]", "not-firehose-body"),
        (b'{"timestamp": 1, "records": []}', "missing-request-id"),
        (b'{"requestId": 7, "records": []}', "missing-request-id"),
        (b'{"requestId": "", "records": []}', "missing-request-id"),
        (b'{"requestId": "r"}', "records-not-list"),
        (b'{"requestId": "r", "records": {"data": "e30="}}', "records-not-list"),
        (b'{"requestId": "r", "records": {"data": "\xff"}}', "records-not-list"),
    ],
)
def test_a_body_that_is_not_a_firehose_delivery_is_refused(body: bytes, reason: str) -> None:
    """The whole body is unusable: one error type (a 400), with a kebab-case reason."""
    with pytest.raises(FirehoseBodyError) as caught:
        decode_firehose(body, PROD)

    assert caught.value.reason == reason
    assert isinstance(caught.value, BadRequestError)
    assert caught.value.http_status == 400


def test_too_many_records_is_a_body_error() -> None:
    with pytest.raises(FirehoseBodyError) as caught:
        decode(cwl_gzip(EVENTS[:21]), max_records=2)

    assert caught.value.reason == "too-many-records"


def test_a_batch_that_inflates_past_its_limit_is_a_body_error() -> None:
    """Records that each fit but together inflate past the batch limit refuse the batch: Firehose
    retries it, then backs it up to S3, rather than losing it to dead letters."""
    records = [record(bomb(600 * 1024)) for _ in range(4)]

    with pytest.raises(FirehoseBodyError) as caught:
        decode(records, max_record_bytes=1024 * 1024, max_batch_bytes=2 * 1024 * 1024)

    assert caught.value.reason == "batch-too-large"


def test_empty_records_is_an_empty_batch() -> None:
    batch = decode([])

    assert (batch.items, batch.records) == ((), 0)


def test_a_gzip_body_is_the_http_layers_to_inflate() -> None:
    """With Content-Encoding: gzip the HTTP layer inflates; the decoder takes the body as built."""
    body = firehose_body(cwl_gzip(EVENTS[:4]))

    with pytest.raises(FirehoseBodyError):
        decode_firehose(gzip.compress(body), PROD)
    assert events_of(decode_firehose(gzip.decompress(gzip.compress(body)), PROD)) == list(EVENTS[:4])


def dedupe_keys(batch: FirehoseBatch) -> list[str]:
    """The keys the pipeline dedupes on: auditID, stage and a digest of the event."""
    keys = []
    for item in batch.items:
        assert isinstance(item, CloudEvent)
        event = orjson.loads(item.event)
        digest = hashlib.blake2b(orjson.dumps(event), digest_size=16).hexdigest()
        keys.append(record_id(event["auditID"], event["stage"], digest))
    return keys


@pytest.mark.parametrize("envelope", ENVELOPES)
def test_a_firehose_retry_never_makes_a_second_record(envelope: str) -> None:
    """A retried request decodes to the same items, so each is already known to dedupe."""
    body = firehose_body(ENVELOPES[envelope](scenario_event_bytes()[:200]))
    deduper = Deduper(max_entries=10_000, ttl_s=3600)
    first = decode_firehose(body, PROD)
    deduper.remember(dedupe_keys(first))

    retry = decode_firehose(body, PROD)

    assert retry == first
    assert all(deduper.seen(key) for key in dedupe_keys(retry))


def test_answer_on_success_is_compact_json_with_a_numeric_timestamp() -> None:
    answer = firehose_answer("ed4acda5-034f-9f42-bba1-f29aea6d7d8f", 1578090903599)

    assert answer == b'{"requestId":"ed4acda5-034f-9f42-bba1-f29aea6d7d8f","timestamp":1578090903599}\n'


def test_answer_on_failure_carries_the_error_message() -> None:
    answer = orjson.loads(firehose_answer("r-1", 5, "spool-full: the spool is at its cap"))

    assert answer == {
        "requestId": "r-1",
        "timestamp": 5,
        "errorMessage": "spool-full: the spool is at its cap",
    }


def test_answer_error_message_is_cut_to_what_firehose_keeps() -> None:
    answer = orjson.loads(firehose_answer("r-1", 5, "x" * 10_000))

    assert len(answer["errorMessage"]) == 8192


@pytest.mark.parametrize(
    "request_id",
    ["", "a" * 129, "with space", 'quote"', "new\nline", "ünïcode", "../../etc", "<script>", "id;drop"],
)
def test_answer_never_echoes_a_request_id_that_is_not_an_id(request_id: str) -> None:
    answer = orjson.loads(firehose_answer(request_id, 5))

    assert answer["requestId"] == ""
    assert safe_request_id(request_id) == ""


@pytest.mark.parametrize("request_id", ["ed4acda5-034f-9f42-bba1-f29aea6d7d8f", "a" * 128, "R-1"])
def test_answer_echoes_an_id(request_id: str) -> None:
    assert orjson.loads(firehose_answer(request_id, 5))["requestId"] == request_id


def secret_inputs(secret: str) -> list[bytes]:
    """Firehose bodies that are damaged in ways that put ``secret`` where a message could quote it."""
    event = orjson.loads(EVENTS[0])
    with_secret = orjson.dumps({**event, "requestObject": {"data": {"password": secret}}})
    cut = with_secret[: with_secret.index(secret.encode()) + len(secret) // 2 + 1] + b"[Truncated...]"
    records = [
        record(gz(cwl_message([cut]))),  # truncated inside the value
        record(gz(cwl_message([with_secret[:-1]]))),  # not JSON
        record(gz(cwl_message([f'"{secret}"']))),  # not an object
        record(gz(cwl_message([with_secret], cluster="staging"))),  # cluster not allowed
        record(gz(cwl_message([with_secret], message_type=secret))),
        record(gz(cwl_message([with_secret], log_group=f"/aws/{secret}"))),
        record(gz(secret.encode())),  # inflates to something that is not JSON
        record(gz(cwl_message([with_secret]))[:-10]),  # damaged gzip
        {"data": secret + "!"},  # not base64
        {"data": secret},  # base64, maybe: then not what a record holds
        record(secret.encode() + b"\xff"),
    ]
    return [
        firehose_body(records),
        firehose_body(extracted([with_secret[:-1], cut])),
        firehose_body(records).replace(b'"requestId"', b'"requestID"'),
        orjson.dumps({"requestId": "r", "records": secret}),
        orjson.dumps({"requestId": "r", "records": [secret]}),
        b'{"requestId":"r","records":["' + secret.encode() + b'"\xff]}',
        secret.encode(),
        b'{"requestId":"' + secret.encode() + b"\xff",
    ]


@pytest.mark.parametrize("secret", scenario_secrets(), ids=lambda s: f"{s[:6]}…{len(s)}")
def test_no_secret_reaches_a_reject_or_an_error(secret: str) -> None:
    """Damaged inputs holding a secret: no detail, message or answer built from them quotes it."""
    seen: list[str] = []
    for body in secret_inputs(secret):
        try:
            batch = decode_firehose(body, PROD)
        except FirehoseBodyError as exc:
            seen += [str(exc), exc.reason, firehose_answer("r", 1, exc.message).decode()]
            continue
        for reject in rejects_of(batch):
            seen += [reject.reason, reject.detail]
            seen += [v for k, v in reject.identity.items() if k != "logGroup"]
        seen.append(firehose_answer(batch.request_id, 1, "error").decode())

    assert seen
    fragments = {secret[i : i + 8] for i in range(0, max(len(secret) - 8, 0) + 1, 4)}
    assert not [s for s in seen if secret in s or any(f in s for f in fragments if len(f) == 8)]


def test_key_of_one_cluster_records_extracted_messages_as_that_cluster() -> None:
    batch = decode(extracted(EVENTS[:1]), FirehoseGrant(Path("k"), frozenset({"dev"})))

    assert [(i.cluster, i.event) for i in batch.items if isinstance(i, CloudEvent)] == [("dev", EVENTS[0])]


def test_base64_with_newlines_is_not_base64() -> None:
    """Firehose's data is one unbroken base64 string; anything else is not its record."""
    data = base64.encodebytes(gz(cwl_message(EVENTS[:1]))).decode()

    batch = decode([{"data": data}])

    assert [r.reason for r in rejects_of(batch)] == ["record-not-base64"]
