"""What a managed cloud's items become: the events go to the audit ingestor under the cluster
their channel proved, and each reject becomes a dead letter with its identifiers.

Shared by ``POST /firehose``, ``POST /pubsub`` and ``replay --format``. An event is handed on
as the webhook would have sent it (webhook/sources/logfile.py drops the log backend's ``kind``
and ``apiVersion``), so it gets the same record id however it arrived, and an overlap between
the paths, or a redelivery, adds nothing.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Final, Generic, TypeVar

import orjson
import structlog

from webhook.metrics import Metrics
from webhook.pipeline.ingestor import AuditIngestor
from webhook.record.dead_letter import DeadLetter
from webhook.sources.cloud import CloudEvent, CloudReject
from webhook.sources.logfile import as_webhook_item
from webhook.spool.writer import RecordWriter

__all__ = [
    "CloudBatch",
    "CloudSums",
    "Recent",
    "count_items",
    "ingest_items",
    "prepare_items",
    "reject_letter",
    "write_received",
]

log = structlog.get_logger(__name__)

_RECENT: Final = 10_000
_CHUNK: Final = 1000  # events decoded and ingested at a time

V = TypeVar("V")


@dataclass(slots=True)
class CloudBatch:
    """A request's (or a replay chunk's) items: events by cluster, in order, and dead letters."""

    by_cluster: dict[str, list[Any]] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)

    @property
    def events(self) -> int:
        return sum(len(events) for events in self.by_cluster.values())


@dataclass(slots=True)
class CloudSums:
    """What requests (``requests`` 1), or a replay's chunks, or a sum of them became."""

    requests: int = 0
    refused: int = 0  # answered 4xx: a message that can never become an event
    events: int = 0
    matched: int = 0
    records: int = 0
    duplicates: int = 0
    dead_lettered: int = 0  # the rejects and the pipeline's own
    rejected: int = 0  # items the source's decoder refused, dead-lettered now
    repeated: int = 0  # those of a retry or redelivery, not dead-lettered again
    control_messages: int = 0
    skipped: int = 0

    def add(self, other: CloudSums) -> None:
        for name in fields(self):
            setattr(self, name.name, getattr(self, name.name) + getattr(other, name.name))


class Recent(Generic[V]):
    """The last ``size`` keys put, each with its value: what a redelivery already left behind."""

    def __init__(self, size: int = _RECENT) -> None:
        self._size = size
        self._items: OrderedDict[str, V] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> V | None:
        return self._items.get(key)

    def put(self, key: str, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)


def write_received(source: str, sums: CloudSums) -> None:
    """``cloud.received``: FoldingLog(write_received) takes add(source, CloudSums(requests=1, ...))."""
    log.info(
        "cloud.received",
        source=source,
        requests=sums.requests,
        refused=sums.refused,
        events=sums.events,
        records=sums.records,
        duplicates=sums.duplicates,
        dead_lettered=sums.dead_lettered,
        repeated_rejects=sums.repeated,
        control_messages=sums.control_messages,
        skipped=sums.skipped,
    )


def count_items(metrics: Metrics, source: str, sums: CloudSums) -> None:
    """``ingress_audit_cloud_items_total`` for what one request read."""
    items = metrics.cloud_items
    items.labels(source=source, result="event").inc(sums.events)
    items.labels(source=source, result="rejected").inc(sums.rejected)
    items.labels(source=source, result="repeated_reject").inc(sums.repeated)
    items.labels(source=source, result="control_message").inc(sums.control_messages)
    items.labels(source=source, result="skipped").inc(sums.skipped)


def prepare_items(
    items: Iterable[CloudEvent | CloudReject], *, received_at: str, where: Mapping[str, str]
) -> CloudBatch:
    """Decode each event for the pipeline, grouped by cluster; a reject becomes a dead letter
    whose ``event`` holds ``where`` (the input, a file) and the reject's identifiers only."""
    batch = CloudBatch()
    for item in items:
        if isinstance(item, CloudReject):
            batch.dead_letters.append(reject_letter(item, received_at=received_at, where=where))
            continue
        try:
            doc = orjson.loads(item.event)
        except orjson.JSONDecodeError:  # the decoders hand on only events that decode
            detail = "the event does not decode"
            reject = CloudReject(reason="event-not-json", detail=detail, cluster=item.cluster)
            batch.dead_letters.append(reject_letter(reject, received_at=received_at, where=where))
            continue
        batch.by_cluster.setdefault(item.cluster, []).append(
            as_webhook_item(doc) if isinstance(doc, dict) else doc
        )
    return batch


def reject_letter(reject: CloudReject, *, received_at: str, where: Mapping[str, str]) -> DeadLetter:
    event: dict[str, Any] = {**where, **reject.identity}
    if reject.cluster is not None:
        event["cluster"] = reject.cluster
    return DeadLetter(reason=reject.reason, detail=reject.detail, received_at=received_at, event=event)


async def ingest_items(
    ingestor: AuditIngestor,
    writer: RecordWriter,
    items: Sequence[CloudEvent | CloudReject],
    *,
    received_at: str,
    where: Mapping[str, str],
    dead_letters: bool = True,
    chunk_size: int = _CHUNK,
) -> CloudSums:
    """Every cluster's events, a chunk at a time (decoded off the event loop: a chunk of dicts
    in memory, not the request's), then the rejects' dead letters, unless ``dead_letters`` is
    False (a retry whose rejects are written); all durable before this returns.

    Raises ``StorageError`` when they cannot be kept: the sender's retry records what was not
    (the events already recorded are duplicates by then), and only then writes the rejects."""
    sums = CloudSums()
    letters: list[DeadLetter] = []
    for start in range(0, len(items), chunk_size):
        chunk = items[start : start + chunk_size]
        batch = await asyncio.to_thread(prepare_items, chunk, received_at=received_at, where=where)
        letters.extend(batch.dead_letters)
        sums.events += batch.events
        for cluster, events in batch.by_cluster.items():
            result = await ingestor.ingest(events, received_at=received_at, cluster=cluster)
            sums.matched += result.matched
            sums.records += len(result.records)
            sums.duplicates += result.duplicates
            sums.dead_lettered += len(result.dead_letters)
    if not dead_letters:
        sums.repeated = len(letters)
    elif letters:
        await writer.write_records((), letters)
        sums.rejected = len(letters)
        sums.dead_lettered += len(letters)
    return sums
