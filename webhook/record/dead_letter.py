"""The dead-letter file's lines: what was not recorded, and why.

Every stage that turns something away writes one of these (the sources, the pipeline, a sink's
refusal), so the type lives with the records rather than with any one of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from webhook.record.line import DEAD_LETTER, SCHEMA_VERSION

__all__ = ["DeadLetter", "dead_letter_json"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    """Why an event (or a whole batch) was not recorded; never holds a value from its body."""

    reason: str
    detail: str
    received_at: str
    index: int | None = None
    event: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] | None = None  # a record a sink refused for good (already redacted)
    schema_version: int = SCHEMA_VERSION  # last, unlike the records' header: the lines stay as they were
    type: str = DEAD_LETTER


def dead_letter_json(letters: Sequence[DeadLetter]) -> bytes:
    """The letters as JSON lines, each ending in a newline."""
    return b"".join(orjson.dumps(letter) + b"\n" for letter in letters)
