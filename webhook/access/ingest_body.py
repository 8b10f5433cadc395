"""Split a ``POST /ingest/access`` body into access-log items, one error per bad item.

Shapes accepted (decompressed by the server first):

* a JSON array of records: Fluent Bit ``http`` output ``format json``, Vector ``http`` sink
  ``encoding.codec: json`` without framing;
* one JSON record per line: Fluent Bit ``json_lines``, Vector ``framing.method: newline_delimited``;
* concatenated JSON records: Fluent Bit ``json_stream``;
* plain text, one access-log line per line: Vector ``encoding.codec: text``, ``curl --data-binary``.

A record carrying the raw line under a message key (Fluent Bit ``log``, Vector ``message``) gives
that line; a record without one is taken as already-structured access fields (nginx JSON, Traefik).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["DEFAULT_MESSAGE_KEYS", "IngestError", "IngestItem", "decode_body"]

DEFAULT_MESSAGE_KEYS = ("log", "message")
_WHITESPACE = b" \t\r\n"


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
    body: bytes, *, message_keys: Sequence[str] = DEFAULT_MESSAGE_KEYS
) -> Iterator[IngestItem | IngestError]:
    """Yield each item in order; a bad item yields an ``IngestError`` and decoding goes on."""
    start = body.lstrip(_WHITESPACE)[:1]
    if start == b"[":
        yield from _array(body, message_keys)
    elif start == b"{":
        yield from _json_lines(body, message_keys)
    elif start:
        yield from _text_lines(body)


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


def _array(body: bytes, message_keys: Sequence[str]) -> Iterator[IngestItem | IngestError]:
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


def _json_lines(body: bytes, message_keys: Sequence[str]) -> Iterator[IngestItem | IngestError]:
    index = 0
    for raw in body.split(b"\n"):
        line = raw.strip(_WHITESPACE)
        if not line:
            continue
        try:
            values = [orjson.loads(line)]
        except orjson.JSONDecodeError:
            values = _concatenated(line)  # json_stream: {...}{...} without separators
        if not values:
            yield IngestError(index, "not-json", f"item {index} is not valid JSON")
            index += 1
            continue
        for value in values:
            yield _item(index, value, message_keys)
            index += 1


def _concatenated(line: bytes) -> list[Any]:
    """Values of ``{...}{...}``, or [] when the line is not entirely made of JSON values."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return []
    decoder = json.JSONDecoder()
    values: list[Any] = []
    pos = 0
    try:
        while pos < len(text):
            value, pos = decoder.raw_decode(text, pos)
            values.append(value)
            while pos < len(text) and text[pos] in " \t\r":
                pos += 1
    except (json.JSONDecodeError, RecursionError):
        return []
    return values


def _text_lines(body: bytes) -> Iterator[IngestItem | IngestError]:
    index = 0
    for raw in body.split(b"\n"):
        line = raw.rstrip(b"\r")
        if line.strip(_WHITESPACE):
            yield IngestItem(index, line)
            index += 1
