"""Access-log parsing speed per format, one core, in-process: ``python -m bench.access_parse``.

The target is 100,000 lines/s parsed *and aggregated* per core; parsing alone must leave
room for the rest. The lines are generated from a seed: one upstream, except 2% retries;
10% IPv6 clients, 2% escaped user agents, 0.5% TLS probes; 60 distinct seconds of time
stamps, as a busy controller writes in a minute. CPU time (not wall time) is measured, best of ``--repeat``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable, Sequence

import orjson

from webhook.access.entry import AccessParseError
from webhook.access.parsers import build_parser

__all__ = ["lines_for", "main", "measure"]

_AGENTS = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "curl/8.5.0",
    "kube-probe/1.29",
)
_ESCAPED_AGENT = r"Mozilla/5.0 \x22quoted\x22 caf\xC3\xA9"  # nginx escape=default
_PATHS = ("/api/v1/items", "/", "/static/app.js", "/login", "/api/v1/cart/7?page=2&sort=desc")


def _client(rng: random.Random) -> str:
    if rng.random() < 0.1:
        return f"2001:db8::{rng.randrange(1, 0xFFFF):x}"
    return f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def _ingress_line(rng: random.Random) -> str:
    second = rng.randrange(60)
    upstream = f"10.244.1.{rng.randrange(1, 30)}:8080 612 0.004 200"
    if rng.random() < 0.02:
        upstream = "10.244.1.7:8080, 10.244.1.8:8080 0, 612 0.001, 0.004 502, 200"
    request = f"GET {rng.choice(_PATHS)} HTTP/1.1"
    agent = _ESCAPED_AGENT if rng.random() < 0.02 else rng.choice(_AGENTS)
    if rng.random() < 0.005:
        request, upstream = r"\x16\x03\x01\x00\xCA", "- - - -"
    return (
        f'{_client(rng)} - - [25/Nov/2026:20:25:{second:02d} +0000] "{request}" 200 612 '
        f'"https://shop.example.com/" "{agent}" 523 0.005 [shop-api-80] [] {upstream} '
        f"{rng.getrandbits(128):032x}"
    )


def _combined_line(rng: random.Random) -> str:
    return _ingress_line(rng).split(" 523 ")[0]


def _nginx_json_line(rng: random.Random) -> str:
    obj = {
        "time": f"2026-11-25T20:25:{rng.randrange(60):02d}+00:00",
        "remote_addr": _client(rng),
        "request_id": f"{rng.getrandbits(128):032x}",
        "bytes_sent": 812,
        "request_time": 0.005,
        "status": 200,
        "vhost": "shop.example.com",
        "request_proto": "HTTP/2.0",
        "path": rng.choice(_PATHS).partition("?")[0],
        "request_query": "page=2",
        "method": "GET",
        "http_user_agent": "curl/8.5.0",
        "namespace": "shop",
        "ingress_name": "shop",
        "service_name": "api",
        "service_port": "80",
        "upstream_addr": "10.244.1.7:8080",
        "upstream_status": "200",
        "upstream_response_time": "0.004",
        "proxy_upstream_name": "shop-api-80",
    }
    return orjson.dumps(obj).decode()


def _traefik_line(rng: random.Random) -> str:
    obj = {
        "ClientAddr": "10.0.0.1:31073",
        "ClientHost": _client(rng),
        "DownstreamContentSize": 75,
        "DownstreamStatus": 200,
        "Duration": 1964899,
        "OriginContentSize": 75,
        "OriginDuration": 1694568,
        "OriginStatus": 200,
        "RequestHost": "shop.example.com",
        "RequestMethod": "GET",
        "RequestPath": rng.choice(_PATHS),
        "RequestProtocol": "HTTP/1.1",
        "RouterName": "websecure-shop@kubernetescrd",
        "ServiceAddr": "10.42.0.12:3000",
        "ServiceName": "shop-api-80@kubernetes",
        "StartUTC": f"2025-02-28T12:11:{rng.randrange(60):02d}.10912886Z",
        "request_User-Agent": "curl/8.5.0",
    }
    return orjson.dumps(obj).decode()


_GENERATORS: dict[str, Callable[[random.Random], str]] = {
    "nginx-ingress": _ingress_line,
    "combined": _combined_line,
    "nginx-ingress-json": _nginx_json_line,
    "traefik-json": _traefik_line,
}


def lines_for(fmt: str, count: int, seed: int = 12) -> list[bytes]:
    rng = random.Random(seed)  # noqa: S311 - reproducible sample data, not security
    return [_GENERATORS[fmt](rng).encode() for _ in range(count)]


def measure(parser_format: str, lines: Sequence[bytes], repeat: int) -> tuple[float, int]:
    """Best lines/s over ``repeat`` passes (CPU time), and how many lines failed to parse."""
    parse = build_parser(parser_format)
    failed = 0
    best = 0.0
    for _ in range(repeat):
        failed = 0
        start = time.process_time()
        for line in lines:
            try:
                parse(line)
            except AccessParseError:
                failed += 1
        elapsed = time.process_time() - start
        best = max(best, len(lines) / elapsed if elapsed > 0 else float("inf"))
    return best, failed


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.access_parse", description=__doc__)
    ap.add_argument("--lines", type=int, default=50_000, help="lines per format (50000)")
    ap.add_argument("--repeat", type=int, default=5, help="passes per format; the best counts (5)")
    args = ap.parse_args(argv)
    for fmt in _GENERATORS:
        lines = lines_for(fmt, args.lines)
        for parser_format in (fmt, "auto"):
            rate, failed = measure(parser_format, lines, args.repeat)
            sys.stdout.write(
                f"{fmt:<20} parser={parser_format:<20} {rate:>10,.0f} lines/s  failed={failed}\n"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
