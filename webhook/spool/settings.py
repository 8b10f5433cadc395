"""The ``spool:`` and ``dead_letter:`` config sections: the two durable files every record or
dead letter is written to before a batch is answered. webhook/config.py builds them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["DeadLetterConfig", "SpoolConfig"]

_MiB: Final = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class SpoolConfig:
    """The durable queue between the handler and the sinks (see docs/sinks.md)."""

    path: Path = Path("spool")
    max_bytes: int = 1024 * _MiB
    segment_bytes: int = 64 * _MiB
    fsync: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetterConfig:
    path: Path = Path("dead-letter.jsonl")
    max_bytes: int = 100 * _MiB
    backups: int = 5
