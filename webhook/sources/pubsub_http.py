"""``POST /pubsub``: GKE audit LogEntries from a Pub/Sub push subscription, one per request.

The push's OIDC token is checked before the body is read (webhook/sources/oidc.py): 401 or
403 with the failed check's reason, 503 while no key set could be fetched. Pub/Sub takes only
a 2xx as an acknowledgement and redelivers anything else, with back-off, until the message
expires or reaches the subscription's dead-letter topic. So:

- 200 once the entry's event is durable (recorded, filtered out, or a duplicate: a
  redelivery maps to the very same event, which the pipeline's dedupe drops);
- 400 for a message that can never become an event (not a Kubernetes audit entry, a cluster
  not in ``clusters``, names that do not parse): it is dead-lettered here, with identifiers
  only, and refused, so that Pub/Sub keeps the message itself (its dead-letter topic, or a
  redelivery once the config lists the cluster). Its redeliveries are answered from memory:
  one dead letter per message while it is among the last 10 000 refused by this process;
- 503 when it cannot be kept now (spool full, disk failing), to be redelivered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from webhook.errors import WebhookError
from webhook.log import FoldingLog
from webhook.metrics import Metrics
from webhook.pipeline.ingestor import AuditIngestor
from webhook.record.dead_letter import DeadLetter
from webhook.sources.base import Answer, Authenticate, Delivery, Headers, Principal, Refuse
from webhook.sources.cloud_intake import (
    CloudBatch,
    CloudSums,
    Recent,
    count_items,
    prepare_items,
    write_received,
)
from webhook.sources.jwks import JwksFile, JwksUrl
from webhook.sources.oidc import KeySource, PushVerifier
from webhook.sources.pubsub import decode_push, map_push
from webhook.sources.settings import PubsubSettings
from webhook.spool.writer import RecordWriter

__all__ = ["PUBSUB_PATH", "PubsubSource", "key_source"]

PUBSUB_PATH: Final = "/pubsub"
_METHOD: Final = "push-token"
# A push body is one LogEntry, most a few kB; a larger one is decoded off the event loop.
_INLINE_BYTES: Final = 256 * 1024


def key_source(settings: PubsubSettings) -> KeySource:
    """The keys tokens are checked against: ``jwks_file`` (read now: ``ConfigError`` if unusable),
    else Google's published set, fetched on the first push and kept as its max-age says."""
    if settings.jwks_file is not None:
        return JwksFile(settings.jwks_file)
    return JwksUrl()


@dataclass(frozen=True, slots=True)
class _Refused:
    """Why a message was refused, to answer its redeliveries alike."""

    reason: str
    detail: str


class PubsubSource:
    """Pushed LogEntries through the audit ingestor, each under its ``project/cluster``."""

    name: str = "pubsub"
    content_types: frozenset[str] = frozenset({"application/json"})
    content_type_error: str = "Content-Type must be application/json"
    # Pub/Sub keeps every message it is refused (redelivered, then its dead-letter topic):
    # a refusal loses nothing, and a dead letter per redelivery would flood the file.
    lost: tuple[type[WebhookError], ...] = ()
    authenticate: Authenticate | None
    refuse: Refuse | None = None

    def __init__(
        self,
        settings: PubsubSettings,
        ingestor: AuditIngestor,
        writer: RecordWriter,
        metrics: Metrics,
        *,
        keys: KeySource | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys if keys is not None else key_source(settings)
        self._verifier = PushVerifier(
            audience=settings.audience,
            service_accounts=settings.service_accounts,
            keys=self._keys,
            clock=clock,
        )
        self._clusters = frozenset(settings.clusters)
        self._ingestor = ingestor
        self._writer = writer
        self._metrics = metrics
        self._refused: Recent[_Refused] = Recent()
        self.received_log: FoldingLog[str, CloudSums] = FoldingLog(write_received)
        self.authenticate = self._authenticate

    async def _authenticate(self, headers: Headers) -> Principal:
        push = await self._verifier.verify(headers.get("Authorization"))
        return Principal(_METHOD, push.email, self._clusters)

    async def receive(self, delivery: Delivery) -> Answer:
        received_at = delivery.received_at
        body = delivery.body
        del delivery
        if len(body) > _INLINE_BYTES:
            key, batch = await asyncio.to_thread(self._decode, body, received_at)
        else:
            key, batch = self._decode(body, received_at)
        del body
        known = self._refused.get(key)
        if known is not None:  # a redelivery of a message refused before: its dead letter is written
            return self._refuse_message(known, CloudSums(requests=1, refused=1, repeated=1))
        if batch.dead_letters:
            letter = batch.dead_letters[0]
            await self._writer.write_records((), batch.dead_letters)
            return self._remember(key, letter, CloudSums(requests=1, refused=1, rejected=1, dead_lettered=1))
        ((cluster, events),) = batch.by_cluster.items()
        result = await self._ingestor.ingest(events, received_at=received_at, cluster=cluster)
        sums = CloudSums(
            requests=1,
            events=1,
            matched=result.matched,
            records=len(result.records),
            duplicates=result.duplicates,
            dead_lettered=len(result.dead_letters),
        )
        if result.dead_letters:  # the pipeline refused the event (too large, say): never valid either
            sums.refused = sums.rejected = 1
            return self._remember(key, result.dead_letters[0], sums)
        count_items(self._metrics, self.name, sums)
        self.received_log.add(self.name, sums)
        return Answer.json(
            {
                "accepted": 1,
                "records": sums.records,
                "duplicates": sums.duplicates,
                "dead_lettered": 0,
            }
        )

    def _decode(self, body: bytes, received_at: str) -> tuple[str, CloudBatch]:
        """The message's key (its subscription and id) and its item; ``BadRequestError`` for a
        body that is not a push."""
        message = decode_push(body)
        item = map_push(message, self._clusters)
        batch = prepare_items([item], received_at=received_at, where={"input": self.name})
        return f"{message.subscription}\0{message.message_id}", batch

    def _remember(self, key: str, letter: DeadLetter, sums: CloudSums) -> Answer:
        refused = _Refused(letter.reason, letter.detail)
        self._refused.put(key, refused)
        return self._refuse_message(refused, sums)

    def _refuse_message(self, refused: _Refused, sums: CloudSums) -> Answer:
        count_items(self._metrics, self.name, sums)
        self.received_log.add(self.name, sums)
        return Answer.json({"error": refused.reason, "reason": refused.detail}, status=400)

    async def aclose(self) -> None:
        self.received_log.flush()
        await self._keys.aclose()
