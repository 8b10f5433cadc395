from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import orjson
import pytest
import trustme
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.secret_shapes import (
    LAST_APPLIED,
    SHAPES,
    Planted,
    SecretSpec,
    audit_event,
    b64,
    capture_events,
    captured_bodies,
    secret_object,
)
from webhook.redact.leaks import encodings
from webhook.redact.listed import ListItemCache
from webhook.redact.redactor import RedactionResult, Redactor

KEY: Final = b"k" * 32
NOW: Final = datetime(2026, 11, 25, tzinfo=UTC)
ITEM: Final = "responseObject.items"


def fresh(now: datetime = NOW) -> Redactor:
    """A redactor that remembers nothing: every item is walked."""
    redactor = Redactor(KEY, now=lambda: now)
    redactor.list_items = ListItemCache(max_bytes=1)  # no entry fits
    return redactor


def listing(*items: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    response = {
        "kind": "SecretList",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": "9"},
        "items": list(items),
    }
    return audit_event("secrets", "list", response=response, status=status)


def spec(name: str, **data: str) -> SecretSpec:
    return SecretSpec(name=name, namespace="shop", data=dict(data))


def summary(result: RedactionResult) -> tuple[Any, ...]:
    """Everything a redaction hands on, in a form two results can be compared by."""
    return (orjson.dumps(result.event, option=orjson.OPT_SORT_KEYS), result.secrets, result.dropped)


def _with_item_first(event: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    """The same event with one more list item first, so that every other item moves on by one."""
    moved = copy.deepcopy(event)
    for holder in _lists(moved):
        holder["items"] = [copy.deepcopy(item), *holder["items"]]
    return moved


def _lists(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, list):
        return [found for item in value for found in _lists(item)]
    if not isinstance(value, dict):
        return []
    here = (
        [value]
        if isinstance(value.get("items"), list) and str(value.get("kind", "")).endswith("List")
        else []
    )
    return here + [found for item in value.values() for found in _lists(item)]


# -- the same result, walked or remembered --------------------------------------------------------


@pytest.mark.parametrize("shape", sorted(SHAPES))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_an_event_redacted_again_is_redacted_as_the_first_time(shape: str, data: st.DataObject) -> None:
    """In every shape, a redactor that has seen the event (or its items at other positions)
    hands back what one that never saw it does: event, Secrets, dropped paths."""
    planted: Planted = data.draw(SHAPES[shape])
    event = planted.event
    before = copy.deepcopy(event)
    remembering = Redactor(KEY, now=lambda: NOW)

    first = remembering.redact(event)
    again = remembering.redact(event)
    moved = _with_item_first(event, secret_object(spec("first", k="QZXW-first")))

    assert summary(first) == summary(again) == summary(fresh().redact(event))
    assert summary(remembering.redact(moved)) == summary(fresh().redact(moved))
    assert event == before


@pytest.mark.parametrize("body", captured_bodies(), ids=lambda p: p.stem)
def test_the_captures_redacted_again_are_redacted_as_the_first_time(body: Path) -> None:
    remembering = Redactor(KEY, now=lambda: NOW)
    for event in capture_events(body.name):
        first = remembering.redact(event)
        assert summary(remembering.redact(event)) == summary(first) == summary(fresh().redact(event))


def test_the_captured_list_of_secrets_comes_from_memory_the_second_time() -> None:
    """The captures' ``kubectl get secrets -o yaml``: the walk is skipped, not merely equal."""
    events = [
        e
        for body in captured_bodies()
        for e in capture_events(body.name)
        if e.get("verb") == "list"
        and (e.get("objectRef") or {}).get("resource") == "secrets"
        and (e.get("responseObject") or {}).get("items")
    ]
    assert events
    remembering = Redactor(KEY, now=lambda: NOW)
    for event in events:
        remembering.redact(event)
    cache = remembering.list_items
    walked = (cache.hits, cache.misses)
    for event in events:
        remembering.redact(event)

    items = sum(len(e["responseObject"]["items"]) for e in events)
    assert cache.hits - walked[0] == items
    assert cache.misses == walked[1]


# -- what depends on where and when ---------------------------------------------------------------


def test_paths_follow_the_item_to_its_new_position() -> None:
    """Sources, dropped paths and finding paths name the item where it is now."""
    value = "QZXW-copied-into-a-label"
    item = secret_object(spec("api", token=value), last_applied=True)
    item["metadata"]["labels"]["copy"] = value
    item["status"] = {"unexpected": True}  # not a Secret field: dropped
    other = secret_object(spec("other", k="QZXW-other"))
    remembering = Redactor(KEY, now=lambda: NOW)

    first = remembering.redact(listing(item))
    second = remembering.redact(listing(other, other, item))

    assert remembering.list_items.hits == 2  # `item` and the second `other`
    assert summary(second) == summary(fresh().redact(listing(other, other, item)))
    assert [s.source for s in first.secrets] == [
        f"{ITEM}[0]",
        f"{ITEM}[0].metadata.annotations.last-applied-configuration",
    ]
    assert [s.source for s in second.secrets][2:] == [
        f"{ITEM}[2]",
        f"{ITEM}[2].metadata.annotations.last-applied-configuration",
    ]
    assert second.dropped == (f"{ITEM}[2].status",)
    paths = {f.id: f.path for s in second.secrets for f in s.findings}
    assert paths["secret-value-in-metadata"] == f"{ITEM}[2].metadata.labels"
    assert (
        paths["secret-values-in-last-applied"] == f"{ITEM}[2].metadata.annotations.last-applied-configuration"
    )


def test_a_finding_that_names_the_items_path_is_not_remembered() -> None:
    """A value copied into managedFields is reported with its path in the message: walked each time."""
    value = "QZXW-in-managed-fields"
    item = secret_object(spec("api", token=value))
    item["metadata"]["finalizers"] = [value]
    remembering = Redactor(KEY, now=lambda: NOW)

    first = remembering.redact(listing(item))
    second = remembering.redact(listing(item, item))

    assert len(remembering.list_items) == 0
    messages = [f.message for s in second.secrets for f in s.findings]
    assert f"metadata {ITEM}[1].metadata.finalizers[0] holds a value of the Secret's data" in messages
    assert summary(second) == summary(fresh().redact(listing(item, item)))
    assert first.secrets[0].findings[0].id == "secret-value-in-metadata"


def _tls_item(ca: trustme.CA, not_after: datetime) -> dict[str, Any]:
    # Both dates given: the certificate is the same whatever day the test runs.
    leaf = ca.issue_cert("shop.example.test", not_before=NOW - timedelta(days=1), not_after=not_after)
    item = secret_object(spec("shop-tls"), type_="kubernetes.io/tls")
    item["data"] = {
        "tls.crt": b64(leaf.cert_chain_pems[0].bytes()),
        "tls.key": b64(leaf.private_key_pem.bytes()),
    }
    return item


def test_expiry_is_worked_out_at_each_use_of_a_remembered_item() -> None:
    """The same remembered certificate is valid, then expiring, then expired as the clock moves."""
    clock = [NOW]
    remembering = Redactor(KEY, now=lambda: clock[0])
    event = listing(_tls_item(trustme.CA(), NOW + timedelta(days=100)))

    def at(moment: datetime) -> tuple[int, list[str]]:
        clock[0] = moment
        result = remembering.redact(event)
        assert summary(result) == summary(fresh(moment).redact(event))
        ids = [f.id for f in result.secrets[0].findings if f.id.startswith("certificate-exp")]
        return result.secrets[0].certificates[0].days_to_expiry, ids

    assert at(NOW) == (100, [])
    assert at(NOW + timedelta(days=80)) == (20, ["certificate-expiring"])
    assert at(NOW + timedelta(days=101)) == (-1, ["certificate-expired"])
    assert remembering.list_items.hits == 2


# -- where the values of an item are still needed -------------------------------------------------


def test_a_status_message_is_searched_for_the_values_of_remembered_items() -> None:
    """A list answer with a message: each item is walked again, so its values are looked for."""
    value = "QZXW-quoted-in-the-message"
    item = secret_object(spec("api", token=value))
    remembering = Redactor(KEY, now=lambda: NOW)
    remembering.redact(listing(item))
    status = {"metadata": {}, "code": 200, "reason": "NotFound", "message": f"not found: {value}"}

    result = remembering.redact(listing(item, status=status))

    assert result.event["responseStatus"]["message"] == "<redacted: status message of a secrets request>"
    assert not [e for e in encodings(value) if e in orjson.dumps(result.event)]


def test_values_of_the_request_are_looked_for_in_remembered_items() -> None:
    """An item remembered from a plain list holds a label equal to a value the request sent:
    in an event with that request, the label is fingerprinted, as a fresh walk does."""
    value = "QZXW-sent-in-the-request"
    item = secret_object(spec("api", token="QZXW-own-value"))
    item["metadata"]["labels"]["copy"] = value
    remembering = Redactor(KEY, now=lambda: NOW)
    plain = remembering.redact(listing(item))
    assert plain.event["responseObject"]["items"][0]["metadata"]["labels"]["copy"] == value
    event = listing(item)
    event["verb"] = "deletecollection"
    event["requestObject"] = secret_object(spec("sent", token=value), kind=True)

    result = remembering.redact(event)

    assert summary(result) == summary(fresh().redact(event))
    assert not [e for e in encodings(value) if e in orjson.dumps(result.event)]


def test_an_event_that_is_not_a_secrets_request_is_walked_as_before() -> None:
    """A SecretList embedded elsewhere (scan mode) never uses the memory."""
    item = secret_object(spec("api", token="QZXW-embedded"))
    response = {"kind": "SecretList", "apiVersion": "v1", "items": [item]}
    event = audit_event(
        "configmaps", "get", response={"kind": "List", "apiVersion": "v1", "items": [response]}
    )
    remembering = Redactor(KEY, now=lambda: NOW)

    for _ in range(2):
        assert summary(remembering.redact(event)) == summary(fresh().redact(event))

    assert (len(remembering.list_items), remembering.list_items.hits) == (0, 0)


# -- the memory itself ----------------------------------------------------------------------------


def test_the_memory_is_bounded_least_recently_used_first() -> None:
    items = [secret_object(spec(f"s{n}", k=f"QZXW-{n}")) for n in range(4)]
    remembering = Redactor(KEY, now=lambda: NOW)
    remembering.redact(listing(items[0]))
    one = remembering.list_items.bytes
    remembering.list_items = cache = ListItemCache(max_bytes=3 * one)

    remembering.redact(listing(*items[:3]))
    remembering.redact(listing(items[0]))  # now the most recently used
    remembering.redact(listing(items[3]))  # evicts items[1]
    hits = cache.hits
    remembering.redact(listing(items[0], items[2], items[3], items[1]))

    assert cache.hits - hits == 3
    assert len(cache) == 3
    assert cache.bytes <= cache.max_bytes


def test_an_item_bigger_than_the_memory_is_walked_and_not_kept() -> None:
    remembering = Redactor(KEY, now=lambda: NOW)
    remembering.list_items = cache = ListItemCache(max_bytes=64)
    event = listing(secret_object(spec("big", k="QZXW-" + "x" * 500)))

    assert summary(remembering.redact(event)) == summary(remembering.redact(event))
    assert (len(cache), cache.bytes, cache.hits) == (0, 0, 0)
    with pytest.raises(ValueError, match="at least one byte"):
        ListItemCache(max_bytes=0)


def test_the_memory_holds_no_secret_value() -> None:
    """Keys are salted digests, entries what the records may carry: no value in any form."""
    values = ["QZXW-stored-value-one", "QZXW-stored-value-two"]
    items = [secret_object(spec(f"s{n}", k=v), last_applied=True) for n, v in enumerate(values)]
    remembering = Redactor(KEY, now=lambda: NOW)
    remembering.redact(listing(*items))

    held = list(remembering.list_items._entries.items())
    assert len(held) == 2
    assert all(len(key) == 36 for key, _ in held)  # SHA-256 and the depth
    dump = b"\n".join(key + entry.redacted + repr(entry).encode() for key, entry in held)
    assert not [e for v in values for e in encodings(v) if e in dump]
    assert LAST_APPLIED.encode() in dump  # the annotation is kept, its values fingerprinted
    other = Redactor(KEY, now=lambda: NOW)
    assert other.list_items.key(items[0], 3) != remembering.list_items.key(items[0], 3)  # salted per process
