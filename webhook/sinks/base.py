"""The one interface every sink implements, and what the delivery loop needs to know of it.

A sink either delivers the whole batch or raises ``SinkError``; the spool moves the sink's
cursor only once ``send`` has returned. ``retryable=False`` means the same batch will never
succeed (the records are dead-lettered); ``PartialDeliveryError`` says which records to retry
and which were refused for good (a bulk API that accepted some items).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from webhook.errors import SinkError
from webhook.record.line import RecordLine

__all__ = [
    "BatchOptions",
    "Health",
    "RetryOptions",
    "Sink",
    "SinkError",
    "SinkSettings",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchOptions:
    """Send when ``max_events`` or ``max_bytes`` are reached, or ``timeout_s`` after the first;
    and no sooner than ``min_interval_s`` after the previous send (the first after a quiet
    spell goes at once; under load, what arrives meanwhile goes together)."""

    max_events: int = 500
    max_bytes: int = 4 * 1024 * 1024
    timeout_s: float = 1.0
    min_interval_s: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryOptions:
    """Exponential backoff with full jitter between ``initial_backoff_s`` and ``max_backoff_s``."""

    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SinkSettings:
    """What every sink has, whatever its type; ``options`` holds the type's own settings."""

    type: str
    name: str
    batch: BatchOptions = field(default_factory=BatchOptions)
    retry: RetryOptions = field(default_factory=RetryOptions)
    drop_when_full: bool = False
    record_types: frozenset[str] | None = None  # None: every type (audit, alert, ...)
    options: Any = None

    def wants(self, line: RecordLine) -> bool:
        """Whether this sink takes the record, by its ``type``."""
        return self.record_types is None or line.type in self.record_types


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    detail: str = ""


class Sink(Protocol):
    name: str

    async def open(self) -> None:
        """Connect or create what is needed; a failure here is retried by the delivery loop."""

    async def send(self, batch: Sequence[RecordLine]) -> None:
        """Deliver all of it or raise SinkError(retryable=...)."""

    async def health(self) -> Health:
        """Do what send does, minus the data."""

    async def aclose(self) -> None: ...
