"""Decoding an EventList body and checking each event just enough to route it safely.

The whole-batch checks raise a ``BadRequestError`` (answered 400). The per-event check is
deliberately shallow, because it runs on every event of every batch: it makes sure the fields
that routing and dedupe read have the right types. Deeper checks happen only for the events the
filter keeps, when their record is built.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from webhook.errors import (
    MalformedEventError,
    NotEventListError,
    NotJSONError,
    UnsupportedVersionError,
)

__all__ = [
    "API_VERSIONS",
    "STAGES",
    "Event",
    "check_event",
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


def decode_event_list(body: bytes | bytearray) -> list[Any]:
    """Return the ``items`` of an ``audit.k8s.io`` EventList, or raise why the body is not one."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # orjson's message can quote the input; keep only the position.
        raise NotJSONError(f"body is not valid JSON (at byte {exc.pos})") from None
    if not isinstance(doc, dict):
        raise NotEventListError("body must be a JSON object")
    kind = doc.get("kind")
    if kind != "EventList":
        raise NotEventListError("kind must be EventList")
    api_version = doc.get("apiVersion")
    if api_version not in API_VERSIONS:
        raise UnsupportedVersionError("apiVersion must be one of " + ", ".join(sorted(API_VERSIONS)))
    items = doc.get("items")
    if items is None:  # Go encodes an empty slice as null
        return []
    if not isinstance(items, list):
        raise NotEventListError("items must be a list")
    return items


def check_event(item: Any) -> Event:
    """Return ``item`` as an Event, or raise ``MalformedEventError`` naming the bad field."""
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
    return item


def event_ref(item: Any) -> dict[str, Any]:
    """The parts of a (possibly malformed) event that are safe to keep in a dead letter.

    Only identifiers with the expected types are copied, so nothing from an object body or a
    secret value can pass through.
    """
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
            for key in ("apiGroup", "apiVersion", "resource", "subresource", "namespace", "name")
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
