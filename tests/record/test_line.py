"""The line sinks read: its type from the header bytes, its fields parsed once."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest

from tests.conftest import enrichment_of, make_event
from webhook.record.access import AccessClient, AccessRecord, AccessRequest, AccessSummary
from webhook.record.alert import Alert
from webhook.record.audit import Record, record_id
from webhook.record.line import (
    ACCESS,
    ACCESS_SUMMARY,
    ALERT,
    AUDIT,
    SCHEMA_VERSION,
    RecordHeader,
    RecordLine,
    to_json,
    type_of,
)

T = "2026-11-24T14:20:41.000000Z"


def audit_record() -> Record:
    event = make_event()
    return Record.from_event(
        event,
        record_id=record_id(event["auditID"], event["stage"], "d"),
        cluster="c",
        received_at=T,
        enrichment=enrichment_of(event),
    )


def access_record() -> AccessRecord:
    request = AccessRequest(
        method="GET",
        host="shop.example.com",
        path="/",
        protocol="HTTP/1.1",
        status=401,
        status_class="4xx",
        bytes_sent=0,
        request_time_s=0.001,
        user_agent=None,
        referer_host=None,
        remote_user=None,
        request_id=None,
    )
    return AccessRecord(
        id="a",
        cluster="c",
        time=T,
        received_at=T,
        input="http",
        format="nginx",
        client=AccessClient(ip="192.0.2.1", trust="unknown"),
        request=request,
        upstream=None,
        ingress=None,
        kept_because=("status",),
    )


def access_summary() -> AccessSummary:
    return AccessSummary(
        id="s",
        cluster="c",
        time=T,
        received_at=T,
        window_start=T,
        window_end=T,
        scope="host",
        host="shop.example.com",
        requests=1,
        statuses={"4xx": 1},
        auth_failures=1,
    )


def alert() -> Alert:
    return Alert(
        id="x",
        fingerprint="f",
        cluster="c",
        status="firing",
        detection="brute-force-client",
        severity="high",
        summary="s",
        description="d",
        labels={},
        namespace=None,
        actor=None,
        object=None,
        count=1,
        threshold=1,
        window_s=60.0,
        starts_at=T,
        ends_at=None,
        time=T,
        received_at=T,
        records=(),
        records_total=1,
    )


RECORDS: list[tuple[Callable[[], RecordHeader], str]] = [
    (audit_record, AUDIT),
    (access_record, ACCESS),
    (access_summary, ACCESS_SUMMARY),
    (alert, ALERT),
]


@pytest.mark.parametrize(("build", "kind"), RECORDS, ids=[kind for _, kind in RECORDS])
def test_every_record_type_starts_with_the_header(build: Callable[[], RecordHeader], kind: str) -> None:
    """schema_version, then type, first in each record type's JSON: what type_of reads."""
    record = build()
    line = to_json(record)

    assert list(orjson.loads(line))[:2] == ["schema_version", "type"]
    assert orjson.loads(line)["schema_version"] == SCHEMA_VERSION
    assert type_of(line) == kind
    assert RecordLine(line).type == kind
    assert RecordLine.of(record).type == kind


def test_the_type_is_read_without_parsing_the_line() -> None:
    """Only the header is read: the rest of a line may be anything, and is not looked at."""
    line = RecordLine(b'{"schema_version":1,"type":"alert","id": not JSON at all')

    assert line.type == ALERT
    with pytest.raises(orjson.JSONDecodeError):
        _ = line.record


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b'{"id":"x2","type":"alert"}', ALERT),  # another key order
        (b'{"schema_version":1,"type":"al\\u0065rt"}', ALERT),  # an escape: the prefix cannot tell
        (b'{"schema_version":2,"type":"audit"}', AUDIT),  # another version's header
        (b'{"schema_version":1,"id":"x"}', ""),  # no type at all
        (b'{"schema_version":1,"type":7}', ""),
    ],
)
def test_a_line_written_otherwise_is_typed_by_parsing_it(data: bytes, kind: str) -> None:
    """Lines not written by to_json get their type from the parsed record, exactly."""
    assert type_of(data) is None
    assert RecordLine(data).type == kind


def test_the_record_is_parsed_once() -> None:
    """Every reader of ``record`` (delivery's lag, the sink) shares one parse."""
    line = RecordLine(to_json(access_summary()))

    first = line.record

    assert line.record is first
    assert first["type"] == ACCESS_SUMMARY
    assert line.type == ACCESS_SUMMARY


def test_a_given_type_is_trusted() -> None:
    """A writer that knows the type passes it; the line is not read for it."""
    assert RecordLine(b"{}", ALERT).type == ALERT
