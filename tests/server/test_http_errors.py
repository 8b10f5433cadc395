"""The edge of the real TLS server: what refused and odd requests get back, count and log.

Each case is a reproduction from the security review (docs: security-review.md), named in
its docstring; raw bytes over real TLS, since aiohttp's client would not send them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gzip
import ssl
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
import trustme
from structlog.testing import capture_logs

from tests.paths import ROOT
from tests.pki import Pki, make_pki
from webhook.access.settings import AccessConfig, AccessSyslogConfig
from webhook.config import Config
from webhook.server.app import METRICS, RunningServer, start_server

SAMPLE = (ROOT / "examples" / "eventlist.json").read_bytes()
TOKEN = "edge-token-for-tests-0123456789abcdef"

Serve = Callable[..., Awaitable[RunningServer]]
Answer = tuple[int, dict[str, str], bytes]


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path, TOKEN)


@pytest.fixture
def server_ca(pki: Pki) -> trustme.CA:
    return pki.server_ca


@pytest.fixture
def client_ca(pki: Pki) -> trustme.CA:
    return pki.client_ca


@pytest.fixture
async def serve(tmp_path: Path, pki: Pki) -> AsyncIterator[Serve]:
    """mTLS + a bearer token (``require: any``) on a free loopback port, as deploy.md sets it up."""
    running: list[RunningServer] = []

    async def start(*, access: bool = False, **auth: Any) -> RunningServer:
        server = pki.server(**{"require": "any", "subjects": ("kube-apiserver",), **auth})
        config = replace(Config(data_dir=tmp_path / "data"), server=server)
        if access:
            syslog = AccessSyslogConfig(udp=None, tcp=None)
            config = replace(config, access=AccessConfig(enabled=True, syslog=syslog))
        started = await start_server(config)
        running.append(started)
        return started

    yield start
    for server in running:
        await server.stop()


def _context(ca: trustme.CA, client: trustme.LeafCert | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    if client is not None:
        client.configure_cert(context)
    return context


async def _exchange(server: RunningServer, context: ssl.SSLContext, requests: list[bytes]) -> list[Answer]:
    """Send ``requests`` on one connection, one at a time; the answers (until the server closes)."""
    host, port = server.addresses[0]
    reader, writer = await asyncio.open_connection(host, port, ssl=context)
    answers: list[Answer] = []
    try:
        for request in requests:
            writer.write(request)
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            status_line, *lines = head.decode("latin-1").split("\r\n")
            headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            answers.append((int(status_line.split()[1]), headers, body))
            if headers.get("connection", "").lower() == "close":
                break
    finally:
        writer.close()
    return answers


def _request(path: str = "/audit", *, headers: bytes = b"", body: bytes = SAMPLE) -> bytes:
    return (
        f"POST {path}?timeout=30s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n".encode()
        + headers
        + b"\r\n"
        + body
    )


def _rejected(server: RunningServer, reason: str) -> float:
    metric = server.runner.app[METRICS].rejects.labels(reason=reason)
    return float(metric._value.get())


@pytest.mark.parametrize("path", ["/audit", "/ingest/access"])
async def test_non_utf8_authorization_is_401_folded(serve: Serve, server_ca: trustme.CA, path: str) -> None:
    """A29/A29b: ``Authorization: Bearer \\xff`` without a certificate, 200 times on one
    connection, is 200 x 401 counted as unauthenticated, not 503 internal; logged folded."""
    server = await serve(access=True)
    request = _request(path, headers=b"Authorization: Bearer \xff\xfe-not-utf-8\r\n")

    with capture_logs() as logs:
        answers = await _exchange(server, _context(server_ca), [request] * 200)

    assert [status for status, _, _ in answers] == [401] * 200
    assert {orjson.loads(body)["error"] for _, _, body in answers} == {"unauthenticated"}
    assert _rejected(server, "unauthenticated") == 200
    assert _rejected(server, "internal") == 0
    assert not [e for e in logs if e["log_level"] == "error"]
    rejected = [e for e in logs if e["event"] == "batch.rejected"]
    assert len(rejected) <= 11  # 10 a second, then one sum


async def test_non_utf8_authorization_with_a_certificate_is_401(
    serve: Serve, server_ca: trustme.CA, client_ca: trustme.CA
) -> None:
    """A29: with a valid certificate and ``require: all`` the undecodable token is a wrong token."""
    server = await serve(require="all")
    context = _context(server_ca, client_ca.issue_cert("kube-apiserver"))
    good = f"Authorization: Bearer {TOKEN}\r\n".encode()

    answers = await _exchange(
        server, context, [_request(headers=b"Authorization: Bearer \xff\r\n"), _request(headers=good)]
    )

    assert [status for status, _, _ in answers] == [401, 200]


@pytest.mark.parametrize(
    ("name", "header"),
    [
        ("A33 obs-fold", f"Authorization: Bearer\r\n {TOKEN}\r\n".encode()),
        ("A34 NUL", f"Authorization: Bearer {TOKEN}\x00\r\n".encode()),
        ("I25 br", b"Content-Encoding: br\r\n"),
        ("I27 zstd", b"Content-Encoding: zstd\r\n"),
    ],
)
async def test_parser_refusals_echo_nothing(
    serve: Serve, server_ca: trustme.CA, name: str, header: bytes
) -> None:
    """A33/A34/I25/I27 (15c): aiohttp's own 400s are a fixed JSON body, echo no header (no
    token), name no library, and are logged as a folded warning, not an error."""
    server = await serve()

    with capture_logs() as logs:
        ((status, headers, body),) = await _exchange(server, _context(server_ca), [_request(headers=header)])

    assert status == 400, name
    assert orjson.loads(body) == {"error": "bad-http", "reason": "malformed HTTP request"}
    assert headers["server"] == "ingress-audit"
    assert TOKEN.encode() not in body
    assert _rejected(server, "bad-http") == 1
    assert [(e["event"], e["log_level"]) for e in logs] == [("batch.rejected", "warning")]
    assert TOKEN not in orjson.dumps(logs).decode()


async def test_server_header_names_no_versions(serve: Serve, server_ca: trustme.CA) -> None:
    """15(b): every answer, ours (200, 401, 404) or aiohttp's, says ``Server: ingress-audit``."""
    server = await serve()
    get = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    missing = b"GET /nonexistent HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    auth = f"Authorization: Bearer {TOKEN}\r\n".encode()

    answers = await _exchange(server, _context(server_ca), [get, missing, _request(), _request(headers=auth)])

    assert [status for status, _, _ in answers] == [200, 404, 401, 200]
    assert {headers["server"] for _, headers, _ in answers} == {"ingress-audit"}


async def test_deflate_header_on_a_gzip_body_is_400(serve: Serve, server_ca: trustme.CA) -> None:
    """I24 (12): a body that does not decode as its Content-Encoding says is 400, not 503 internal."""
    server = await serve()
    headers = f"Authorization: Bearer {TOKEN}\r\nContent-Encoding: deflate\r\n".encode()

    with capture_logs() as logs:
        ((status, _, body),) = await _exchange(
            server, _context(server_ca), [_request(headers=headers, body=gzip.compress(SAMPLE))]
        )

    assert status == 400
    assert orjson.loads(body)["error"] == "undecodable-body"
    assert _rejected(server, "internal") == 0
    assert not [e for e in logs if e["log_level"] == "error"]


async def test_client_gone_mid_body_is_counted_as_such(serve: Serve, server_ca: trustme.CA) -> None:
    """C8 (12): a client that closes mid-body is counted as ``client-gone``, not ``internal``,
    and logs no error."""
    server = await serve()
    host, port = server.addresses[0]
    request = _request(headers=f"Authorization: Bearer {TOKEN}\r\n".encode())

    with capture_logs() as logs:
        for _ in range(3):
            _, writer = await asyncio.open_connection(host, port, ssl=_context(server_ca))
            writer.write(request[: len(request) - len(SAMPLE) // 2])
            await writer.drain()
            writer.transport.abort()
        for _ in range(100):
            if _rejected(server, "client-gone") == 3:
                break
            await asyncio.sleep(0.05)

    assert _rejected(server, "client-gone") == 3
    assert _rejected(server, "internal") == 0
    assert not [e for e in logs if e["log_level"] == "error"]


async def test_metrics_can_require_the_audit_credentials(
    serve: Serve, server_ca: trustme.CA, client_ca: trustme.CA
) -> None:
    """15(a): with ``protect_metrics`` /metrics needs the /audit credentials; /healthz and
    /readyz's status stay open for kubelet probes, which present none."""
    server = await serve(protect_metrics=True)

    def get(path: str, auth: bytes = b"") -> bytes:
        return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode() + auth + b"\r\n"

    token = f"Authorization: Bearer {TOKEN}\r\n".encode()
    anonymous = await _exchange(
        server, _context(server_ca), [get("/metrics"), get("/healthz"), get("/readyz")]
    )
    with_token = await _exchange(server, _context(server_ca), [get("/metrics", token), get("/readyz", token)])
    with_cert = await _exchange(
        server, _context(server_ca, client_ca.issue_cert("kube-apiserver")), [get("/metrics")]
    )

    assert [status for status, _, _ in anonymous] == [401, 200, 200]
    assert orjson.loads(anonymous[2][2]) == {"status": "ready"}
    assert [status for status, _, _ in with_token] == [200, 200]
    assert b"ingress_audit_" in with_token[0][2]
    assert "sinks" in orjson.loads(with_token[1][2])
    assert with_cert[0][0] == 200


async def test_readyz_shows_no_detail_without_credentials(serve: Serve, server_ca: trustme.CA) -> None:
    """15(a): an anonymous /readyz names each sink's health but none of its detail strings,
    which can carry a sink's address; with credentials the detail is there."""
    server = await serve()
    get = b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n"

    ((_, _, anonymous),) = await _exchange(server, _context(server_ca), [get + b"\r\n"])
    ((_, _, trusted),) = await _exchange(
        server, _context(server_ca), [get + f"Authorization: Bearer {TOKEN}\r\n\r\n".encode()]
    )

    assert orjson.loads(anonymous)["sinks"] == {"jsonl": {"ok": True, "lag_records": 0}}
    assert "detail" not in orjson.loads(anonymous)["state"]
    assert orjson.loads(trusted)["sinks"]["jsonl"]["detail"] == ""


async def test_refused_handshakes_are_counted_and_logged(
    serve: Serve, server_ca: trustme.CA, client_ca: trustme.CA
) -> None:
    """A7/A8 (15e): a client certificate from another CA or an expired one fails the handshake,
    and now each such connection is counted by reason and logged (folded), not silent."""
    server = await serve()
    host, port = server.addresses[0]
    rogue = _context(server_ca, trustme.CA().issue_cert("kube-apiserver"))
    expired = _context(
        server_ca,
        client_ca.issue_cert(
            "kube-apiserver",
            not_before=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
            not_after=dt.datetime(2021, 1, 1, tzinfo=dt.UTC),
        ),
    )
    old = _context(server_ca)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    with contextlib.suppress(ssl.SSLError):  # let the client offer what it can
        old.set_ciphers("ALL:@SECLEVEL=0")

    with capture_logs() as logs:
        for context in (rogue, expired, old):
            with contextlib.suppress(OSError, ssl.SSLError):
                reader, writer = await asyncio.open_connection(host, port, ssl=context)
                writer.write(_request())  # TLS 1.3: the client learns of the refusal on its first read
                await writer.drain()
                await asyncio.wait_for(reader.read(), timeout=5)
                writer.close()
        for _ in range(100):
            if len([e for e in logs if e["event"] == "tls.handshake_failed"]) >= 2:
                break
            await asyncio.sleep(0.05)

    failures = server.runner.app[METRICS].tls_failures
    assert failures.labels(reason="certificate-verify-failed")._value.get() == 2
    assert failures.labels(reason="protocol-version")._value.get() == 1
    lines = [e for e in logs if e["event"] == "tls.handshake_failed"]
    assert {e["log_level"] for e in lines} == {"warning"}
    assert sum(e["connections"] for e in lines) == 3
