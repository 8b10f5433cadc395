"""What both replays share (into the data dir, and to a server's ``/audit``): the events of
the files (kube-apiserver log-backend files, or the clouds' exports), taken in chunks under a
progress bar, and the summary line.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

if TYPE_CHECKING:
    from webhook.commands.replay_access import AccessReplaySummary

__all__ = ["ReplaySummary", "progress_bar", "take"]

T = TypeVar("T")


@dataclass(slots=True)
class ReplaySummary:
    files: int = 0
    events: int = 0
    matched: int = 0
    records: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    skipped: int = 0  # replay --format: log lines of other streams or categories
    already_recorded: int = 0
    sent_to: str | None = None  # replay --server: the events went to this server's /audit
    access: AccessReplaySummary | None = None  # replay --access

    def line(self) -> str:
        where = (
            f"sent to {self.sent_to}"
            if self.sent_to
            else f"{self.already_recorded} records were already in the sinks"
        )
        text = (
            f"{self.events} events read, {self.matched} matched, {self.records} records written, "
            f"{self.duplicates} duplicates, {self.dead_letters} dead letters"
            f"{f', {self.skipped} skipped (other log streams)' if self.skipped else ''} "
            f"({self.files} file{'' if self.files == 1 else 's'}; {where})"
        )
        return text if self.access is None else f"{text}\n{self.access.line()}"


def take(items: Iterator[T], size: int) -> list[T]:
    """The next ``size`` items, fewer at the end: a chunk to read in a worker thread."""
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            break
    return chunk


def progress_bar() -> Progress:
    """Each file's bytes read, on stderr; gone once the replay ends."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
