"""The one time format of records: RFC 3339 in UTC, microseconds, ``Z`` (2026-11-24T14:20:41.000000Z).

Writers use ``now`` and ``format_time``; readers use ``parse_time`` and ``record_time``, which
read what we write and what the apiserver writes, and take a time without an offset as UTC (the
only zone records are written in).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

__all__ = ["format_time", "now", "parse_time", "record_time"]

_TIME_KEYS: Final = ("time", "received_at")


def format_time(when: float | datetime) -> str:
    """Seconds since the epoch, or an aware datetime, as records write times."""
    moment = when.astimezone(UTC) if isinstance(when, datetime) else datetime.fromtimestamp(when, UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def now() -> str:
    """Now, as records write times (``format_time(time.time())``).

    Every request reads it, so the text of the current second is kept and only the
    microseconds are written: ~0.6 µs against ~2 µs for a datetime."""
    global _kept
    when = time.time()
    second = math.floor(when)
    # As datetime.fromtimestamp rounds: the fraction to the nearest microsecond, half to even.
    micro = round((when - second) * 1_000_000)
    if micro == 1_000_000:
        second, micro = second + 1, 0
    kept_second, prefix = _kept
    if second != kept_second:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _kept = (second, prefix)
    return f"{prefix}.{micro:06d}Z"


# The second ``now`` last wrote, and its text.
_kept: tuple[int, str] = (-1, "")


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 time as an aware UTC datetime; None for anything else (so callers can read a
    field of any type and name it in their own error)."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when.astimezone(UTC) if when.tzinfo is not None else when.replace(tzinfo=UTC)


def record_time(record: Mapping[str, Any]) -> datetime | None:
    """A record's own ``time`` (when it happened), else its ``received_at``; None if neither reads."""
    for key in _TIME_KEYS:
        if (when := parse_time(record.get(key))) is not None:
            return when
    return None
