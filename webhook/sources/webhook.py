"""``POST /audit``: the kube-apiserver's audit webhook, an ``audit.k8s.io`` EventList per request.

200 only once every record of the batch and every dead letter is written and fsync'd; the
answer counts what the batch became. A body that is not an EventList as a whole is refused
(400), and so are bodies too large or too slow: the apiserver retries those and then drops the
batch, so each such refusal leaves a dead letter. The apiserver authenticates with the server's
client certificate or bearer token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import structlog

from webhook.errors import (
    BadRequestError,
    BodyTimeoutError,
    BodyTooLargeError,
    UnsupportedMediaTypeError,
    WebhookError,
)
from webhook.log import FoldingLog
from webhook.metrics import Metrics
from webhook.pipeline.ingestor import AuditIngestor
from webhook.sources.base import Answer, Authenticate, Delivery, Refuse

__all__ = ["AUDIT_PATH", "BatchSums", "WebhookSource", "write_accepted"]

log = structlog.get_logger(__name__)

AUDIT_PATH: Final = "/audit"


@dataclass(slots=True)
class BatchSums:
    """What one request (``batches`` 1) or a sum of them accepted."""

    batches: int = 0
    events: int = 0
    matched: int = 0
    records: int = 0
    duplicates: int = 0
    dead_lettered: int = 0

    def add(self, other: BatchSums) -> None:
        self.batches += other.batches
        self.events += other.events
        self.matched += other.matched
        self.records += other.records
        self.duplicates += other.duplicates
        self.dead_lettered += other.dead_lettered


def write_accepted(_: None, sums: BatchSums) -> None:
    """``batch.accepted``: FoldingLog(write_accepted) takes add(None, BatchSums(batches=1, ...))."""
    log.info(
        "batch.accepted",
        batches=sums.batches,
        events=sums.events,
        matched=sums.matched,
        records=sums.records,
        duplicates=sums.duplicates,
        dead_lettered=sums.dead_lettered,
    )


class WebhookSource:
    """Each EventList through the audit ingestor; ``accepted_log`` folds its ``batch.accepted``
    lines beyond ten a second (blocking mode posts one request per API call)."""

    name: str = "webhook"
    content_types: frozenset[str] = frozenset({"application/json"})
    content_type_error: str = "Content-Type must be application/json"
    lost: tuple[type[WebhookError], ...] = (
        BadRequestError,
        BodyTooLargeError,
        BodyTimeoutError,
        UnsupportedMediaTypeError,
    )
    authenticate: Authenticate | None = None
    refuse: Refuse | None = None

    def __init__(self, ingestor: AuditIngestor, metrics: Metrics, *, max_events: int) -> None:
        self._ingestor = ingestor
        self._metrics = metrics
        self._max_events = max_events
        self.accepted_log: FoldingLog[None, BatchSums] = FoldingLog(write_accepted)

    async def receive(self, delivery: Delivery) -> Answer:
        result = await self._ingestor.ingest_body(
            delivery.body,
            received_at=delivery.received_at,
            max_events=self._max_events,
            cluster=delivery.caller.cluster,  # a cluster's credential: that cluster's records
        )
        self._metrics.batches.inc()
        self.accepted_log.add(
            None,
            BatchSums(
                batches=1,
                events=result.events,
                matched=result.matched,
                records=len(result.lines),
                duplicates=result.duplicates,
                dead_lettered=len(result.dead_letters),
            ),
        )
        return Answer.json(
            {
                "accepted": result.events,
                "records": len(result.lines),
                "duplicates": result.duplicates,
                "dead_lettered": len(result.dead_letters),
            }
        )

    async def aclose(self) -> None:
        self.accepted_log.flush()
