"""Records as JSON lines in a local file: the default sink, made for ``tail -F`` and shippers."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from webhook.core.paths import in_data_dir
from webhook.errors import SinkError, StorageError
from webhook.record.line import RecordLine
from webhook.sinks import SinkType
from webhook.sinks.base import Health, SinkSettings
from webhook.spool.appendlog import AppendLog

__all__ = ["JsonlOptions", "JsonlSink"]

MiB = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class JsonlOptions:
    path: Path = Path("records.jsonl")
    max_bytes: int = 100 * MiB
    backups: int = 5
    fsync: bool = True


class JsonlSink:
    def __init__(self, name: str, options: JsonlOptions, data_dir: Path) -> None:
        self.name = name
        path = in_data_dir(data_dir, options.path)
        self._log = AppendLog(path, max_bytes=options.max_bytes, backups=options.backups, fsync=options.fsync)

    @property
    def path(self) -> Path:
        return self._log.path

    async def open(self) -> None:
        try:
            await asyncio.to_thread(self._log.open)
        except StorageError as exc:  # e.g. a symlink planted in its place: say so, and retry
            raise SinkError(exc.message, retryable=True) from None

    async def send(self, batch: Sequence[RecordLine]) -> None:
        try:
            await self._log.append(b"".join(record.json + b"\n" for record in batch))
        except StorageError as exc:
            raise SinkError(exc.message, retryable=True) from None

    async def health(self) -> Health:
        if self._log.healthy:
            return Health(ok=True)
        return Health(ok=False, detail=self._log.last_error or "closed")

    async def aclose(self) -> None:
        await self._log.aclose()


def _parse(raw: Mapping[str, Any]) -> JsonlOptions:
    options = dict(raw)
    if "path" in options:
        options["path"] = Path(options["path"])
    return JsonlOptions(**options)


def _build(settings: SinkSettings, data_dir: Path) -> JsonlSink:
    return JsonlSink(settings.name, settings.options, data_dir)


SINK_TYPE = SinkType(
    name="jsonl",
    description="JSON lines in a local file, fsync'd and rotated by size",
    properties={
        "path": {"type": "string", "minLength": 1, "description": "Relative to data_dir."},
        "max_bytes": {"type": "integer", "minimum": 4096},
        "backups": {"type": "integer", "minimum": 0, "maximum": 1000},
        "fsync": {"type": "boolean"},
    },
    parse=_parse,
    build=_build,
    batch_defaults={"timeout_s": 0.0, "min_interval_s": 0.1},
)
