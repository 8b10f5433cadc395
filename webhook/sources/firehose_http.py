"""``POST /firehose``: EKS audit events from an Amazon Data Firehose stream (HTTP endpoint).

Firehose sends a stream's access key in ``X-Amz-Firehose-Access-Key``; the key, checked before
the body is read, names the clusters whose log groups the stream may carry. Every answer is the
JSON Firehose expects, ``{requestId, timestamp}`` with ``errorMessage`` on a failure, and only
a 200 counts as delivered: it is given once every record and dead letter is durable, so a
storage failure is a 503 that Firehose retries, and the retry adds no second record.

Never a 413: Firehose drops a batch answered 413 without backing it up to S3. A body over
``server.max_body_bytes`` (64 MiB by default, Firehose's largest request) is a 400, retried
and then backed up. A ``Content-Encoding: gzip`` body is inflated by the server as it reads
it, and counted against that limit inflated.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Final

from webhook.errors import (
    BodyTimeoutError,
    BodyTooLargeError,
    UnauthorizedError,
    UnsupportedMediaTypeError,
    WebhookError,
)
from webhook.log import FoldingLog
from webhook.metrics import Metrics
from webhook.pipeline.ingestor import AuditIngestor
from webhook.sources.base import Answer, Authenticate, Delivery, Headers, Principal, Refuse
from webhook.sources.cloud_intake import CloudSums, Recent, count_items, ingest_items, write_received
from webhook.sources.firehose import (
    REQUEST_ID_HEADER,
    FirehoseBodyError,
    decode_firehose,
    firehose_answer,
    safe_request_id,
)
from webhook.sources.firehose_keys import ACCESS_KEY_HEADER, FirehoseGrant, FirehoseKeys
from webhook.sources.settings import FirehoseSettings
from webhook.spool.writer import RecordWriter

__all__ = ["FIREHOSE_MAX_BODY_BYTES", "FIREHOSE_PATH", "FirehoseSource", "load_keys"]

FIREHOSE_PATH: Final = "/firehose"
FIREHOSE_MAX_BODY_BYTES: Final = 64 * 1024 * 1024  # Firehose's largest request, uncompressed
_METHOD: Final = "firehose-key"
_RETRY_AFTER_S: Final = "1"


def load_keys(settings: FirehoseSettings) -> FirehoseKeys:
    """Read every key file; ``ConfigError`` names the file (never the key) of an unusable one."""
    return FirehoseKeys.load(settings.access_keys)


class FirehoseSource:
    """Firehose requests through the audit ingestor, each record's cluster its log group's."""

    name: str = "firehose"
    content_types: frozenset[str] = frozenset({"application/json"})
    content_type_error: str = "Content-Type must be application/json"
    # Firehose retries these and then backs the batch up to S3, out of our sight: each attempt
    # leaves a dead letter, so that the gap can be seen (and backfilled with replay).
    lost: tuple[type[WebhookError], ...] = (
        FirehoseBodyError,
        BodyTooLargeError,
        BodyTimeoutError,
        UnsupportedMediaTypeError,
    )
    authenticate: Authenticate | None
    refuse: Refuse | None

    def __init__(
        self, keys: FirehoseKeys, ingestor: AuditIngestor, writer: RecordWriter, metrics: Metrics
    ) -> None:
        self._keys = keys
        self._ingestor = ingestor
        self._writer = writer
        self._metrics = metrics
        # Requests (by key and request id) whose rejects are written: a retry does not repeat them.
        self._rejects_written: Recent[None] = Recent()
        self.received_log: FoldingLog[str, CloudSums] = FoldingLog(write_received)
        self.authenticate = self._authenticate
        self.refuse = self._refuse

    async def _authenticate(self, headers: Headers) -> Principal:
        grant = self._keys.authenticate(headers.get(ACCESS_KEY_HEADER))
        if grant is None:
            raise UnauthorizedError(f"{ACCESS_KEY_HEADER} is missing or not a configured access key")
        return Principal(_METHOD, str(grant.key_file), grant.clusters)

    def _refuse(self, exc: WebhookError, headers: Headers) -> Answer:
        code = exc.reason if isinstance(exc, FirehoseBodyError) else exc.code
        status, message = exc.http_status, f"{code}: {exc.message}"
        if isinstance(exc, BodyTooLargeError):
            status = 400  # not 413, which Firehose treats as permanent and drops without a backup
            message += " (lower the stream's buffering size, or raise server.max_body_bytes)"
        extra = {"Retry-After": _RETRY_AFTER_S} if status == 503 else {}
        body = firehose_answer(headers.get(REQUEST_ID_HEADER, ""), _now_ms(), message)
        return Answer(status=status, body=body, headers=extra)

    async def receive(self, delivery: Delivery) -> Answer:
        caller = delivery.caller
        grant = FirehoseGrant(Path(caller.name), caller.clusters or frozenset())
        received_at = delivery.received_at
        # The header is what Firehose matches the answer against; the body's id if it has none.
        header_id = safe_request_id(delivery.headers.get(REQUEST_ID_HEADER))
        # CPU-heavy (base64, gunzip, JSON of up to 64 MiB): off the event loop.
        decoded = await asyncio.to_thread(decode_firehose, delivery.body, grant)
        del delivery  # the body: not held while the records are written
        request_id = header_id or safe_request_id(decoded.request_id)
        seen = f"{grant.key_file}\0{request_id}"
        repeated = bool(request_id) and seen in self._rejects_written
        sums = await ingest_items(
            self._ingestor,
            self._writer,
            decoded.items,
            received_at=received_at,
            where={"input": self.name},
            dead_letters=not repeated,
        )
        if request_id and sums.rejected:
            self._rejects_written.put(seen, None)
        sums.requests = 1
        sums.control_messages = decoded.control_messages
        sums.skipped = decoded.skipped_events
        count_items(self._metrics, self.name, sums)
        self.received_log.add(self.name, sums)
        return Answer(status=200, body=firehose_answer(request_id, _now_ms()))

    async def aclose(self) -> None:
        self.received_log.flush()


def _now_ms() -> int:
    return int(time.time() * 1000)
