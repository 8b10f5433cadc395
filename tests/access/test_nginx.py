"""ingress-nginx's default upstreaminfo format and nginx combined, line by line."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhook.access.entry import AccessParseError
from webhook.access.nginx import _combined_checked, _ingress_checked, combined_fast, ingress_fast
from webhook.access.parsers import build_parser

INGRESS = build_parser("nginx-ingress")
COMBINED = build_parser("combined")
REQ_ID = "c2c58cd42cb68822aae7d640ddf6583a"

# elastic/beats#20813: three upstreams tried, the first two answered 502
RETRIES = (
    '172.0.0.9 - - [24/Aug/2020:01:28:53 +0000] "GET https://some.domain/some/path HTTP/2.0" 200 28 '
    '"https://switter.at/" "Mozilla/5.0 (Windows NT 6.1; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) '
    'Chrome/81.0.4044.138 Safari/537.36" 60 0.683 [upstream-name] [] '
    "10.0.0.1:443, 10.0.0.2:443, 10.0.0.3:443 0, 0, 39 0.096, 0.092, 0.496 502, 502, 200 "
    "d0f69894df9d4b231eca7773a6759ba2"
)


def line(
    *,
    addr: str = "10.244.0.1",
    user: str = "-",
    request: str = "GET /api/v1/items?page=2 HTTP/1.1",
    status: str = "200",
    agent: str = "curl/8.5.0",
    upstream: str = "10.244.1.7:8080 612 0.004 200",
    names: str = "[shop-api-80] []",
) -> str:
    return (
        f'{addr} - {user} [25/Nov/2026:21:25:05 +0100] "{request}" {status} 612 "-" "{agent}" '
        f"523 0.005 {names} {upstream} {REQ_ID}"
    )


def test_default_line() -> None:
    """Every field of the default format lands in its entry field."""
    entry = INGRESS(line().encode())

    assert entry.time == datetime(2026, 11, 25, 20, 25, 5, tzinfo=UTC)
    assert (entry.client_ip, entry.method, entry.path, entry.query) == (
        "10.244.0.1",
        "GET",
        "/api/v1/items",
        "page=2",
    )
    assert (entry.protocol, entry.status, entry.bytes_sent, entry.request_length) == (
        "HTTP/1.1",
        200,
        612,
        523,
    )
    assert entry.request_time_s == 0.005
    assert (entry.remote_user, entry.referer, entry.user_agent) == (None, None, "curl/8.5.0")
    assert (entry.upstream_name, entry.alternative_upstream_name) == ("shop-api-80", None)
    assert entry.upstream_addrs == ("10.244.1.7:8080",)
    assert entry.upstream_response_lengths == (612,)
    assert entry.upstream_times_s == (0.004,)
    assert entry.upstream_statuses == (200,)
    assert entry.request_id == REQ_ID
    assert entry.host is None
    assert entry.format == "nginx-ingress"
    assert ingress_fast(line()) == entry  # the common line takes the fast path


def test_retries_keep_one_item_per_attempt() -> None:
    """Retries across upstreams (", ") give one address, status, time and length per attempt, in order."""
    entry = INGRESS(RETRIES)

    assert entry.upstream_addrs == ("10.0.0.1:443", "10.0.0.2:443", "10.0.0.3:443")
    assert entry.upstream_statuses == (502, 502, 200)
    assert entry.upstream_times_s == (0.096, 0.092, 0.496)
    assert entry.upstream_response_lengths == (0, 0, 39)
    assert (entry.status, entry.path, entry.protocol) == (200, "https://some.domain/some/path", "HTTP/2.0")


def test_two_upstreams_502_then_200() -> None:
    """The brief's example: 10.0.0.1 answered 502, 10.0.0.2 answered 200."""
    entry = INGRESS(line(upstream="10.0.0.1:80, 10.0.0.2:80 0, 612 0.001, 0.004 502, 200"))

    assert entry.upstream_addrs == ("10.0.0.1:80", "10.0.0.2:80")
    assert entry.upstream_statuses == (502, 200)
    assert entry.upstream_times_s == (0.001, 0.004)


def test_internal_redirect_separator_is_flattened() -> None:
    """`` : `` (an internal redirect to another upstream group) separates items like ``, ``."""
    entry = INGRESS(
        line(upstream="10.0.0.1:80 : 10.0.0.9:80, 10.0.0.8:80 0 : 15, 20 - : 0.002, 0.003 - : 502, 200")
    )

    assert entry.upstream_addrs == ("10.0.0.1:80", "10.0.0.9:80", "10.0.0.8:80")
    assert entry.upstream_response_lengths == (0, 15, 20)
    assert entry.upstream_times_s == (None, 0.002, 0.003)
    assert entry.upstream_statuses == (None, 502, 200)


def test_no_upstream() -> None:
    """A request nginx answered itself (no endpoints, a redirect) has no upstream items at all."""
    entry = INGRESS(line(upstream="- - - -", names="[] []", status="503"))

    assert entry.upstream_addrs == ()
    assert entry.upstream_statuses == entry.upstream_response_lengths == ()
    assert entry.upstream_times_s == ()
    assert (entry.upstream_name, entry.status) == (None, 503)


def test_client_closed_before_the_upstream_answered() -> None:
    """``$upstream_status`` ``-`` next to an address is an attempt without a status."""
    entry = INGRESS(line(status="499", upstream="10.0.0.1:80 0 0.750 -"))

    assert entry.upstream_statuses == (None,)
    assert entry.upstream_times_s == (0.75,)


def test_canary_alternative_upstream() -> None:
    """``$proxy_alternative_upstream_name`` is kept for canary ingresses."""
    entry = INGRESS(line(names="[shop-api-80] [shop-api-canary-80]"))

    assert entry.alternative_upstream_name == "shop-api-canary-80"


@pytest.mark.parametrize("addr", ["2001:db8::1", "::1", "fe80::1%eth0", "::ffff:192.0.2.7"])
def test_ipv6_clients(addr: str) -> None:
    """IPv6 ``$remote_addr`` values are taken as logged."""
    assert INGRESS(line(addr=addr)).client_ip == addr


def test_ipv6_upstream_addresses() -> None:
    """Bracketed IPv6 upstreams with ports are single items, not split at their colons."""
    entry = INGRESS(line(upstream="[fd00::7]:8080, [fd00::8]:8080 0, 5 0.001, 0.002 502, 200"))

    assert entry.upstream_addrs == ("[fd00::7]:8080", "[fd00::8]:8080")


def test_escaped_user_agent_and_request() -> None:
    """nginx's ``\\xHH`` escapes (``"`` is ``\\x22``) and ``\\"`` are undone; UTF-8 is reassembled."""
    entry = INGRESS(line(agent=r"Mozilla/5.0 \x22quoted\x22 and \"also\" caf\xC3\xA9 back\x5Cslash"))
    assert entry.user_agent == 'Mozilla/5.0 "quoted" and "also" café back\\slash'

    entry = INGRESS(line(request=r"GET /search?q=\x22a b\x22 HTTP/1.1"))
    assert (entry.path, entry.query) == ("/search", 'q="a b"')


def test_invalid_utf8_escapes_stay_visible() -> None:
    """An escaped byte that is not UTF-8 stays as ``\\xHH`` text instead of failing the line."""
    assert INGRESS(line(agent=r"bot\xFF")).user_agent == r"bot\xff"


def test_user_with_spaces() -> None:
    """``$remote_user`` (basic auth) may contain spaces."""
    assert INGRESS(line(user="jane doe")).remote_user == "jane doe"


@pytest.mark.parametrize(
    "request_line",
    [r"\x16\x03\x01\x00\xCA\x01\x00\x00\xC6\x03\x03", "", "-", "GET", "GET / FTP/1.0", "SSH-2.0-Go"],
)
def test_non_http_request_lines_are_entries_without_method(request_line: str) -> None:
    """TLS handshakes and probes on a plain port (logged with 400) are entries without method or path."""
    entry = INGRESS(line(request=request_line, status="400", upstream="- - - -", names="[] []"))

    assert (entry.method, entry.path, entry.query, entry.protocol) == (None, None, None, None)
    assert entry.status == 400


def test_http09_request_line() -> None:
    """``GET /`` without a protocol (HTTP/0.9) keeps method and path."""
    entry = INGRESS(line(request="GET /"))

    assert (entry.method, entry.path, entry.protocol) == ("GET", "/", None)


def test_timezone_converted_to_utc() -> None:
    """``$time_local`` offsets are applied; the entry time is UTC."""
    text = line().replace("+0100", "-0530")

    assert INGRESS(text).time == datetime(2026, 11, 26, 2, 55, 5, tzinfo=UTC)


def test_trailing_newline_ignored() -> None:
    """Lines read from files and streams keep their newline; it is not part of the last field."""
    assert INGRESS(line() + "\r\n").request_id == REQ_ID


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (line(status="2OO"), "bad-status"),
        (line(status="0"), "bad-status"),
        (line(status="20000"), "bad-status"),
        (line().replace("25/Nov/2026", "25/Foo/2026"), "bad-time"),
        (line().replace("25/Nov/2026", "31/Feb/2026"), "bad-time"),
        (line().replace(" 612 ", " 6x2 ", 1), "bad-number"),
        (line().replace(" 0.005 ", " 0.0.5 "), "bad-number"),
        (line(upstream="10.0.0.1:80 612 0.004 2x0"), "bad-status"),
        (line(upstream="10.0.0.1:80 612 nan 200"), "bad-number"),
        (line(upstream="10.0.0.1:80, 10.0.0.2:80 0, 1 0.1,"), "bad-format"),
        (line().split(" [shop")[0], "bad-format"),
        ("", "empty"),
        ("   \n", "empty"),
        ('{"status": 200}', "bad-format"),
        ("x" * 70000, "too-long"),
    ],
)
def test_malformed_lines(text: str, reason: str) -> None:
    """Each kind of bad line raises AccessParseError with its stable reason."""
    with pytest.raises(AccessParseError) as info:
        INGRESS(text)

    assert info.value.reason == reason


def test_bad_encoding() -> None:
    """Raw bytes that are not UTF-8 are refused with the byte offset, not the content."""
    with pytest.raises(AccessParseError) as info:
        INGRESS(line().encode().replace(b"curl", b"c\xffrl"))

    assert info.value.reason == "bad-encoding"
    assert "curl" not in str(info.value)


def test_messages_never_echo_the_line() -> None:
    """A token in the query string never appears in the error message."""
    token = "tok-3f9a8b7c6d5e"
    for text in (
        line(request=f"GET /cb?access_token={token} HTTP/1.1", status="x"),
        line(request=f"GET /cb?access_token={token} HTTP/1.1").replace("Nov", "Xyz"),
        line(request=f"GET /cb?access_token={token} HTTP/1.1")[:-40],
    ):
        with pytest.raises(AccessParseError) as info:
            INGRESS(text)
        assert token not in str(info.value)
        assert token not in info.value.message


def test_objects_are_refused_by_text_formats() -> None:
    """A decoded JSON object handed to a text format is a bad-format error, not a crash."""
    with pytest.raises(AccessParseError) as info:
        INGRESS({"log": line()})

    assert info.value.reason == "bad-format"


def test_combined() -> None:
    """Plain nginx ``combined`` fills the fields it has; the rest stay empty."""
    entry = COMBINED(
        '2001:db8::1 - alice [10/Oct/2025:13:55:36 -0700] "POST /login HTTP/1.1" 302 0 '
        '"https://example.com/start" "Mozilla/5.0 (X11; Linux x86_64)"'
    )

    assert entry.time == datetime(2025, 10, 10, 20, 55, 36, tzinfo=UTC)
    assert (entry.client_ip, entry.remote_user, entry.method, entry.path) == (
        "2001:db8::1",
        "alice",
        "POST",
        "/login",
    )
    assert (entry.status, entry.bytes_sent, entry.referer) == (302, 0, "https://example.com/start")
    assert entry.upstream_addrs == ()
    assert entry.request_time_s is None
    assert entry.format == "combined"


def test_combined_with_forwarded_for() -> None:
    """The nginx image's ``main`` format (combined + ``"$http_x_forwarded_for"``) is accepted."""
    entry = COMBINED(
        '10.0.0.5 - - [10/Oct/2025:13:55:36 +0000] "GET / HTTP/1.1" 200 615 "-" "curl/8.5.0" '
        '"203.0.113.9, 10.0.0.2"'
    )

    assert entry.forwarded_for == "203.0.113.9, 10.0.0.2"


def test_combined_refuses_ingress_lines_and_garbage() -> None:
    """``combined`` is exact: extra fields are a bad-format error."""
    for text in (line(), "hello world"):
        with pytest.raises(AccessParseError) as info:
            COMBINED(text)
        assert info.value.reason == "bad-format"


_addrs = st.sampled_from(["10.244.0.1", "2001:db8::1", "::1", "203.0.113.250"])
_users = st.sampled_from(["-", "alice", "jane doe", ""])
_quoted = st.sampled_from(
    ["-", "", "curl/8.5.0", r"Mozilla \x22q\x22 caf\xC3\xA9", r"a \"b\" c", r"back\x5Cslash"]
)
_requests = st.sampled_from(
    ["GET / HTTP/1.1", "POST /a?b=c HTTP/2.0", r"\x16\x03\x01", "", "GET /", r"GET /q?x=\x22y\x22 HTTP/1.1"]
)
_upstreams = st.sampled_from(
    [
        "10.0.0.1:80 612 0.004 200",
        "10.0.0.1:80, 10.0.0.2:80 0, 5 0.001, 0.004 502, 200",
        "10.0.0.1:80 : 10.0.0.2:80 - : 5 - : 0.002 - : 200",
        "- - - -",
        "10.0.0.1:80 0 0.750 -",
        "[fd00::7]:8080 1 0.1 204",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    addr=_addrs,
    user=_users,
    request=_requests,
    referer=_quoted,
    agent=_quoted,
    upstream=_upstreams,
    status=st.sampled_from(["200", "499", "502", "2x0"]),
)
def test_fast_and_checked_paths_agree(
    addr: str, user: str, request: str, referer: str, agent: str, upstream: str, status: str
) -> None:
    """The strict fast path, when it takes a line, yields exactly what the checked pass yields."""
    text = (
        f'{addr} - {user} [25/Nov/2026:21:25:05 +0100] "{request}" {status} 612 "{referer}" "{agent}" '
        f"523 0.005 [shop-api-80] [] {upstream} {REQ_ID}"
    )
    combined_text = text.split(" 523 ")[0]

    for fast, checked, line in (
        (ingress_fast, _ingress_checked, text),
        (combined_fast, _combined_checked, combined_text),
    ):
        try:
            expected = checked(line)
        except AccessParseError:
            assert fast(line) is None
            continue
        assert fast(line) in (None, expected)
