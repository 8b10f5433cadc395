"""Split a ``POST /ingest/access`` body into access-log items, one error per bad item.

Shapes accepted (decompressed by the server first):

* a JSON array of records: Fluent Bit ``http`` output ``format json``, Vector ``http`` sink
  ``encoding.codec: json`` without framing;
* one JSON record per line: Fluent Bit ``json_lines``, Vector ``framing.method: newline_delimited``;
* concatenated JSON records: Fluent Bit ``json_stream``;
* plain text, one access-log line per line: Vector ``encoding.codec: text``, ``curl --data-binary``.

A record carrying the raw line under a message key (Fluent Bit ``log``, Vector ``message``) gives
that line; a record without one is taken as already-structured access fields (nginx JSON, Traefik).

With ``max_items`` the body is refused (413) as soon as it shows one item more, before the rest is
split: 64 MiB of 2-byte lines used to become 33 million objects (18 s, 675 MB) before the check.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from webhook.errors import BodyTooLargeError

__all__ = ["DEFAULT_MESSAGE_KEYS", "IngestError", "IngestItem", "decode_body"]

DEFAULT_MESSAGE_KEYS = ("log", "message")
_WHITESPACE = b" \t\r\n"
# From a line's first non-blank byte to its end: blank lines are skipped in C, not one by one.
_FILLED_LINE = re.compile(rb"[^ \t\r\n][^\n]*")
_BLANKS = re.compile(r"[ \t\r\n]*")


@dataclass(frozen=True, slots=True)
class IngestItem:
    index: int  # position in the body, from 0
    value: str | bytes | Mapping[str, Any]  # a raw line, or a record of access fields


@dataclass(frozen=True, slots=True)
class IngestError:
    index: int
    reason: str  # not-json, bad-item, empty
    message: str  # names the position and key, never the content


def decode_body(
    body: bytes, *, message_keys: Sequence[str] = DEFAULT_MESSAGE_KEYS, max_items: int | None = None
) -> Iterator[IngestItem | IngestError]:
    """Yield each item in order; a bad item yields an ``IngestError`` and decoding goes on.

    Raises ``BodyTooLargeError`` on reaching item ``max_items + 1``, having built no more."""
    start = body.lstrip(_WHITESPACE)[:1]
    if start == b"[":
        items = _array(body, message_keys, max_items)
    elif start == b"{":
        items = _json_lines(body, message_keys, max_items)
    elif start:
        items = _text_lines(body)
    else:
        return
    for item in items:
        if max_items is not None and item.index >= max_items:
            raise _too_many(max_items)
        yield item


def _too_many(limit: int) -> BodyTooLargeError:
    return BodyTooLargeError(f"more than the limit of {limit} lines")


def _item(index: int, value: Any, message_keys: Sequence[str]) -> IngestItem | IngestError:
    if isinstance(value, str):
        return IngestItem(index, value.rstrip("\r\n"))
    if not isinstance(value, dict):
        return IngestError(index, "bad-item", f"item {index} is neither a record nor a string")
    for key in message_keys:
        line = value.get(key)
        if isinstance(line, str):
            line = line.rstrip("\r\n")  # Docker's json-file keeps the newline
            if not line:
                return IngestError(index, "empty", f"item {index} has an empty {key}")
            return IngestItem(index, line)
        if isinstance(line, dict):  # the shipper parsed the line into its message key
            return IngestItem(index, line)
    return IngestItem(index, value)


def _array(
    body: bytes, message_keys: Sequence[str], max_items: int | None
) -> Iterator[IngestItem | IngestError]:
    if max_items is not None and body.count(b",") >= max_items and _more_items(body, max_items):
        raise _too_many(max_items)
    try:
        records = orjson.loads(body)
    except orjson.JSONDecodeError:
        yield IngestError(0, "not-json", "body starts like a JSON array but is not valid JSON")
        return
    if not isinstance(records, list):
        yield IngestError(0, "not-json", "body is not a JSON array")
        return
    for index, value in enumerate(records):
        yield _item(index, value, message_keys)


def _more_items(body: bytes, limit: int) -> bool:
    """Whether the top-level array has more than ``limit`` items, decoding one at a time.

    orjson builds the whole list first: 64 MiB of ``{},`` would be 22 million dicts."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return False  # orjson refuses it too: a not-json error, no items
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    for _ in range(limit + 1):
        pos = _skip_blank(text, pos)
        if text.startswith("]", pos):
            return False
        try:
            _, pos = decoder.raw_decode(text, pos)
        except (json.JSONDecodeError, RecursionError):
            return False
        pos = _skip_blank(text, pos)
        if not text.startswith(",", pos):
            return False
        pos += 1
    return True


def _skip_blank(text: str, pos: int) -> int:
    blanks = _BLANKS.match(text, pos)
    return pos if blanks is None else blanks.end()


def _filled_lines(body: bytes) -> Iterator[bytes]:
    """Each line with something besides blanks in it, without its newline."""
    for match in _FILLED_LINE.finditer(body):
        start = body.rfind(b"\n", 0, match.start()) + 1  # keep the line's leading blanks
        yield body[start : match.end()]


def _json_lines(
    body: bytes, message_keys: Sequence[str], max_items: int | None
) -> Iterator[IngestItem | IngestError]:
    index = 0
    for raw in _filled_lines(body):
        line = raw.strip(_WHITESPACE)
        try:
            values = [orjson.loads(line)]
        except orjson.JSONDecodeError:
            # json_stream: {...}{...} without separators; one past the limit is enough to refuse
            at_most = None if max_items is None else max_items - index + 1
            values = _concatenated(line, at_most)
        if not values:
            yield IngestError(index, "not-json", f"item {index} is not valid JSON")
            index += 1
            continue
        for value in values:
            yield _item(index, value, message_keys)
            index += 1


def _concatenated(line: bytes, at_most: int | None = None) -> list[Any]:
    """Values of ``{...}{...}``, or [] when the line is not entirely made of JSON values."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return []
    decoder = json.JSONDecoder()
    values: list[Any] = []
    pos = 0
    try:
        while pos < len(text) and (at_most is None or len(values) < at_most):
            value, pos = decoder.raw_decode(text, pos)
            values.append(value)
            pos = _skip_blank(text, pos)
    except (json.JSONDecodeError, RecursionError):
        return []
    return values


def _text_lines(body: bytes) -> Iterator[IngestItem | IngestError]:
    for index, raw in enumerate(_filled_lines(body)):
        yield IngestItem(index, raw.rstrip(b"\r"))
