"""``sources: aks:`` in ``serve``: the AKS storage follower as a source of the audit pipeline.

The follower (webhook/sources/aks_storage.py) reads the new lines of the diagnostic setting's
blobs and hands over their items. Each event goes through the audit pipeline under the cluster
its record's ``resourceId`` names, as the webhook's would (same record id); each reject becomes
a dead letter. The handler returns once all of it is durable and raises otherwise, so that the
follower reads the same lines again rather than move past them.

``/readyz`` does not report the follower. It says whether this pod can take requests, which a
storage account out of reach does not change (and a pod taken out of its Service would not
reach the account any better); the follower retries on its own, and its failed polls are
counted (``ingress_audit_aks_polls_failed_total``) and logged. Records it cannot keep fail
``/readyz`` already, as they do for every source.
"""

from __future__ import annotations

import asyncio
from collections import Counter as Tally
from collections.abc import Sequence
from typing import Any, Final

import structlog
from prometheus_client import Counter

from webhook.events import decode_event
from webhook.metrics import Metrics
from webhook.pipeline.ingestor import AuditIngestor
from webhook.record.time import now
from webhook.sources.aks import AllowedClusters, cluster_of
from webhook.sources.aks_settings import AksStorageOptions
from webhook.sources.aks_storage import POLL_FAILURES, AksStorageFollower, PollSummary
from webhook.sources.cloud import CloudEvent, CloudReject, dead_letter
from webhook.sources.logfile import as_webhook_item
from webhook.spool.writer import RecordWriter

__all__ = ["AksMetrics", "AksSource", "check_aks"]

log = structlog.get_logger(__name__)

# Events per ingest: the pipeline runs in the event loop, and /audit waits while it does.
_INGEST_EVENTS: Final = 500
# At shutdown, how long the batch in hand may take to become durable before it is abandoned
# (and read again at the next start).
_STOP_WAIT_S: Final = 10.0


class AksMetrics:
    """The follower's counters, on the app's registry. ``cluster`` takes only the configured
    clusters' names: the follower reads no other cluster's events."""

    def __init__(self, metrics: Metrics, clusters: Sequence[str] = ()) -> None:
        r = metrics.registry
        self.polls = Counter("ingress_audit_aks_polls", "Listings of the AKS storage container.", registry=r)
        self.polls_failed = Counter(
            "ingress_audit_aks_polls_failed",
            "Polls of the AKS storage container that ended early, by reason.",
            ["reason"],
            registry=r,
        )
        self.blobs_read = Counter(
            "ingress_audit_aks_blobs_read", "Blobs a poll read new bytes from.", registry=r
        )
        self.read_bytes = Counter(
            "ingress_audit_aks_read_bytes", "Bytes downloaded from the AKS storage container.", registry=r
        )
        self.events = Counter(
            "ingress_audit_aks_events",
            "Events read from AKS blobs and handed to the pipeline, by cluster.",
            ["cluster"],
            registry=r,
        )
        self.rejects = Counter(
            "ingress_audit_aks_rejects",
            "AKS records dead-lettered before the pipeline, by reason.",
            ["reason"],
            registry=r,
        )
        for reason in POLL_FAILURES:  # at 0 from the start, for increase()
            self.polls_failed.labels(reason=reason)
        for entry in clusters:
            name = cluster_of(entry) if entry.startswith("/") else entry.lower()
            if name is not None:
                self.events.labels(cluster=name)

    def polled(self, summary: PollSummary) -> None:
        self.polls.inc()
        if summary.failed is not None:
            self.polls_failed.labels(reason=summary.failed).inc()
        self.blobs_read.inc(summary.blobs_read)
        self.read_bytes.inc(summary.read_bytes)


class AksSource:
    """Follows the container in the background from ``start`` until ``aclose``."""

    name: str = "aks"

    def __init__(
        self, options: AksStorageOptions, ingestor: AuditIngestor, writer: RecordWriter, metrics: Metrics
    ) -> None:
        self._options = options
        self._ingestor = ingestor
        self._writer = writer
        self._metrics = AksMetrics(metrics, options.clusters or ())
        self._follower = AksStorageFollower(options, self._keep, on_poll=self._metrics.polled)
        self._keeping = asyncio.Lock()  # held while a batch is on its way to the disk

    async def start(self) -> None:
        """Load the state file and the credential, then poll; ``ConfigError`` for a credential
        that cannot be used, ``StorageError`` for a state file that is not this container's."""
        await self._follower.start()
        options = self._options
        log.info(
            "aks_storage.started",
            container=options.container,
            clusters=sorted(AllowedClusters.of(options.clusters or ())),
            poll_interval_s=options.poll_interval_s,
        )

    async def aclose(self) -> None:
        """Let the batch in hand become durable, then stop: its lines are not read twice."""
        held = False
        try:
            async with asyncio.timeout(_STOP_WAIT_S):
                held = await self._keeping.acquire()
        except TimeoutError:
            log.warning("aks_storage.stop_timed_out", container=self._options.container)
        try:
            await self._follower.aclose()  # a handler waiting for the lock is cancelled there
        finally:
            if held:
                self._keeping.release()

    async def _keep(self, items: Sequence[CloudEvent | CloudReject], source: str) -> None:
        """Every event recorded or dead-lettered by the pipeline, every reject dead-lettered;
        raises (``StorageError``) when any of it could not be written."""
        received_at = now()
        by_cluster: dict[str, list[Any]] = {}
        rejects = [item for item in items if isinstance(item, CloudReject)]
        for item in items:
            if isinstance(item, CloudEvent):
                by_cluster.setdefault(item.cluster, []).append(_webhook_item(item.event))
        async with self._keeping:
            # Events first: should the dead letters fail, the events read again are duplicates,
            # which dedupe drops; the other way round, the dead letters would be written twice.
            for cluster, events in by_cluster.items():
                for start in range(0, len(events), _INGEST_EVENTS):
                    batch = events[start : start + _INGEST_EVENTS]
                    await self._ingestor.ingest(batch, received_at=received_at, cluster=cluster)
            if rejects:
                letters = [dead_letter(reject, received_at=received_at) for reject in rejects]
                await self._writer.write_records((), letters)
        for cluster, events in by_cluster.items():
            self._metrics.events.labels(cluster=cluster).inc(len(events))
        for reason, count in Tally(reject.reason for reject in rejects).items():
            self._metrics.rejects.labels(reason=reason).inc(count)


def _webhook_item(raw: bytes) -> Any:
    """The event as the webhook would have sent it (same record id), or an ``Undecodable`` for
    the pipeline to dead-letter."""
    event = decode_event(raw, 0, len(raw))
    return as_webhook_item(event) if isinstance(event, dict) else event


async def _never(items: Sequence[CloudEvent | CloudReject], source: str) -> None:
    raise RuntimeError("check_aks reads nothing")


async def check_aks(options: AksStorageOptions) -> None:
    """What ``serve`` loads before its first poll, without a request: the state file and the
    credential. Raises as ``start`` does."""
    follower = AksStorageFollower(options, _never)
    try:
        await follower.open()
    finally:
        await follower.aclose()
