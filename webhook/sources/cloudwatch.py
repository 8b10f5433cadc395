"""CloudWatch Logs as EKS writes audit events into it, decoded into cloud items.

EKS writes each audit Event as one log event (no wrapper) of the group
``/aws/eks/<cluster>/cluster``, in streams named ``kube-apiserver-audit-<id>``. The group's other
streams (authenticator, kube-apiserver, scheduler, ...) hold no audit events: their log events
are skipped and counted, never dead-lettered. CloudWatch cuts an oversize line and ends it with
``[Truncated...]``: such a line is rejected with the auditID it still shows. Shared by the
Firehose endpoint (webhook/sources/firehose.py) and ``replay --format cloudwatch``.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import orjson

from webhook.events import STAGES, Undecodable, decode_event
from webhook.sources.cloud import CloudEvent, CloudReject

__all__ = [
    "AUDIT_STREAM_PREFIX",
    "GZIP_MAGIC",
    "CloudWatchCounts",
    "GzipError",
    "audit_message",
    "eks_cluster",
    "event_identity",
    "gunzip_bounded",
    "is_audit_stream",
    "read_cloudwatch_export",
    "subscription_items",
]

AUDIT_STREAM_PREFIX: Final = "kube-apiserver-audit-"
GZIP_MAGIC: Final = b"\x1f\x8b"
_TRUNCATED: Final = b"[Truncated...]"
# EKS: "alphanumeric characters (case-sensitive), hyphens, and underscores", first one
# alphanumeric, at most 100.
_LOG_GROUP: Final = re.compile(r"/aws/eks/([0-9A-Za-z][0-9A-Za-z_-]{0,99})/cluster")
# Identity values are copied only in the shapes AWS gives them, so that a damaged envelope
# cannot carry content into a dead letter.
_AUDIT_STREAM: Final = re.compile(r"kube-apiserver-audit-[0-9A-Za-z-]{1,128}")
_EVENT_ID: Final = re.compile(r"[0-9]{1,64}")
# How Falco's k8saudit-eks recovers the id of a cut line; the first match is the Event's own
# (auditID comes before every object in the apiserver's key order).
_AUDIT_ID: Final = re.compile(rb'"auditID"\s*:\s*"([0-9A-Za-z-]{1,64})"')
_STAGE: Final = re.compile(rb'"stage"\s*:\s*"([A-Za-z]{1,32})"')
# An S3 export line: "<ISO-8601 time> <message>" (AWS does not document it; moto writes it so).
_EXPORT_LINE: Final = re.compile(
    rb"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:?\d{2}) (.*)", re.DOTALL
)


@dataclass(slots=True)
class CloudWatchCounts:
    """What was read without becoming an item: health checks and other streams' log events."""

    control_messages: int = 0
    skipped_events: int = 0


class GzipError(ValueError):
    """A gzip stream that is damaged (``too_large`` False) or inflates past its limit."""

    def __init__(self, *, too_large: bool) -> None:
        super().__init__("gzip data inflates past the limit" if too_large else "gzip data is damaged")
        self.too_large = too_large


def gunzip_bounded(data: bytes, limit: int) -> bytes:
    """``data`` inflated (every gzip member of it), never holding more than ``limit`` + 1 bytes."""
    out = bytearray()
    while True:
        inflater = zlib.decompressobj(wbits=31)
        try:
            # max_length >= 1 here: 0 would mean "no limit" to zlib.
            out += inflater.decompress(data, limit + 1 - len(out))
        except zlib.error:
            raise GzipError(too_large=False) from None
        if len(out) > limit:
            raise GzipError(too_large=True)
        if not inflater.eof:  # the stream ends early, or its checksum is missing
            raise GzipError(too_large=False)
        data = inflater.unused_data
        if not data:
            return bytes(out)
        if not data.startswith(GZIP_MAGIC):
            raise GzipError(too_large=False)


def eks_cluster(log_group: Any) -> str | None:
    """The cluster of an EKS control-plane log group ``/aws/eks/<cluster>/cluster``, else None."""
    if not isinstance(log_group, str):
        return None
    match = _LOG_GROUP.fullmatch(log_group)
    return match.group(1) if match else None


def is_audit_stream(log_stream: Any) -> bool:
    return isinstance(log_stream, str) and log_stream.startswith(AUDIT_STREAM_PREFIX)


def event_identity(message: bytes, base: dict[str, str]) -> dict[str, str]:
    """``base`` plus the auditID and stage a (possibly cut) message shows."""
    identity = dict(base)
    if match := _AUDIT_ID.search(message):
        identity["auditID"] = match.group(1).decode()
    if (match := _STAGE.search(message)) and match.group(1).decode() in STAGES:
        identity["stage"] = match.group(1).decode()
    return identity


def audit_message(message: bytes, cluster: str, identity: dict[str, str]) -> CloudEvent | CloudReject:
    """One log event's message: an audit Event (kept byte for byte), or why it cannot be one."""
    if message.rstrip().endswith(_TRUNCATED):
        return CloudReject(
            reason="event-truncated",
            detail="CloudWatch Logs cut the event at its size limit (it ends with [Truncated...])",
            cluster=cluster,
            identity=event_identity(message, identity),
        )
    decoded = decode_event(message, 0, len(message))
    if isinstance(decoded, Undecodable):
        found = event_identity(message, identity)  # even when the structure itself is broken
        found.update((k, v) for k, v in decoded.ref.items() if isinstance(v, str))
        reason = "event-too-deep" if decoded.too_deep else "event-not-json"
        return CloudReject(reason=reason, detail=decoded.detail, cluster=cluster, identity=found)
    if not isinstance(decoded, dict):
        return CloudReject(
            reason="event-not-object",
            detail="log event message is not a JSON object",
            cluster=cluster,
            identity=dict(identity),
        )
    return CloudEvent(cluster=cluster, event=message)


def _reject(reason: str, detail: str, identity: dict[str, str], cluster: str | None = None) -> CloudReject:
    return CloudReject(reason=reason, detail=detail, cluster=cluster, identity=dict(identity))


def subscription_items(
    doc: dict[str, Any],
    *,
    clusters: Collection[str],
    not_allowed: str,
    counts: CloudWatchCounts,
    identity: dict[str, str],
) -> list[CloudEvent | CloudReject]:
    """The items of one decoded CloudWatch Logs subscription message.

    ``clusters`` are those the channel may speak for; an audit event of any other cluster is
    rejected as ``cluster-not-allowed`` with the detail ``not_allowed``."""
    kind = doc.get("messageType")
    if kind == "CONTROL_MESSAGE":
        counts.control_messages += 1
        return []
    if kind != "DATA_MESSAGE":
        return [
            _reject("unknown-message-type", "messageType is not DATA_MESSAGE or CONTROL_MESSAGE", identity)
        ]
    cluster = eks_cluster(doc.get("logGroup"))
    if cluster is None:
        return [
            _reject(
                "log-group-not-eks", "logGroup is not an EKS log group /aws/eks/<cluster>/cluster", identity
            )
        ]
    base = {**identity, "logGroup": doc["logGroup"]}
    if isinstance(stream := doc.get("logStream"), str) and _AUDIT_STREAM.fullmatch(stream):
        base["logStream"] = stream
    log_events = doc.get("logEvents")
    if not isinstance(log_events, list):
        return [_reject("record-malformed", "logEvents is missing or not a list", base, cluster)]
    if not is_audit_stream(doc.get("logStream")):
        counts.skipped_events += len(log_events)
        return []
    items: list[CloudEvent | CloudReject] = []
    for log_event in log_events:
        found = dict(base)
        message = log_event.get("message") if isinstance(log_event, dict) else None
        event_id = log_event.get("id") if isinstance(log_event, dict) else None
        if isinstance(event_id, str) and _EVENT_ID.fullmatch(event_id):
            found["logEventId"] = event_id
        if not isinstance(message, str):
            items.append(_reject("log-event-malformed", "log event has no string message", found, cluster))
            continue
        try:
            raw = message.encode()
        except UnicodeEncodeError:  # a lone surrogate, which no event's UTF-8 can hold
            items.append(_reject("event-not-json", "log event message is not valid UTF-8", found, cluster))
            continue
        if cluster not in clusters:
            items.append(
                CloudReject(
                    reason="cluster-not-allowed",
                    detail=not_allowed,
                    identity=event_identity(raw, found),
                )
            )
            continue
        items.append(audit_message(raw, cluster, found))
    return items


def _values(line: bytes) -> list[tuple[Any, bytes]] | None:
    """The JSON values of a line with their bytes: one, or several back to back (Firehose
    writes records to S3 without a delimiter unless told to add one); None if it does not decode."""
    try:
        return [(orjson.loads(line), line)]
    except orjson.JSONDecodeError:
        pass
    try:
        text = line.decode()
    except UnicodeDecodeError:
        return None
    decoder = json.JSONDecoder()
    values = []
    pos = 0
    try:
        while pos < len(text):
            start = pos
            value, pos = decoder.raw_decode(text, pos)
            values.append((value, text[start:pos].encode()))
            while pos < len(text) and text[pos].isspace():
                pos += 1
    except (ValueError, RecursionError):
        return None
    return values


def _export_line(
    line: bytes, cluster: str, counts: CloudWatchCounts, identity: dict[str, str]
) -> list[CloudEvent | CloudReject]:
    if match := _EXPORT_LINE.fullmatch(line):
        message = match.group(1)
        if not message.lstrip().startswith(b"{"):
            counts.skipped_events += 1  # another stream's line: authenticator, scheduler, ...
            return []
        return [audit_message(message, cluster, identity)]
    if not line.startswith(b"{"):
        return [
            _reject("line-not-recognised", "line is neither '<time> <message>' nor JSON", identity, cluster)
        ]
    values = _values(line)
    if values is None:
        return [audit_message(line, cluster, identity)]  # it says why the line is not an event
    items: list[CloudEvent | CloudReject] = []
    for value, raw in values:
        if isinstance(value, dict) and "messageType" in value:
            items.extend(
                subscription_items(
                    value,
                    clusters=(cluster,),
                    not_allowed="the log group belongs to another cluster than the one this replay records",
                    counts=counts,
                    identity=identity,
                )
            )
        else:  # a bare event: Firehose's message extraction, delivered to S3
            items.append(audit_message(raw, cluster, identity))
    return items


def read_cloudwatch_export(
    lines: Iterable[bytes],
    cluster: str,
    *,
    counts: CloudWatchCounts | None = None,
    max_line_bytes: int = 16 * 1024 * 1024,
) -> Iterator[CloudEvent | CloudReject]:
    """The audit events of CloudWatch Logs data saved to files, for ``replay --format cloudwatch``.

    ``lines`` are the lines of the (already gunzip'd) files. Each line is one of:
    an S3 export line ``<ISO-8601 time> <message>``; a CloudWatch Logs subscription message
    (several back to back on a line too: Firehose → S3 writes records without a delimiter);
    a bare audit Event (Firehose message extraction → S3 with a newline delimiter). Every event
    is recorded as ``cluster``; a subscription message of another log group is rejected.
    Rejects name their line (``identity["line"]``, 1-based) and never quote it."""
    counts = counts if counts is not None else CloudWatchCounts()
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip(b"\r\n")
        if not line.strip():
            continue
        identity = {"line": str(number)}
        if len(line) > max_line_bytes:
            yield _reject(
                "line-too-large", f"line is over the limit of {max_line_bytes} bytes", identity, cluster
            )
            continue
        yield from _export_line(line, cluster, counts, identity)
