"""The webhook port's accept loop: a cap on open connections that idle ones cannot hold against a
real client, and early closes for a TLS handshake or a first request that does not come
(security review finding 4, C1/C2/C6)."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import event_list, make_config, make_event
from tests.servers import Certs
from webhook.config import Config, TlsConfig
from webhook.server.app import METRICS, RunningServer, start_server

JSON = {"Content-Type": "application/json"}


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[list[RunningServer]]:
    started: list[RunningServer] = []
    yield started
    for server in started:
        await server.stop()


async def _start(running: list[RunningServer], config: Config) -> tuple[str, int]:
    server = await start_server(replace(config, server=replace(config.server, host="127.0.0.1", port=0)))
    running.append(server)
    return server.addresses[0]


def _closed(running: list[RunningServer], reason: str) -> float:
    registry = running[0].runner.app[METRICS].registry
    value = registry.get_sample_value("ingress_audit_connections_closed_total", {"reason": reason})
    return value or 0.0


def _open(running: list[RunningServer]) -> float:
    registry = running[0].runner.app[METRICS].registry
    return registry.get_sample_value("ingress_audit_connections_open") or 0.0


async def _idle(host: str, port: int, n: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    return [await asyncio.open_connection(host, port) for _ in range(n)]


async def _post(host: str, port: int, scheme: str = "http", context: ssl.SSLContext | None = None) -> int:
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context or False)) as session,
        session.post(f"{scheme}://{host}:{port}/audit", data=event_list(make_event()), headers=JSON) as resp,
    ):
        return resp.status


async def _closed_by_server(reader: asyncio.StreamReader, within_s: float) -> bool:
    """Whether the server closes the connection within the time (what it still sent is skipped)."""
    try:
        async with asyncio.timeout(within_s):
            await reader.read()
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


async def test_at_the_cap_a_real_request_displaces_the_oldest_idle_connection(
    tmp_path: Path, running: list[RunningServer]
) -> None:
    """Three idle connections fill a cap of 3; a client that talks still gets its 200, and the
    oldest idle connection is the one closed."""
    host, port = await _start(running, make_config(tmp_path, max_connections=3))
    idle = await _idle(host, port, 3)
    await asyncio.sleep(0.1)
    assert _open(running) == 3

    assert await _post(host, port) == 200

    assert await _closed_by_server(idle[0][0], within_s=2)
    assert _closed(running, "displaced") >= 1
    for _, writer in idle:
        writer.close()


async def test_connections_idle_after_an_answer_are_displaced_too(
    tmp_path: Path, running: list[RunningServer]
) -> None:
    """One unauthenticated GET per connection, then idle on keep-alive, cannot hold the cap
    against the apiserver for keepalive_timeout_s: the oldest idle one makes room."""
    host, port = await _start(running, make_config(tmp_path, max_connections=2, keepalive_timeout_s=30))
    idle = await _idle(host, port, 2)
    for reader, writer in idle:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b" 200 " in await reader.readuntil(b"\r\n")

    assert await _post(host, port) == 200

    assert await _closed_by_server(idle[0][0], within_s=2)
    assert _closed(running, "displaced") == 1
    for _, writer in idle:
        writer.close()


async def test_when_every_connection_is_busy_a_new_one_is_closed_at_once(
    tmp_path: Path, running: list[RunningServer]
) -> None:
    """Connections that have sent a request are not displaced: at the cap a new one is refused."""
    host, port = await _start(running, make_config(tmp_path, max_connections=2, body_timeout_s=5))
    busy = await _idle(host, port, 2)
    for _, writer in busy:  # a request head, then a body that never comes
        writer.write(b"POST /audit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
        writer.write(b"Content-Length: 100\r\n\r\n{")
        await writer.drain()
    await asyncio.sleep(0.2)

    reader, writer = await asyncio.open_connection(host, port)
    started = time.monotonic()

    assert await _closed_by_server(reader, within_s=2)
    assert time.monotonic() - started < 1.0
    assert _closed(running, "refused") == 1
    for _, other in [*busy, (reader, writer)]:
        other.close()


async def test_a_connection_that_sends_no_request_is_closed_after_header_timeout(
    tmp_path: Path, running: list[RunningServer]
) -> None:
    """Silence, or a request head that never ends, is cut at header_timeout_s, not at the
    75 s keep-alive; a connection that sent its request keeps its keep-alive."""
    config = make_config(tmp_path, header_timeout_s=0.3, keepalive_timeout_s=30)
    host, port = await _start(running, config)
    silent, slow = await _idle(host, port, 2)
    slow[1].write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    talker = await asyncio.open_connection(host, port)
    talker[1].write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b" 200 " in await talker[0].readuntil(b"\r\n")

    assert await _closed_by_server(silent[0], within_s=3)
    assert await _closed_by_server(slow[0], within_s=3)
    assert _closed(running, "header-timeout") == 2
    assert not talker[0].at_eof()
    for _, writer in (silent, slow, talker):
        writer.close()


def _tls_config(tmp_path: Path, certs: Certs, **server: object) -> Config:
    config = make_config(tmp_path, **server)
    tls = TlsConfig(cert_file=certs.server_cert, key_file=certs.server_key)
    return replace(config, server=replace(config.server, tls=tls))


async def test_a_tls_handshake_that_does_not_come_is_cut_at_its_timeout(
    tmp_path: Path, running: list[RunningServer], server_certs: Certs
) -> None:
    """A TCP connection that sends no ClientHello is closed at tls_handshake_timeout_s (it was
    60 s), counted; real TLS clients meanwhile get their 200."""
    host, port = await _start(running, _tls_config(tmp_path, server_certs, tls_handshake_timeout_s=0.3))
    (reader, writer), *_ = await _idle(host, port, 1)
    context = ssl.create_default_context(cafile=str(server_certs.ca_file))

    assert await _post(host, port, "https", context) == 200
    assert await _closed_by_server(reader, within_s=3)
    assert _closed(running, "handshake-timeout") == 1
    writer.close()


async def test_a_failed_tls_handshake_is_counted(
    tmp_path: Path, running: list[RunningServer], server_certs: Certs
) -> None:
    """Plain HTTP sent to the TLS port fails the handshake: counted, closed, nothing logged."""
    host, port = await _start(running, _tls_config(tmp_path, server_certs))
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")

    assert await _closed_by_server(reader, within_s=3)
    await asyncio.sleep(0.05)
    assert _closed(running, "handshake-failed") == 1
    assert _open(running) == 0
    writer.close()


async def test_a_tls_connection_silent_after_its_handshake_is_closed(
    tmp_path: Path, running: list[RunningServer], server_certs: Certs
) -> None:
    """TLS done, then silence: closed at header_timeout_s (it was the 75 s keep-alive)."""
    host, port = await _start(running, _tls_config(tmp_path, server_certs, header_timeout_s=0.3))
    context = ssl.create_default_context(cafile=str(server_certs.ca_file))
    reader, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname="127.0.0.1")

    assert await _closed_by_server(reader, within_s=3)
    assert _closed(running, "header-timeout") == 1
    writer.close()


@pytest.mark.parametrize("split", [1, 2, 3])
async def test_a_head_whose_end_straddles_two_reads_counts_as_in(
    tmp_path: Path, running: list[RunningServer], split: int
) -> None:
    """``\\r\\n\\r\\n`` cut across two writes: the head is in, so the first-request timeout does
    not close the connection while its body is still on its way."""
    host, port = await _start(running, make_config(tmp_path, header_timeout_s=0.5))
    body = event_list(make_event())
    head = (
        f"POST /audit HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(head[:-split])
    await writer.drain()
    await asyncio.sleep(0.1)
    writer.write(head[-split:])
    await writer.drain()
    await asyncio.sleep(1.0)  # past the timeout: only a head not seen would be closed by now
    writer.write(body)
    await writer.drain()

    async with asyncio.timeout(10):
        answer = await reader.read()
    writer.close()

    assert answer.startswith(b"HTTP/1.1 200")
    assert _closed(running, "header-timeout") == 0
