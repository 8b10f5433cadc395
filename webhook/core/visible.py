"""Text from records, made safe to print on a terminal: control characters become visible escapes.

A record holds what clients sent (usernames, paths, user agents), and nginx decodes ``\\x1B``
in an access line to a real ESC. Printed raw, ``ESC[1A ESC[2K`` erases the line above and
``ESC]0;…`` retitles the window. So C0 (but none of the printable ASCII), DEL, C1 and the
Unicode line separators and bidirectional overrides are shown as ``\\x1b``, ``\\u202e``, …
"""

from __future__ import annotations

import re
from typing import Any, Final

__all__ = ["visible", "visible_doc", "visible_json_line"]

_CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SHORT: Final = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
# In a JSON line a C1 character can only be inside a string: \u00XX says the same thing.
_JSON_C1: Final = re.compile(b"\xc2([\x80-\x9f])")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """``text`` with every control character replaced by its escape."""
    return _CONTROL.sub(_escape, text)


def visible_doc(doc: Any) -> Any:
    """A parsed record with ``visible`` applied to every string in it, keys included."""
    if isinstance(doc, str):
        return visible(doc)
    if isinstance(doc, dict):
        return {visible(k) if isinstance(k, str) else k: visible_doc(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [visible_doc(v) for v in doc]
    return doc


def visible_json_line(line: bytes) -> bytes:
    """A JSON line with its C1 characters escaped (the parsed value is unchanged).

    A JSON encoder escapes C0 (ESC is ``\\u001b``) but writes C1 (CSI is U+009B) raw."""
    return _JSON_C1.sub(lambda m: b"\\u00%02x" % m.group(1)[0], line)
