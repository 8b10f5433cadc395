"""A record read as the JSON document it is written as, one top-level field at a time."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

__all__ = ["RecordView"]


class RecordView(Mapping[str, Any]):
    """A record dataclass read as its JSON dict, one top-level field at a time.

    The rules read a few fields of each record (type, verb, outcome, actor…); converting the
    whole record to a dict first cost more than the rules themselves, and the most for the
    records nobody reads further (a large SecretList's summary). Each field is converted (through
    its JSON form, so it reads exactly as in the JSONL) when a rule first asks for it.
    """

    __slots__ = ("_cache", "_names", "_record")

    def __init__(self, record: Any, names: tuple[str, ...] | None = None) -> None:
        """``names``: the record class's field names, when the caller has them at hand."""
        self._record = record
        self._names = names if names is not None else tuple(f.name for f in dataclasses.fields(record))
        self._cache: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        try:
            return self._cache[name]
        except KeyError:
            pass
        if name not in self._names:
            raise KeyError(name)
        value = getattr(self._record, name)
        if not (value is None or isinstance(value, str | int | float | bool)):
            value = orjson.loads(orjson.dumps(value))
        self._cache[name] = value
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)
