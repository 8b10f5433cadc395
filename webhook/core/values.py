"""Reading decoded JSON leniently: a value of the wrong type reads as empty, never as an error.

Events and records come from outside (or from an older version of us), so any field may be
missing or of another type; a reader that wants "the dict, if it is one" says so with these.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["as_dict", "as_int", "as_list", "as_mapping", "as_nonempty_str", "as_str", "as_strs"]


def as_dict(value: object) -> dict[str, Any]:
    """The dict itself, or a new empty one."""
    return value if isinstance(value, dict) else {}


def as_mapping(value: object) -> Mapping[str, Any]:
    """Like ``as_dict`` for readers that also take other mappings (a record read as a view)."""
    return value if isinstance(value, Mapping) else {}


def as_list(value: object) -> list[Any]:
    """The list itself (its items unchecked), or a new empty one."""
    return value if isinstance(value, list) else []


def as_str(value: object) -> str | None:
    """The string itself, ``""`` included; None for anything else."""
    return value if isinstance(value, str) else None


def as_nonempty_str(value: object) -> str | None:
    """The string itself unless it is empty; None for ``""`` and anything else."""
    return value if isinstance(value, str) and value else None


def as_int(value: object) -> int | None:
    """The integer itself; None for anything else, booleans included."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def as_strs(value: object) -> tuple[str, ...]:
    """The strings of a list, in order, other items left out; () for anything but a list."""
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()
