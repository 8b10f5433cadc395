"""EKS audit events as Amazon Data Firehose delivers them to an HTTP endpoint: the request body
and the answer Firehose expects. Pure: no I/O. The access keys are webhook/sources/firehose_keys.py.

The body is ``{requestId, timestamp, records: [{data}]}``, each ``data`` base64. A record has one
of two shapes, told apart by its bytes:

- gzip (starts with ``1f 8b``): a CloudWatch Logs subscription message, as CloudWatch Logs hands
  it to Firehose. Its log group ``/aws/eks/<cluster>/cluster`` names the cluster, which must be
  on the key's list.
- anything else: Firehose decompressed it itself. A JSON object with ``messageType`` is a whole
  subscription message (decompression alone), handled as above. Otherwise it holds the bare
  messages (decompression with message extraction), one a line: no log group is left, so they
  are accepted only when the key is bound to exactly one cluster, the one it proves. A line
  that is not a JSON object is another stream's text (counted, as the group's other streams
  are); bytes that are not UTF-8 are damage (rejected), not text.

A body that is unusable as a whole raises ``FirehoseBodyError``; a record that is unusable alone
becomes a ``CloudReject`` and the rest of the batch is kept. A body sent with
``Content-Encoding: gzip`` is the HTTP layer's to inflate: ``decode_firehose`` takes the body as
Firehose built it.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import orjson

from webhook.core.jsonscan import ScanError, elements, top_members
from webhook.errors import BadRequestError
from webhook.sources.cloud import CloudEvent, CloudReject
from webhook.sources.cloudwatch import (
    GZIP_MAGIC,
    CloudWatchCounts,
    GzipError,
    audit_message,
    event_identity,
    gunzip_bounded,
    subscription_items,
)
from webhook.sources.firehose_keys import FirehoseGrant

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_RECORDS",
    "MAX_RECORD_BYTES",
    "REQUEST_ID_HEADER",
    "FirehoseBatch",
    "FirehoseBodyError",
    "decode_firehose",
    "firehose_answer",
    "safe_request_id",
]

REQUEST_ID_HEADER: Final = "X-Amz-Firehose-Request-Id"
MAX_RECORDS: Final = 10_000  # Firehose sends 1 to 10 000 records a request
MAX_RECORD_BYTES: Final = 16 * 1024 * 1024  # one record, inflated
# All records of a request, inflated: past it the request is refused (and retried by Firehose)
# rather than held in memory. A request of a 1 MiB buffering size inflates to some 10 MiB.
MAX_BATCH_BYTES: Final = 256 * 1024 * 1024
_MAX_ERROR_CHARS: Final = 8192  # Firehose keeps at most this much of errorMessage
_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9-]{1,128}")
_NOT_ON_LIST: Final = "the cluster of the log group is not on the list of the access key that sent it"


class FirehoseBodyError(BadRequestError):
    """The body as a whole is not a Firehose delivery; ``reason`` is a kebab-case code.

    Always 400, never 413: Firehose drops a batch answered 413 without backing it up to S3,
    while a 400 is retried and then backed up."""

    code: ClassVar[str] = "bad-firehose-body"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class FirehoseBatch:
    """One request's items in order, and what was read without becoming an item."""

    request_id: str
    timestamp: int | None  # ms since the epoch; Firehose always sends it, nothing here needs it
    items: tuple[CloudEvent | CloudReject, ...]
    records: int
    control_messages: int = 0
    skipped_events: int = 0  # log events of the group's other streams (authenticator, ...)

    @property
    def events(self) -> int:
        return sum(isinstance(item, CloudEvent) for item in self.items)

    @property
    def rejects(self) -> int:
        return sum(isinstance(item, CloudReject) for item in self.items)


@dataclass(slots=True)
class _Budget:
    """What the rest of the batch may still inflate to."""

    left: int


@dataclass(frozen=True, slots=True)
class _Raw:
    """A record whose bytes did not decode with the rest of the body."""

    data: bytes


def decode_firehose(
    body: bytes,
    grant: FirehoseGrant,
    *,
    max_record_bytes: int = MAX_RECORD_BYTES,
    max_batch_bytes: int = MAX_BATCH_BYTES,
    max_records: int = MAX_RECORDS,
) -> FirehoseBatch:
    """The items of a Firehose request body (as sent: any ``Content-Encoding`` already undone),
    each event of a cluster that ``grant`` allows. Raises ``FirehoseBodyError``."""
    request_id, timestamp, records = _envelope(body)
    if not isinstance(request_id, str) or not request_id:
        raise FirehoseBodyError("missing-request-id", "requestId is missing or not a non-empty string")
    if len(records) > max_records:
        raise FirehoseBodyError("too-many-records", f"more than the limit of {max_records} records")
    counts = CloudWatchCounts()
    budget = _Budget(max_batch_bytes)
    items: list[CloudEvent | CloudReject] = []
    for index, record in enumerate(records):
        items.extend(_record(record, {"record": str(index)}, grant, max_record_bytes, budget, counts))
    return FirehoseBatch(
        request_id=request_id,
        timestamp=timestamp if type(timestamp) is int else None,
        items=tuple(items),
        records=len(records),
        control_messages=counts.control_messages,
        skipped_events=counts.skipped_events,
    )


def _envelope(body: bytes) -> tuple[Any, Any, list[Any]]:
    """(requestId, timestamp, records) of the body; a record that does not decode with the rest
    (invalid UTF-8 in its data, say) is returned as a ``_Raw`` to be rejected alone."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return _scan(body, exc.pos)
    if not isinstance(doc, dict):
        raise FirehoseBodyError("not-firehose-body", "body must be a JSON object")
    records = doc.get("records")
    if not isinstance(records, list):
        raise FirehoseBodyError("records-not-list", "records is missing or not a list")
    return doc.get("requestId"), doc.get("timestamp"), records


def _scan(body: bytes, pos: int) -> tuple[Any, Any, list[Any]]:
    fields: dict[str, Any] = {}
    records: list[Any] | None = None
    try:
        for key, start, end in top_members(body):
            if key == "records":
                records = (
                    [_Raw(body[s:e]) for s, e in elements(body, start, end)] if body[start] == 0x5B else None
                )
            elif key in ("requestId", "timestamp"):
                try:
                    fields[key] = orjson.loads(body[start:end])
                except orjson.JSONDecodeError:
                    fields[key] = None
    except ScanError:
        # orjson's message can quote the input; keep only the position.
        raise FirehoseBodyError("not-json", f"body is not valid JSON (at byte {pos})") from None
    if records is None:
        raise FirehoseBodyError("records-not-list", "records is missing or not a list")
    return fields.get("requestId"), fields.get("timestamp"), records


def _reject(reason: str, detail: str, identity: dict[str, str]) -> list[CloudEvent | CloudReject]:
    return [CloudReject(reason=reason, detail=detail, identity=identity)]


def _record(
    record: Any,
    identity: dict[str, str],
    grant: FirehoseGrant,
    max_record_bytes: int,
    budget: _Budget,
    counts: CloudWatchCounts,
) -> list[CloudEvent | CloudReject]:
    if isinstance(record, _Raw):
        try:
            record = orjson.loads(record.data)
        except orjson.JSONDecodeError:
            return _reject("record-not-json", "record is not valid JSON (invalid UTF-8 or escape)", identity)
    data = record.get("data") if isinstance(record, dict) else None
    if not isinstance(data, str):
        return _reject("record-malformed", "record is not an object with a string data", identity)
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return _reject("record-not-base64", "record data is not base64", identity)
    if not raw:
        return _reject("record-empty", "record data is empty", identity)
    if raw.startswith(GZIP_MAGIC):
        try:
            payload = _gunzip(raw, max_record_bytes, budget)
        except GzipError as exc:
            if exc.too_large:
                detail = f"record inflates to more than the limit of {max_record_bytes} bytes"
                return _reject("record-too-large", detail, identity)
            return _reject("record-not-gzip", "record data is damaged gzip", identity)
        doc = _message_doc(payload)
        if doc is None:
            return _reject("record-not-json", "inflated record is not a JSON object", identity)
        return _subscription(doc, identity, grant, counts)
    _spend(budget, len(raw))
    if not raw.isascii() and not _is_utf8(raw):
        # Damaged gzip (its magic bytes hit) must not pass for another stream's text lines.
        return _reject("record-undecodable", "record data is neither gzip nor UTF-8 text", identity)
    # Firehose inflated it: a whole subscription message, or the messages it extracted.
    if b'"messageType"' in raw and (doc := _message_doc(raw)) is not None and "messageType" in doc:
        return _subscription(doc, identity, grant, counts)
    return _extracted(raw, identity, grant, counts)


def _spend(budget: _Budget, size: int) -> None:
    budget.left -= size
    if budget.left < 0:
        raise FirehoseBodyError(
            "batch-too-large",
            "records inflate to more than the batch limit: lower the Firehose buffering size",
        )


def _gunzip(raw: bytes, max_record_bytes: int, budget: _Budget) -> bytes:
    try:
        payload = gunzip_bounded(raw, min(max_record_bytes, max(budget.left, 0)))
    except GzipError as exc:
        if exc.too_large and budget.left < max_record_bytes:
            _spend(budget, budget.left + 1)  # raises: the batch, not the record, is too large
        raise
    _spend(budget, len(payload))
    return payload


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def _message_doc(payload: bytes) -> dict[str, Any] | None:
    """``payload`` decoded, if it is a JSON object."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def _subscription(
    doc: dict[str, Any], identity: dict[str, str], grant: FirehoseGrant, counts: CloudWatchCounts
) -> list[CloudEvent | CloudReject]:
    return subscription_items(
        doc, clusters=grant.clusters, not_allowed=_NOT_ON_LIST, counts=counts, identity=identity
    )


def _extracted(
    payload: bytes, identity: dict[str, str], grant: FirehoseGrant, counts: CloudWatchCounts
) -> list[CloudEvent | CloudReject]:
    """Messages Firehose took out of their subscription message, one a line."""
    cluster = grant.sole_cluster
    items: list[CloudEvent | CloudReject] = []
    for number, text in enumerate(payload.split(b"\n"), start=1):
        line = text.removesuffix(b"\r")
        if not line.strip():
            continue
        if not line.lstrip().startswith(b"{"):
            counts.skipped_events += 1  # not an audit event: the log group's other streams
            continue
        found = {**identity, "line": str(number)}
        if cluster is None:
            items.append(
                CloudReject(
                    reason="cluster-unknown",
                    detail="record has no log group (Firehose extracted its messages) and its "
                    "access key may carry more than one cluster",
                    identity=event_identity(line, found),
                )
            )
            continue
        items.append(audit_message(line, cluster, found))
    return items


def safe_request_id(value: Any) -> str:
    """``value`` if it looks like a Firehose request id (what may be logged or echoed), else ""."""
    return value if isinstance(value, str) and _REQUEST_ID.fullmatch(value) else ""


def firehose_answer(request_id: str, now_ms: int, error: str | None = None) -> bytes:
    """The body Firehose wants with every answer: compact JSON, ``timestamp`` a number in ms,
    one line ending in a newline like every JSON answer of the server.

    ``request_id`` comes from the client and is echoed only if it looks like an id.
    ``error`` (only for a failure) must be one of our own messages, which never quote input."""
    answer: dict[str, Any] = {"requestId": safe_request_id(request_id), "timestamp": int(now_ms)}
    if error is not None:
        answer["errorMessage"] = error[:_MAX_ERROR_CHARS]
    return orjson.dumps(answer, option=orjson.OPT_APPEND_NEWLINE)
