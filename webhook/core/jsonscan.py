"""A tolerant JSON scanner: where the members of an object and the elements of an array are.

It reads only the structure (strings, escapes, brackets, commas), never what a value holds, so
bytes that a decoder refuses inside a value (nesting past any limit, ``1e999``, a lone
``\\ud800``, invalid UTF-8) do not stop it: each value can then be decoded on its own. It has
no recursion and no depth limit, and skips strings and the inside of nested values with
regular expressions (C speed). Used only when a body does not decode as a whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

import orjson

__all__ = ["Buffer", "ScanError", "count_items", "elements", "members", "read_fields", "top_members"]

Buffer = bytes | bytearray | memoryview

_STR: Final = rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"'


def _skipping(flat: bytes, levels: int) -> re.Pattern[bytes]:
    """Everything up to the next bracket that opens deeper than ``levels`` or closes the
    current value, strings and shallow nested values skipped whole (in C, not byte by byte)."""
    inner = rb'(?:[^"\[\]{}]++|' + _STR + rb")*+"
    for _ in range(levels):
        inner = rb'(?:[^"\[\]{}]++|' + _STR + rb"|[\[{]" + inner + rb"[\]}])*+"
    return re.compile(rb"(?:" + flat + rb"|" + _STR + rb"|[\[{]" + inner + rb"[\]}])*+", re.DOTALL)


# Inside a value, commas do not matter; at a value's own level, a comma ends it.
_SKIP_NESTED: Final = _skipping(rb'[^"\[\]{}]++', 6)
_SKIP_TOP: Final = _skipping(rb'[^"\[\]{},]++', 6)
_STRING: Final = re.compile(_STR, re.DOTALL)
_OPENERS: Final = re.compile(rb"[\[{]+")
_CLOSERS: Final = re.compile(rb"[\]}]+")
_SPACE: Final = re.compile(rb"[ \t\r\n]*")
# The envelope as kube-apiserver writes it, up to the opening bracket of ``items``.
_APISERVER_HEAD: Final = re.compile(
    rb'[ \t\r\n]*\{[ \t\r\n]*"kind"[ \t\r\n]*:[ \t\r\n]*"EventList"[ \t\r\n]*,'
    rb'[ \t\r\n]*"apiVersion"[ \t\r\n]*:[ \t\r\n]*"[^"\\]*"[ \t\r\n]*,'
    rb'[ \t\r\n]*"metadata"[ \t\r\n]*:[ \t\r\n]*\{[^"{}\[\]]*\}[ \t\r\n]*,'
    rb'[ \t\r\n]*"items"[ \t\r\n]*:[ \t\r\n]*(?=\[)'
)
_QUOTE: Final = ord('"')
_COMMA: Final = ord(",")
_COLON: Final = ord(":")
_OPEN_OBJECT: Final = ord("{")
_OPEN_ARRAY: Final = ord("[")
_CLOSE_OBJECT: Final = ord("}")
_CLOSE_ARRAY: Final = ord("]")

# (key or None when the key itself does not decode, start, end) of one member's value
Member = tuple[str | None, int, int]


class ScanError(ValueError):
    """The structure itself is broken (unbalanced, unterminated, a missing comma) at ``pos``."""

    def __init__(self, pos: int) -> None:
        super().__init__(f"broken JSON structure at byte {pos}")
        self.pos = pos


def _space(buf: Buffer, pos: int, end: int) -> int:
    match = _SPACE.match(buf, pos, end)
    assert match is not None  # noqa: S101 - the pattern matches the empty string
    return match.end()


def _value_end(buf: Buffer, pos: int, end: int) -> int:
    """Where the value starting at ``pos`` ends (exclusive), before ``end``."""
    depth = 0
    i = pos
    while True:
        skip = _SKIP_NESTED if depth else _SKIP_TOP
        match = skip.match(buf, i, end)
        assert match is not None  # noqa: S101 - the pattern matches the empty string
        i = match.end()
        if i >= end:
            if depth:
                raise ScanError(end)
            return end
        byte = buf[i]
        if byte == _QUOTE:  # a string that never ends
            raise ScanError(i)
        if byte in (_OPEN_OBJECT, _OPEN_ARRAY):
            run = _OPENERS.match(buf, i, end)
            assert run is not None  # noqa: S101 - buf[i] is an opener
            depth += run.end() - i
            i = run.end()
        elif byte in (_CLOSE_OBJECT, _CLOSE_ARRAY):
            if depth == 0:
                return i  # the parent's closer: a scalar value ends here
            run = _CLOSERS.match(buf, i, end)
            assert run is not None  # noqa: S101 - buf[i] is a closer
            if run.end() - i >= depth:
                return i + depth
            depth -= run.end() - i
            i = run.end()
        else:  # a comma at the top level
            return i


def _trim(buf: Buffer, start: int, end: int) -> int:
    while end > start and buf[end - 1] in b" \t\r\n":
        end -= 1
    return end


def _key(buf: Buffer, start: int, end: int) -> str | None:
    try:
        key = orjson.loads(buf[start:end])
    except orjson.JSONDecodeError:
        return None
    return key if isinstance(key, str) else None


def _at(buf: Buffer, i: int, end: int) -> int:
    return buf[i] if i < end else -1


def members(buf: Buffer, start: int, end: int) -> list[Member]:
    """The members of the object that starts at ``start`` and ends at ``end`` (exclusive)."""
    if end - start < 2 or buf[start] != _OPEN_OBJECT or buf[end - 1] != _CLOSE_OBJECT:
        raise ScanError(start)
    found: list[Member] = []
    i = _space(buf, start + 1, end)
    if i == end - 1:
        return found
    while True:
        name = _STRING.match(buf, i, end - 1)
        if name is None:
            raise ScanError(i)
        i = _space(buf, name.end(), end)
        if _at(buf, i, end) != _COLON:
            raise ScanError(i)
        value = _space(buf, i + 1, end)
        i = _value_end(buf, value, end - 1)
        if i == value:
            raise ScanError(i)  # a member without a value
        found.append((_key(buf, name.start(), name.end()), value, _trim(buf, value, i)))
        i = _space(buf, i, end)
        if i == end - 1:
            return found
        if _at(buf, i, end) != _COMMA:
            raise ScanError(i)
        i = _space(buf, i + 1, end)


def elements(buf: Buffer, start: int, end: int) -> list[tuple[int, int]]:
    """The (start, end) of each element of the array spanning ``start`` to ``end``."""
    if end - start < 2 or buf[start] != _OPEN_ARRAY or buf[end - 1] != _CLOSE_ARRAY:
        raise ScanError(start)
    found: list[tuple[int, int]] = []
    i = _space(buf, start + 1, end)
    if i == end - 1:
        return found
    while True:
        value = i
        i = _value_end(buf, value, end - 1)
        if i == value:
            raise ScanError(i)  # an empty element: ",," or "[,"
        found.append((value, _trim(buf, value, i)))
        i = _space(buf, i, end)
        if i == end - 1:
            return found
        if _at(buf, i, end) != _COMMA:
            raise ScanError(i)
        i = _space(buf, i + 1, end)


def count_items(buf: Buffer, stop: int) -> int:
    """How many elements the ``items`` array of the EventList in ``buf`` has, counting no further
    than ``stop``: a body of millions of tiny items is known to be too large after ``stop`` of
    them, before a decoder builds them all. Raises ``ScanError`` where the structure breaks."""
    head = _APISERVER_HEAD.match(buf)
    if head is not None:
        start = head.end()
    else:  # another member order: scan the envelope (its values are skipped, not decoded)
        starts = [value for key, value, _ in top_members(buf) if key == "items"]
        if not starts or buf[starts[-1]] != _OPEN_ARRAY:
            return 0
        start = starts[-1]
    end = len(buf)
    count = 0
    i = _space(buf, start + 1, end)
    if _at(buf, i, end) == _CLOSE_ARRAY:
        return 0
    while count < stop:
        value = i
        i = _value_end(buf, value, end)
        if i == value:
            raise ScanError(i)
        count += 1
        i = _space(buf, i, end)
        if _at(buf, i, end) != _COMMA:
            return count  # the closing bracket (or broken structure, which the decoder names)
        i = _space(buf, i + 1, end)
    return count


def top_members(buf: Buffer) -> list[Member]:
    """The members of the object that is the whole of ``buf`` (whitespace around it allowed)."""
    start = _space(buf, 0, len(buf))
    if start == len(buf) or buf[start] != _OPEN_OBJECT:
        raise ScanError(start)
    end = _trim(buf, start, _value_end(buf, start, len(buf)))
    return members(buf, start, end)


def read_fields(
    buf: Buffer, start: int, end: int, names: Iterable[str], nested: Mapping[str, Iterable[str]] | None = None
) -> dict[str, Any]:
    """The top-level fields ``names`` of the object at ``start:end`` that decode on their own,
    and for each object field in ``nested``, its named members that do; nothing else is decoded."""
    wanted = frozenset(names)
    found: dict[str, Any] = {}
    try:
        fields = members(buf, start, end)
    except ScanError:
        return found
    for key, value_start, value_end in fields:
        if key in wanted:
            try:
                found[key] = orjson.loads(buf[value_start:value_end])
            except orjson.JSONDecodeError:
                continue
        elif nested and key is not None and key in nested and buf[value_start] == _OPEN_OBJECT:
            found[key] = read_fields(buf, value_start, value_end, nested[key])
    return found
