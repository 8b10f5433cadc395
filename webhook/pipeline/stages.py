"""One batch through the stages: check → filter → dedupe → redact, then state → enrich → record.

Two synchronous halves around the caller's I/O: ``prepare`` checks, filters, dedupes against
the in-memory window and redacts; the caller then fetches, for the kept events only, the
previous states named by ``lookups`` and the dedupe keys other replicas already recorded;
``finish`` has the enricher (webhook/enrich/enricher.py) diff, summarize and raise findings,
builds each record once from that, and says which states to store once the records are
durable. Work for an event that the filter drops stays minimal (a type check and the
predicate), because that is ~95 % of traffic.

A batch is one cluster's: the enricher sees that cluster's objects by their own keys, and the
store keys of a cluster other than the configured one carry its name (``cluster_key``), as do
its record ids, so that no baseline and no dedupe key crosses clusters.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
import structlog

from webhook.dedupe import Deduper
from webhook.enrich.enricher import Enricher
from webhook.enrich.settings import ActorsConfig, ChangeConfig, FindingsConfig
from webhook.errors import EventTooDeepError, EventTooLargeError, MalformedEventError
from webhook.events import check_event, event_ref
from webhook.filter import FilterSpec, compile_filter
from webhook.record.audit import Record, cluster_record_id, record_id
from webhook.record.dead_letter import DeadLetter
from webhook.record.line import to_json
from webhook.redact.redactor import RedactionResult, Redactor
from webhook.state.base import StoredObject, cluster_key, is_newer, split_key

__all__ = ["BatchResult", "Pipeline", "PipelineSettings"]

log = structlog.get_logger(__name__)

_INTERNAL: Final = "internal"


@dataclass(frozen=True, slots=True, kw_only=True)
class PipelineSettings:
    """The config the stages read: four sections, the cluster and ``server.max_event_bytes``.

    Picklable and small: the worker processes get it, never the whole config."""

    cluster: str
    max_event_bytes: int
    filter: FilterSpec
    change: ChangeConfig
    actors: ActorsConfig
    findings: FindingsConfig


@dataclass(slots=True)
class Prepared:
    """A kept, redacted event waiting for its previous state."""

    index: int
    item: Any
    key: str
    redacted: RedactionResult


@dataclass(slots=True)
class BatchResult:
    events: int = 0
    matched: int = 0
    duplicates: int = 0
    records: list[Record] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)  # the records' JSON, made under the guard
    # What observers read: each record as its JSON document (its parsed line, wherever it was
    # built: here or in a worker process).
    documents: list[Mapping[str, Any]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    received_at: str = ""
    cluster: str = ""  # the cluster the sender proved, unless the configured one (then empty)
    pending: list[Prepared] = field(default_factory=list)
    state_updates: dict[str, StoredObject] = field(default_factory=dict)
    # Items of secrets lists found in the redactor's memory, and not (``ListItemCache``).
    list_item_hits: int = 0
    list_item_misses: int = 0


class Pipeline:
    def __init__(self, settings: PipelineSettings, deduper: Deduper, redactor: Redactor) -> None:
        self._redactor = redactor
        self._keep = compile_filter(settings.filter)
        self._cluster = settings.cluster
        self._deduper = deduper
        self._max_event_bytes = settings.max_event_bytes
        self._enricher = Enricher(change=settings.change, actors=settings.actors, findings=settings.findings)

    @property
    def redactor(self) -> Redactor:
        """The redactor of this process's prepares (each worker process has its own)."""
        return self._redactor

    @property
    def cluster(self) -> str:
        """The configured cluster: that of a batch whose sender proved no other."""
        return self._cluster

    def process(
        self,
        items: Sequence[Any],
        *,
        received_at: str,
        states: Mapping[str, StoredObject] | None = None,
        cluster: str | None = None,
    ) -> BatchResult:
        """Both halves at once, with ``states`` as the previous state (none by default)."""
        result = self.prepare(items, received_at=received_at, cluster=cluster)
        self.finish(result, states=states or {})
        return result

    def _scope(self, cluster: str | None) -> str:
        """What a batch's keys are namespaced by: nothing for the configured cluster."""
        return "" if not cluster or cluster == self._cluster else cluster

    def prepare(self, items: Sequence[Any], *, received_at: str, cluster: str | None = None) -> BatchResult:
        """Check, filter, dedupe and redact: the half that needs no state (and runs in a worker).

        ``cluster``: the one the sender proved (None: the configured one)."""
        scope = self._scope(cluster)
        result = BatchResult(events=len(items), received_at=received_at, cluster=scope)
        keep = self._keep
        batch_keys: set[str] = set()
        memory = self._redactor.list_items
        hits, misses = memory.hits, memory.misses
        for index, item in enumerate(items):
            try:
                event = check_event(item)
                if not keep(event):
                    continue
                result.matched += 1
                try:
                    encoded = orjson.dumps(event)
                except orjson.JSONEncodeError:  # orjson encodes 254 levels; it decodes 1024
                    raise EventTooDeepError("event nests deeper than 254 levels") from None
                if len(encoded) > self._max_event_bytes:
                    raise EventTooLargeError(
                        f"event is {len(encoded)} bytes, over the limit of {self._max_event_bytes}"
                    )
                digest = hashlib.blake2b(encoded, digest_size=16).hexdigest()
                # The record id is the dedupe key: stable across retries, unique per event.
                key = record_id(event["auditID"], event["stage"], digest)
                if scope:
                    key = cluster_record_id(scope, key)
                if key in batch_keys or self._deduper.seen(key):
                    result.duplicates += 1
                    continue
                # Redaction first: nothing below (state, record, logs, sinks) sees a value.
                redacted = self._redactor.redact(event, encoded=encoded)
            except Exception as exc:  # noqa: BLE001 - one bad event must not cost the batch
                self._failed(result, index, item, exc)
                continue
            batch_keys.add(key)
            result.pending.append(Prepared(index=index, item=item, key=key, redacted=redacted))
        result.list_item_hits = memory.hits - hits
        result.list_item_misses = memory.misses - misses
        return result

    def lookups(self, result: BatchResult) -> list[str]:
        """Store keys of the states the kept events need: their objects and the Secrets they
        reference, in the batch's cluster.

        An event whose keys cannot be read is dead-lettered here, alone."""
        keys: dict[str, None] = {}
        pending = []
        for prepared in result.pending:
            try:
                mine = self._enricher.state_keys(prepared.redacted.event)
            except Exception as exc:  # noqa: BLE001 - one bad event must not cost the batch
                self._failed(result, prepared.index, prepared.item, exc)
                continue
            keys.update(dict.fromkeys(mine))
            pending.append(prepared)
        result.pending = pending
        return [cluster_key(result.cluster, key) for key in keys]

    def finish(
        self,
        result: BatchResult,
        *,
        states: Mapping[str, StoredObject],
        duplicates: frozenset[str] | set[str] = frozenset(),
        available: bool = True,
    ) -> None:
        """Build the records; events earlier in the batch are the baseline of later ones.

        ``states`` and ``result.state_updates`` are by store key (``lookups``)."""
        current = _local(states, result.cluster)
        learnt: dict[str, StoredObject] = {}
        for prepared in result.pending:
            if prepared.key in duplicates:
                result.duplicates += 1  # another replica recorded it
                continue
            try:
                record, updates = self._build(prepared, current, result, available)
                line = to_json(record)
                newer = {k: state for k, state in updates.items() if is_newer(state, current.get(k))}
            except Exception as exc:  # noqa: BLE001 - one bad event must not cost the batch
                self._failed(result, prepared.index, prepared.item, exc)
                continue
            current.update(newer)
            learnt.update(newer)
            result.keys.append(prepared.key)
            result.records.append(record)
            result.lines.append(line)
        result.pending = []
        result.state_updates.update((cluster_key(result.cluster, k), s) for k, s in learnt.items())
        result.dead_letters.sort(key=lambda letter: letter.index if letter.index is not None else -1)

    @staticmethod
    def _failed(result: BatchResult, index: int, item: Any, exc: Exception) -> None:
        """Dead-letter one event that a stage could not handle: its own reason when it is
        malformed, ``internal`` (and an error line naming only the type) otherwise."""
        if isinstance(exc, MalformedEventError):
            reason, detail = exc.code, exc.message
        else:
            log.error("event.failed", index=index, error=type(exc).__name__)
            reason, detail = _INTERNAL, f"unexpected {type(exc).__name__}"
        result.dead_letters.append(_letter(reason, detail, index, item, result.received_at))

    def _build(
        self, prepared: Prepared, current: Mapping[str, StoredObject], result: BatchResult, available: bool
    ) -> tuple[Record, Mapping[str, StoredObject]]:
        """The record, built once and complete, and the states its event reveals."""
        enrichment = self._enricher.enrich(prepared.redacted, current, available=available)
        record = Record.from_event(
            prepared.redacted.event,
            record_id=prepared.key,
            cluster=result.cluster or self._cluster,
            received_at=result.received_at,
            enrichment=enrichment,
        )
        return record, enrichment.state_updates


def _local(states: Mapping[str, StoredObject], cluster: str) -> dict[str, StoredObject]:
    """The states of ``cluster`` (empty: the configured one) by the enricher's own keys."""
    local = {}
    for key, state in states.items():
        owner, name = split_key(key)
        if (owner or "") == cluster:
            local[name] = state
    return local


def _letter(reason: str, detail: str, index: int, item: Any, received_at: str) -> DeadLetter:
    return DeadLetter(
        reason=reason, detail=detail, received_at=received_at, index=index, event=event_ref(item)
    )
