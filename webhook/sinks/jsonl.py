"""Records as JSON lines in a local file: the default sink, made for ``tail -F`` and shippers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from webhook.appendlog import AppendLog
from webhook.config import JsonlSinkConfig
from webhook.errors import StorageError
from webhook.record import Record, to_json
from webhook.sinks.base import Health, SinkError

__all__ = ["JsonlSink"]


class JsonlSink:
    def __init__(self, config: JsonlSinkConfig, path: Path) -> None:
        self.name = config.name
        self._log = AppendLog(
            path, max_bytes=config.max_bytes, backups=config.backups, fsync=config.fsync
        )

    @property
    def path(self) -> Path:
        return self._log.path

    async def open(self) -> None:
        await asyncio.to_thread(self._log.open)

    async def send(self, batch: Sequence[Record]) -> None:
        if not batch:
            return
        try:
            await self._log.append(b"".join(to_json(record) + b"\n" for record in batch))
        except StorageError as exc:
            raise SinkError(exc.message, retryable=True) from None

    async def health(self) -> Health:
        if self._log.healthy:
            return Health(ok=True)
        return Health(ok=False, detail=self._log.last_error or "closed")

    async def aclose(self) -> None:
        await self._log.aclose()
