"""kube-apiserver log-backend files as a source for ``replay``: each line's events, in order.

The log backend (``--audit-log-path``, ``--audit-log-format=json``) writes one Event per line,
with ``kind: Event`` and ``apiVersion`` added; rotated files may be gzip'd. Those two keys are
dropped, so an event gets the same record id as when the webhook delivered it. Lines holding a
whole EventList (a saved webhook body) are accepted too. A line that holds no event is a
``BadLine`` naming file and line, never quoting the content; the rest of the file is read on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

from webhook.core.jsonscan import ScanError, top_members
from webhook.errors import BadRequestError, MalformedEventError, UnreadableFileError
from webhook.events import API_VERSIONS, check_event, decode_event, decode_event_list, event_ref
from webhook.record.files import open_maybe_gzip

__all__ = ["BadLine", "as_webhook_item", "read_events"]

_LOG_KEYS: Final = ("kind", "apiVersion")


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line that is not an event: why, and the safe identifiers it has (if any)."""

    reason: str
    detail: str
    ref: dict[str, Any]


def as_webhook_item(event: dict[str, Any]) -> dict[str, Any]:
    """The event as the webhook sends it: without the log backend's ``kind``/``apiVersion``."""
    if event.get("kind") == "Event" and event.get("apiVersion") in API_VERSIONS:
        return {key: value for key, value in event.items() if key not in _LOG_KEYS}
    return event


def _tolerant(line: bytes, where: str, pos: int) -> list[Any] | BadLine:
    """A line that does not decode as a whole: an EventList's events each on its own, or the
    line as one event (an ``Undecodable`` holding what can be read of its identity)."""
    text = line.strip()
    try:
        return decode_event_list(text)
    except BadRequestError:
        pass
    try:
        top_members(text)  # an object, only some value in it does not decode
    except ScanError:
        # orjson's message can quote the input; keep only the position.
        return BadLine("not-json", f"{where}: not valid JSON (at byte {pos})", {})
    return [decode_event(text, 0, len(text))]


def _decode(line: bytes, where: str) -> Iterator[dict[str, Any] | BadLine]:
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        found = _tolerant(line, where, exc.pos)
        if isinstance(found, BadLine):
            yield found
            return
        doc = {"kind": "EventList", "items": found}
    items = doc.get("items") if isinstance(doc, dict) and doc.get("kind") == "EventList" else [doc]
    for item in items if isinstance(items, list) else [items]:
        try:
            yield as_webhook_item(check_event(item))
        except MalformedEventError as exc:
            yield BadLine(exc.code, f"{where}: {exc.message}", event_ref(item))


def read_events(path: Path, raw_position: list[int] | None = None) -> Iterator[dict[str, Any] | BadLine]:
    """Every event of a log-backend file (plain or gzip), or a ``BadLine`` naming file and line."""
    raw, stream = open_maybe_gzip(path)
    with raw, stream:
        lineno = 0
        try:
            for lineno, line in enumerate(stream, start=1):
                if raw_position is not None:
                    raw_position[0] = raw.tell()
                if line.strip():
                    yield from _decode(line, f"{path.name}:{lineno}")
        except (OSError, EOFError) as exc:
            where = f"{path}: after line {lineno}"
            raise UnreadableFileError(f"{where}: cannot read further ({type(exc).__name__})") from None
