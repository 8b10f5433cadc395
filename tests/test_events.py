from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import CAPTURES, captured_bodies, event_list, make_event
from webhook.errors import (
    BadRequestError,
    BodyTooLargeError,
    EventNotJSONError,
    EventTooDeepError,
    MalformedEventError,
    NotEventListError,
    NotJSONError,
    UnsupportedVersionError,
)
from webhook.events import (
    Undecodable,
    check_event,
    decode_event_list,
    event_ref,
    opt_object,
    opt_str,
    opt_strings,
)

MARKER = "s3cr3t-marker-value"


def test_the_captures_are_there() -> None:
    """The scenario the integration tests replay is present and complete (52 POSTs)."""
    index = orjson.loads((CAPTURES.parent / "index.json").read_bytes())
    assert [p.name for p in captured_bodies()] == [f["file"] for f in index["files"]]
    assert len(captured_bodies()) == index["summary"]["files"] == 52


@pytest.mark.parametrize("body", captured_bodies(), ids=lambda p: p.stem)
def test_every_capture_decodes(body: Path) -> None:
    """Each captured body is an EventList whose every event passes the per-event check."""
    index = {f["file"]: f for f in orjson.loads((CAPTURES.parent / "index.json").read_bytes())["files"]}

    items = decode_event_list(body.read_bytes())

    assert len(items) == index[body.name]["events"]
    assert all(check_event(item) is item for item in items)


def test_v1beta1_is_accepted() -> None:
    """audit.k8s.io/v1beta1 EventLists (older apiservers) decode like v1."""
    assert decode_event_list(event_list(make_event(), api_version="audit.k8s.io/v1beta1")) == [make_event()]


def test_null_items_is_an_empty_list() -> None:
    """Go encodes an empty slice as null: that is an empty batch, not an error."""
    body = b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":null}\n'
    assert decode_event_list(body) == []


@pytest.mark.parametrize(
    ("body", "error", "words"),
    [
        (b"", NotJSONError, "JSON"),
        (b"{not json " + MARKER.encode(), NotJSONError, "JSON"),
        (b"\xff\xfe", NotJSONError, "JSON"),
        (b'["' + MARKER.encode() + b'"]', NotEventListError, "object"),
        (b'"EventList"', NotEventListError, "object"),
        (b'{"kind":"' + MARKER.encode() + b'","apiVersion":"audit.k8s.io/v1"}', NotEventListError, "kind"),
        (b'{"apiVersion":"audit.k8s.io/v1","items":[]}', NotEventListError, "kind"),
        (
            b'{"kind":"EventList","apiVersion":"' + MARKER.encode() + b'"}',
            UnsupportedVersionError,
            "apiVersion",
        ),
        (b'{"kind":"EventList","apiVersion":"v1","items":[]}', UnsupportedVersionError, "apiVersion"),
        (b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":{"a":1}}', NotEventListError, "items"),
        (
            b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":"' + MARKER.encode() + b'"}',
            NotEventListError,
            "items",
        ),
    ],
    ids=[
        "empty",
        "not-json",
        "not-utf8",
        "array",
        "string",
        "wrong-kind",
        "no-kind",
        "wrong-api-version",
        "core-v1",
        "items-object",
        "items-string",
    ],
)
def test_a_body_that_is_not_an_event_list_is_rejected(
    body: bytes, error: type[BadRequestError], words: str
) -> None:
    """Each whole-batch problem raises its own 400 error, naming the problem, not the value."""
    with pytest.raises(error) as info:
        decode_event_list(body)

    assert words in info.value.message
    assert MARKER not in str(info.value)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"auditID": None}, "auditID"),
        ({"auditID": ""}, "auditID"),
        ({"auditID": 7}, "auditID"),
        ({"stage": None}, "stage"),
        ({"stage": "Done"}, "stage"),
        ({"stage": ["ResponseComplete"]}, "stage"),
        ({"verb": None}, "verb"),
        ({"verb": {"v": 1}}, "verb"),
        ({"requestURI": None}, "requestURI"),
        ({"user": "admin"}, "user"),
        ({"impersonatedUser": ["alice"]}, "impersonatedUser"),
        ({"objectRef": ["ingresses"]}, "objectRef"),
        ({"responseStatus": 403}, "responseStatus"),
        ({"annotations": "a=b"}, "annotations"),
        ({"requestURI": 1, "verb": None, "auditID": 7}, "auditID"),  # the first of several
        ({"annotations": "a=b", "objectRef": 1, "user": "admin"}, "user"),
        ({"stage": "Done", "user": "admin"}, "stage"),
    ],
)
def test_a_malformed_event_names_the_field(change: dict[str, Any], field: str) -> None:
    """The per-event check raises MalformedEventError whose message names the bad field."""
    event = {k: v for k, v in {**make_event(), **change}.items() if v is not None}

    with pytest.raises(MalformedEventError) as info:
        check_event(event)

    assert info.value.message.split()[0] == field


@pytest.mark.parametrize("item", [None, 1, "event", [make_event()]], ids=repr)
def test_a_non_object_item_is_malformed(item: object) -> None:
    """Items that are not JSON objects are malformed events, not a crash."""
    with pytest.raises(MalformedEventError, match="not a JSON object"):
        check_event(item)


def test_optional_objects_may_be_absent() -> None:
    """A 401's event has no objectRef annotations and an empty user; it is well formed."""
    event = make_event(stage="ResponseStarted", username=None, code=401)
    del event["objectRef"]
    assert check_event(event) is event


def test_event_ref_keeps_only_identifiers() -> None:
    """A dead letter's event reference holds ids and the objectRef, never bodies or users."""
    event = make_event(
        requestObject={"kind": "Secret", "data": {"password": MARKER}},
        responseObject={"kind": "Secret", "data": {"password": MARKER}},
    )
    event["objectRef"]["name"] = "x" * 300  # too long to be an identifier
    event["objectRef"]["namespace"] = ["not", "a", "string"]

    ref = event_ref(event)

    assert ref == {
        "auditID": event["auditID"],
        "stage": "ResponseComplete",
        "verb": "create",
        "objectRef": {"apiGroup": "networking.k8s.io", "apiVersion": "v1", "resource": "ingresses"},
    }
    assert event_ref([event]) == {}
    assert event_ref({"auditID": {"nested": MARKER}}) == {}


def test_typed_getters() -> None:
    """opt_* return the value, the empty default, or raise naming the path they were given."""
    obj: dict[str, Any] = {"s": "x", "l": ["a"], "o": {"k": 1}, "bad": 1}
    assert (opt_str(obj, "s", "p"), opt_str(obj, "missing", "p")) == ("x", None)
    assert (opt_strings(obj, "l", "p"), opt_strings(obj, "missing", "p")) == (("a",), ())
    assert (opt_object(obj, "o", "p"), opt_object(obj, "missing", "p")) == ({"k": 1}, {})
    for getter in (opt_str, opt_strings, opt_object):
        with pytest.raises(MalformedEventError, match=r"^user\.groups "):
            getter(obj, "bad", "user.groups")
    with pytest.raises(MalformedEventError, match="list of strings"):
        opt_strings({"l": ["a", 1]}, "l", "user.groups")


POISONED = {
    "nested-1030": (b"[" * 1030 + b"]" * 1030, EventTooDeepError, "1024"),
    "number-1e999": (b"1e999", EventNotJSONError, "number"),
    "lone-surrogate": (b'"\\ud800"', EventNotJSONError, "surrogate"),
    "invalid-utf8": (b'"' + MARKER.encode() + b'\xff"', EventNotJSONError, "UTF-8"),
}


@pytest.mark.parametrize(("poison", "error", "words"), POISONED.values(), ids=POISONED.keys())
def test_an_event_that_does_not_decode_is_returned_alone(
    poison: bytes, error: type[MalformedEventError], words: str
) -> None:
    """The other events decode as usual; the bad one keeps only its identity and the reason."""
    good = [make_event(audit_id=f"a{n}") for n in range(2)]
    body = event_list(good[0], make_event(audit_id="bad", requestObject="@@"), good[1]).replace(
        b'"@@"', poison
    )

    first, bad, last = decode_event_list(body)

    assert [first, last] == good
    assert isinstance(bad, Undecodable)
    assert event_ref(bad) == {
        "auditID": "bad",
        "stage": "ResponseComplete",
        "verb": "create",
        "objectRef": {
            "apiGroup": "networking.k8s.io",
            "apiVersion": "v1",
            "resource": "ingresses",
            "namespace": "shop",
            "name": "web",
        },
    }
    with pytest.raises(error, match=words) as info:
        check_event(bad)
    assert MARKER not in info.value.message


def test_an_undecodable_event_gives_what_identity_it_can() -> None:
    """Fields that do not decode themselves are left out; the body is never read."""
    body = event_list("@@").replace(
        b'"@@"',
        b'{"auditID":"\\ud800","stage":"ResponseComplete","objectRef":{"name":"\xff","resource":"secrets"}}',
    )

    (bad,) = decode_event_list(body)

    assert event_ref(bad) == {"stage": "ResponseComplete", "objectRef": {"resource": "secrets"}}


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("objectRef", {"resource": 5}, "objectRef.resource"),
        ("objectRef", {"namespace": ["shop"]}, "objectRef.namespace"),
        ("objectRef", {"name": {"n": 1}}, "objectRef.name"),
        ("user", {"username": True}, "user.username"),
        ("user", {"groups": "system:masters"}, "user.groups"),
        ("user", {"groups": [1]}, "user.groups"),
        ("responseStatus", {"code": "403"}, "responseStatus.code"),
        ("responseStatus", {"code": True}, "responseStatus.code"),
    ],
)
def test_fields_the_filter_reads_must_have_their_types(field: str, value: Any, words: str) -> None:
    """Else a kept event could leave the filter without a trace; now it is dead-lettered."""
    event = make_event()
    event[field] = {**event.get(field, {}), **value}

    with pytest.raises(MalformedEventError, match=words):
        check_event(event)


@pytest.mark.parametrize("item", [b"{}", b"1e999"], ids=["decodes", "does-not-decode"])
def test_too_many_events_are_refused_before_any_is_decoded(item: bytes) -> None:
    """The tolerant path counts the events' spans first: a flood of bad ones is a 413 at once."""
    body = b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[%b]}' % b",".join([item] * 401)

    with pytest.raises(BodyTooLargeError, match="401 events"):
        decode_event_list(body, max_events=400)
    assert len(decode_event_list(body, max_events=401)) == 401


@pytest.mark.parametrize("item", [b"{}", b"[]"])
def test_a_dense_body_of_too_many_items_is_refused_before_decoding(item: bytes) -> None:
    """I29/I30: 64 MiB of empty items would decode into 22 million objects; they are counted
    first, and the limit refuses the body without building them."""
    head = b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":['
    body = head + (item + b",") * 3_000_000 + item + b"]}"

    with pytest.raises(BodyTooLargeError, match="more than the limit of 10000 events"):
        decode_event_list(body, max_events=10_000)
    assert len(decode_event_list(body, max_events=None)) == 3_000_001  # no limit, no count
