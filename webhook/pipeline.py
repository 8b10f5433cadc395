"""One batch through the stages: check → filter → dedupe → redact → record.

Pure apart from reading the dedupe window: it returns what to write and which keys to
remember once the write is durable; the caller does the I/O. Work for an event that the
filter drops stays minimal (a type check and the predicate), because that is ~95 % of traffic.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson
import structlog

from webhook.config import Config
from webhook.dedupe import Deduper
from webhook.errors import EventTooLargeError, MalformedEventError
from webhook.events import check_event, event_ref
from webhook.filter import compile_filter
from webhook.record import SCHEMA_VERSION, Record, record_id
from webhook.redact import Redactor

__all__ = ["BatchResult", "DeadLetter", "Pipeline", "dead_letter_json", "utc_now"]

log = structlog.get_logger(__name__)

_INTERNAL: Final = "internal"


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    """Why an event (or a whole batch) was not recorded; never holds a value from its body."""

    reason: str
    detail: str
    received_at: str
    index: int | None = None
    event: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] | None = None  # a record a sink refused for good (already redacted)
    schema_version: int = SCHEMA_VERSION
    type: str = "dead_letter"


@dataclass(slots=True)
class BatchResult:
    events: int = 0
    matched: int = 0
    duplicates: int = 0
    records: list[Record] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)


def utc_now() -> str:
    """Now, as the records write times: RFC 3339, microseconds, UTC, ``Z``."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def dead_letter_json(letters: Sequence[DeadLetter]) -> bytes:
    return b"".join(orjson.dumps(letter) + b"\n" for letter in letters)


class Pipeline:
    def __init__(self, config: Config, deduper: Deduper, redactor: Redactor) -> None:
        self._redactor = redactor
        self._keep = compile_filter(config.filter)
        self._cluster = config.cluster
        self._deduper = deduper
        self._max_event_bytes = config.server.max_event_bytes

    def process(self, items: Sequence[Any], *, received_at: str) -> BatchResult:
        result = BatchResult(events=len(items))
        keep = self._keep
        batch_keys: set[str] = set()
        for index, item in enumerate(items):
            try:
                event = check_event(item)
                if not keep(event):
                    continue
                result.matched += 1
                encoded = orjson.dumps(event)
                if len(encoded) > self._max_event_bytes:
                    raise EventTooLargeError(
                        f"event is {len(encoded)} bytes, over the limit of {self._max_event_bytes}"
                    )
                digest = hashlib.blake2b(encoded, digest_size=16).hexdigest()
                # The record id is the dedupe key: stable across retries, unique per event.
                key = record_id(event["auditID"], event["stage"], digest)
                if key in batch_keys or self._deduper.seen(key):
                    result.duplicates += 1
                    continue
                # Redaction first: nothing below (record, logs, dead letters, sinks) sees a value.
                redacted = self._redactor.redact(event)
                record = Record.from_event(
                    redacted.event,
                    record_id=key,
                    cluster=self._cluster,
                    received_at=received_at,
                    secrets=redacted.secrets,
                    dropped=redacted.dropped,
                )
            except MalformedEventError as exc:
                result.dead_letters.append(_letter(exc.code, exc.message, index, item, received_at))
                continue
            except Exception as exc:  # noqa: BLE001 - one bad event must not cost the batch
                log.error("event.failed", index=index, error=type(exc).__name__)
                result.dead_letters.append(
                    _letter(_INTERNAL, f"unexpected {type(exc).__name__}", index, item, received_at)
                )
                continue
            batch_keys.add(key)
            result.keys.append(key)
            result.records.append(record)
        return result


def _letter(reason: str, detail: str, index: int, item: Any, received_at: str) -> DeadLetter:
    return DeadLetter(
        reason=reason, detail=detail, received_at=received_at, index=index, event=event_ref(item)
    )
