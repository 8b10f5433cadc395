"""Following the storage account where an AKS diagnostic setting writes ``kube-audit``.

Azure Monitor appends each cluster's records, a few minutes apart, to one append blob per hour:
``insights-logs-kube-audit/resourceId=/SUBSCRIPTIONS/…/MANAGEDCLUSTERS/<NAME>/y=…/m=…/d=…/h=…/m=00/PT1H.json``.
Each poll lists the container and reads every blob from its saved offset to its current length
in ranged downloads of at most ``max_read_bytes``. Only whole lines are taken (the writer may be
mid-line); a last line without its newline is taken once it decodes as a whole, or rejected
once the blob has not been written for ``forget_after_s`` (it will never be finished). The decoded
items go to the handler, and only once it returns is the offset advanced and saved: an event is
handed on once, and a handler that raises gets the same lines again on the next try. Blobs of
clusters outside ``clusters`` are not read at all.

Finished blobs leave the state file but are never read again (webhook/sources/aks_positions.py).
A blob that shrinks or is replaced (a new creation time) is read again from the start; the
pipeline's dedupe drops the events it already has, as they come back byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Final, Self

import aiohttp
import orjson
import structlog
from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob import BlobProperties
from azure.storage.blob.aio import ContainerClient

from webhook.errors import ConfigError, StorageError
from webhook.sources.aks import AllowedClusters, decode_aks_line
from webhook.sources.aks_access import StorageAccess, error_fields
from webhook.sources.aks_positions import BlobPath, Position, Positions, iso
from webhook.sources.aks_settings import AksStorageOptions
from webhook.sources.cloud import CloudEvent, CloudReject

__all__ = ["POLL_FAILURES", "AksStorageFollower", "Handler", "OnPoll", "PollSummary"]

log = structlog.get_logger(__name__)

Item = CloudEvent | CloudReject
# Keeps the items durably, or raises: then the same lines come again on the next try.
Handler = Callable[[Sequence[Item], str], Awaitable[None]]

_FIRST_RETRY_S: Final = 1.0
# Why a poll ends early: a ``PollSummary.failed``.
POLL_FAILURES: Final = ("handler", "storage", "state", "credential", "crashed")


@dataclass(slots=True)
class PollSummary:
    """What one poll did; ``failed`` is why it ended early (handler, storage, state, credential;
    ``crashed`` for an unexpected error, only ever handed to ``on_poll``)."""

    blobs: int = 0
    blobs_read: int = 0  # blobs this poll downloaded from
    read_bytes: int = 0
    records: int = 0
    events: int = 0
    rejects: int = 0
    skipped: int = 0  # records of other categories
    not_allowed_blobs: int = 0
    other_blobs: int = 0  # names that are not a diagnostic setting's
    forgotten: int = 0
    failed: str | None = None


# Told what each poll did, the crashed ones too (metrics): must not raise.
OnPoll = Callable[[PollSummary], None]


class _HandlerFailed(Exception):
    pass


class AksStorageFollower:
    """Reads new records from one container and hands them to ``handler``; see the module doc.

    ``async with`` opens it for ``poll_once``; ``start`` also polls in the background."""

    def __init__(
        self,
        options: AksStorageOptions,
        handler: Handler,
        *,
        clock: Callable[[], datetime] | None = None,
        on_poll: OnPoll | None = None,
    ) -> None:
        options.check()
        self.options = options
        self._handler = handler
        self._on_poll = on_poll
        self._clock = clock or (lambda: datetime.now(UTC))
        self._allowed = AllowedClusters.of(options.clusters) if options.clusters is not None else None
        self._access = StorageAccess(options)
        self._positions: Positions | None = None
        self._task: asyncio.Task[None] | None = None
        self._polling = asyncio.Lock()  # two polls at once would hand the same lines on twice

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def open(self) -> None:
        """Load the saved positions and read the credential (no request yet). Raises
        ``StorageError`` for a state file that is not ours, ``ConfigError`` for a credential."""
        if self._positions is None:
            options = self.options
            positions = await asyncio.to_thread(Positions.load, options.state_file, options.container)
            await self._access.open()
            self._positions = positions

    async def start(self) -> None:
        """Open, then poll every ``poll_interval_s`` (backing off after failures) until ``aclose``."""
        await self.open()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"aks-storage-{self.options.container}")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._access.aclose()

    async def poll_once(self) -> PollSummary:
        """List the container once and read what is new. Failures end the poll, are logged,
        and are in ``failed``: the next poll starts again from the saved offsets."""
        async with self._polling:
            return await self._poll_once()

    async def _poll_once(self) -> PollSummary:
        await self.open()
        summary = PollSummary()
        container = self.options.container
        try:
            await self._access.refresh()
            await self._poll(self._access.container(), summary)
        except _HandlerFailed:
            summary.failed = "handler"
        except ResourceNotFoundError as exc:
            # No container until Azure writes its first record; or a blob deleted since listed.
            log.warning("aks_storage.not_found", container=container, **error_fields(exc))
        except (AzureError, aiohttp.ClientError, TimeoutError) as exc:
            summary.failed = "storage"
            log.warning("aks_storage.request_failed", container=container, **error_fields(exc))
        except (OSError, StorageError) as exc:
            summary.failed = "state"
            path = str(self.options.state_file)
            log.error("aks_storage.state_write_failed", path=path, error=type(exc).__name__)
        except ConfigError as exc:
            summary.failed = "credential"
            log.error("aks_storage.credential_unreadable", container=container, error=exc.message)
        counts = {f.name: getattr(summary, f.name) for f in fields(summary)}
        level = log.info if summary.read_bytes or summary.failed or summary.forgotten else log.debug
        level("aks_storage.polled", container=container, **counts)
        if self._on_poll is not None:
            self._on_poll(summary)
        return summary

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                failed = (await self.poll_once()).failed is not None
            except Exception as exc:  # noqa: BLE001 - the loop must outlive any one poll
                log.error("aks_storage.poll_crashed", error=type(exc).__name__)
                if self._on_poll is not None:
                    self._on_poll(PollSummary(failed="crashed"))
                failed = True
            failures = failures + 1 if failed else 0
            delay = self.options.poll_interval_s
            if failures:
                delay = min(self.options.max_backoff_s, _FIRST_RETRY_S * 2 ** (failures - 1))
                delay *= random.uniform(0.9, 1.1)  # noqa: S311 - jitter, not a secret
            await asyncio.sleep(delay)

    async def _poll(self, container: ContainerClient, summary: PollSummary) -> None:
        positions = self._positions
        assert positions is not None  # noqa: S101 - open() ran
        listed: set[str] = set()
        horizon = iso(self._clock() - timedelta(seconds=self.options.forget_after_s))
        async for properties in container.list_blobs(name_starts_with="resourceId="):
            blob = BlobPath.parse(properties.name)
            if blob is None:
                summary.other_blobs += 1
            elif self._allowed is not None and not self._allows(blob):
                summary.not_allowed_blobs += 1
            else:
                summary.blobs += 1
                listed.add(blob.name)
                await self._follow(container, blob, properties, positions, horizon, summary)
        summary.forgotten = positions.forget(listed, horizon)
        if summary.forgotten:
            await asyncio.to_thread(positions.save)

    def _allows(self, blob: BlobPath) -> bool:
        allowed = self._allowed
        return allowed is None or blob.cluster in allowed or blob.resource_id.lower() in allowed

    async def _follow(
        self,
        container: ContainerClient,
        blob: BlobPath,
        properties: BlobProperties,
        positions: Positions,
        horizon: str,
        summary: PollSummary,
    ) -> None:
        created, size = iso(properties.creation_time), properties.size
        position = positions.track(blob, created)
        if position is None:
            return  # read in full and forgotten
        if position.created != created or size < position.offset:
            reason = "replaced" if position.created != created else "shrunk"
            log.warning("aks_storage.blob_reread", blob=blob.name, reason=reason, offset=position.offset)
            position.offset, position.created = 0, created
        position.size, position.modified = size, iso(properties.last_modified)
        quiet = position.modified < horizon  # not written since: a cut line will stay cut
        if position.offset < size:
            summary.blobs_read += 1
        while position.offset < size:
            step = await self._step(container, blob, position, quiet, summary)
            if step is None:
                return  # a line still being written
            consumed, items = step
            if items:
                try:
                    await self._handler(items, self.options.name)
                except Exception as exc:  # noqa: BLE001 - retried from the same offset, never fatal
                    code = getattr(exc, "code", type(exc).__name__)
                    log.warning(
                        "aks_storage.handler_failed", blob=blob.name, offset=position.offset, code=code
                    )
                    raise _HandlerFailed from None
            position.offset += consumed
            await asyncio.to_thread(positions.save)

    async def _step(
        self,
        container: ContainerClient,
        blob: BlobPath,
        position: Position,
        quiet: bool,
        summary: PollSummary,
    ) -> tuple[int, list[Item]] | None:
        """(bytes consumed, items) from the position, or None while no line is complete. The
        last line, without its newline, counts once it decodes, or once the blob is ``quiet``
        (then it is rejected, as it will never be finished)."""
        offset = position.offset
        data = await _download(
            container, blob.name, offset, min(self.options.max_read_bytes, position.size - offset)
        )
        summary.read_bytes += len(data)
        at_end = offset + len(data) >= position.size
        end = data.rfind(b"\n") + 1
        if at_end and end < len(data) and (quiet or _decodes(data[end:])):
            end = len(data)
        if end == 0:
            return None if at_end else await self._oversized(container, blob, position, summary)
        items: list[Item] = []
        start = 0
        while start < end:
            stop = data.find(b"\n", start, end)
            stop = end if stop < 0 else stop + 1
            batch = decode_aks_line(data[start:stop], self._allowed)
            summary.records += batch.records
            summary.skipped += batch.skipped
            for item in batch.items:
                if isinstance(item, CloudReject):
                    summary.rejects += 1
                    items.append(_located(item, blob.name, offset + start))
                else:
                    summary.events += 1
                    items.append(item)
            start = stop
        return end, items

    async def _oversized(
        self, container: ContainerClient, blob: BlobPath, position: Position, summary: PollSummary
    ) -> tuple[int, list[Item]] | None:
        """A line longer than ``max_read_bytes``: read on, a step at a time, to its end, and
        reject it whole. None while it has no end yet."""
        offset, limit = position.offset, self.options.max_read_bytes
        at = offset + limit
        while at < position.size:
            data = await _download(container, blob.name, at, min(limit, position.size - at))
            summary.read_bytes += len(data)
            newline = data.find(b"\n")
            if newline >= 0:
                length = at + newline + 1 - offset
                detail = f"record is {length} bytes, over the read limit of {limit}"
                reject = CloudReject(reason="record-too-large", detail=detail, cluster=blob.cluster)
                summary.records += 1
                summary.rejects += 1
                return length, [_located(reject, blob.name, offset)]
            at += len(data)
        return None


async def _download(container: ContainerClient, name: str, offset: int, length: int) -> bytes:
    stream = await container.get_blob_client(name).download_blob(offset=offset, length=length)
    return await stream.readall()


def _decodes(text: bytes) -> bool:
    try:
        return isinstance(orjson.loads(text), dict)
    except orjson.JSONDecodeError:
        return False


def _located(reject: CloudReject, blob: str, offset: int) -> CloudReject:
    """The reject with where its line starts in the container: the blob and the byte offset."""
    identity = {**reject.identity, "blob": blob, "offset": str(offset)}
    return replace(reject, identity=identity)
