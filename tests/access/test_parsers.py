"""build_parser: format names, per-line detection in ``auto``, and no exception but AccessParseError."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhook.access.entry import AccessParseError
from webhook.access.parsers import FORMATS, REASONS, AccessParser, Line, build_parser

INGRESS_LINE = (
    '10.244.0.1 - - [25/Nov/2026:20:25:05 +0000] "GET /api HTTP/1.1" 200 612 "-" "curl/8.5.0" 523 0.005 '
    "[shop-api-80] [] 10.244.1.7:8080 612 0.004 200 6f1c8a6c2a1f4e0c9a0b6f2d6a1e2b3c"
)
COMBINED_LINE = '10.0.0.5 - - [25/Nov/2026:20:25:05 +0000] "GET / HTTP/1.1" 200 615 "-" "curl/8.5.0"'
NGINX_JSON_LINE = orjson.dumps({"remote_addr": "10.0.0.1", "status": 200, "path": "/"})
TRAEFIK_LINE = orjson.dumps({"ClientHost": "10.0.0.1", "DownstreamStatus": 200, "RequestPath": "/"})
AUTO = build_parser("auto")


@pytest.mark.parametrize(
    ("line", "fmt"),
    [
        (INGRESS_LINE, "nginx-ingress"),
        (COMBINED_LINE, "combined"),
        (NGINX_JSON_LINE, "nginx-ingress-json"),
        (b"  " + TRAEFIK_LINE + b"\n", "traefik-json"),
        (orjson.loads(TRAEFIK_LINE), "traefik-json"),
        (orjson.loads(NGINX_JSON_LINE), "nginx-ingress-json"),
    ],
)
def test_auto_detects_each_format(line: bytes | str | dict[str, object], fmt: str) -> None:
    """``auto`` picks the parser per line: JSON by its keys, text by the ingress-nginx tail."""
    assert AUTO(line).format == fmt


def test_auto_applies_field_map_to_nginx_json() -> None:
    """The field_map also applies to nginx JSON lines that ``auto`` recognises."""
    parse = build_parser("auto", {"client_ip": "ip"})

    assert parse(b'{"ip": "192.0.2.9", "status": 200}').client_ip == "192.0.2.9"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"hello world", "bad-format"),
        (b"{oops", "not-json"),
        (b"", "empty"),
        (b"\xff\xfe", "bad-encoding"),
        (INGRESS_LINE.replace(" 200 612 ", " 2x0 612 "), "bad-status"),
        (COMBINED_LINE.replace("Nov", "Nxv"), "bad-time"),
    ],
)
def test_auto_reasons(line: bytes | str, reason: str) -> None:
    """``auto`` reports the most specific reason: a line shaped like a format but with a bad value says so."""
    with pytest.raises(AccessParseError) as info:
        AUTO(line)

    assert info.value.reason == reason
    assert info.value.reason in REASONS


@pytest.mark.parametrize("fmt", ["nginx-ingress-json", "traefik-json"])
def test_json_formats_refuse_text(fmt: str) -> None:
    """A text line given to a JSON format is not-json."""
    with pytest.raises(AccessParseError) as info:
        build_parser(fmt)(INGRESS_LINE)

    assert info.value.reason == "not-json"


def test_max_line_bytes() -> None:
    """Lines longer than ``max_line_bytes`` are refused before any parsing, JSON ones too."""
    parse = build_parser("auto", max_line_bytes=100)

    for line in (INGRESS_LINE, NGINX_JSON_LINE + b" " * 100):
        with pytest.raises(AccessParseError) as info:
            parse(line)
        assert info.value.reason == "too-long"


_PARSERS = [build_parser(fmt) for fmt in FORMATS]
_LINES = [INGRESS_LINE, COMBINED_LINE, NGINX_JSON_LINE.decode(), TRAEFIK_LINE.decode()]
_fragments = st.sampled_from([*_LINES, " ", '"', "\\x", "[", "]", "-", ", ", " : "])
_OUTCOMES = (*REASONS, "ok")


def _outcome(parse: AccessParser, line: Line) -> str:
    try:
        parse(line)
    except AccessParseError as exc:
        return exc.reason
    return "ok"


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_access_parse_error(data: bytes) -> None:
    """No input makes a parser raise anything but AccessParseError with a known reason."""
    for parse in _PARSERS:
        assert _outcome(parse, data) in _OUTCOMES


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(st.one_of(_fragments, st.text(max_size=12)), max_size=8), cut=st.integers(0, 400))
def test_mangled_lines_raise_only_access_parse_error(pieces: list[str], cut: int) -> None:
    """Real lines cut, spliced and mixed with junk give entries or AccessParseError, never a crash."""
    text = "".join(pieces)
    for line in (text, text[:cut], text.replace(" ", "", 1), text.encode("utf-8", "surrogatepass")):
        for parse in _PARSERS:
            assert _outcome(parse, line) in _OUTCOMES


@settings(max_examples=200, deadline=None)
@given(
    obj=st.dictionaries(
        st.sampled_from(
            [
                "remote_addr",
                "status",
                "time",
                "upstream_addr",
                "upstream_status",
                "request_time",
                "ClientHost",
                "DownstreamStatus",
                "Duration",
                "StartUTC",
                "ServiceURL",
                "RequestPath",
                "request",
            ]
        ),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
            ),
            max_leaves=5,
        ),
    )
)
def test_arbitrary_json_objects_raise_only_access_parse_error(obj: dict[str, object]) -> None:
    """Decoded objects with any value types give entries or AccessParseError, never a crash."""
    for parse in _PARSERS:
        assert _outcome(parse, obj) in _OUTCOMES


@pytest.mark.parametrize("value", ["²", "1.²", "١٢", "٣.٣", "1_000", "1e3", "nan", "inf", " 1", "0x10"])
@pytest.mark.parametrize("key", ["time", "status", "request_time", "bytes_sent", "upstream_response_time"])
def test_non_ascii_and_python_only_number_forms(value: str, key: str) -> None:
    """Unicode digits and forms Python's int()/float() accept but nginx never writes are refused cleanly."""
    obj = {"remote_addr": "10.0.0.1", "status": 200, "upstream_addr": "10.0.0.1:80", key: value}
    with pytest.raises(AccessParseError) as info:
        AUTO(obj)

    assert info.value.reason in ("bad-time", "bad-status", "bad-number")
