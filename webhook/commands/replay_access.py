"""``ingress-audit replay --access FILE...``: backfill access logs (plain or gzip) from files.

Windows follow the requests' own times (the newest line read is "now"), so a backfill
produces the summaries the live service would have. Records and summaries have stable ids:
those already in the sinks' files (loaded by the audit replay into the dedupe window) are not
written again, so replaying a file twice adds nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from webhook.access.service import AccessService
from webhook.sources.logfile import ReplayInputError, open_log

__all__ = ["CHUNK_LINES", "AccessReplaySummary", "read_lines", "replay_access"]

CHUNK_LINES: Final = 2000


@dataclass(slots=True)
class AccessReplaySummary:
    files: int = 0
    lines: int = 0
    records: int = 0
    summaries: int = 0
    dead_letters: int = 0

    def line(self) -> str:
        return (
            f"{self.lines} access lines read, {self.records} access records and "
            f"{self.summaries} window summaries written, {self.dead_letters} dead letters "
            f"({self.files} file{'' if self.files == 1 else 's'})"
        )


def read_lines(path: Path) -> Iterator[tuple[int, list[bytes]]]:
    """(first line number, lines) chunks of a plain or gzip'd file; blank lines skipped."""
    raw, stream = open_log(path)
    with raw, stream:
        chunk: list[bytes] = []
        first = lineno = 0
        try:
            for lineno, line in enumerate(stream, start=1):
                if not line.strip():
                    continue
                if not chunk:
                    first = lineno
                chunk.append(line.rstrip(b"\r\n"))
                if len(chunk) >= CHUNK_LINES:
                    yield first, chunk
                    chunk = []
        except (OSError, EOFError) as exc:
            where = f"{path}: after line {lineno}"
            raise ReplayInputError(f"{where}: cannot read further ({type(exc).__name__})") from None
        if chunk:
            yield first, chunk


def _next(lines: Iterator[tuple[int, list[bytes]]]) -> tuple[int, list[bytes]] | None:
    return next(lines, None)


async def replay_access(service: AccessService, files: Sequence[Path]) -> AccessReplaySummary:
    """Feed ``files`` in order through ``service`` (built with ``clock=None``), then flush."""
    summary = AccessReplaySummary(files=len(files))
    for path in files:
        if not path.is_file():
            raise ReplayInputError(f"cannot read {path}: not a file")
    for path in files:
        lines = read_lines(path)
        while (chunk := await asyncio.to_thread(_next, lines)) is not None:
            first, batch_lines = chunk
            batch = await service.ingest(batch_lines, input="replay", where=f"{path.name}:{first}+")
            summary.lines += batch.lines
            summary.records += len(batch.records)
            summary.summaries += len(batch.summaries)
            summary.dead_letters += len(batch.dead_letters)
    closed = await service.flush(everything=True)
    summary.summaries += closed
    return summary
