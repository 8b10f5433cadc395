"""Look for known secret values, in every encoding they could take, in files we wrote.

Used by the tests (records, logs and dead letters must hold none of the values in a capture's
``secrets.txt``) and by ``ingress-audit scan-leaks``. A leak names the file, the secret's index
and the encoding, never the value.
"""

from __future__ import annotations

import base64
import bz2
import gzip
import io
import json
import lzma
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["MIN_LENGTH", "Leak", "encodings", "named_encodings", "scan"]

# A value shorter than this is skipped: three characters (or their base64/hex forms) turn up
# by chance in any large file, so a hit would say nothing, and such a value is no secret anyway.
MIN_LENGTH: Final = 4
# Base64 of a value embedded in a larger encoded blob (a .dockerconfigjson) depends on where
# it starts; its middle is looked for at the two other alignments too, when long enough to be
# distinctive.
_MIN_SHIFTED: Final = 12
_CHUNK: Final = 1 << 20
_GO_ESCAPES: Final = tuple((char, f"\\u{ord(char):04x}") for char in "<>&\u2028\u2029")
_MAGIC: Final = {".gz": b"\x1f\x8b", ".bz2": b"BZh", ".xz": b"\xfd7zXZ"}  # rotated, compressed


@dataclass(frozen=True, slots=True, kw_only=True)
class Leak:
    file: Path
    secret: int  # index in the list of secrets given to scan (line number - 1 in the CLI)
    encoding: str
    offset: int  # in the decompressed content for .gz, .bz2 and .xz files


def named_encodings(value: str | bytes) -> dict[str, bytes]:
    """Every form the value can take in a JSON file, by name (forms may coincide)."""
    raw = value.encode() if isinstance(value, str) else value
    std = base64.b64encode(raw)
    url = base64.urlsafe_b64encode(raw)
    forms = {
        "plain": raw,
        "base64": std,
        "base64-unpadded": std.rstrip(b"="),
        "base64url": url,
        "base64url-unpadded": url.rstrip(b"="),
        "hex": raw.hex().encode(),
        "hex-upper": raw.hex().upper().encode(),
    }
    for shift in (0, 1, 2):
        middle = _shifted_base64(raw, shift)
        if len(middle) >= _MIN_SHIFTED:
            forms[f"base64-offset{shift}"] = middle
    if isinstance(value, str):
        # A JSON string inside a JSON string (an annotation holding a manifest, written to a
        # record or to the state store) escapes the value twice; a third time in a copy of that.
        once = {name: escape(value) for name, escape in _JSON_ESCAPES.items()}
        for name, text in once.items():
            forms[name] = text.encode()
            for outer, escape in _JSON_ESCAPES.items():
                forms[f"{name}+{outer}"] = escape(text).encode()
            forms[f"{name}x3"] = _JSON_ESCAPES[name](_JSON_ESCAPES[name](text)).encode()
    return forms


def _json(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)[1:-1]


def _go_escaped(text: str) -> str:
    """Go's encoding/json is HTML-safe: it also escapes ``< > &`` and the JS line separators."""
    text = _json(text)
    for char, escaped in _GO_ESCAPES:
        text = text.replace(char, escaped)
    return text


_JSON_ESCAPES: Final[dict[str, Callable[[str], str]]] = {
    "json": _json,
    "json-ascii": lambda text: json.dumps(text)[1:-1],
    "json-go": _go_escaped,
}


def encodings(value: str | bytes) -> set[bytes]:
    """Plain, base64 (std and url, padded or not), hex (both cases) and JSON-escaped forms
    (Python's, orjson's and Go's escapes, once, twice and three times)."""
    return set(named_encodings(value).values())


def _shifted_base64(raw: bytes, shift: int) -> bytes:
    """The characters of base64(prefix + raw) that depend on ``raw`` alone, for a shift-byte prefix."""
    encoded = base64.b64encode(bytes(shift) + raw).rstrip(b"=")
    start = -(-8 * shift // 6)  # first character whose six bits all come from raw
    end = (8 * (shift + len(raw))) // 6  # characters past this mix in what follows raw
    return encoded[start:end]


def scan(
    paths_or_dirs: Iterable[str | os.PathLike[str]],
    secrets: Iterable[str],
    *,
    chunk_size: int = _CHUNK,
) -> list[Leak]:
    """Every occurrence of every secret (≥ MIN_LENGTH characters) in the files, read as bytes."""
    needles = [
        (index, name, form)
        for index, secret in enumerate(secrets)
        if len(secret) >= MIN_LENGTH
        for name, form in _distinct(named_encodings(secret))
    ]
    leaks: list[Leak] = []
    if not needles:
        return leaks
    overlap = max(len(form) for _, _, form in needles) - 1
    for file in _files(paths_or_dirs):
        with _open(file) as stream:
            leaks.extend(_scan_stream(file, stream, needles, overlap, chunk_size))
    return leaks


def _distinct(forms: dict[str, bytes]) -> Iterator[tuple[str, bytes]]:
    seen: set[bytes] = set()
    for name, form in forms.items():
        if form not in seen:
            seen.add(form)
            yield name, form


def _files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    for entry in map(Path, paths):
        if entry.is_dir():
            for root, dirs, names in os.walk(entry):
                dirs.sort()
                for name in sorted(names):
                    path = Path(root, name)
                    if path.is_file():
                        yield path
        elif entry.is_file():
            yield entry


def _open(file: Path) -> io.BufferedIOBase:
    magic = _MAGIC.get(file.suffix)
    if magic is not None:
        with open(file, "rb") as probe:
            if probe.read(len(magic)) == magic:
                return _decompressing(file)
    return open(file, "rb")


def _decompressing(file: Path) -> io.BufferedIOBase:
    if file.suffix == ".gz":
        return gzip.GzipFile(file, "rb")
    if file.suffix == ".bz2":
        return bz2.BZ2File(file, "rb")
    return lzma.LZMAFile(file, "rb")


def _scan_stream(
    file: Path,
    stream: io.BufferedIOBase,
    needles: Sequence[tuple[int, str, bytes]],
    overlap: int,
    chunk_size: int,
) -> Iterator[Leak]:
    tail = b""
    base = 0  # offset of tail[0] in the file
    seen: set[tuple[int, int]] = set()  # base64 and its unpadded prefix: one leak, not two
    while chunk := stream.read(chunk_size):
        window = tail + chunk
        for index, name, form in needles:
            at = window.find(form)
            while at != -1:
                if at + len(form) > len(tail) and (index, base + at) not in seen:
                    seen.add((index, base + at))  # ends in new data: not reported before
                    yield Leak(file=file, secret=index, encoding=name, offset=base + at)
                at = window.find(form, at + 1)
        keep = min(overlap, len(window))
        tail = window[len(window) - keep :] if keep else b""
        base += len(window) - len(tail)
