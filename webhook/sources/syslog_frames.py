"""Syslog messages carrying access-log lines: RFC 5424 and RFC 3164, and RFC 6587 TCP framing.

ingress-nginx (``enable-syslog``) sends ``<PRI>Mmm dd hh:mm:ss host nginx: <line>`` over UDP;
rsyslog and syslog-ng relay either form, over TCP with octet counting (``LEN SP MSG``) or one
message per line. Parsing is pure: the receive time for RFC 3164's year-less stamps is passed in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, NoReturn

from webhook.access.entry import AccessParseError
from webhook.access.fields import parse_iso_time

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "FrameError",
    "Framing",
    "SyslogDecoder",
    "SyslogMessage",
    "SyslogParseError",
    "parse_syslog",
]

DEFAULT_MAX_MESSAGE_BYTES = 65536
Framing = Literal["auto", "octet-counting", "newline"]

_BOM = b"\xef\xbb\xbf"
_PRI = re.compile(rb"<([0-9]{1,3})>")
_MONTHS = {m: i for i, m in enumerate(b"Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)}
_RFC3164_TIME = re.compile(rb"([A-Z][a-z]{2}) ([ 0-9][0-9]) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ")
_RFC3339_TIME = re.compile(rb"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(?:Z|[+-][0-9]{2}:[0-9]{2})) ")
_TAG = re.compile(rb"([!-9;-Z^-~]{1,48})(?:\[[!-\\^-~]{0,128}\])?:")  # "nginx:", "app[123]:"
_NIL = b"-"


class SyslogParseError(AccessParseError):
    """A datagram or frame that is not a syslog message; reasons start with ``syslog-``."""


class FrameError(ValueError):
    """A TCP frame that cannot be read. ``recoverable``: the decoder skipped it and can go on;
    otherwise the stream is out of sync and the connection should be closed."""

    def __init__(self, reason: str, message: str, *, recoverable: bool) -> None:
        super().__init__(message)
        self.reason = reason
        self.recoverable = recoverable


@dataclass(frozen=True, slots=True, kw_only=True)
class SyslogMessage:
    facility: int
    severity: int
    timestamp: datetime | None  # aware UTC; RFC 3164 stamps are read as UTC
    hostname: str | None
    app_name: str | None  # RFC 5424 APP-NAME, RFC 3164 TAG without ``[pid]``
    message: bytes  # the payload (the access-log line), without BOM or trailing newline
    structured_data: str | None = None  # RFC 5424 SD, raw; None for "-" and RFC 3164


def parse_syslog(data: bytes, *, received: datetime) -> SyslogMessage:
    """One message (a UDP datagram or a TCP frame); ``received`` dates RFC 3164 stamps."""
    m = _PRI.match(data)
    if m is None:
        raise SyslogParseError("syslog-bad-pri", "message does not start with <PRI>")
    pri = int(m.group(1))
    if pri > 191:
        raise SyslogParseError("syslog-bad-pri", "PRI is above 191")
    rest = data[m.end() :].rstrip(b"\r\n\0")
    if rest[:2] == b"1 ":
        return _rfc5424(pri, rest[2:])
    return _rfc3164(pri, rest, received)


def _text(token: bytes) -> str | None:
    return None if token == _NIL or not token else token.decode("utf-8", "replace")


def _rfc5424(pri: int, rest: bytes) -> SyslogMessage:
    parts = rest.split(b" ", 5)  # TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD[ MSG]
    if len(parts) < 6:
        raise SyslogParseError("syslog-bad-header", "RFC 5424 header has fewer than 7 fields")
    stamp, hostname, app_name, _procid, _msgid, tail = parts
    timestamp = None
    if stamp != _NIL:
        try:
            timestamp = parse_iso_time(stamp.decode("ascii"), "syslog TIMESTAMP")
        except UnicodeDecodeError:
            raise SyslogParseError("syslog-bad-time", "RFC 5424 TIMESTAMP is not ASCII") from None
        except AccessParseError as exc:
            raise SyslogParseError("syslog-bad-time", exc.message) from None
    sd_end = _structured_data_end(tail)
    sd = tail[:sd_end]
    message = tail[sd_end + 1 :] if tail[sd_end : sd_end + 1] == b" " else tail[sd_end:]
    if message.startswith(_BOM):
        message = message[3:]
    return SyslogMessage(
        facility=pri >> 3,
        severity=pri & 7,
        timestamp=timestamp,
        hostname=_text(hostname),
        app_name=_text(app_name),
        message=message,
        structured_data=None if sd == _NIL else sd.decode("utf-8", "replace"),
    )


def _structured_data_end(tail: bytes) -> int:
    """Index just past STRUCTURED-DATA: ``-`` or ``[id k="v" ...]...`` with ``\\"``, ``\\]`` escapes."""
    if tail[:1] == _NIL:
        return 1
    i, n = 0, len(tail)
    while i < n and tail[i : i + 1] == b"[":
        i += 1
        in_value = False
        while i < n:
            c = tail[i : i + 1]
            if c == b"\\" and in_value:
                i += 2
                continue
            if c == b'"':
                in_value = not in_value
            elif c == b"]" and not in_value:
                break
            i += 1
        if i >= n:
            raise SyslogParseError("syslog-bad-structured-data", "RFC 5424 STRUCTURED-DATA is not closed")
        i += 1
    if i == 0:
        raise SyslogParseError("syslog-bad-structured-data", "RFC 5424 STRUCTURED-DATA is not - or [...]")
    return i


def _rfc3164(pri: int, rest: bytes, received: datetime) -> SyslogMessage:
    timestamp = None
    if (m := _RFC3164_TIME.match(rest)) is not None:
        timestamp = _bsd_time(m, received)
        rest = rest[m.end() :]
    elif (m := _RFC3339_TIME.match(rest)) is not None:  # rsyslog's RSYSLOG_ForwardFormat
        try:
            timestamp = parse_iso_time(m.group(1).decode("ascii"), "syslog TIMESTAMP")
        except AccessParseError as exc:
            raise SyslogParseError("syslog-bad-time", exc.message) from None
        rest = rest[m.end() :]
    hostname = app_name = None
    first, _, after = rest.partition(b" ")
    if (tag := _TAG.fullmatch(first)) is None and timestamp is None:
        pass  # no HEADER: all of it is the message
    elif tag is None:  # "host tag: msg", or "host msg"
        second, _, msg = after.partition(b" ")
        hostname = first
        if (tag := _TAG.fullmatch(second)) is not None:
            app_name, rest = tag.group(1), msg
        else:
            rest = after
    else:  # "tag: msg" (no hostname)
        app_name, rest = tag.group(1), after
    return SyslogMessage(
        facility=pri >> 3,
        severity=pri & 7,
        timestamp=timestamp,
        hostname=_text(hostname or b""),
        app_name=_text(app_name or b""),
        message=rest,
    )


def _bsd_time(m: re.Match[bytes], received: datetime) -> datetime:
    """``Mmm dd hh:mm:ss`` has no year: the one that puts it closest to ``received``."""
    month = _MONTHS.get(m.group(1))
    if month is None:
        raise SyslogParseError("syslog-bad-time", "RFC 3164 TIMESTAMP month is not an English abbreviation")
    day, hour, minute, second = (int(g) for g in m.groups()[1:])
    now = received.astimezone(UTC)
    best: datetime | None = None
    for year in (now.year - 1, now.year, now.year + 1):
        try:
            candidate = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
        except ValueError:
            continue
        if best is None or abs(candidate - now) < abs(best - now):
            best = candidate
    if best is None or abs(best - now) > timedelta(days=366):
        raise SyslogParseError("syslog-bad-time", "RFC 3164 TIMESTAMP is not a valid date")
    return best


class SyslogDecoder:
    """Incremental TCP framing: ``feed`` bytes, then ``next_frame()`` until it returns None.

    ``auto`` decides per message like rsyslog: a leading digit means octet counting
    (RFC 6587 3.4.1), ``<`` a newline-terminated message (3.4.2).
    """

    def __init__(
        self, framing: Framing = "auto", *, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    ) -> None:
        self._framing = framing
        self._max = max_message_bytes
        self._buf = bytearray()
        self._scanned = 0  # bytes of the current line already searched for a newline
        self._skip_line = False  # dropping the rest of an overlong line
        self._failed = False

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def next_frame(self) -> bytes | None:
        if self._failed:
            raise FrameError("syslog-desync", "stream is out of sync after a bad frame", recoverable=False)
        while True:
            if self._skip_line:
                if not self._discard_line():
                    return None
                continue
            if not self._buf:
                return None
            first = self._buf[0]
            if self._framing == "octet-counting" or (self._framing == "auto" and 0x30 <= first <= 0x39):
                return self._octet_counted()
            frame = self._line()
            if frame is None or frame:  # skip empty lines between messages
                return frame

    def _octet_counted(self) -> bytes | None:
        space = self._buf.find(b" ", 0, 11)
        if space < 0:
            if len(self._buf) >= 11 or not bytes(self._buf).isdigit():
                self._desync("syslog-bad-length", "octet-counting frame does not start with LEN SP")
            return None
        digits = bytes(self._buf[:space])
        if not digits.isdigit() or digits[:1] == b"0":
            self._desync("syslog-bad-length", "octet-counting LEN is not a positive number")
        length = int(digits)
        if length > self._max:
            self._desync("syslog-too-long", f"octet-counting frame is longer than {self._max} bytes")
        end = space + 1 + length
        if len(self._buf) < end:
            return None
        frame = bytes(self._buf[space + 1 : end])
        del self._buf[:end]
        return frame

    def _line(self) -> bytes | None:
        nl = self._buf.find(b"\n", self._scanned)
        if nl < 0:
            if len(self._buf) > self._max:
                self._skip_line = True
                self._buf.clear()
                self._scanned = 0
                raise FrameError("syslog-too-long", f"line exceeds {self._max} bytes", recoverable=True)
            self._scanned = len(self._buf)
            return None
        if nl > self._max:
            del self._buf[: nl + 1]
            self._scanned = 0
            raise FrameError("syslog-too-long", f"line exceeds {self._max} bytes", recoverable=True)
        frame = bytes(self._buf[:nl]).rstrip(b"\r")
        del self._buf[: nl + 1]
        self._scanned = 0
        return frame

    def _discard_line(self) -> bool:
        nl = self._buf.find(b"\n")
        if nl < 0:
            self._buf.clear()
            return False
        del self._buf[: nl + 1]
        self._skip_line = False
        return True

    def _desync(self, reason: str, message: str) -> NoReturn:
        self._failed = True
        self._buf.clear()
        raise FrameError(reason, message, recoverable=False)
