"""ingress-nginx JSON access logs: the community key names and a configured field_map."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from webhook.access.entry import AccessParseError
from webhook.access.parsers import build_parser

NGINX_JSON = build_parser("nginx-ingress-json")

# The widely shared log-format-upstream (log-format-escape-json: "true"); numbers both bare and quoted.
COMMUNITY: dict[str, Any] = {
    "time": "2026-11-25T21:25:05+01:00",
    "remote_addr": "2001:db8::1",
    "x_forwarded_for": "203.0.113.9, 2001:db8::1",
    "request_id": "6f1c8a6c2a1f4e0c9a0b6f2d6a1e2b3c",
    "remote_user": "",
    "bytes_sent": 812,
    "request_time": 0.005,
    "status": 200,
    "vhost": "Shop.Example.com",
    "request_proto": "HTTP/2.0",
    "path": "/api/v1/items",
    "request_query": "page=2&token=abc",
    "request_length": "523",
    "duration": 0.005,
    "method": "GET",
    "http_referrer": "https://shop.example.com/",
    "http_user_agent": 'Mozilla/5.0 "quoted" \\ back',
    "namespace": "shop",
    "ingress_name": "shop-api",
    "service_name": "api",
    "service_port": "http",
    "upstream_addr": "10.0.0.1:80, 10.0.0.2:80",
    "upstream_status": "502, 200",
    "upstream_response_time": "0.001, 0.004",
    "proxy_upstream_name": "shop-api-http",
}


def test_community_format() -> None:
    """Every key of the common community JSON format lands in its entry field."""
    entry = NGINX_JSON(orjson.dumps(COMMUNITY))

    assert entry.time == datetime(2026, 11, 25, 20, 25, 5, tzinfo=UTC)
    assert (entry.client_ip, entry.forwarded_for) == ("2001:db8::1", "203.0.113.9, 2001:db8::1")
    assert (entry.method, entry.host, entry.path, entry.query) == (
        "GET",
        "shop.example.com",
        "/api/v1/items",
        "page=2&token=abc",
    )
    assert (entry.protocol, entry.status, entry.bytes_sent, entry.request_length) == (
        "HTTP/2.0",
        200,
        812,
        523,
    )
    assert (entry.request_time_s, entry.remote_user) == (0.005, None)
    assert (entry.referer, entry.user_agent) == ("https://shop.example.com/", 'Mozilla/5.0 "quoted" \\ back')
    assert (entry.namespace, entry.ingress_name, entry.service_name, entry.service_port) == (
        "shop",
        "shop-api",
        "api",
        "http",
    )
    assert entry.upstream_addrs == ("10.0.0.1:80", "10.0.0.2:80")
    assert entry.upstream_statuses == (502, 200)
    assert entry.upstream_times_s == (0.001, 0.004)
    assert entry.upstream_response_lengths == ()  # not logged by this format
    assert (entry.upstream_name, entry.request_id) == ("shop-api-http", "6f1c8a6c2a1f4e0c9a0b6f2d6a1e2b3c")
    assert entry.format == "nginx-ingress-json"


def test_numbers_as_strings_and_strings_as_numbers() -> None:
    """``"status": "200"`` and ``"request_time": "0.005"`` read like their bare forms."""
    entry = NGINX_JSON(
        {"remote_addr": "10.0.0.1", "status": "404", "request_time": "0.005", "bytes_sent": "0"}
    )

    assert (entry.status, entry.request_time_s, entry.bytes_sent) == (404, 0.005, 0)


def test_request_line_and_request_uri_fallbacks() -> None:
    """Without method/path keys, ``request`` or ``request_uri`` provide them."""
    entry = NGINX_JSON({"remote_addr": "10.0.0.1", "status": 200, "request": "POST /login?next=%2F HTTP/1.1"})
    assert (entry.method, entry.path, entry.query, entry.protocol) == (
        "POST",
        "/login",
        "next=%2F",
        "HTTP/1.1",
    )

    entry = NGINX_JSON(
        {"remote_addr": "10.0.0.1", "status": 200, "request_method": "PUT", "request_uri": "/a/b?c=d"}
    )
    assert (entry.method, entry.path, entry.query) == ("PUT", "/a/b", "c=d")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-25T20:25:05+00:00", datetime(2026, 11, 25, 20, 25, 5, tzinfo=UTC)),
        ("25/Nov/2026:21:25:05 +0100", datetime(2026, 11, 25, 20, 25, 5, tzinfo=UTC)),
        ("1795638305.250", datetime(2026, 11, 25, 20, 25, 5, 250000, tzinfo=UTC)),
        (1795638305, datetime(2026, 11, 25, 20, 25, 5, tzinfo=UTC)),
        ("-", None),
    ],
)
def test_time_forms(value: Any, expected: datetime | None) -> None:
    """``$time_iso8601``, ``$time_local`` and ``$msec`` are all understood."""
    assert NGINX_JSON({"time": value, "remote_addr": "10.0.0.1", "status": 200}).time == expected


def test_upstream_lists_as_json_arrays() -> None:
    """Upstream lists may also arrive as JSON arrays of strings or numbers."""
    entry = NGINX_JSON(
        {
            "remote_addr": "10.0.0.1",
            "status": 200,
            "upstream_addr": ["10.0.0.1:80", "10.0.0.2:80"],
            "upstream_status": [502, 200],
            "upstream_response_time": ["0.001", 0.004],
        }
    )

    assert entry.upstream_statuses == (502, 200)
    assert entry.upstream_times_s == (0.001, 0.004)


def test_dash_next_to_an_address_is_one_empty_attempt() -> None:
    """``"upstream_status": "-"`` with one address is one attempt without a status."""
    entry = NGINX_JSON(
        {"remote_addr": "10.0.0.1", "status": 499, "upstream_addr": "10.0.0.1:80", "upstream_status": "-"}
    )

    assert entry.upstream_statuses == (None,)


def test_field_map_pins_keys() -> None:
    """``field_map`` reads an entry field from the deployment's own key, and only from it."""
    parse = build_parser(
        "nginx-ingress-json",
        {"client_ip": "client_addr", "status": "http_status", "host": "server_host", "time": "time_iso"},
    )
    obj = {
        "client_addr": "192.0.2.4",
        "remote_addr": "10.0.0.1",
        "http_status": "201",
        "server_host": "API.example.com:8443",
        "time_iso": "2026-11-25T20:25:05Z",
    }

    entry = parse(obj)

    assert (entry.client_ip, entry.status, entry.host) == ("192.0.2.4", 201, "api.example.com")
    assert entry.time == datetime(2026, 11, 25, 20, 25, 5, tzinfo=UTC)
    with pytest.raises(AccessParseError) as info:
        parse({"remote_addr": "10.0.0.1", "status": 200})
    assert info.value.reason == "missing-field"
    assert "client_addr" in info.value.message


def test_field_map_unknown_field_is_a_config_error() -> None:
    """A field_map entry for a field AccessEntry does not have fails at start-up."""
    with pytest.raises(ValueError, match="clientip"):
        build_parser("nginx-ingress-json", {"clientip": "ip"})


def test_unknown_format_is_a_config_error() -> None:
    """An unknown format name fails at start-up."""
    with pytest.raises(ValueError, match="unknown access log format"):
        build_parser("apache")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"not json", "not-json"),
        (b'{"remote_addr": "10.0.0.1", "status": 200', "not-json"),
        (b"[1, 2]", "not-json"),
        (b'"text"', "not-json"),
        (b'{"status": 200}', "missing-field"),
        (b'{"remote_addr": "10.0.0.1"}', "missing-field"),
        (b'{"remote_addr": "10.0.0.1", "status": 2000}', "bad-status"),
        (b'{"remote_addr": "10.0.0.1", "status": true}', "bad-status"),
        (b'{"remote_addr": "10.0.0.1", "status": "OK"}', "bad-status"),
        (b'{"remote_addr": {"ip": 1}, "status": 200}', "bad-field"),
        (b'{"remote_addr": "10.0.0.1", "status": 200, "bytes_sent": -1}', "bad-number"),
        (b'{"remote_addr": "10.0.0.1", "status": 200, "request_time": "fast"}', "bad-number"),
        (b'{"remote_addr": "10.0.0.1", "status": 200, "time": "yesterday"}', "bad-time"),
        (b'{"remote_addr": "10.0.0.1", "status": 200, "time": 1e300}', "bad-time"),
        (b'{"remote_addr": "10.0.0.1", "status": 200, "time": "2026-13-01T00:00:00Z"}', "bad-time"),
        (
            b'{"remote_addr": "10.0.0.1", "status": 200, "upstream_addr": "a:1", "upstream_status": "5xx"}',
            "bad-status",
        ),
        (b'{"remote_addr": "\xff", "status": 200}', "not-json"),
    ],
)
def test_malformed_json_lines(line: bytes, reason: str) -> None:
    """Each kind of bad JSON line raises AccessParseError with its stable reason and no value."""
    with pytest.raises(AccessParseError) as info:
        NGINX_JSON(line)

    assert info.value.reason == reason
    assert "10.0.0.1" not in info.value.message
