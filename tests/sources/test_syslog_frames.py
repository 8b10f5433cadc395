"""Syslog messages (RFC 3164 as nginx sends them, RFC 5424 as relays do) and RFC 6587 TCP framing."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhook.access.parsers import build_parser
from webhook.sources.syslog_frames import FrameError, Framing, SyslogDecoder, SyslogParseError, parse_syslog

NOW = datetime(2026, 11, 25, 20, 30, tzinfo=UTC)
LINE = (
    b'2001:db8::1 - - [25/Nov/2026:20:25:05 +0000] "GET /api HTTP/1.1" 200 612 "-" "curl/8.5.0" 523 0.005 '
    b"[shop-api-80] [] 10.244.1.7:8080 612 0.004 200 6f1c8a6c2a1f4e0c9a0b6f2d6a1e2b3c"
)


def test_nginx_rfc3164() -> None:
    """nginx's ``access_log syslog:`` form: ``<PRI>Mmm dd hh:mm:ss host nginx: line``."""
    msg = parse_syslog(b"<190>Nov 25 20:25:05 ingress-nginx-controller-7d9f nginx: " + LINE, received=NOW)

    assert (msg.facility, msg.severity) == (23, 6)  # local7.info, nginx's default
    assert msg.timestamp == datetime(2026, 11, 25, 20, 25, 5, tzinfo=UTC)
    assert (msg.hostname, msg.app_name) == ("ingress-nginx-controller-7d9f", "nginx")
    assert msg.message == LINE
    assert build_parser("nginx-ingress")(msg.message).client_ip == "2001:db8::1"


@pytest.mark.parametrize(
    ("data", "hostname", "app_name", "message"),
    [
        (b"<190>Nov  5 20:25:05 host nginx[12]: hello world\n", "host", "nginx", b"hello world"),
        (b"<13>nginx: hello", None, "nginx", b"hello"),
        (b"<13>hello world", None, None, b"hello world"),
        (b"<13>Nov 25 20:25:05 host just a message", "host", None, b"just a message"),
        (b"<13>2026-11-25T21:25:05+01:00 relay nginx: hello", "relay", "nginx", b"hello"),
        (b"<13>Nov 25 20:25:05 10.0.0.7 nginx: 2001:db8::1 -", "10.0.0.7", "nginx", b"2001:db8::1 -"),
    ],
)
def test_rfc3164_shapes(data: bytes, hostname: str | None, app_name: str | None, message: bytes) -> None:
    """Optional hostname, tag with pid, rsyslog's RFC 3339 stamp, trailing newline."""
    msg = parse_syslog(data, received=NOW)

    assert (msg.hostname, msg.app_name, msg.message) == (hostname, app_name, message)


@pytest.mark.parametrize(
    ("stamp", "received", "expected_year"),
    [
        (b"Dec 31 23:59:59", datetime(2027, 1, 1, 0, 0, 5, tzinfo=UTC), 2026),
        (b"Jan  1 00:00:01", datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC), 2027),
        (b"Feb 29 12:00:00", datetime(2028, 3, 1, tzinfo=UTC), 2028),
    ],
)
def test_rfc3164_year_closest_to_receive_time(stamp: bytes, received: datetime, expected_year: int) -> None:
    """RFC 3164 has no year: the one nearest the receive time is used, across New Year too."""
    msg = parse_syslog(b"<13>" + stamp + b" host nginx: x", received=received)

    assert msg.timestamp is not None
    assert msg.timestamp.year == expected_year


def test_rfc5424_with_structured_data_and_bom() -> None:
    """RFC 5424 with escaped structured data and a BOM before the message."""
    data = (
        b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com nginx - ID47 "
        b'[exampleSDID@32473 iut="3" eventSource="App\\]li\\"cation"][b@1 x="y"] \xef\xbb\xbf' + LINE
    )

    msg = parse_syslog(data, received=NOW)

    assert (msg.facility, msg.severity) == (20, 5)
    assert msg.timestamp == datetime(2003, 10, 11, 22, 14, 15, 3000, tzinfo=UTC)
    assert (msg.hostname, msg.app_name) == ("mymachine.example.com", "nginx")
    assert msg.structured_data == '[exampleSDID@32473 iut="3" eventSource="App\\]li\\"cation"][b@1 x="y"]'
    assert msg.message == LINE


def test_rfc5424_nil_values() -> None:
    """``-`` for timestamp, host, app and structured data; the message may be missing."""
    msg = parse_syslog(b"<14>1 - - - - - -", received=NOW)

    assert (msg.timestamp, msg.hostname, msg.app_name, msg.structured_data, msg.message) == (
        None,
        None,
        None,
        None,
        b"",
    )


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"no pri", "syslog-bad-pri"),
        (b"<999>Nov 25 20:25:05 host nginx: x", "syslog-bad-pri"),
        (b"<14>1 2026-11-25T20:25:05Z host", "syslog-bad-header"),
        (b"<14>1 yesterday host app - - - msg", "syslog-bad-time"),
        (b'<14>1 - host app - - [id k="v msg', "syslog-bad-structured-data"),
        (b"<14>1 - host app - - junk msg", "syslog-bad-structured-data"),
        (b"<13>Foo 25 20:25:05 host nginx: x", "syslog-bad-time"),
        (b"<13>Feb 30 20:25:05 host nginx: x", "syslog-bad-time"),
    ],
)
def test_malformed_messages(data: bytes, reason: str) -> None:
    """Each malformed message raises SyslogParseError (an AccessParseError) with a stable reason."""
    with pytest.raises(SyslogParseError) as info:
        parse_syslog(data, received=NOW)

    assert info.value.reason == reason


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_arbitrary_datagrams_raise_only_syslog_parse_error(data: bytes) -> None:
    """No datagram makes the parser raise anything but SyslogParseError."""
    for prefix in (b"", b"<13>", b"<13>1 ", b"<13>Nov 25 20:25:05 "):
        with contextlib.suppress(SyslogParseError):
            parse_syslog(prefix + data, received=NOW)


MESSAGES = [b"<190>Nov 25 20:25:05 host nginx: " + LINE, b"<14>1 - h a - - - x", b"<13>short"]


def _frames(decoder: SyslogDecoder, chunks: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for chunk in chunks:
        decoder.feed(chunk)
        while (frame := decoder.next_frame()) is not None:
            out.append(frame)
    return out


def _octets(messages: list[bytes]) -> bytes:
    return b"".join(b"%d %s" % (len(m), m) for m in messages)


@pytest.mark.parametrize("framing", ["auto", "octet-counting"])
def test_octet_counting_split_at_every_byte(framing: Framing) -> None:
    """Octet-counted frames come out whole wherever the stream is cut."""
    stream = _octets(MESSAGES)
    for cut in range(len(stream) + 1):
        assert _frames(SyslogDecoder(framing), [stream[:cut], stream[cut:]]) == MESSAGES


@pytest.mark.parametrize("framing", ["auto", "newline"])
def test_newline_split_at_every_byte(framing: Framing) -> None:
    """Newline-terminated frames (LF or CRLF, blank lines skipped) come out whole wherever cut."""
    stream = MESSAGES[0] + b"\n\n" + MESSAGES[1] + b"\r\n" + MESSAGES[2] + b"\n"
    for cut in range(len(stream) + 1):
        assert _frames(SyslogDecoder(framing), [stream[:cut], stream[cut:]]) == MESSAGES


def test_auto_mixes_framings_per_message() -> None:
    """``auto`` decides per message, as rsyslog does."""
    stream = _octets(MESSAGES[:1]) + MESSAGES[1] + b"\n" + _octets(MESSAGES[2:])

    assert _frames(SyslogDecoder(), [stream]) == MESSAGES


@settings(max_examples=200, deadline=None)
@given(
    messages=st.lists(st.binary(min_size=1, max_size=60).map(lambda b: b"<13>" + b), min_size=1, max_size=5),
    cuts=st.lists(st.integers(0, 400), max_size=6),
    octet=st.booleans(),
)
def test_any_split_of_any_messages(messages: list[bytes], cuts: list[int], octet: bool) -> None:
    """Any messages, cut at any positions, decode to the same frames (newline framing: no LF inside)."""
    if not octet:
        messages = [m.replace(b"\n", b"").rstrip(b"\r") for m in messages]
    stream = _octets(messages) if octet else b"".join(m + b"\n" for m in messages)
    points = sorted({min(c, len(stream)) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]

    assert _frames(SyslogDecoder("auto"), chunks) == messages


def test_octet_count_over_limit_is_fatal() -> None:
    """A LEN above the limit cannot be trusted: the stream is out of sync, the connection must close."""
    decoder = SyslogDecoder(max_message_bytes=100)
    decoder.feed(b"5000 <13>x")

    with pytest.raises(FrameError) as info:
        decoder.next_frame()
    assert (info.value.reason, info.value.recoverable) == ("syslog-too-long", False)
    with pytest.raises(FrameError) as again:
        decoder.next_frame()
    assert again.value.reason == "syslog-desync"


@pytest.mark.parametrize("stream", [b"12x <13>hello", b"0 ", b"12345678901234"])
def test_bad_octet_count_is_fatal(stream: bytes) -> None:
    """A LEN that is not a positive number within 10 digits desyncs the stream."""
    decoder = SyslogDecoder("octet-counting")
    decoder.feed(stream)

    with pytest.raises(FrameError) as info:
        decoder.next_frame()
    assert not info.value.recoverable


def test_octet_counting_refuses_unframed_data() -> None:
    """In ``octet-counting`` mode a message without LEN is a framing error."""
    decoder = SyslogDecoder("octet-counting")
    decoder.feed(b"<13>hello\n")

    with pytest.raises(FrameError):
        decoder.next_frame()


def test_overlong_line_is_skipped() -> None:
    """A line over the limit is dropped up to its newline; the next line still decodes."""
    decoder = SyslogDecoder("newline", max_message_bytes=20)
    errors: list[str] = []
    frames: list[bytes] = []
    for chunk in (b"<13>" + b"x" * 30, b"y" * 30, b"z\n<13>ok\n"):
        decoder.feed(chunk)
        while True:
            try:
                frame = decoder.next_frame()
            except FrameError as exc:
                errors.append(f"{exc.reason}:{exc.recoverable}")
                continue
            if frame is None:
                break
            frames.append(frame)

    assert errors == ["syslog-too-long:True"]
    assert frames == [b"<13>ok"]
    assert decoder.buffered == 0


def test_partial_line_buffer_is_bounded() -> None:
    """A sender that never sends a newline cannot grow the buffer beyond the limit."""
    decoder = SyslogDecoder("newline", max_message_bytes=64)
    for _ in range(100):
        decoder.feed(b"a" * 10)
        with contextlib.suppress(FrameError):
            decoder.next_frame()
        assert decoder.buffered <= 74
