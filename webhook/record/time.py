"""The time records are written with: RFC 3339, microseconds, UTC, ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["utc_now"]


def utc_now() -> str:
    """Now, as the records write times."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
