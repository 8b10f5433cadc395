"""Field conversions shared by the access-log parsers: numbers, lists, times, request lines.

Every helper either returns a clean value or raises ``AccessParseError`` naming the field, never
the value: access lines can carry tokens in query strings.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache

from webhook.access.entry import AccessParseError

__all__ = [
    "EMPTY",
    "host_only",
    "opt_float",
    "opt_int",
    "opt_str",
    "parse_iso_time",
    "parse_local_time",
    "split_request",
    "split_upstream",
    "status_code",
    "unescape",
    "upstream_floats",
    "upstream_ints",
    "upstream_statuses",
    "upstreams",
]

EMPTY = frozenset(("", "-"))  # what nginx logs for a variable without a value

_METHOD = re.compile(r"[A-Za-z][A-Za-z0-9_.!#$%&'*+^`|~-]{0,31}", re.ASCII)
_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"))
_ESCAPE = re.compile(rb"\\x([0-9A-Fa-f]{2})|\\(.)", re.DOTALL)
_LIST_SEP = re.compile(r"\s*,\s*|\s+:\s+")
_MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
_LOCAL_TIME = re.compile(r"(\d\d)/([A-Z][a-z]{2})/(\d{4}):(\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)", re.ASCII)


def opt_str(value: str) -> str | None:
    return None if value in EMPTY else value


def opt_int(value: str, field: str) -> int | None:
    if value in EMPTY:
        return None
    if not (len(value) <= 19 and value.isascii() and value.isdigit()):
        raise AccessParseError("bad-number", f"field {field} is not a whole number")
    return int(value)


def opt_float(value: str, field: str) -> float | None:
    if value in EMPTY:
        return None
    if not (len(value) <= 24 and value.isascii() and value.replace(".", "", 1).isdigit()):
        raise AccessParseError("bad-number", f"field {field} is not a duration in seconds")
    return float(value)


def status_code(value: str, field: str = "status") -> int:
    if len(value) != 3 or not value.isascii() or not value.isdigit() or value[0] == "0":
        raise AccessParseError("bad-status", f"field {field} is not an HTTP status")
    return int(value)


def split_upstream(value: str) -> tuple[str, ...]:
    """One item per attempt: ``, `` separates retries, `` : `` internal redirects (flattened)."""
    if "," not in value and " : " not in value:
        return () if value in EMPTY else (value,)  # one address, 10.0.0.1:80 or [::1]:80 alike
    return tuple(_LIST_SEP.split(value.strip()))


def upstream_ints(value: str, field: str) -> tuple[int | None, ...]:
    if "," not in value and " : " not in value:
        return (None,) if value in EMPTY else (opt_int(value, field),)
    return tuple(opt_int(v, field) for v in _LIST_SEP.split(value.strip()))


def upstream_floats(value: str, field: str) -> tuple[float | None, ...]:
    if "," not in value and " : " not in value:
        return (None,) if value in EMPTY else (opt_float(value, field),)
    return tuple(opt_float(v, field) for v in _LIST_SEP.split(value.strip()))


def upstream_statuses(value: str, field: str = "upstream_status") -> tuple[int | None, ...]:
    if "," not in value and " : " not in value:
        return (None,) if value in EMPTY else (status_code(value, field),)
    return tuple(None if v in EMPTY else status_code(v, field) for v in _LIST_SEP.split(value.strip()))


def upstreams(
    addr: str, length: str, time: str, status: str
) -> tuple[tuple[str, ...], tuple[int | None, ...], tuple[float | None, ...], tuple[int | None, ...]]:
    """``$upstream_addr`` and its companions, one item per attempt; all empty without an upstream."""
    if "," in addr or " : " in addr:
        return (
            split_upstream(addr),
            upstream_ints(length, "upstream_response_length"),
            upstream_floats(time, "upstream_response_time"),
            upstream_statuses(status),
        )
    if addr in EMPTY:
        return (), (), (), ()
    return (
        (addr,),
        (opt_int(length, "upstream_response_length"),),
        (opt_float(time, "upstream_response_time"),),
        (None if status in EMPTY else status_code(status, "upstream_status"),),
    )


def unescape(value: str) -> str:
    """Undo nginx's ``\\xHH`` (escape=default) and ``\\"`` escapes; invalid UTF-8 stays ``\\xHH``."""
    if "\\" not in value:
        return value
    raw = _ESCAPE.sub(_unescape_one, value.encode("utf-8", "surrogateescape"))
    return raw.decode("utf-8", "backslashreplace")


def _unescape_one(m: re.Match[bytes]) -> bytes:
    hex_digits = m.group(1)
    if hex_digits is not None:
        return bytes.fromhex(hex_digits.decode("ascii"))
    return m.group(2)


def split_request(request: str) -> tuple[str | None, str | None, str | None, str | None]:
    """``$request`` (unescaped) into method, path, query, protocol; all None if not an HTTP request line.

    TLS handshakes and other probes sent to a plain-HTTP port are logged with status 400 and
    bytes as the request: they stay valid entries, without method or path.
    """
    method, _, rest = request.partition(" ")
    target, _, protocol_ = rest.rpartition(" ")
    protocol: str | None = protocol_
    if not target:  # "GET /" (HTTP/0.9)
        target, protocol = protocol_, None
    elif protocol_[:5] != "HTTP/":
        return None, None, None, None
    if not target or (method not in _METHODS and _METHOD.fullmatch(method) is None):
        return None, None, None, None
    path, sep, query = target.partition("?")
    return method, path, (query if sep else None), protocol


def host_only(value: str | None) -> str | None:
    """Lower-case host without port; IPv6 literals keep their brackets."""
    if value is None or value in EMPTY:
        return None
    host = value.lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host or None


@lru_cache(maxsize=4096)
def parse_local_time(value: str) -> datetime:
    """``$time_local``: ``25/Nov/2026:20:25:05 +0100`` -> aware UTC datetime."""
    m = _LOCAL_TIME.fullmatch(value)
    month = _MONTHS.get(m.group(2), 0) if m else 0
    if m is None or not month:
        raise AccessParseError("bad-time", "field time_local is not dd/Mon/yyyy:hh:mm:ss +zzzz")
    day, _, year, hour, minute, second, sign, tz_h, tz_m = m.groups()
    offset = timedelta(hours=int(tz_h), minutes=int(tz_m))
    try:
        local = datetime(
            int(year),
            month,
            int(day),
            int(hour),
            int(minute),
            int(second),
            tzinfo=timezone(-offset if sign == "-" else offset),
        )
        return local.astimezone(UTC)
    except (ValueError, OverflowError):
        raise AccessParseError("bad-time", "field time_local is not a valid date") from None


@lru_cache(maxsize=4096)
def parse_iso_time(value: str, field: str) -> datetime:
    """RFC 3339 / ISO 8601 with an offset (``$time_iso8601``, Traefik ``StartUTC``) -> UTC."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise AccessParseError("bad-time", f"field {field} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # nginx and Traefik log offsets; assume UTC otherwise
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise AccessParseError("bad-time", f"field {field} is out of range") from None
