"""Typed reads of JSON access-log fields: numbers may arrive as strings, ``-`` and null mean absent.

Shared by the ingress-nginx JSON and Traefik parsers; errors name the JSON key, never its value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from webhook.access.entry import AccessParseError
from webhook.access.fields import (
    EMPTY,
    opt_float,
    opt_int,
    parse_iso_time,
    parse_local_time,
    split_upstream,
    status_code,
)

__all__ = ["as_float", "as_int", "as_list", "as_status", "as_str", "as_time", "load_object"]

_MAX_INT = 2**63 - 1


def load_object(line: str | bytes) -> Mapping[str, Any]:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise AccessParseError("not-json", "line is not valid JSON") from None
    if not isinstance(value, dict):
        raise AccessParseError("not-json", "line is JSON but not an object")
    return value


def as_str(value: Any, key: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return None if value in EMPTY else value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise AccessParseError("bad-field", f"field {key} is not a string")


def as_int(value: Any, key: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        return opt_int(value, key)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_INT:
        return value
    if isinstance(value, float) and value.is_integer() and 0 <= value <= _MAX_INT:
        return int(value)
    raise AccessParseError("bad-number", f"field {key} is not a whole number")


def as_float(value: Any, key: str, scale: float = 1.0) -> float | None:
    """A duration in seconds; ``scale`` converts other units (Traefik logs nanoseconds)."""
    if value is None:
        return None
    if isinstance(value, str):
        number = opt_float(value, key)
        return None if number is None else number * scale
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return float(value) * scale
    raise AccessParseError("bad-number", f"field {key} is not a duration")


def as_status(value: Any, key: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if 100 <= value <= 999:
            return value
        raise AccessParseError("bad-status", f"field {key} is not an HTTP status")
    if isinstance(value, str):
        return None if value in EMPTY else status_code(value, key)
    raise AccessParseError("bad-status", f"field {key} is not an HTTP status")


def as_time(value: Any, key: str) -> datetime | None:
    """ISO 8601 (``$time_iso8601``), ``$time_local`` or epoch seconds (``$msec``)."""
    if value is None:
        return None
    if isinstance(value, str):
        if value in EMPTY:
            return None
        if value.isascii() and value.replace(".", "", 1).isdigit():
            return _epoch(float(value), key)
        if value[2:3] == "/":
            return parse_local_time(value)
        return parse_iso_time(value, key)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _epoch(float(value), key)
    raise AccessParseError("bad-time", f"field {key} is not a time")


def _epoch(seconds: float, key: str) -> datetime:
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (ValueError, OverflowError, OSError):
        raise AccessParseError("bad-time", f"field {key} is out of range") from None


def as_list(value: Any, key: str) -> tuple[str, ...]:
    """An upstream list: a string like ``$upstream_addr`` (``, `` and `` : ``) or a JSON array."""
    if value is None:
        return ()
    if isinstance(value, str):
        return split_upstream(value)
    if isinstance(value, list):
        return tuple(item if isinstance(item, str) else as_str(item, key) or "-" for item in value)
    text = as_str(value, key)
    return () if text is None else (text,)
