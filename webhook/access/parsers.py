"""Pick a parser by name: every access-log line goes through ``build_parser(format)(line)``.

The returned callable takes the raw line (bytes or str, a trailing newline is ignored) or an
already-decoded JSON object (from ``POST /ingest/access``) and returns an ``AccessEntry`` or
raises ``AccessParseError`` with a stable ``reason``; it never raises anything else. Messages
name the field, never a value: lines can carry tokens in their query strings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from webhook.access.entry import AccessEntry, AccessParseError
from webhook.access.jsonfmt import compile_nginx_json
from webhook.access.jsonvalues import load_object
from webhook.access.nginx import combined_fast, ingress_fast, parse_combined, parse_nginx_ingress
from webhook.access.traefik import TRAEFIK_KEYS, parse_traefik

__all__ = ["DEFAULT_MAX_LINE_BYTES", "FORMATS", "REASONS", "AccessParser", "Line", "build_parser"]

Line = bytes | str | Mapping[str, Any]
AccessParser = Callable[[Line], AccessEntry]

FORMATS = ("auto", "nginx-ingress", "nginx-ingress-json", "traefik-json", "combined")
REASONS = (
    "bad-encoding",  # not UTF-8
    "too-long",  # longer than max_line_bytes
    "empty",  # nothing but whitespace
    "not-json",  # a JSON format, but the line is not a JSON object
    "bad-format",  # the line's shape does not match the format
    "missing-field",  # a JSON format without a field it needs (client address, status)
    "bad-status",  # the status is not a three-digit HTTP status
    "bad-number",  # a size or duration that is not a number
    "bad-time",  # a timestamp that cannot be read
    "bad-field",  # a JSON field of the wrong type (an object where a string belongs)
)
DEFAULT_MAX_LINE_BYTES = 65536  # nginx's request line is capped by large_client_header_buffers (8k)


def build_parser(
    format: str,
    field_map: Mapping[str, str] | None = None,
    *,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> AccessParser:
    """Compile once at start-up; ``field_map`` ({entry_field: json_key}) applies to nginx JSON."""
    if format not in FORMATS:
        raise ValueError(f"unknown access log format; expected one of {', '.join(FORMATS)}")
    nginx_json = compile_nginx_json(field_map)
    if format in ("nginx-ingress", "combined"):
        text = parse_nginx_ingress if format == "nginx-ingress" else parse_combined

        def parse_text(line: Line) -> AccessEntry:
            if not isinstance(line, bytes | str):  # a decoded JSON object
                raise AccessParseError("bad-format", f"format {format} expects text lines, not JSON objects")
            return text(_decode(line, max_line_bytes))

        return parse_text

    def json_object(obj: Mapping[str, Any]) -> AccessEntry:
        if format == "traefik-json" or (format == "auto" and not TRAEFIK_KEYS.isdisjoint(obj)):
            return parse_traefik(obj)
        return nginx_json(obj)

    def parse_json(line: Line) -> AccessEntry:
        if not isinstance(line, bytes | str):
            return json_object(line)
        if len(line) > max_line_bytes:
            raise AccessParseError("too-long", f"line is longer than {max_line_bytes} bytes")
        if format == "auto" and not _is_json_object(line):
            return _text_auto(_decode(line, max_line_bytes))
        return json_object(load_object(line))

    return parse_json


def _is_json_object(line: bytes | str) -> bool:
    first = line[:1]
    if first in (b"{", "{"):
        return True
    return first in (b" ", b"\t", " ", "\t") and line.lstrip()[:1] in (b"{", "{")


def _decode(line: bytes | str, max_line_bytes: int) -> str:
    if len(line) > max_line_bytes:
        raise AccessParseError("too-long", f"line is longer than {max_line_bytes} bytes")
    if isinstance(line, bytes):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AccessParseError("bad-encoding", f"line is not UTF-8 at byte {exc.start}") from None
    else:
        text = line
    if text.endswith("\n"):
        text = text.rstrip("\r\n")
    if not text or (text[0].isspace() and text.isspace()):
        raise AccessParseError("empty", "line is empty")
    return text


def _text_auto(line: str) -> AccessEntry:
    entry = ingress_fast(line) or combined_fast(line)
    if entry is not None:
        return entry
    try:
        return parse_nginx_ingress(line)
    except AccessParseError as exc:
        if exc.reason != "bad-format":
            raise
    try:
        return parse_combined(line)
    except AccessParseError as exc:
        if exc.reason != "bad-format":
            raise
    raise AccessParseError("bad-format", "line matches no supported access log format")
