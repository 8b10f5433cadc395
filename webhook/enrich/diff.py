"""A diff of two redacted objects as RFC 6902-style operations with RFC 6901 paths.

Noise (resourceVersion, managedFields, timestamps, status, …) is skipped by a configurable list
of paths; values longer than a limit are cut, with ``truncated: true``. Lists are compared
position by position, then the longer tail is added or removed (from the end, so the ops
apply in order).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson

__all__ = ["DiffOp", "IgnorePaths", "compile_ignore", "diff_objects", "pointer"]

IgnorePaths = Callable[[tuple[str, ...]], bool]
_MISSING: Final = object()


@dataclass(frozen=True, slots=True, kw_only=True)
class DiffOp:
    op: Literal["add", "remove", "replace"]
    path: str
    old: Any = None
    new: Any = None
    truncated: bool = False


def _unescape(segment: str) -> str:
    return segment.replace("~1", "/").replace("~0", "~")


def pointer(segments: Sequence[str]) -> str:
    """RFC 6901: ``~`` → ``~0``, ``/`` → ``~1``."""
    return "".join("/" + s.replace("~", "~0").replace("/", "~1") for s in segments)


def compile_ignore(paths: Sequence[str]) -> IgnorePaths:
    """True for a path at or below any of ``paths``; ``*`` matches one segment."""
    patterns = [tuple(_unescape(s) for s in p.split("/")[1:]) for p in paths]
    exact = frozenset(p for p in patterns if "*" not in p)  # the usual case: a set lookup per prefix
    wild = [p for p in patterns if "*" in p]

    def ignored(segments: tuple[str, ...]) -> bool:
        if any(segments[:k] in exact for k in range(1, len(segments) + 1)):
            return True
        return any(
            len(segments) >= len(pattern)
            and all(p in ("*", s) for p, s in zip(pattern, segments, strict=False))
            for pattern in wild
        )

    return ignored


class _Diff:
    __slots__ = ("ignored", "max_bytes", "max_ops", "omitted", "ops")

    def __init__(self, ignored: IgnorePaths, max_bytes: int, max_ops: int) -> None:
        self.ignored = ignored
        self.max_bytes = max_bytes
        self.max_ops = max_ops
        self.ops: list[DiffOp] = []
        self.omitted = 0

    def _cut(self, value: Any) -> tuple[Any, bool]:
        if value is _MISSING:
            return None, False
        if isinstance(value, str | int | float | bool) or value is None:
            if not isinstance(value, str) or len(value) <= self.max_bytes:
                return value, False
            return value[: self.max_bytes] + "…", True
        encoded = orjson.dumps(value)
        if len(encoded) <= self.max_bytes:
            return value, False
        return encoded[: self.max_bytes].decode("utf-8", "ignore") + "…", True

    def emit(
        self, op: Literal["add", "remove", "replace"], path: tuple[str, ...], old: Any, new: Any
    ) -> None:
        if len(self.ops) >= self.max_ops:
            self.omitted += 1
            return
        old_value, old_cut = self._cut(old)
        new_value, new_cut = self._cut(new)
        self.ops.append(
            DiffOp(op=op, path=pointer(path), old=old_value, new=new_value, truncated=old_cut or new_cut)
        )

    def walk(self, old: Any, new: Any, path: tuple[str, ...]) -> None:
        if path and self.ignored(path):
            return
        if isinstance(old, dict) and isinstance(new, dict):
            for key in old:
                if key not in new:
                    self._remove((*path, key), old[key])
            for key, value in new.items():
                if key in old:
                    self.walk(old[key], value, (*path, key))
                else:
                    self._add((*path, key), value)
        elif isinstance(old, list) and isinstance(new, list):
            common = min(len(old), len(new))
            for index in range(common):
                self.walk(old[index], new[index], (*path, str(index)))
            for index in range(len(old) - 1, common - 1, -1):
                self._remove((*path, str(index)), old[index])
            for index in range(common, len(new)):
                self._add((*path, str(index)), new[index])
        elif old != new or type(old) is not type(new):
            self.emit("replace", path, old, new)

    def _add(self, path: tuple[str, ...], value: Any) -> None:
        if not self.ignored(path):
            self.emit("add", path, _MISSING, value)

    def _remove(self, path: tuple[str, ...], value: Any) -> None:
        if not self.ignored(path):
            self.emit("remove", path, value, _MISSING)


def diff_objects(
    old: Any, new: Any, *, ignored: IgnorePaths, max_value_bytes: int = 1024, max_operations: int = 200
) -> tuple[tuple[DiffOp, ...], int]:
    """The operations that turn ``old`` into ``new``, and how many more were left out."""
    diff = _Diff(ignored, max_value_bytes, max_operations)
    diff.walk(old, new, ())
    return tuple(diff.ops), diff.omitted
