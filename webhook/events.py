"""Decoding an EventList body and checking each event just enough to route it safely.

The whole-batch checks raise a ``BadRequestError`` (answered 400), only for a body that is not
an EventList at all. A body that does not decode as a whole is split into its events by a
tolerant scanner (webhook/core/jsonscan.py) and each is decoded on its own: one that does not
decode becomes an ``Undecodable`` holding what can be read of its identity, which
``check_event`` rejects, so that event alone is dead-lettered. The per-event check is
deliberately shallow, because it runs on every event of every batch: it makes sure the fields
that routing and dedupe read have the right types. Deeper checks happen only for the events the
filter keeps, when their record is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson

from webhook.core.jsonscan import ScanError, count_items, elements, read_fields, top_members
from webhook.errors import (
    BodyTooLargeError,
    EventNotJSONError,
    EventTooDeepError,
    MalformedEventError,
    NotEventListError,
    NotJSONError,
    UnsupportedVersionError,
)

__all__ = [
    "API_VERSIONS",
    "STAGES",
    "Event",
    "Undecodable",
    "check_event",
    "decode_event",
    "decode_event_list",
    "event_ref",
    "opt_object",
    "opt_str",
    "opt_strings",
]

Event = dict[str, Any]

API_VERSIONS: Final = frozenset({"audit.k8s.io/v1", "audit.k8s.io/v1beta1"})
STAGES: Final = frozenset({"RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"})

_REQUIRED_STRINGS: Final = ("auditID", "stage", "verb", "requestURI")
_OPTIONAL_OBJECTS: Final = (
    "user",
    "impersonatedUser",
    "objectRef",
    "responseStatus",
    "annotations",
)


# More JSON objects and arrays than this in a body and its items are counted before decoding.
_DENSE: Final = 1_000_000
_REF_FIELDS: Final = ("apiGroup", "apiVersion", "resource", "subresource", "namespace", "name")
# objectRef fields that routing reads or records copy: a string when present.
_REF_STRINGS: Final = (*_REF_FIELDS, "uid", "resourceVersion")


@dataclass(frozen=True, slots=True)
class Undecodable:
    """An event whose bytes do not decode: why, and the identifiers that could be read."""

    too_deep: bool
    detail: str
    ref: dict[str, Any]


def decode_event_list(body: bytes | bytearray, *, max_events: int | None = None) -> list[Any]:
    """Return the ``items`` of an ``audit.k8s.io`` EventList, or raise why the body is not one
    (``BodyTooLargeError`` for more than ``max_events`` events).

    An item that does not decode on its own is returned as an ``Undecodable``."""
    if max_events is not None and _too_many_items(body, max_events):
        raise BodyTooLargeError(f"more than the limit of {max_events} events")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return _scan_event_list(body, exc.pos, max_events)
    if not isinstance(doc, dict):
        raise NotEventListError("body must be a JSON object")
    items = _items(doc.get("kind"), doc.get("apiVersion"), doc.get("items"))
    _count(items, max_events)
    return items


def _too_many_items(body: bytes | bytearray, max_events: int) -> bool:
    """Whether ``body`` has more than ``max_events`` items, counted before decoding when it has
    more JSON objects and arrays than ``_DENSE``: decoding builds every one of them (some 100
    bytes each), and 64 MiB of ``{},`` is 22 million. Real batches stay far below that."""
    if len(body) <= 2 * _DENSE or body.count(b"{") + body.count(b"[") <= _DENSE:
        return False
    try:
        return count_items(body, max_events + 1) > max_events
    except ScanError:
        return False  # the decoder says what is wrong with it


def _count(items: list[Any], max_events: int | None) -> None:
    if max_events is not None and len(items) > max_events:
        raise BodyTooLargeError(f"{len(items)} events is more than the limit of {max_events}")


def _items(kind: Any, api_version: Any, items: Any) -> list[Any]:
    if kind != "EventList":
        raise NotEventListError("kind must be EventList")
    if api_version not in API_VERSIONS:
        raise UnsupportedVersionError("apiVersion must be one of " + ", ".join(sorted(API_VERSIONS)))
    if items is None:  # Go encodes an empty slice as null
        return []
    if not isinstance(items, list):
        raise NotEventListError("items must be a list")
    return items


def _scan_event_list(body: bytes | bytearray, pos: int, max_events: int | None) -> list[Any]:
    """The tolerant path: the envelope must scan, each event is decoded on its own."""
    try:
        envelope = top_members(body)
        fields: dict[str, Any] = {}
        spans: list[tuple[int, int]] = []
        for key, start, end in envelope:
            if key not in ("kind", "apiVersion", "items"):
                continue
            if key == "items":
                spans = []  # the last one counts, as when decoding
                if body[start] == ord("["):
                    spans = elements(body, start, end)
                    fields[key] = []
                    continue
            try:
                fields[key] = orjson.loads(body[start:end])
            except orjson.JSONDecodeError:
                fields[key] = ...  # present but unreadable: not what _items wants
    except ScanError:
        # Neither orjson's message nor the scanner's quote the input; keep only the position.
        raise NotJSONError(f"body is not valid JSON (at byte {pos})") from None
    _items(fields.get("kind"), fields.get("apiVersion"), fields.get("items"))
    _count(spans, max_events)  # before decoding any
    return [decode_event(body, start, end) for start, end in spans]


def decode_event(buf: bytes | bytearray | memoryview, start: int, end: int) -> Any:
    """The event at ``buf[start:end]`` decoded, or an ``Undecodable`` saying why it is not."""
    try:
        return orjson.loads(buf[start:end])
    except orjson.JSONDecodeError as exc:
        too_deep = "depth" in exc.msg or "recursion" in exc.msg.lower()
        if too_deep:
            detail = "event nests deeper than 1024 levels"
        elif "surrogate" in exc.msg or "UTF-8" in exc.msg:
            detail = f"event holds invalid UTF-8 or a lone surrogate (at byte {exc.pos} of the event)"
        elif "number" in exc.msg:
            detail = f"event holds a number out of range (at byte {exc.pos} of the event)"
        else:
            detail = f"event is not valid JSON (at byte {exc.pos} of the event)"
        fields = read_fields(buf, start, end, ("auditID", "stage", "verb"), {"objectRef": _REF_FIELDS})
        return Undecodable(too_deep=too_deep, detail=detail, ref=event_ref(fields))


def check_event(item: Any) -> Event:
    """Return ``item`` as an Event, or raise ``MalformedEventError`` naming the bad field."""
    if isinstance(item, Undecodable):
        raise (EventTooDeepError if item.too_deep else EventNotJSONError)(item.detail)
    if not isinstance(item, dict):
        raise MalformedEventError("event is not a JSON object")
    for field in _REQUIRED_STRINGS:
        value = item.get(field)
        if not isinstance(value, str) or not value:
            raise MalformedEventError(f"{field} is missing or not a non-empty string")
    if item["stage"] not in STAGES:
        raise MalformedEventError("stage is not a known audit stage")
    for field in _OPTIONAL_OBJECTS:
        value = item.get(field)
        if value is not None and not isinstance(value, dict):
            raise MalformedEventError(f"{field} is not an object")
    # What the filter reads: of the wrong type, a kept event would be dropped without a trace.
    # Plain loops, no generators: this runs on every event (~0.2 µs).
    ref = item.get("objectRef")
    if ref:
        for value in ref.values():
            if type(value) is not str:  # the apiserver's are all strings; other keys may vary
                _check_ref(ref)
                break
    user = item.get("user")
    if user:
        username = user.get("username")
        if username is not None and type(username) is not str:
            raise MalformedEventError("user.username is not a string")
        groups = user.get("groups")
        if groups is not None:
            if type(groups) is not list:
                raise MalformedEventError("user.groups is not a list of strings")
            for group in groups:
                if type(group) is not str:
                    raise MalformedEventError("user.groups is not a list of strings")
    status = item.get("responseStatus")
    if status:
        code = status.get("code")
        if code is not None and type(code) is not int:
            raise MalformedEventError("responseStatus.code is not an integer")
    return item


def _check_ref(ref: dict[str, Any]) -> None:
    for field in _REF_STRINGS:
        value = ref.get(field)
        if value is not None and not isinstance(value, str):
            raise MalformedEventError(f"objectRef.{field} is not a string")


def event_ref(item: Any) -> dict[str, Any]:
    """The parts of a (possibly malformed) event that are safe to keep in a dead letter.

    Only identifiers with the expected types are copied, so nothing from an object body or a
    secret value can pass through.
    """
    if isinstance(item, Undecodable):
        return item.ref
    if not isinstance(item, dict):
        return {}
    ref: dict[str, Any] = {}
    for field in ("auditID", "stage", "verb"):
        value = item.get(field)
        if isinstance(value, str) and len(value) <= 256:
            ref[field] = value
    object_ref = item.get("objectRef")
    if isinstance(object_ref, dict):
        kept = {
            key: value
            for key in _REF_FIELDS
            if isinstance(value := object_ref.get(key), str) and len(value) <= 256
        }
        if kept:
            ref["objectRef"] = kept
    return ref


def opt_str(obj: dict[str, Any], key: str, path: str) -> str | None:
    """``obj[key]`` if it is a string, None if absent; raises naming ``path`` otherwise."""
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    raise MalformedEventError(f"{path} is not a string")


def opt_strings(obj: dict[str, Any], key: str, path: str) -> tuple[str, ...]:
    """``obj[key]`` as a tuple of strings, () if absent; raises naming ``path`` otherwise."""
    value = obj.get(key)
    if value is None:
        return ()
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise MalformedEventError(f"{path} is not a list of strings")


def opt_object(obj: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    """``obj[key]`` if it is an object, {} if absent; raises naming ``path`` otherwise."""
    value = obj.get(key)
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    raise MalformedEventError(f"{path} is not an object")
