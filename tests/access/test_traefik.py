"""Traefik's JSON access log with its documented field names."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from webhook.access.entry import AccessParseError
from webhook.access.parsers import build_parser

TRAEFIK = build_parser("traefik-json")

# Shape of a Traefik v2/v3 line with a backend (field set as in the Traefik docs and issues).
LINE: dict[str, Any] = {
    "ClientAddr": "[2001:db8::1]:31073",
    "ClientHost": "2001:db8::1",
    "ClientPort": "31073",
    "ClientUsername": "-",
    "DownstreamContentSize": 75,
    "DownstreamStatus": 404,
    "Duration": 1964899,
    "OriginContentSize": 75,
    "OriginDuration": 1694568,
    "OriginStatus": 404,
    "Overhead": 270331,
    "RequestAddr": "shop.example.com",
    "RequestContentSize": 0,
    "RequestCount": 1,
    "RequestHost": "Shop.Example.com",
    "RequestMethod": "GET",
    "RequestPath": "/cart?id=7",
    "RequestPort": "-",
    "RequestProtocol": "HTTP/1.1",
    "RequestScheme": "https",
    "RetryAttempts": 0,
    "RouterName": "websecure-shop-cart-6f1c@kubernetescrd",
    "ServiceAddr": "10.42.0.12:3000",
    "ServiceName": "shop-cart-80@kubernetes",
    "ServiceURL": "http://10.42.0.12:3000",
    "StartLocal": "2025-02-28T13:11:34.10912886+01:00",
    "StartUTC": "2025-02-28T12:11:34.10912886Z",
    "entryPointName": "websecure",
    "level": "info",
    "msg": "",
    "request_User-Agent": "curl/8.5.0",
    "request_Referer": "https://shop.example.com/",
    "request_X-Forwarded-For": "203.0.113.9",
    "request_X-Request-Id": "b1735cbec6aa0fd116ec81fb0e2e5ba5",
    "time": "2025-02-28T12:11:34Z",
}


def test_documented_fields() -> None:
    """Each documented Traefik field lands in its entry field; durations are converted from ns."""
    entry = TRAEFIK(orjson.dumps(LINE))

    assert entry.time == datetime(2025, 2, 28, 12, 11, 34, 109128, tzinfo=UTC)
    assert (entry.client_ip, entry.method, entry.host) == ("2001:db8::1", "GET", "shop.example.com")
    assert (entry.path, entry.query, entry.protocol) == ("/cart", "id=7", "HTTP/1.1")
    assert (entry.status, entry.bytes_sent, entry.request_length) == (404, 75, 0)
    assert entry.request_time_s == pytest.approx(0.001964899)
    assert (entry.remote_user, entry.user_agent, entry.referer) == (
        None,
        "curl/8.5.0",
        "https://shop.example.com/",
    )
    assert (entry.forwarded_for, entry.request_id) == ("203.0.113.9", "b1735cbec6aa0fd116ec81fb0e2e5ba5")
    assert entry.upstream_addrs == ("10.42.0.12:3000",)
    assert entry.upstream_statuses == (404,)
    assert entry.upstream_times_s[0] == pytest.approx(0.001694568)
    assert entry.upstream_response_lengths == (75,)
    assert (entry.router, entry.service_name) == (
        "websecure-shop-cart-6f1c@kubernetescrd",
        "shop-cart-80@kubernetes",
    )
    assert entry.format == "traefik-json"


def test_no_backend() -> None:
    """A request no router matched (no Origin*, no Service*) has no upstream items."""
    line = {
        "ClientAddr": "172.16.100.61:49880",
        "ClientHost": "172.16.100.61",
        "ClientUsername": "-",
        "DownstreamContentSize": 19,
        "DownstreamStatus": 404,
        "Duration": 204055,
        "OriginStatus": 0,
        "RequestHost": "172.16.100.61",
        "RequestMethod": "GET",
        "RequestPath": "/",
        "StartUTC": "2021-06-05T04:03:22.742209746Z",
    }

    entry = TRAEFIK(line)

    assert entry.upstream_addrs == ()
    assert entry.upstream_statuses == entry.upstream_response_lengths == ()
    assert entry.upstream_times_s == ()
    assert (entry.status, entry.router) == (404, None)


def test_client_addr_and_service_url_fallbacks() -> None:
    """``ClientAddr`` gives the client without ``ClientHost``; ``ServiceURL`` (string or Traefik 1.x object)
    gives the upstream without ``ServiceAddr``."""
    base = {"DownstreamStatus": 200, "OriginStatus": 200}

    assert TRAEFIK({**base, "ClientAddr": "[2001:db8::5]:443"}).client_ip == "2001:db8::5"
    assert TRAEFIK({**base, "ClientAddr": "192.0.2.1:5555"}).client_ip == "192.0.2.1"
    entry = TRAEFIK({**base, "ClientHost": "192.0.2.1", "ServiceURL": "http://10.0.0.5:8080/prefix"})
    assert entry.upstream_addrs == ("10.0.0.5:8080",)
    entry = TRAEFIK(
        {**base, "ClientHost": "192.0.2.1", "ServiceURL": {"Scheme": "http", "Host": "10.0.0.6:80"}}
    )
    assert entry.upstream_addrs == ("10.0.0.6:80",)


def test_downstream_status_falls_back_to_origin() -> None:
    """A line without DownstreamStatus (dropped field) uses OriginStatus."""
    assert TRAEFIK({"ClientHost": "192.0.2.1", "OriginStatus": 502}).status == 502


def test_redacted_headers_are_absent() -> None:
    """``accessLog.fields.headers.names.User-Agent: redact`` gives ``REDACTED``, not a user agent."""
    assert TRAEFIK({**LINE, "request_User-Agent": "REDACTED"}).user_agent is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"ClientHost": None, "ClientAddr": None}, "missing-field"),
        ({"DownstreamStatus": None, "OriginStatus": None}, "missing-field"),
        ({"DownstreamStatus": 20}, "bad-status"),
        ({"Duration": "soon"}, "bad-number"),
        ({"Duration": -5}, "bad-number"),
        ({"StartUTC": "28/02/2025"}, "bad-time"),
        ({"RequestPath": ["/a"]}, "bad-field"),
    ],
)
def test_malformed_traefik_lines(change: dict[str, Any], reason: str) -> None:
    """Each kind of bad Traefik line raises AccessParseError with its stable reason."""
    line = {k: v for k, v in {**LINE, **change}.items() if v is not None}

    with pytest.raises(AccessParseError) as info:
        TRAEFIK(orjson.dumps(line))

    assert info.value.reason == reason
