"""Records as JSON lines on standard output, for a container runtime's log collection."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from webhook.errors import SinkError
from webhook.record.line import RecordLine
from webhook.sinks import SinkType
from webhook.sinks.base import Health, SinkSettings

__all__ = ["StdoutOptions", "StdoutSink"]


@dataclass(frozen=True, slots=True, kw_only=True)
class StdoutOptions:
    pass


class StdoutSink:
    def __init__(self, name: str, stream: BinaryIO | None = None) -> None:
        self.name = name
        self._stream = stream

    async def open(self) -> None:
        if self._stream is None:
            self._stream = sys.stdout.buffer

    def _write(self, data: bytes) -> None:
        assert self._stream is not None  # noqa: S101 - open() ran first
        self._stream.write(data)
        self._stream.flush()

    async def send(self, batch: Sequence[RecordLine]) -> None:
        try:
            await asyncio.to_thread(self._write, b"".join(record.json + b"\n" for record in batch))
        except (OSError, ValueError) as exc:  # a closed pipe, or a closed stream
            raise SinkError(f"cannot write to standard output: {type(exc).__name__}") from None

    async def health(self) -> Health:
        closed = self._stream is not None and self._stream.closed
        return Health(ok=not closed, detail="closed" if closed else "")

    async def aclose(self) -> None:
        if self._stream is not None and not self._stream.closed:
            await asyncio.to_thread(self._stream.flush)


def _parse(raw: Mapping[str, Any]) -> StdoutOptions:
    return StdoutOptions(**raw)


def _build(settings: SinkSettings, data_dir: Path) -> StdoutSink:
    return StdoutSink(settings.name)


SINK_TYPE = SinkType(
    name="stdout",
    description="JSON lines on standard output",
    properties={},
    parse=_parse,
    build=_build,
    batch_defaults={"timeout_s": 0.0, "min_interval_s": 0.1},
)
