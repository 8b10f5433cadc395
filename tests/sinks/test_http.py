"""The generic HTTP sink, and the client the Loki, Elasticsearch and HEC sinks share.

No real receiver runs here: ``fake_servers.FakeReceiver`` is a loopback aiohttp server that
takes a JSON array or NDJSON, checks credentials, and fails on command (429 + Retry-After,
5xx, slow answers); TLS uses a trustme CA.
"""

from __future__ import annotations

import asyncio
import socket
import time
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
import yaml
from pytest_aiohttp import AiohttpClient, AiohttpServer
from structlog.testing import capture_logs

from tests.conftest import Client, event_list, records_in, settle
from tests.paths import ROOT
from tests.sinks.fake_servers import (
    FakeReceiver,
    Fault,
    app_config,
    base_url,
    events,
    sample_records,
    tls_setup,
)
from webhook.cli import main
from webhook.config import parse_config
from webhook.errors import ConfigError, SinkError
from webhook.server.app import create_app
from webhook.sinks.http import BasicAuth, ClientOptions, HttpOptions, HttpSink, TokenAuth, retry_after

TOKEN = "s3cr3t-token-0123456789"
JSON = {"Content-Type": "application/json"}


def _token_file(tmp_path: Path, value: str = TOKEN) -> Path:
    path = tmp_path / "token"
    path.write_text(value + "\n")
    return path


async def _sink(url: str, client: ClientOptions | None = None, **options: Any) -> HttpSink:
    sink = HttpSink("http", HttpOptions(url=url, client=client or ClientOptions(), **options))
    await sink.open()
    return sink


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_a_batch_is_one_json_array_with_headers_and_bearer_token(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    """``format: json``: the records as one array, extra headers, the token from its file."""
    fake = FakeReceiver(authorization=f"Bearer {TOKEN}")
    server = await aiohttp_server(fake.app())
    auth = TokenAuth(scheme="Bearer", file=_token_file(tmp_path), option="bearer_token_file")
    batch = sample_records(3)
    sink = await _sink(f"{base_url(server)}/ingest", ClientOptions(auth=auth, headers=(("X-Team", "infra"),)))

    await sink.send(batch)
    await sink.aclose()

    assert fake.records == [r.record for r in batch]
    (seen,) = fake.requests
    assert seen.body == b"[" + b",".join(r.json for r in batch) + b"]"
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["X-Team"] == "infra"
    assert seen.headers["User-Agent"].startswith("ingress-audit/")


async def test_ndjson_gzip_and_basic_auth(aiohttp_server: AiohttpServer, tmp_path: Path) -> None:
    """``format: ndjson`` with ``gzip``: one line per record, compressed; basic credentials."""
    password = tmp_path / "password"
    password.write_text("pa55word\n")
    fake = FakeReceiver(authorization="Basic YXVkaXQ6cGE1NXdvcmQ=")  # audit:pa55word
    server = await aiohttp_server(fake.app())
    batch = sample_records(4)
    client = ClientOptions(auth=BasicAuth(username="audit", password_file=password), gzip=True)
    sink = await _sink(f"{base_url(server)}/ingest", client, format="ndjson")

    await sink.send(batch)
    await sink.aclose()

    assert fake.records == [r.record for r in batch]
    assert fake.requests[0].headers["Content-Encoding"] == "gzip"
    assert fake.requests[0].headers["Content-Type"] == "application/x-ndjson"
    assert fake.requests[0].body == b"".join(r.json + b"\n" for r in batch)  # as decompressed


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        *((status, True) for status in (408, 425, 429, 500, 502, 503)),
        *((status, False) for status in (400, 404, 405, 413, 422, 301)),
    ],
)
async def test_answers_map_to_retry_or_refuse(
    aiohttp_server: AiohttpServer, status: int, retryable: bool
) -> None:
    """408/425/429/5xx are retried; other 4xx (and an unfollowed redirect) refuse the batch."""
    fake = FakeReceiver()
    fake.faults.append(Fault(status, headers={"Location": "/elsewhere"} if status == 301 else {}))
    server = await aiohttp_server(fake.app())
    sink = await _sink(f"{base_url(server)}/ingest")

    with pytest.raises(SinkError) as info:
        await sink.send(sample_records(1))
    await sink.aclose()

    assert info.value.retryable is retryable
    assert str(status) in info.value.message
    assert len(fake.requests) == 1


async def test_retry_after_is_passed_to_the_loop(aiohttp_server: AiohttpServer) -> None:
    """429 + ``Retry-After: 7``: a retryable error that asks for 7 s."""
    fake = FakeReceiver()
    fake.faults.append(Fault(429, headers={"Retry-After": "7"}))
    server = await aiohttp_server(fake.app())
    sink = await _sink(f"{base_url(server)}/ingest")

    with pytest.raises(SinkError) as info:
        await sink.send(sample_records(1))
    await sink.aclose()

    assert info.value.retryable is True
    assert info.value.retry_after_s == 7.0


def test_retry_after_forms() -> None:
    """Seconds or an HTTP date; capped at five minutes; garbage is ignored."""
    assert retry_after("3") == 3.0
    assert retry_after(None) is None
    assert retry_after("soon") is None
    assert retry_after("86400") == 300.0
    in_a_minute = retry_after(formatdate(time.time() + 60, usegmt=True))
    assert in_a_minute is not None
    assert 55 <= in_a_minute <= 61
    assert retry_after(formatdate(time.time() - 60, usegmt=True)) == 0.0


async def test_refused_credentials_are_retried_with_the_rotated_file(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    """A 401 is retryable (a rotated token must not dead-letter records) and the file is re-read."""
    fake = FakeReceiver(authorization="Bearer new-token-abcdef")
    server = await aiohttp_server(fake.app())
    token = _token_file(tmp_path, "old-token-abcdef")
    auth = TokenAuth(scheme="Bearer", file=token, option="bearer_token_file")
    sink = await _sink(f"{base_url(server)}/ingest", ClientOptions(auth=auth))

    with pytest.raises(SinkError) as info:
        await sink.send(sample_records(1))
    assert info.value.retryable is True
    assert "401" in info.value.message
    token.write_text("new-token-abcdef\n")
    await sink.send(sample_records(1))
    await sink.aclose()

    assert len(fake.records) == 1


async def test_a_slow_answer_times_out_as_retryable(aiohttp_server: AiohttpServer) -> None:
    """An endpoint slower than ``timeout_s`` is a retryable failure, not a hang."""
    fake = FakeReceiver()
    fake.faults.append(Fault(0, delay_s=2.0))
    server = await aiohttp_server(fake.app())
    sink = await _sink(f"{base_url(server)}/ingest", ClientOptions(timeout_s=0.2))

    started = time.monotonic()
    with pytest.raises(SinkError, match=r"timed out after 0\.2s") as info:
        await sink.send(sample_records(1))
    await sink.aclose()

    assert info.value.retryable is True
    assert time.monotonic() - started < 1.5


async def test_nothing_listening_is_retryable() -> None:
    """Connection refused: retryable, and the message says what failed without the URL."""
    sink = await _sink(f"http://127.0.0.1:{_free_port()}/ingest")

    with pytest.raises(SinkError) as info:
        await sink.send(sample_records(1))
    await sink.aclose()

    assert info.value.retryable is True
    assert "127.0.0.1" not in info.value.message


async def test_credentials_never_reach_errors_or_logs(aiohttp_server: AiohttpServer, tmp_path: Path) -> None:
    """Refused, failing or unreadable: no message and no log line holds the token."""
    fake = FakeReceiver(authorization="Bearer something-else")
    fake.faults.append(Fault(500, body=TOKEN.encode()))
    server = await aiohttp_server(fake.app())
    auth = TokenAuth(scheme="Bearer", file=_token_file(tmp_path), option="bearer_token_file")
    messages = []
    with capture_logs() as logs:
        sink = await _sink(f"{base_url(server)}/ingest", ClientOptions(auth=auth))
        for _ in range(2):
            with pytest.raises(SinkError) as info:
                await sink.send(sample_records(1))
            messages.append(info.value.message)
        await sink.aclose()

    assert TOKEN not in repr(messages) + repr(logs)


async def test_an_unreadable_credential_file_fails_open_retryably(tmp_path: Path) -> None:
    """A missing or empty token file: ``open`` fails with the option's name, to be retried."""
    missing = TokenAuth(scheme="Bearer", file=tmp_path / "nope", option="bearer_token_file")
    with pytest.raises(SinkError, match="cannot read bearer_token_file") as info:
        await _sink("http://127.0.0.1:9/x", ClientOptions(auth=missing))
    assert info.value.retryable is True

    empty = TokenAuth(scheme="Bearer", file=_token_file(tmp_path, ""), option="bearer_token_file")
    with pytest.raises(SinkError, match="bearer_token_file is empty"):
        await _sink("http://127.0.0.1:9/x", ClientOptions(auth=empty))


async def test_tls_trusts_only_the_configured_ca(aiohttp_server: AiohttpServer, tmp_path: Path) -> None:
    """``tls.ca_file`` verifies the server; without it (system trust) the handshake fails."""
    tls = tls_setup(tmp_path)
    fake = FakeReceiver()
    server = await aiohttp_server(fake.app(), ssl=tls.server_context())
    url = f"{base_url(server)}/ingest"
    assert url.startswith("https://")

    trusted = await _sink(url, ClientOptions(ca_file=tls.ca_file))
    await trusted.send(sample_records(1))
    await trusted.aclose()

    untrusted = await _sink(url)
    with pytest.raises(SinkError, match="not trusted") as info:
        await untrusted.send(sample_records(1))
    await untrusted.aclose()
    assert info.value.retryable is True

    unverified = await _sink(url, ClientOptions(insecure_skip_verify=True))
    await unverified.send(sample_records(1))
    await unverified.aclose()
    assert len(fake.records) == 2


async def test_mutual_tls_sends_the_client_certificate(aiohttp_server: AiohttpServer, tmp_path: Path) -> None:
    """A server that requires a client certificate accepts ``tls.cert_file`` + ``tls.key_file``."""
    tls = tls_setup(tmp_path)
    fake = FakeReceiver()
    server = await aiohttp_server(fake.app(), ssl=tls.server_context(require_client_cert=True))
    url = f"{base_url(server)}/ingest"

    without = await _sink(url, ClientOptions(ca_file=tls.ca_file))
    with pytest.raises(SinkError):
        await without.send(sample_records(1))
    await without.aclose()

    client = ClientOptions(ca_file=tls.ca_file, cert_file=tls.cert_file, key_file=tls.key_file)
    with_cert = await _sink(url, client)
    await with_cert.send(sample_records(2))
    await with_cert.aclose()
    assert len(fake.records) == 2


async def test_health(aiohttp_server: AiohttpServer) -> None:
    """Reachable is healthy (even a 405 to HEAD); 5xx and unreachable are not; health_url decides."""
    fake = FakeReceiver()
    server = await aiohttp_server(fake.app())
    base = base_url(server)

    sink = await _sink(f"{base}/ingest")
    assert (await sink.health()).ok
    fake.down = True
    down = await sink.health()
    assert not down.ok
    assert "503" in down.detail
    await sink.aclose()

    fake.down = False
    checked = await _sink(f"{base}/ingest", health_url=f"{base}/healthz")
    assert (await checked.health()).ok
    await checked.aclose()
    missing = await _sink(f"{base}/ingest", health_url=f"{base}/nope")
    assert not (await missing.health()).ok
    await missing.aclose()

    nobody = HttpSink("http", HttpOptions(url=f"http://127.0.0.1:{_free_port()}/ingest"))
    assert not (await nobody.health()).ok  # opens on demand, then fails to connect
    await nobody.aclose()


async def test_end_to_end_every_record_arrives_once(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    """Posted to /audit, delivered to the endpoint once each, with the ids the JSONL sink has."""
    fake = FakeReceiver(authorization=f"Bearer {TOKEN}")
    server = await aiohttp_server(fake.app())
    config = app_config(
        tmp_path,
        {
            "type": "http",
            "url": f"{base_url(server)}/ingest",
            "format": "ndjson",
            "bearer_token_file": str(_token_file(tmp_path)),
            "batch": {"max_events": 7, "timeout_s": 0},
        },
    )
    client: Client = await aiohttp_client(create_app(config))

    for start in (0, 20):
        assert (
            await client.post("/audit", data=event_list(*events(20, start=start)), headers=JSON)
        ).status == 200
    await settle(client)

    ids = [r["id"] for r in fake.records if r["type"] == "audit"]  # 30 changes: a burst alert too
    assert len(ids) == len(set(ids)) == 40
    assert sorted(ids) == sorted(r["id"] for r in records_in(config))


async def test_end_to_end_delivery_resumes_when_the_endpoint_comes_up(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    """Nothing listening at first (connection refused), then a server: all delivered, once."""
    port = _free_port()
    config = app_config(tmp_path, {"type": "http", "url": f"http://127.0.0.1:{port}/ingest"})
    client: Client = await aiohttp_client(create_app(config))
    assert (await client.post("/audit", data=event_list(*events(10)), headers=JSON)).status == 200
    await asyncio.sleep(0.2)  # a few refused attempts
    ready = await (await client.get("/readyz")).json()
    assert ready["sinks"]["http"]["ok"] is False
    assert ready["sinks"]["http"]["lag_records"] == 10

    fake = FakeReceiver()
    await aiohttp_server(fake.app(), port=port)
    await settle(client)

    assert sorted(r["id"] for r in fake.records) == sorted(r["id"] for r in records_in(config))
    assert len(fake.records) == 10


async def test_end_to_end_retry_after_is_honoured(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    """429 + ``Retry-After: 1``: the next attempt waits a second, although the backoff is 10 ms."""
    fake = FakeReceiver()
    fake.faults.append(Fault(429, headers={"Retry-After": "1"}))
    server = await aiohttp_server(fake.app())
    config = app_config(tmp_path, {"type": "http", "url": f"{base_url(server)}/ingest"})
    client: Client = await aiohttp_client(create_app(config))

    assert (await client.post("/audit", data=event_list(*events(3)), headers=JSON)).status == 200
    await settle(client)

    first, second = fake.requests
    assert len(fake.records) == 3
    assert second.at - first.at >= 1.0


@pytest.mark.parametrize(
    ("options", "path", "words"),
    [
        ({}, "$.sinks[1]", "'url'"),
        ({"url": "ftp://x"}, "$.sinks[1].url", "pattern"),
        ({"url": "https://user:pw@example.test/x"}, "$.sinks[1].url", "pattern"),
        ({"url": "https://x", "fromat": "json"}, "$.sinks[1]", "'fromat'"),
        ({"url": "https://x", "format": "xml"}, "$.sinks[1].format", "'ndjson'"),
        ({"url": "https://x", "headers": {"X Bad": "1"}}, "$.sinks[1].headers", "pattern"),
        ({"url": "https://x", "tls": {"ca": "/x"}}, "$.sinks[1].tls", "'ca'"),
        ({"url": "https://x", "basic": {"username": "u"}}, "$.sinks[1].basic", "'password_file'"),
        ({"url": "https://x", "timeout_s": 0}, "$.sinks[1].timeout_s", "exclusiveMinimum"),
    ],
)
def test_invalid_options_are_reported_with_a_path(options: dict[str, Any], path: str, words: str) -> None:
    """Unknown or invalid ``http`` options fail validation, naming where."""
    with pytest.raises(ConfigError) as info:
        parse_config({"sinks": [{"type": "jsonl"}, {"type": "http", **options}]})
    assert any(line.startswith(f"{path}: ") and words in line for line in info.value.errors), (
        info.value.errors
    )


def test_inconsistent_options_are_refused() -> None:
    """One credential at a time, credentials not in headers, a key only with its certificate."""
    both = {"bearer_token_file": "/t", "basic": {"username": "u", "password_file": "/p"}}
    headers = {"authorization": "Bearer s3cr3t", "X-Ok": "1"}
    sink = {"type": "http", "url": "https://x", **both, "headers": headers, "tls": {"key_file": "/k"}}
    with pytest.raises(ConfigError) as info:
        parse_config({"sinks": [sink]})
    assert info.value.errors == (
        "$.sinks[type=http]: set one of bearer_token_file, basic, not several",
        "$.sinks[type=http].headers: set by the sink: authorization",
        "$.sinks[type=http].tls.key_file: requires tls.cert_file",
    )
    assert "s3cr3t" not in str(info.value.errors)


def test_check_config_rejects_an_unknown_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``check-config``: exit 1 and the path of the unknown key."""
    path = tmp_path / "config.yaml"
    path.write_text(
        "sinks:\n  - type: http\n    url: https://collector.example.test/in\n    bearer_token: s3cr3t\n"
    )

    assert main(["check-config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "$.sinks[0]: fails 'additionalProperties' (unknown key 'bearer_token')" in err
    assert "s3cr3t" not in err


def test_every_example_in_docs_sinks_md_is_a_valid_config() -> None:
    """The YAML blocks users copy from docs/sinks.md pass validation, for every sink type."""
    text = (ROOT / "docs" / "sinks.md").read_text("utf-8")
    blocks = [block.split("```", 1)[0] for block in text.split("```yaml\n")[1:]]
    assert len(blocks) >= 7
    for block in blocks:
        parse_config(yaml.safe_load(block))
