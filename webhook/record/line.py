"""What every record line has in common, and the typed line that sinks read.

Every record type derives from ``RecordHeader``, so every line ingress-audit spools starts
``{"schema_version":1,"type":"…"``: ``RecordLine`` learns the type from those bytes without
parsing the line, and parses the rest only once a sink asks for ``record``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson

__all__ = [
    "ACCESS",
    "ACCESS_SUMMARY",
    "ALERT",
    "AUDIT",
    "DEAD_LETTER",
    "SCHEMA_VERSION",
    "RecordHeader",
    "RecordLine",
    "RecordType",
    "to_json",
    "type_of",
]

SCHEMA_VERSION: Final = 1

AUDIT: Final = "audit"
ACCESS: Final = "access"
ACCESS_SUMMARY: Final = "access_summary"
ALERT: Final = "alert"
DEAD_LETTER: Final = "dead_letter"  # the dead-letter file's lines; they never reach a sink

RecordType = Literal["audit", "access", "access_summary", "alert"]

_PREFIX: Final = b'{"schema_version":%d,"type":"' % SCHEMA_VERSION


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordHeader:
    """The first two fields of every record, in this order: ``type_of`` relies on it."""

    schema_version: int = SCHEMA_VERSION
    type: RecordType


def to_json(record: object) -> bytes:
    """One record (of any type) as compact JSON, without a trailing newline."""
    return orjson.dumps(record)


def type_of(line: bytes) -> str | None:
    """The ``type`` of a line that starts with the header as ``to_json`` writes it; else None.

    Exact, not a guess: after the prefix we are inside the JSON string of the second key,
    ``type``. A JSON string ends at its first unescaped quote, and every escape starts with a
    backslash, so when the bytes before the first quote hold no backslash, they are the value
    itself (``to_json`` never repeats a key). A line written otherwise (another key order, an
    escape) gets None: parse it.
    """
    if not line.startswith(_PREFIX):
        return None
    end = line.find(b'"', len(_PREFIX))
    if end < 0:
        return None
    value = line[len(_PREFIX) : end]
    if b"\\" in value:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None


class RecordLine:
    """One record as the spool holds it and sinks read it: the JSON line, its ``type``, and its
    fields (``record``), parsed on first use and then kept."""

    __slots__ = ("_doc", "_type", "json")

    def __init__(self, json: bytes, type: str | None = None) -> None:
        self.json = json
        self._type = type
        self._doc: dict[str, Any] | None = None

    @classmethod
    def of(cls, record: RecordHeader) -> RecordLine:
        """The line of a record built here: its type is known, nothing is read back."""
        return cls(to_json(record), record.type)

    @property
    def type(self) -> str:
        """From the line's first bytes (``type_of``); parsed only for a line not written by us;
        ``""`` when the record has no string ``type``."""
        if self._type is None:
            kind = type_of(self.json)
            if kind is None:
                value = self.record.get("type")
                kind = value if isinstance(value, str) else ""
            self._type = kind
        return self._type

    @property
    def record(self) -> dict[str, Any]:
        if self._doc is None:
            self._doc = orjson.loads(self.json)
        return self._doc
