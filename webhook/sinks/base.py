"""The one interface every sink implements.

A sink either delivers the whole batch or raises ``SinkError``; the caller forgets a batch
only once ``send`` has returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from webhook.errors import StorageError
from webhook.record import Record

__all__ = ["Health", "Sink", "SinkError"]


class SinkError(StorageError):
    """Delivery failed; ``retryable`` says whether the same batch may succeed later."""

    code = "sink"

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    detail: str = ""


class Sink(Protocol):
    name: str

    async def open(self) -> None: ...

    async def send(self, batch: Sequence[Record]) -> None:
        """Deliver all of it or raise SinkError(retryable=...)."""

    async def health(self) -> Health:
        """Do what send does, minus the data."""

    async def aclose(self) -> None: ...
