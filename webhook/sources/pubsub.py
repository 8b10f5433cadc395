"""How GKE audit LogEntries reach us: a Pub/Sub push, or a Cloud Logging export replayed.

A Log Router sink publishes each LogEntry to a topic as one message, its JSON in ``data``
(base64, not compressed); a push subscription POSTs one message per request::

    {"message": {"data": "<base64>", "attributes": {...}, "messageId": "...",
                 "publishTime": "..."}, "subscription": "projects/<p>/subscriptions/<s>"}

Pub/Sub delivers at least once and retries anything but 102/200/201/202/204 until the message
expires or goes to the subscription's dead-letter topic. ``decode_push`` raises a
``BadRequestError`` for a body that is not such a push at all; ``map_push`` turns the message
into one Event, or a ``CloudReject`` saying why it never will be one.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from webhook.core.jsonscan import ScanError, elements
from webhook.errors import BadRequestError, NotJSONError
from webhook.sources.cloud import CloudEvent, CloudReject
from webhook.sources.gke import map_log_entry

__all__ = [
    "PushBodyError",
    "PushDataError",
    "PushMessage",
    "decode_push",
    "map_push",
    "read_gke_export",
]

_IDENT: Final = re.compile(r"[\x21-\x7e]{1,256}")


class PushBodyError(BadRequestError):
    """The body is JSON but not a Pub/Sub push envelope."""

    code = "not-push-message"


class PushDataError(BadRequestError):
    """``message.data`` is not base64."""

    code = "undecodable-data"


@dataclass(frozen=True, slots=True, kw_only=True)
class PushMessage:
    message_id: str
    data: bytes
    attributes: Mapping[str, str] = field(default_factory=dict)
    publish_time: str | None = None
    subscription: str | None = None
    delivery_attempt: int | None = None  # only with a dead-letter policy


def decode_push(body: bytes) -> PushMessage:
    """The one message of a push request; raises ``BadRequestError`` naming what is wrong."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise NotJSONError("the push body is not JSON") from None
    message = doc.get("message") if isinstance(doc, dict) else None
    if not isinstance(message, dict):
        raise PushBodyError("the push body has no message object")
    message_id = _either(message, "messageId", "message_id")
    if message_id is None or not _IDENT.fullmatch(message_id):
        raise PushBodyError("message.messageId is missing or not a short printable string")
    data = message.get("data")
    if not isinstance(data, str) or not data:
        raise PushBodyError("message.data is missing or not a string")
    attributes = message.get("attributes", {})
    if not isinstance(attributes, dict) or not all(isinstance(v, str) for v in attributes.values()):
        raise PushBodyError("message.attributes is not an object of strings")
    subscription = doc.get("subscription")
    attempt = doc.get("deliveryAttempt")
    return PushMessage(
        message_id=message_id,
        data=_base64(data),
        attributes=attributes,
        publish_time=_either(message, "publishTime", "publish_time"),
        subscription=subscription if isinstance(subscription, str) else None,
        delivery_attempt=attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else None,
    )


def map_push(message: PushMessage, clusters: Collection[str]) -> CloudEvent | CloudReject:
    """The pushed LogEntry as an Event of an allowed cluster, or why it is not one."""
    identity = {"messageId": message.message_id}
    if message.subscription and _IDENT.fullmatch(message.subscription):
        identity["subscription"] = message.subscription
    try:
        entry = orjson.loads(message.data)
    except orjson.JSONDecodeError:
        return CloudReject(reason="not-json", detail="message.data is not a JSON LogEntry", identity=identity)
    return map_log_entry(entry, clusters, identity=identity)


def read_gke_export(
    lines: Iterable[bytes], clusters: Collection[str], *, source: str | None = None
) -> Iterator[CloudEvent | CloudReject]:
    """Every entry of a Cloud Logging export: JSON lines (a sink to Cloud Storage), or the one
    JSON array ``gcloud logging read --format=json`` prints over many lines (read whole).

    ``source`` (a file name) goes into the identity of every reject."""
    where = {"source": source} if source else {}
    stream = iter(lines)
    for lineno, line in enumerate(stream, start=1):
        text = line.strip()
        if not text:
            continue
        if text.startswith(b"["):
            yield from _read_array(b"".join([line, *stream]), clusters, where)
            return
        ids = {**where, "line": str(lineno)}
        try:
            entry = orjson.loads(text)
        except orjson.JSONDecodeError:
            yield CloudReject(reason="not-json", detail=f"line {lineno} is not a JSON LogEntry", identity=ids)
            continue
        yield map_log_entry(entry, clusters, identity=ids)


def _read_array(
    data: bytes, clusters: Collection[str], where: Mapping[str, str]
) -> Iterator[CloudEvent | CloudReject]:
    """Each element decoded on its own, so one that does not decode costs only itself."""
    start = len(data) - len(data.lstrip())
    end = len(data.rstrip())
    try:
        spans = elements(data, start, end)
    except ScanError as exc:
        detail = f"the JSON array is broken at byte {exc.pos}"
        yield CloudReject(reason="not-json", detail=detail, identity=dict(where))
        return
    for index, (first, last) in enumerate(spans):
        ids = {**where, "index": str(index)}
        try:
            entry = orjson.loads(data[first:last])
        except orjson.JSONDecodeError:
            detail = f"array element {index} is not a JSON LogEntry"
            yield CloudReject(reason="not-json", detail=detail, identity=ids)
            continue
        yield map_log_entry(entry, clusters, identity=ids)


def _either(obj: dict[str, Any], camel: str, snake: str) -> str | None:
    """Pub/Sub's push JSON has carried both spellings; either will do."""
    value = obj.get(camel, obj.get(snake))
    return value if isinstance(value, str) and value else None


def _base64(data: str) -> bytes:
    """Protobuf's JSON mapping for bytes: standard base64, and readers accept the URL-safe
    alphabet and missing padding too."""
    text = data.strip().replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise PushDataError("message.data is not base64") from None
