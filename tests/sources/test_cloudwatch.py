from __future__ import annotations

import gzip
import tracemalloc
from collections.abc import Iterable
from pathlib import Path

import orjson
import pytest

from tests.conftest import captured_bodies, scenario_secrets
from tests.sources.envelopes import (
    CONTROL_MESSAGE,
    capture_event_bytes,
    cwl_message,
    gz,
    scenario_event_bytes,
)
from webhook.record.files import open_maybe_gzip
from webhook.sources.cloud import CloudEvent, CloudReject
from webhook.sources.cloudwatch import (
    CloudWatchCounts,
    GzipError,
    eks_cluster,
    gunzip_bounded,
    is_audit_stream,
    read_cloudwatch_export,
)

EVENTS = capture_event_bytes(captured_bodies()[0])


def export_lines(events: Iterable[bytes], start: int = 0) -> list[bytes]:
    """Lines as moto's CreateExportTask writes them: ``<ISO-8601 time> <message>``."""
    return [
        b"2026-11-24T14:20:%02d.%03dZ " % (n % 60, n % 1000) + e + b"\n" for n, e in enumerate(events, start)
    ]


def read(
    lines: Iterable[bytes], cluster: str = "prod-eu"
) -> tuple[list[CloudEvent | CloudReject], CloudWatchCounts]:
    counts = CloudWatchCounts()
    return list(read_cloudwatch_export(lines, cluster, counts=counts)), counts


def events_of(items: list[CloudEvent | CloudReject]) -> list[bytes]:
    assert all(isinstance(i, CloudEvent) for i in items), items
    return [i.event for i in items if isinstance(i, CloudEvent)]


def test_gunzip_bounded_reads_every_member() -> None:
    """Firehose → S3 objects are gzip members back to back."""
    assert gunzip_bounded(gz(b"one ") + gz(b"two"), 100) == b"one two"


def test_gunzip_bounded_allows_exactly_the_limit() -> None:
    assert gunzip_bounded(gz(b"x" * 100), 100) == b"x" * 100


def test_gunzip_bounded_stops_a_bomb_early() -> None:
    """Inflating stops one byte past the limit: a bomb never takes its full size in memory."""
    bomb = gz(b"\0" * (64 * 1024 * 1024))
    tracemalloc.start()
    try:
        with pytest.raises(GzipError) as caught:
            gunzip_bounded(bomb, 1024 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert caught.value.too_large
    assert peak < 4 * 1024 * 1024


def test_gunzip_bounded_counts_every_member_against_the_limit() -> None:
    with pytest.raises(GzipError) as caught:
        gunzip_bounded(gz(b"x" * 60) + gz(b"y" * 60), 100)

    assert caught.value.too_large


@pytest.mark.parametrize(
    "data",
    [
        gz(b"payload")[:-4],  # no length
        gz(b"payload")[:10],  # header only
        gz(b"payload")[:-8] + b"\1\2\3\4" + gz(b"payload")[-4:],  # wrong CRC
        gz(b"payload") + b"trailing garbage",
        b"\x1f\x8b\x08\x00not deflate at all",
    ],
    ids=["no-length", "header-only", "bad-crc", "trailing-garbage", "not-deflate"],
)
def test_gunzip_bounded_refuses_damaged_data(data: bytes) -> None:
    with pytest.raises(GzipError) as caught:
        gunzip_bounded(data, 1024)

    assert not caught.value.too_large


@pytest.mark.parametrize(
    ("group", "cluster"),
    [
        ("/aws/eks/prod-eu/cluster", "prod-eu"),
        ("/aws/eks/A_1/cluster", "A_1"),
        ("/aws/eks/" + "c" * 100 + "/cluster", "c" * 100),
        ("/aws/eks/" + "c" * 101 + "/cluster", None),
        ("/aws/eks/-x/cluster", None),
        ("/aws/eks/prod/eu/cluster", None),
        ("/aws/eks/prod-eu/cluster/", None),
        ("/aws/eks//cluster", None),
        ("/aws/lambda/prod-eu", None),
        ("", None),
        (None, None),
    ],
)
def test_eks_cluster_of_a_log_group(group: str | None, cluster: str | None) -> None:
    assert eks_cluster(group) == cluster


def test_audit_streams() -> None:
    assert is_audit_stream("kube-apiserver-audit-71976ca11bea5d3083393f7d32dab75b")
    assert not is_audit_stream("kube-apiserver-71976ca11bea5d3083393f7d32dab75b")
    assert not is_audit_stream("authenticator-71976ca11bea5d3083393f7d32dab75b")
    assert not is_audit_stream(None)


@pytest.mark.parametrize("body", captured_bodies(), ids=lambda p: p.stem)
def test_export_lines_give_back_every_event(body: Path) -> None:
    """An S3 export of the audit streams: each captured event comes back byte for byte."""
    events = capture_event_bytes(body)

    items, counts = read(export_lines(events))

    assert events_of(items) == list(events)
    assert {i.cluster for i in items} == {"prod-eu"}
    assert counts == CloudWatchCounts()


def test_export_of_a_gzip_file_read_as_replay_reads_it(tmp_path: Path) -> None:
    """The export objects are gzip'd; replay opens them by their magic bytes, as for log files."""
    path = tmp_path / "000000.gz"
    events = scenario_event_bytes()
    path.write_bytes(gzip.compress(b"".join(export_lines(events))))
    raw, stream = open_maybe_gzip(path)

    with raw, stream:
        items, _ = read(stream)

    assert events_of(items) == events


def test_export_of_the_whole_group_skips_other_streams_lines() -> None:
    lines = [
        b'2026-11-24T14:20:40.000Z time="2026-11-24T14:20:40Z" level=info msg="access granted"\n',
        b"2026-11-24T14:20:40.000Z I1124 14:20:40.457 1 x.go:1] ok\n",
        *export_lines(EVENTS[:2]),
        b"\n",
        b"   \r\n",
    ]

    items, counts = read(lines)

    assert events_of(items) == list(EVENTS[:2])
    assert counts.skipped_events == 2


def test_export_line_with_crlf_and_offset_time() -> None:
    items, _ = read([b"2026-11-24T14:20:40+00:00 " + EVENTS[0] + b"\r\n"])

    assert events_of(items) == [EVENTS[0]]


def test_truncated_export_line_is_rejected_with_its_audit_id() -> None:
    cut = EVENTS[0][:200] + b"[Truncated...]"

    items, _ = read([*export_lines([cut]), *export_lines(EVENTS[1:2])])

    reject, event = items
    assert isinstance(reject, CloudReject)
    assert reject.reason == "event-truncated"
    assert reject.identity == {
        "line": "1",
        "auditID": orjson.loads(EVENTS[0])["auditID"],
        "stage": "RequestReceived",
    }
    assert isinstance(event, CloudEvent)


def test_unrecognised_line_is_rejected_alone() -> None:
    items, _ = read([b"something else entirely\n", *export_lines(EVENTS[:1])])

    assert isinstance(items[0], CloudReject)
    assert (items[0].reason, dict(items[0].identity)) == ("line-not-recognised", {"line": "1"})
    assert events_of(items[1:]) == [EVENTS[0]]


def test_subscription_messages_one_a_line() -> None:
    """Firehose → S3 with a newline delimiter: a subscription message a line."""
    lines = [cwl_message(EVENTS[:3]) + b"\n", CONTROL_MESSAGE + b"\n", cwl_message(EVENTS[3:5]) + b"\n"]

    items, counts = read(lines)

    assert events_of(items) == list(EVENTS[:5])
    assert counts.control_messages == 1


def test_subscription_messages_back_to_back() -> None:
    """Firehose → S3 without a delimiter (the default): gunzip'd, the messages touch."""
    line = cwl_message(EVENTS[:3]) + CONTROL_MESSAGE + cwl_message(EVENTS[3:5], stream="authenticator-1")

    items, counts = read([line])

    assert events_of(items) == list(EVENTS[:3])
    assert (counts.control_messages, counts.skipped_events) == (1, 2)


def test_bare_events_back_to_back_keep_their_bytes() -> None:
    """Firehose message extraction → S3 without a delimiter: the events touch, bytes kept."""
    items, _ = read([EVENTS[0] + EVENTS[1], EVENTS[2] + b"\n"])

    assert events_of(items) == list(EVENTS[:3])


def test_subscription_message_of_another_cluster_is_rejected() -> None:
    """A replay records one cluster: another log group's events are not quietly relabelled."""
    items, _ = read([cwl_message(EVENTS[:2], cluster="staging")])

    assert [(r.reason, r.identity["line"]) for r in items if isinstance(r, CloudReject)] == [
        ("cluster-not-allowed", "1"),
        ("cluster-not-allowed", "1"),
    ]


def test_line_over_the_limit_is_rejected() -> None:
    (line,) = export_lines(EVENTS[:1])
    limit = len(line)
    items = list(read_cloudwatch_export([b"x" * (limit + 1), line], "c", max_line_bytes=limit))

    assert isinstance(items[0], CloudReject)
    assert items[0].reason == "line-too-large"
    assert isinstance(items[1], CloudEvent)


def test_counts_are_optional() -> None:
    assert [
        i.event for i in read_cloudwatch_export(export_lines(EVENTS[:1]), "c") if isinstance(i, CloudEvent)
    ]


@pytest.mark.parametrize("secret", scenario_secrets(), ids=lambda s: f"{s[:6]}…{len(s)}")
def test_no_secret_reaches_a_reject_from_an_export(secret: str) -> None:
    """Damaged export lines holding a secret: no reject's detail or identity quotes it."""
    event = orjson.loads(EVENTS[0])
    with_secret = orjson.dumps({**event, "requestObject": {"data": {"token": secret}}})
    cut = with_secret[: with_secret.index(secret.encode()) + 3] + b"[Truncated...]"
    lines = [
        *export_lines([cut, with_secret[:-1], f'"{secret}"'.encode()]),
        secret.encode(),
        b"{" + secret.encode(),
        cwl_message([with_secret], cluster="staging"),
        cwl_message([with_secret], message_type=secret),
        cwl_message([with_secret], log_group=secret),
        cwl_message([with_secret])[:-2] + cwl_message([with_secret]),
    ]

    items, counts = read(lines)

    rejects = [i for i in items if isinstance(i, CloudReject)]
    assert (len(rejects), counts.skipped_events) == (len(lines) - 1, 1)  # '"<secret>"' is not JSON text
    for reject in rejects:
        assert secret not in reject.detail
        assert not [v for k, v in reject.identity.items() if secret in v and k != "logGroup"]
