"""AKS diagnostic records: the audit Events that Azure Monitor writes for a managed cluster.

A diagnostic setting on the cluster sends categories ``kube-audit`` (every event) and
``kube-audit-admin`` (the same without get and list) to a storage account, as hourly
``PT1H.json`` blobs of one record per line, or to an Event Hub, as ``{"records": [...]}``.
Each record is ``{time, resourceId, category, operationName, properties: {log, stream, pod}}``;
``properties.log`` is the Event as the apiserver's log backend wrote it, as a JSON string.

Every record is judged on its own: a record of another category is skipped and counted, and
one that cannot be used is rejected alone, with a reason:

- ``malformed-envelope``: ``records`` is not a list (nothing else of that envelope is read);
- ``record-not-json``: the record (a line, or an element of ``records``) does not decode;
- ``malformed-record``: no category, no AKS ``resourceId``, or no string ``properties.log``;
- ``cluster-not-allowed``: the cluster is not in the allowed list;
- ``event-truncated``: ``properties.log`` is cut at AKS's 16 KiB limit (see ``is_truncated``);
- ``event-not-json``, ``event-too-deep``: ``properties.log`` does not decode for another reason;
- ``malformed-event``: ``properties.log`` decodes, but not to an object.

The cluster is the last segment of ``resourceId``. Azure upper-cases the whole id, so names are
matched without case and recorded in lower case. A reject's identity holds only identifiers:
the record's ``time``, and the ``auditID``, ``stage`` and ``verb`` read from ``properties.log``.
An Event's bytes are the UTF-8 of ``properties.log`` as it is: the same record read twice
gives the same bytes, so dedupe sees a re-read (or the copy that ``kube-audit-admin`` adds)
as the same event.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from webhook.core.jsonscan import ScanError, elements, top_members
from webhook.errors import ConfigError
from webhook.events import STAGES, Undecodable, decode_event
from webhook.sources.cloud import CloudEvent, CloudReject

__all__ = [
    "AKS_CATEGORIES",
    "LOG_CUT_BYTES",
    "AksBatch",
    "AllowedClusters",
    "cluster_of",
    "decode_aks_line",
    "decode_aks_records",
    "is_truncated",
    "read_aks_blob_lines",
]

AKS_CATEGORIES: Final = frozenset({"kube-audit", "kube-audit-admin"})
# AKS cuts ``properties.log`` at 16 KiB (Azure/AKS#4635). Counted in UTF-8 bytes, less room for
# a multi-byte character that the cut split and a collector dropped, and for a line end.
LOG_CUT_BYTES: Final = 16 * 1024
_CUT_SLACK: Final = 8

_RESOURCE_ID: Final = re.compile(
    r"/subscriptions/[^/]+/resourcegroups/[^/]+/providers/microsoft\.containerservice"
    r"/managedclusters/([^/]+)",
    re.IGNORECASE,
)
# AKS cluster names: letters, digits, '-' and '_' (63 at most); anything else is not one.
_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,63}")
_TIME: Final = re.compile(r"[0-9T:.+Z-]{1,40}")
_BOM: Final = b"\xef\xbb\xbf"
# Identifiers read from text that does not decode. The apiserver writes auditID, stage and
# verb before any object, so the first match is the event's own. ``\\?"`` also finds them
# inside a record, where properties.log's quotes are escaped.
_AUDIT_ID: Final = re.compile(rb'\\?"auditID\\?"\s*:\s*\\?"([0-9A-Za-z-]{1,64})\\?"')
_STAGE: Final = re.compile(rb'\\?"stage\\?"\s*:\s*\\?"(' + b"|".join(s.encode() for s in STAGES) + rb')\\?"')
_VERB: Final = re.compile(rb'\\?"verb\\?"\s*:\s*\\?"([a-z]{1,32})\\?"')
_RESOURCE_ID_FIELD: Final = re.compile(rb'"resourceId"\s*:\s*"((?:[^"\\]|\\/){1,512})"')


class AllowedClusters(frozenset[str]):
    """Cluster names and full AKS resource ids, lower-cased: what one source may speak for."""

    __slots__ = ()

    @classmethod
    def of(cls, entries: Iterable[str]) -> AllowedClusters:
        """Raises ``ConfigError`` for an entry that is neither a name nor an AKS resource id."""
        found = []
        for index, entry in enumerate(entries):
            ok = _RESOURCE_ID.fullmatch(entry) if entry.startswith("/") else _NAME.fullmatch(entry)
            if not ok:
                raise ConfigError(
                    f"clusters[{index}]: not an AKS cluster name or a managed cluster's resource id"
                )
            found.append(entry.lower())
        return cls(found)


@dataclass(frozen=True, slots=True, kw_only=True)
class AksBatch:
    """What one input decoded into: events and rejects in input order, and the counts."""

    items: tuple[CloudEvent | CloudReject, ...] = ()
    records: int = 0  # records read, including the skipped and the rejected
    skipped: int = 0  # records of another category (kube-apiserver, guard, ...)

    @property
    def events(self) -> int:
        return sum(isinstance(item, CloudEvent) for item in self.items)


@dataclass(slots=True)
class _Builder:
    items: list[CloudEvent | CloudReject] = field(default_factory=list)
    records: int = 0
    skipped: int = 0

    def freeze(self) -> AksBatch:
        return AksBatch(items=tuple(self.items), records=self.records, skipped=self.skipped)


def cluster_of(resource_id: str) -> str | None:
    """The cluster name (lower case) of an AKS managed cluster's resource id, in any case."""
    match = _RESOURCE_ID.fullmatch(resource_id)
    if match is None or not _NAME.fullmatch(match[1]):
        return None
    return match[1].lower()


def is_truncated(log: bytes) -> bool:
    """Whether a ``properties.log`` that does not decode was cut at the 16 KiB limit.

    The rule: it is at least ``LOG_CUT_BYTES`` less 8 bytes of UTF-8. Shorter text that does
    not decode was broken some other way. A cut never leaves valid JSON (an object's prefix
    is not an object), so text that decodes is never truncated, whatever its length."""
    return len(log) >= LOG_CUT_BYTES - _CUT_SLACK


def decode_aks_records(data: bytes, clusters: Collection[str] | None = None) -> AksBatch:
    """Records in either form: one ``{"records": [...]}`` envelope (an Event Hub message, of
    any layout), or one record per line (a storage blob, where a line may also be an envelope).

    The form is told by the data. When it decodes as a whole, it is one envelope or one record.
    Otherwise, when its first line decodes on its own, it is lines; when it does not, but the
    object it starts has a ``records`` member, it is an envelope with a damaged record, whose
    other records are still read; else it is lines. A reject's identity has ``record``, the
    1-based index in an envelope, and ``line``, the 1-based line number, where they apply."""
    allowed = _allowed(clusters)
    data = data.removeprefix(_BOM)
    out = _Builder()
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        if _first_line_decodes(data) or not _damaged_envelope(data, allowed, out):
            for number, line in enumerate(data.split(b"\n"), start=1):
                if line.strip():
                    _line(line, allowed, out, {"line": str(number)})
        return out.freeze()
    _document(doc, allowed, out, {})
    return out.freeze()


def decode_aks_line(line: bytes, clusters: Collection[str] | None = None) -> AksBatch:
    """One line of a ``PT1H.json`` blob: a record (or an envelope). Empty lines hold nothing."""
    out = _Builder()
    if line.strip():
        _line(line.removeprefix(_BOM), _allowed(clusters), out, {})
    return out.freeze()


def read_aks_blob_lines(
    lines: Iterable[bytes], clusters: Collection[str] | None = None
) -> Iterator[AksBatch]:
    """A downloaded ``PT1H.json`` blob (``replay --format aks``), one batch per line that is
    not empty; a reject's identity has ``line``, the 1-based line number."""
    allowed = _allowed(clusters)
    for number, line in enumerate(lines, start=1):
        if line.strip():
            out = _Builder()
            _line(line.removeprefix(_BOM) if number == 1 else line, allowed, out, {"line": str(number)})
            yield out.freeze()


def _allowed(clusters: Collection[str] | None) -> AllowedClusters | None:
    if clusters is None or isinstance(clusters, AllowedClusters):
        return clusters
    return AllowedClusters.of(clusters)


def _line(
    line: bytes,
    allowed: AllowedClusters | None,
    out: _Builder,
    where: dict[str, str],
    *,
    element: bool = False,
) -> None:
    """A line (a record, or an envelope), or with ``element`` an envelope's record."""
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        out.records += 1
        out.items.append(_unreadable(line, exc.pos, where))
        return
    if element:
        _record(doc, allowed, out, where)
    else:
        _document(doc, allowed, out, where)


def _document(doc: Any, allowed: AllowedClusters | None, out: _Builder, where: dict[str, str]) -> None:
    """A decoded envelope, or a decoded record."""
    if isinstance(doc, dict) and "records" in doc:
        records = doc["records"]
        if not isinstance(records, list):
            out.items.append(CloudReject(reason="malformed-envelope", detail="records is not a list"))
            return
        for index, record in enumerate(records, start=1):
            _record(record, allowed, out, {**where, "record": str(index)})
        return
    _record(doc, allowed, out, where)


def _first_line_decodes(data: bytes) -> bool:
    first = data.lstrip().split(b"\n", 1)[0]
    try:
        orjson.loads(first)
    except orjson.JSONDecodeError:
        return False
    return True


def _damaged_envelope(data: bytes, allowed: AllowedClusters | None, out: _Builder) -> bool:
    """An envelope that does not decode as a whole: each record decoded on its own."""
    try:
        spans = [(start, end) for key, start, end in top_members(data) if key == "records"]
        if not spans:
            return False
        start, end = spans[-1]  # the last one counts, as when decoding
        if data[start] != ord("["):
            out.items.append(CloudReject(reason="malformed-envelope", detail="records is not a list"))
            return True
        records = elements(data, start, end)
    except ScanError:
        return False
    for index, (start, end) in enumerate(records, start=1):
        _line(data[start:end], allowed, out, {"record": str(index)}, element=True)
    return True


def _record(record: Any, allowed: AllowedClusters | None, out: _Builder, where: dict[str, str]) -> None:
    out.records += 1
    if not isinstance(record, dict):
        out.items.append(_reject("malformed-record", "record is not a JSON object", where))
        return
    category = record.get("category")
    if not isinstance(category, str):
        out.items.append(_reject("malformed-record", "category is missing or not a string", where))
        return
    if category.lower() not in AKS_CATEGORIES:
        out.skipped += 1
        return
    properties = record.get("properties")
    log = properties.get("log") if isinstance(properties, dict) else None
    raw = _utf8(log) if isinstance(log, str) else None
    resource_id = record.get("resourceId")
    resource_id = resource_id if isinstance(resource_id, str) else ""
    cluster = cluster_of(resource_id)
    if cluster is None:
        detail = "resourceId is missing or not an AKS managed cluster's resource id"
        out.items.append(_reject("malformed-record", detail, _identity(record, raw, where)))
    elif allowed is not None and cluster not in allowed and resource_id.lower() not in allowed:
        detail = "the cluster is not in this source's allowed clusters"
        out.items.append(_reject("cluster-not-allowed", detail, _identity(record, raw, where), cluster))
    elif not isinstance(log, str):
        detail = "properties.log is missing or not a string"
        out.items.append(_reject("malformed-record", detail, _identity(record, raw, where), cluster))
    elif raw is None:
        detail = "properties.log holds a lone surrogate"
        out.items.append(_reject("event-not-json", detail, _identity(record, raw, where), cluster))
    else:
        out.items.append(_event(raw, cluster, record, where))


def _event(
    raw: bytes, cluster: str, record: dict[str, Any], where: dict[str, str]
) -> CloudEvent | CloudReject:
    event = decode_event(raw, 0, len(raw))
    if isinstance(event, dict):
        return CloudEvent(cluster=cluster, event=raw)
    identity = _identity(record, raw, where)
    if not isinstance(event, Undecodable):
        return _reject("malformed-event", "properties.log is not a JSON object", identity, cluster)
    if event.too_deep:
        return _reject("event-too-deep", f"properties.log: {event.detail}", identity, cluster)
    if is_truncated(raw):
        detail = f"properties.log is {len(raw)} bytes, cut at AKS's 16 KiB limit, and not valid JSON"
        return _reject("event-truncated", detail, identity, cluster)
    return _reject("event-not-json", f"properties.log: {event.detail}", identity, cluster)


def _unreadable(line: bytes, pos: int, where: dict[str, str]) -> CloudReject:
    """A record that does not decode, with the cluster and event identity its text still shows."""
    identity = {**where, **_identifiers(line)}
    cluster = None
    found = _RESOURCE_ID_FIELD.search(line)
    if found is not None:
        cluster = cluster_of(found[1].replace(b"\\/", b"/").decode("ascii", "replace"))
    # orjson's message can quote the input; keep only the position.
    detail = f"record is not valid JSON (at byte {pos})"
    return _reject("record-not-json", detail, identity, cluster)


def _identity(record: dict[str, Any], raw: bytes | None, where: dict[str, str]) -> dict[str, str]:
    """Where the record is, when Azure wrote it, and the event's own identifiers."""
    identity = dict(where)
    when = record.get("time")
    if isinstance(when, str) and _TIME.fullmatch(when):
        identity["time"] = when
    if raw is not None:
        identity.update(_identifiers(raw))
    return identity


def _identifiers(text: bytes) -> dict[str, str]:
    found = {}
    for name, pattern in (("auditID", _AUDIT_ID), ("stage", _STAGE), ("verb", _VERB)):
        match = pattern.search(text)
        if match is not None:
            found[name] = match[1].decode("ascii")
    return found


def _utf8(text: str) -> bytes | None:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return None


def _reject(reason: str, detail: str, identity: dict[str, str], cluster: str | None = None) -> CloudReject:
    return CloudReject(reason=reason, detail=detail, cluster=cluster, identity=identity)
