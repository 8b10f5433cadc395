from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import orjson
import pytest

from tests.conftest import capture_events, make_event
from webhook.config import Config
from webhook.dedupe import Deduper
from webhook.pipeline.stages import Pipeline
from webhook.record.audit import Record
from webhook.record.dead_letter import DeadLetter, dead_letter_json
from webhook.redact.redactor import Redactor
from webhook.runtime import pipeline_settings
from webhook.state.base import StoredObject

RECEIVED = "2026-11-24T14:20:41.000000Z"
MARKER = "s3cr3t-marker-value"

REDACTOR = Redactor(b"test-fingerprint-key-0123456789ab")


def pipeline() -> tuple[Pipeline, Deduper]:
    deduper = Deduper(max_entries=1000, ttl_s=600)
    return Pipeline(pipeline_settings(Config(cluster="c")), deduper, REDACTOR), deduper


def test_a_captured_batch() -> None:
    """A05's batch: discovery, lease and RequestReceived events are dropped, the create kept."""
    items = capture_events("0009.json")
    pipe, _ = pipeline()

    result = pipe.process(items, received_at=RECEIVED)

    assert result.events == len(items) == 6
    assert (result.matched, result.duplicates, result.dead_letters) == (1, 0, [])
    (record,) = result.records
    assert (record.verb, record.stage, record.cluster) == ("create", "ResponseComplete", "c")
    assert len(result.keys) == 1  # remembered once the record is durable


def test_a_batch_records_the_cluster_its_sender_proved() -> None:
    """A batch from a sender bound to a cluster is recorded as that cluster's, not the default."""
    pipe, _ = pipeline()
    result = pipe.prepare(capture_events("0009.json"), received_at=RECEIVED, cluster="prod-eu")
    pipe.finish(result, states={})
    assert [r.cluster for r in result.records] == ["prod-eu"]
    default = pipe.process(capture_events("0009.json"), received_at=RECEIVED)
    assert [r.cluster for r in default.records] == ["c"]


def test_request_received_is_not_a_second_record() -> None:
    """Both stages of a request in one batch: one record, from the final stage."""
    pipe, _ = pipeline()
    result = pipe.process(
        [make_event(stage="RequestReceived"), make_event(stage="ResponseComplete")], received_at=RECEIVED
    )
    assert [r.stage for r in result.records] == ["ResponseComplete"]


def test_a_duplicate_inside_one_batch_is_dropped() -> None:
    """The same event twice in one batch gives one record and counts one duplicate."""
    pipe, _ = pipeline()
    result = pipe.process([make_event(), make_event()], received_at=RECEIVED)
    assert (len(result.records), result.duplicates, len(result.keys)) == (1, 1, 1)


def test_dedupe_only_after_remember() -> None:
    """A batch is a duplicate only once the caller remembered its keys (after the durable write)."""
    pipe, deduper = pipeline()
    first = pipe.process([make_event()], received_at=RECEIVED)

    again = pipe.process([make_event()], received_at=RECEIVED)
    assert (len(again.records), again.duplicates) == (1, 0)

    deduper.remember(first.keys)
    retried = pipe.process([make_event()], received_at=RECEIVED)
    assert (retried.records, retried.duplicates, retried.keys) == ([], 1, [])


def test_same_audit_id_and_stage_with_other_content_is_not_a_duplicate() -> None:
    """Dedupe keys include the event's digest, so a forged Audit-ID cannot hide a request."""
    pipe, deduper = pipeline()
    deduper.remember(pipe.process([make_event(verb="create")], received_at=RECEIVED).keys)

    other = pipe.process([make_event(verb="delete", code=200)], received_at=RECEIVED)

    assert (len(other.records), other.duplicates) == (1, 0)


def test_malformed_events_are_dead_lettered_with_index_and_the_rest_kept() -> None:
    """Each bad item becomes a dead letter with its position; good ones still become records."""
    bad_groups = make_event(
        audit_id="00000000-0000-4000-8000-00000000000b", user={"username": "admin", "groups": "dev"}
    )
    items: list[Any] = [
        make_event(audit_id="00000000-0000-4000-8000-00000000000a"),
        "not an event",
        bad_groups,
        {k: v for k, v in make_event().items() if k != "verb"},
        make_event(audit_id="00000000-0000-4000-8000-00000000000c"),
    ]
    pipe, _ = pipeline()

    result = pipe.process(items, received_at=RECEIVED)

    assert [r.audit_id[-1] for r in result.records] == ["a", "c"]
    assert [(d.index, d.reason) for d in result.dead_letters] == [
        (1, "malformed-event"),
        (2, "malformed-event"),
        (3, "malformed-event"),
    ]
    assert result.dead_letters[1].detail.startswith("user.groups ")
    assert result.dead_letters[2].detail.startswith("verb ")
    assert result.dead_letters[1].event["auditID"] == bad_groups["auditID"]
    assert result.dead_letters[1].event["objectRef"]["name"] == "web"
    assert all(d.received_at == RECEIVED for d in result.dead_letters)


def test_dead_letters_never_hold_body_values() -> None:
    """A malformed Secret event leaves only identifiers behind."""
    event = make_event(
        api_group="",
        resource="secrets",
        user={"username": MARKER, "groups": MARKER},
        requestObject={"kind": "Secret", "data": {"k": MARKER}},
        responseObject={"kind": "Secret", "data": {"k": MARKER}},
    )
    pipe, _ = pipeline()

    result = pipe.process([event], received_at=RECEIVED)

    assert len(result.dead_letters) == 1
    assert MARKER.encode() not in dead_letter_json(result.dead_letters)


def test_an_unexpected_failure_costs_one_event_not_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug while building one record dead-letters that event as "internal"; the rest goes on."""
    real = Record.from_event

    def flaky(event: dict[str, Any], **kwargs: Any) -> Record:
        if event["auditID"].endswith("b"):
            raise RuntimeError(MARKER)
        return real(event, **kwargs)

    monkeypatch.setattr(Record, "from_event", flaky)
    pipe, _ = pipeline()
    items = [make_event(audit_id=f"00000000-0000-4000-8000-00000000000{c}") for c in "abc"]

    result = pipe.process(items, received_at=RECEIVED)

    assert [r.audit_id[-1] for r in result.records] == ["a", "c"]
    (letter,) = result.dead_letters
    assert (letter.index, letter.reason, letter.detail) == (1, "internal", "unexpected RuntimeError")
    assert MARKER not in letter.detail
    assert len(result.keys) == 2


def test_dead_letter_json_is_one_line_each() -> None:
    """Dead letters serialize as JSONL with their type and schema version."""
    letters = [
        DeadLetter(reason="malformed-event", detail="verb is missing", received_at=RECEIVED, index=3),
        DeadLetter(reason="not-json", detail="body is not valid JSON", received_at=RECEIVED),
    ]

    lines = dead_letter_json(letters).splitlines()

    assert [orjson.loads(line)["reason"] for line in lines] == ["malformed-event", "not-json"]
    first = orjson.loads(lines[0])
    assert (first["type"], first["schema_version"], first["index"], first["event"]) == (
        "dead_letter",
        1,
        3,
        {},
    )


def test_cluster_name_comes_from_the_config() -> None:
    """Every record carries the configured cluster name."""
    pipe = Pipeline(pipeline_settings(Config(cluster="prod-eu")), Deduper(max_entries=10, ttl_s=60), REDACTOR)
    (record,) = pipe.process([make_event()], received_at=RECEIVED).records
    assert record.cluster == "prod-eu"


class _Unreadable(dict[str, Any]):
    """An event no state lookup can read: it stands for any bug a type check did not foresee."""

    def get(self, key: str, default: Any = None) -> Any:
        if key == "objectRef":
            raise TypeError("unreadable")
        return super().get(key, default)


def test_an_event_whose_state_keys_cannot_be_read_is_dead_lettered_alone() -> None:
    """The state lookups run under the per-event guard too (review finding 2)."""
    pipe, _ = pipeline()
    result = pipe.prepare(
        [make_event(audit_id="a1", name="one"), make_event(audit_id="a2", name="two")], received_at=RECEIVED
    )
    first = result.pending[0]
    first.redacted = replace(first.redacted, event=_Unreadable(first.redacted.event))

    keys = pipe.lookups(result)
    pipe.finish(result, states={})

    assert keys == ["networking.k8s.io/ingresses/shop/two"]
    assert [r.audit_id for r in result.records] == ["a2"]
    (letter,) = result.dead_letters
    assert (letter.reason, letter.detail, letter.index) == ("internal", "unexpected TypeError", 0)
    assert letter.event["auditID"] == "a1"


def test_another_clusters_batch_has_its_own_ids_and_state_keys() -> None:
    """The same events from cluster prod-eu: other record ids (dedupe keys) and store keys;
    the configured cluster's, named or not, are those a single-cluster receiver has."""
    pipe, deduper = pipeline()
    items = [make_event(audit_id="a1", name="web")]
    default = pipe.prepare(copy.deepcopy(items), received_at=RECEIVED)
    named = pipe.prepare(copy.deepcopy(items), received_at=RECEIVED, cluster="c")
    eu = pipe.prepare(copy.deepcopy(items), received_at=RECEIVED, cluster="prod-eu")

    assert named.cluster == default.cluster == ""
    assert pipe.lookups(default) == pipe.lookups(named) == ["networking.k8s.io/ingresses/shop/web"]
    assert pipe.lookups(eu) == ["@prod-eu/networking.k8s.io/ingresses/shop/web"]
    assert named.pending[0].key == default.pending[0].key != eu.pending[0].key
    deduper.remember([default.pending[0].key])
    assert pipe.prepare(copy.deepcopy(items), received_at=RECEIVED).duplicates == 1
    assert pipe.prepare(copy.deepcopy(items), received_at=RECEIVED, cluster="prod-eu").duplicates == 0


def test_a_clusters_baseline_is_its_own() -> None:
    """finish reads and writes the batch's cluster's states only, by store key."""
    pipe, _ = pipeline()
    old = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web"}}
    stored = StoredObject(
        object={**old, "spec": {"rules": [{"host": "eu.example.test"}]}},
        resource_version="1",
        audit_id="before",
        time="2026-11-24T14:20:00Z",
    )
    key = "networking.k8s.io/ingresses/shop/web"
    event = make_event(audit_id="a1", verb="update", name="web")
    result = pipe.prepare([event], received_at=RECEIVED, cluster="prod-eu")
    pipe.lookups(result)

    pipe.finish(result, states={key: stored, f"@prod-us/{key}": stored})  # neither is prod-eu's

    (record,) = result.records
    assert record.change is not None
    assert record.change.baseline == "none"
    assert set(result.state_updates) == {f"@prod-eu/{key}"}
    again = pipe.prepare(
        [make_event(audit_id="a2", verb="update", name="web")], received_at=RECEIVED, cluster="prod-eu"
    )
    pipe.finish(again, states={f"@prod-eu/{key}": stored})
    assert [r.change.baseline if r.change else None for r in again.records] == ["state"]
