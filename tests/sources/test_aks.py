"""Decoding AKS diagnostic records: both forms, categories, cluster identity, the 16 KiB cut,
and damage that costs only the damaged record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import capture_events, captured_bodies, scenario_secrets
from tests.sources.aks_records import (
    aks_record,
    big_event,
    blob_lines,
    cut_log,
    envelope,
    event_log,
    klog_record,
    record_line,
    resource_id,
    scenario_events,
)
from webhook.errors import ConfigError
from webhook.sources.aks import (
    LOG_CUT_BYTES,
    AksBatch,
    AllowedClusters,
    cluster_of,
    decode_aks_line,
    decode_aks_records,
    is_truncated,
    read_aks_blob_lines,
)
from webhook.sources.cloud import CloudEvent, CloudReject


def events_of(batch: AksBatch) -> list[CloudEvent]:
    return [item for item in batch.items if isinstance(item, CloudEvent)]


def rejects_of(batch: AksBatch) -> list[CloudReject]:
    return [item for item in batch.items if isinstance(item, CloudReject)]


# -- the captured scenario, wrapped as Azure writes it ---------------------------------------


@pytest.mark.parametrize("body", captured_bodies(), ids=lambda p: p.stem)
def test_every_captured_event_decodes_from_a_blob(body: Path) -> None:
    """Each captured event, one record per line, becomes one event with the log's exact bytes."""
    events = capture_events(body.name)
    batch = decode_aks_records(blob_lines(aks_record(e) for e in events))

    assert batch.items
    assert batch.records == len(events)
    assert [item.event for item in events_of(batch)] == [event_log(e).encode() for e in events]
    assert {item.cluster for item in events_of(batch)} == {"prod-eu"}
    assert [orjson.loads(item.event)["auditID"] for item in events_of(batch)] == [
        e["auditID"] for e in events
    ]


@pytest.mark.parametrize("body", captured_bodies(), ids=lambda p: p.stem)
def test_every_captured_event_decodes_from_an_envelope(body: Path) -> None:
    """The same events in one ``{"records": [...]}`` envelope, compact and indented."""
    events = capture_events(body.name)
    records = [aks_record(e, category="kube-audit-admin") for e in events]
    expected = [event_log(e).encode() for e in events]

    for data in (envelope(records), envelope(records, indent=True)):
        batch = decode_aks_records(data)
        assert [item.event for item in batch.items if isinstance(item, CloudEvent)] == expected
        assert batch.records == len(events)
        assert batch.skipped == 0


def test_blob_forms_agree() -> None:
    """Compact lines, spaced lines, lines of envelopes and one envelope decode alike."""
    records = [aks_record(e) for e in scenario_events()[:60]]
    forms = [
        blob_lines(records),
        blob_lines(records, spaced=True),
        envelope(records[:30]) + b"\n" + envelope(records[30:]) + b"\n",
        envelope(records),
        b"\xef\xbb\xbf" + blob_lines(records),
    ]
    decoded = [[item.event for item in events_of(decode_aks_records(form))] for form in forms]

    assert all(d == decoded[0] for d in decoded)
    assert len(decoded[0]) == 60


def test_one_record_alone_and_empty_input() -> None:
    """A single record (no newline) is one event; empty or blank input is nothing."""
    event = scenario_events()[0]

    assert events_of(decode_aks_records(record_line(aks_record(event))))[0].event == event_log(event).encode()
    assert decode_aks_records(b"") == AksBatch()
    assert decode_aks_records(b"\n \n") == AksBatch()
    assert decode_aks_line(b"  \n") == AksBatch()


def test_rereading_gives_identical_items() -> None:
    """Decoding is a function of the bytes; kube-audit-admin's copy is the same event."""
    events = scenario_events()[:50]
    data = blob_lines(aks_record(e) for e in events)
    admin = blob_lines(aks_record(e, category="kube-audit-admin") for e in events)

    assert decode_aks_records(data) == decode_aks_records(data)
    assert decode_aks_records(data).items == decode_aks_records(admin).items


# -- categories --------------------------------------------------------------------------------


def test_other_categories_are_skipped_and_counted() -> None:
    """Records of other categories are counted, neither delivered nor rejected."""
    events = scenario_events()[:20]
    others = [
        "kube-apiserver",
        "kube-controller-manager",
        "guard",
        "cluster-autoscaler",
        "csi-azuredisk-controller",
    ]
    records: list[dict[str, Any]] = []
    for i, event in enumerate(events):
        records.append(aks_record(event))
        records.append(klog_record(category=others[i % len(others)]))

    for batch in (decode_aks_records(blob_lines(records)), decode_aks_records(envelope(records))):
        assert batch.skipped == 20
        assert batch.records == 40
        assert len(events_of(batch)) == 20
        assert rejects_of(batch) == []


def test_category_is_matched_without_case() -> None:
    """``Kube-Audit`` is ``kube-audit``: Azure's casing of values is not to be relied on."""
    batch = decode_aks_records(record_line(aks_record(scenario_events()[0], category="Kube-Audit")))

    assert batch.events == 1


# -- clusters ------------------------------------------------------------------------------------


def test_cluster_is_the_resource_ids_last_segment_in_lower_case() -> None:
    """Azure upper-cases the resourceId; the cluster is recorded in lower case."""
    record = aks_record(scenario_events()[0], cluster="Prod-EU_2")
    assert record["resourceId"].endswith("/MANAGEDCLUSTERS/PROD-EU_2")

    (item,) = decode_aks_records(record_line(record)).items

    assert isinstance(item, CloudEvent)
    assert item.cluster == "prod-eu_2"


def test_allowed_clusters_match_without_case() -> None:
    """Names and full resource ids in the allowed list match in any case."""
    data = blob_lines([aks_record(scenario_events()[0], cluster="prod-eu")])

    for allowed in (["prod-eu"], ["PROD-EU"], ["Prod-Eu", "other"], [resource_id("prod-eu").lower()]):
        assert decode_aks_records(data, allowed).events == 1, allowed
    assert decode_aks_records(data, None).events == 1


def test_a_cluster_not_allowed_is_rejected_with_its_name() -> None:
    """Records of other clusters are rejected alone; the allowed cluster's are kept."""
    events = scenario_events()[:10]
    records = [aks_record(e, cluster="prod-eu" if i % 2 else "stranger") for i, e in enumerate(events)]

    batch = decode_aks_records(blob_lines(records), ["prod-eu"])

    assert len(events_of(batch)) == 5
    rejects = rejects_of(batch)
    assert [r.reason for r in rejects] == ["cluster-not-allowed"] * 5
    assert {r.cluster for r in rejects} == {"stranger"}
    assert [r.identity["auditID"] for r in rejects] == [e["auditID"] for e in events[::2]]
    assert "stranger" not in rejects[0].detail


def test_same_name_in_another_resource_group_is_not_allowed_by_resource_id() -> None:
    """An allowed resource id pins the subscription and group, not only the name."""
    event = scenario_events()[0]
    data = blob_lines([aks_record(event, group="rg-a"), aks_record(event, group="rg-b")])

    batch = decode_aks_records(data, [resource_id("prod-eu", "rg-a")])

    assert [type(item).__name__ for item in batch.items] == ["CloudEvent", "CloudReject"]


def test_allowed_cluster_entries_are_checked() -> None:
    """An entry that is neither a cluster name nor an AKS resource id is a config error,
    named by position."""
    for bad in (["prod eu"], [""], ["/subscriptions/x/resourceGroups/y"], ["a/b"]):
        with pytest.raises(ConfigError, match=r"clusters\[0\]") as caught:
            AllowedClusters.of(bad)
        assert bad[0] == "" or bad[0] not in caught.value.message


def test_cluster_of() -> None:
    assert cluster_of(resource_id("prod-eu")) == "prod-eu"
    assert cluster_of(resource_id("prod-eu").lower()) == "prod-eu"
    assert (
        cluster_of("/SUBSCRIPTIONS/S/RESOURCEGROUPS/G/PROVIDERS/MICROSOFT.COMPUTE/VIRTUALMACHINES/VM") is None
    )
    assert cluster_of(resource_id("prod-eu") + "/extra") is None
    assert cluster_of("") is None


# -- the 16 KiB cut ------------------------------------------------------------------------------


def test_a_log_cut_at_16_kib_is_dead_lettered_with_its_identity() -> None:
    """The cut log is rejected as truncated, with the auditID, stage and verb it still shows;
    the records around it are kept."""
    event = big_event()
    neighbours = scenario_events()[:2]
    records = [aks_record(neighbours[0]), aks_record(cut_log(event)), aks_record(neighbours[1])]

    for data in (blob_lines(records), envelope(records)):
        batch = decode_aks_records(data)
        assert len(events_of(batch)) == 2
        (reject,) = rejects_of(batch)
        assert reject.reason == "event-truncated"
        assert reject.cluster == "prod-eu"
        assert reject.identity["auditID"] == event["auditID"]
        assert reject.identity["stage"] == event["stage"]
        assert reject.identity["verb"] == event["verb"]
        assert "16 KiB" in reject.detail
        assert "label-" not in reject.detail


@pytest.mark.parametrize("at", [LOG_CUT_BYTES, LOG_CUT_BYTES - 3, LOG_CUT_BYTES + 1])
def test_cut_lengths_that_count_as_truncated(at: int) -> None:
    """At the cut, a few bytes short of it (a split character dropped) or past it."""
    batch = decode_aks_line(record_line(aks_record(cut_log(big_event(), at))))

    assert [r.reason for r in rejects_of(batch)] == ["event-truncated"]


def test_a_cut_through_a_multibyte_character() -> None:
    """A cut inside a UTF-8 sequence, the broken bytes dropped or replaced, is still truncated."""
    event = big_event()
    event["responseObject"]["metadata"]["annotations"] = {"example.test/note": "ü€😀" * 6000}
    raw = event_log(event).encode()
    for text in (
        raw[:LOG_CUT_BYTES].decode("utf-8", "ignore"),
        raw[:LOG_CUT_BYTES].decode("utf-8", "replace"),
    ):
        batch = decode_aks_line(record_line(aks_record(text)))
        assert [r.reason for r in rejects_of(batch)] == ["event-truncated"]


def test_short_broken_log_is_not_called_truncated() -> None:
    """Well below the cut, a log that does not decode is broken, not cut."""
    text = event_log(scenario_events()[0])[:200]

    (reject,) = rejects_of(decode_aks_line(record_line(aks_record(text))))

    assert reject.reason == "event-not-json"
    assert reject.identity["auditID"] == scenario_events()[0]["auditID"]


def test_a_whole_log_longer_than_the_cut_is_an_event() -> None:
    """Length alone is not truncation: a complete Event over 16 KiB decodes."""
    event = big_event()
    assert len(event_log(event).encode()) > 2 * LOG_CUT_BYTES

    (item,) = decode_aks_line(record_line(aks_record(event))).items

    assert isinstance(item, CloudEvent)
    assert item.event == event_log(event).encode()


def test_is_truncated_rule() -> None:
    assert is_truncated(b"x" * LOG_CUT_BYTES)
    assert is_truncated(b"x" * (LOG_CUT_BYTES - 8))
    assert not is_truncated(b"x" * (LOG_CUT_BYTES - 9))


# -- damage costs only the damaged record --------------------------------------------------------


def _damaged_lines() -> dict[str, tuple[bytes, str]]:
    """One damaged blob line of each kind, and the reason it gets."""
    event = scenario_events()[3]
    good = record_line(aks_record(event))
    no_category = aks_record(event)
    del no_category["category"]
    no_resource = aks_record(event)
    no_resource["resourceId"] = "/SUBSCRIPTIONS/S/RESOURCEGROUPS/G/PROVIDERS/MICROSOFT.COMPUTE/VM/X"
    no_log = aks_record(event)
    del no_log["properties"]["log"]
    log_not_string = aks_record(event)
    log_not_string["properties"]["log"] = {"auditID": "x"}
    deep = "[" * 2000 + "]" * 2000
    return {
        "cut-line": (good[: len(good) // 2], "record-not-json"),
        "invalid-utf8": (good.replace(b"kube-audit", b"kube-\xff\xfeaudit"), "record-not-json"),
        "not-an-object": (b'["kube-audit"]', "malformed-record"),
        "no-category": (record_line(no_category), "malformed-record"),
        "not-aks": (record_line(no_resource), "malformed-record"),
        "no-log": (record_line(no_log), "malformed-record"),
        "log-not-string": (record_line(log_not_string), "malformed-record"),
        "log-not-object": (record_line(aks_record("[1, 2]")), "malformed-event"),
        "log-too-deep": (record_line(aks_record(deep)), "event-too-deep"),
        "lone-surrogate": (good.replace(b'"stream":"stdout"', b'"stream":"\\ud800"'), "record-not-json"),
        "big-number": (record_line(aks_record('{"auditID":"a-1","n":1e99999}')), "event-not-json"),
    }


@pytest.mark.parametrize("kind", list(_damaged_lines()))
def test_damage_to_one_line_costs_only_that_line(kind: str) -> None:
    """Between good lines, a damaged one is rejected alone and every other event is kept."""
    line, reason = _damaged_lines()[kind]
    events = scenario_events()[:6]
    good = [record_line(aks_record(e)) for e in events]
    data = b"\n".join([*good[:3], line, *good[3:]]) + b"\n"

    batch = decode_aks_records(data)

    assert [item.event for item in events_of(batch)] == [event_log(e).encode() for e in events]
    (reject,) = rejects_of(batch)
    assert reject.reason == reason
    assert reject.identity.get("line") == "4"
    assert batch.records == 7


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param((b'"stream":"stdout"', b'"stream":"std\xffout"'), id="invalid-utf8"),
        pytest.param((b'"serviceBuild":"na"', b'"serviceBuild":1e99999'), id="big-number"),
        pytest.param((b'"serviceBuild":"na"', b'"serviceBuild":"\\ud800"'), id="lone-surrogate"),
        pytest.param((b'"serviceBuild":"na"', b'"serviceBuild":' + b"[" * 2000 + b"]" * 2000), id="too-deep"),
    ],
)
def test_damage_to_one_record_of_an_envelope_costs_only_that_record(damage: tuple[bytes, bytes]) -> None:
    """Inside an envelope, a record that does not decode is rejected alone, with its cluster
    and auditID; the envelope's other records are kept."""
    events = scenario_events()[:5]
    records = [envelope([aks_record(e)])[len(b'{"records":[') : -2] for e in events]
    old, new = damage
    records[2] = records[2].replace(old, new)
    data = b'{"records":[' + b",".join(records) + b"]}"

    batch = decode_aks_records(data)

    assert len(events_of(batch)) == 4
    (reject,) = rejects_of(batch)
    assert reject.reason == "record-not-json"
    assert reject.identity["record"] == "3"
    assert reject.identity["auditID"] == events[2]["auditID"]
    assert reject.cluster == "prod-eu"


def test_records_that_is_not_a_list() -> None:
    """An envelope whose ``records`` is not a list is one reject, nothing else read."""
    for data in (b'{"records": {"a": 1}}', b'{"records": 1e99999}'):
        batch = decode_aks_records(data)
        assert [r.reason for r in rejects_of(batch)] == ["malformed-envelope"]


# -- replay of downloaded blobs --------------------------------------------------------------------


def test_read_blob_lines_numbers_the_lines(tmp_path: Path) -> None:
    """A downloaded PT1H.json read line by line: events in order, rejects by line number."""
    events = scenario_events()[:4]
    blob = tmp_path / "PT1H.json"
    lines = [record_line(aks_record(e)) for e in events]
    lines.insert(2, b'{"category": "kube-audit", "time": "2026-11-24T14:20:20Z"')
    blob.write_bytes(b"\xef\xbb\xbf" + b"\n".join(lines) + b"\n\n")

    with blob.open("rb") as stream:
        batches = list(read_aks_blob_lines(stream, ["prod-eu"]))

    assert len(batches) == 5
    items = [item for batch in batches for item in batch.items]
    assert [i.event for i in items if isinstance(i, CloudEvent)] == [event_log(e).encode() for e in events]
    (reject,) = [i for i in items if isinstance(i, CloudReject)]
    assert reject.identity == {"line": "3"}


# -- nothing secret leaves in a reject -------------------------------------------------------------


def test_rejects_never_quote_a_secret() -> None:
    """Every event that holds a secret, cut through the secret: the reject quotes none of it."""
    secrets = [s for s in scenario_secrets() if len(s) >= 8]
    rejects: list[CloudReject] = []
    for event in scenario_events():
        log = event_log(event)
        for secret in secrets:
            at = log.find(secret)
            if at >= 0:
                cut = log[: at + len(secret) // 2]
                damaged = record_line(aks_record(event))
                rejects += rejects_of(decode_aks_line(record_line(aks_record(cut)), ["other"]))
                rejects += rejects_of(decode_aks_line(record_line(aks_record(cut))))
                rejects += rejects_of(decode_aks_line(damaged[: len(damaged) - 40]))
                break
    assert len(rejects) > 10
    text = repr(rejects)
    assert not [s for s in secrets if s in text]
