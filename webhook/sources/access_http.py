"""``POST /ingest/access``: access lines from Fluent Bit's and Vector's http outputs.

The same admission and answers as ``/audit``: 200 once the kept records, the closed windows'
summaries and the dead letters are durable, else 503 with Retry-After so the shipper resends;
records have stable ids, so a resent body adds nothing.
"""

from __future__ import annotations

from typing import Final

import structlog

from webhook.access.service import AccessService
from webhook.errors import (
    BodyTimeoutError,
    BodyTooLargeError,
    UnsupportedMediaTypeError,
    WebhookError,
)
from webhook.record.dead_letter import DeadLetter
from webhook.sources.access_body import IngestError, decode_body
from webhook.sources.base import Answer, Authenticate, Delivery, Refuse
from webhook.spool.writer import RecordWriter

__all__ = ["ACCESS_PATH", "AccessHttpSource"]

log = structlog.get_logger(__name__)

ACCESS_PATH: Final = "/ingest/access"


class AccessHttpSource:
    """Fluent Bit / Vector bodies of access lines into the access service, with /audit's rules."""

    name: str = "http"  # the access records' ``input``
    content_types: frozenset[str] = frozenset(
        {
            "application/json",
            "application/x-ndjson",
            "application/ndjson",
            "application/jsonlines",
            "application/json-lines",
            "application/x-json-stream",
            "text/plain",
        }
    )
    content_type_error: str = "Content-Type must be application/json, application/x-ndjson or text/plain"
    # Refusals the shipper may retry and finally drop, as /audit's: each leaves a dead letter.
    lost: tuple[type[WebhookError], ...] = (BodyTooLargeError, BodyTimeoutError, UnsupportedMediaTypeError)
    authenticate: Authenticate | None = None
    refuse: Refuse | None = None

    def __init__(self, service: AccessService, writer: RecordWriter, *, max_lines: int) -> None:
        self._service = service
        self._writer = writer
        self._max_lines = max_lines

    async def receive(self, delivery: Delivery) -> Answer:
        # Refuse before counting: a body counted in the windows and then refused would be counted
        # again when the shipper resends it.
        refusal = self._writer.refusal()
        if refusal is not None:
            raise refusal
        received_at = delivery.received_at
        lines = []
        rejected = []
        # Stops at line max_lines + 1 with a 413, before splitting the rest.
        for item in decode_body(delivery.body, max_items=self._max_lines):
            if isinstance(item, IngestError):
                rejected.append(
                    DeadLetter(
                        reason=f"access-{item.reason}",
                        detail=f"{self.name}: {item.message}",
                        received_at=received_at,
                        index=item.index,
                        event={"input": self.name},
                    )
                )
            else:
                lines.append(item.value)
        del delivery  # the body, up to the size limit: not held while the lines are processed
        batch = await self._service.ingest(lines, input=self.name, rejected=rejected)
        log.info(
            "access.accepted",
            lines=batch.lines,
            records=len(batch.records),
            summaries=len(batch.summaries),
            dead_lettered=len(batch.dead_letters) + len(rejected),
        )
        return Answer.json(
            {
                "accepted": batch.lines,
                "records": len(batch.records),
                "dead_lettered": len(batch.dead_letters) + len(rejected) + batch.suppressed,
            }
        )

    async def aclose(self) -> None:
        """Nothing of its own: the access service summarizes and writes what it holds."""
