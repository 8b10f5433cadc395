"""The syslog listeners under abuse: forged floods, one loud peer, idle TCP holders.

Everything goes to 127.0.0.1 (and 127.0.0.2, another loopback source) in bounded loops.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import structlog

from tests.access.access_lines import nginx_line
from tests.conftest import CAPTURES, make_config, post_capture, read_jsonl, settle
from tests.servers import free_port
from webhook.access.settings import AccessConfig, AccessRateLimitConfig, AccessSyslogConfig
from webhook.config import Config, _sink, default_sinks
from webhook.server.app import RUNTIME, create_app
from webhook.sources.syslog import EVICT_IDLE_S

MiB = 1024 * 1024
HEADER = b"<190>Nov 25 21:00:00 node-1 nginx: "


def _config(tmp_path: Path, *, udp: int | None = None, tcp: int | None = None, **syslog: Any) -> Config:
    listen = AccessSyslogConfig(
        udp=None if udp is None else f"127.0.0.1:{udp}",
        tcp=None if tcp is None else f"127.0.0.1:{tcp}",
        **syslog,
    )
    return replace(make_config(tmp_path), access=AccessConfig(enabled=True, syslog=listen))


def _forged(i: int, addr: str = "198.51.100.9") -> bytes:
    return HEADER + nginx_line(t=time.time(), addr=addr, status=401, req_id=f"{i:032x}")


async def _metric(client: Any, name: str, **labels: str) -> float:
    text = await (await client.get("/metrics")).text()
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if m and ",".join(sorted((m.group(1) or "").split(","))) == want:
            return float(m.group(2))
    return 0.0


async def _until(check: Any, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def _received(client: Any) -> float:
    """Datagrams the UDP listener took in: parsed, unparsed or dropped by the rate limit."""
    counts = [
        await _metric(client, "ingress_audit_access_lines_total", input="syslog-udp", result=result)
        for result in ("parsed", "unparsed")
    ]
    limited = await _metric(
        client, "ingress_audit_access_lines_dropped_total", input="syslog-udp", reason="rate-limited"
    )
    return sum(counts) + limited


async def _send(client: Any, udp: int, count: int, chunk: int = 20) -> None:
    """Forged 401 lines from 127.0.0.1, ``chunk`` at a time, each chunk waited for until read
    or no more arrive (a loaded machine would otherwise lose most in the socket buffer)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for first in range(0, count, chunk):
            before = await _received(client)
            for i in range(first, min(first + chunk, count)):
                sock.sendto(_forged(i), ("127.0.0.1", udp))
            target, seen, deadline = before + min(chunk, count - first), before, time.monotonic() + 2.0
            while time.monotonic() < deadline:
                await asyncio.sleep(0.01)
                now = await _received(client)
                if now >= target or (now == seen and now > before):
                    break
                seen = now


def _audit_ids(path: Path) -> list[str]:
    return [r["id"] for r in read_jsonl(path) if r["type"] == "audit"]


@pytest.mark.parametrize("shared", [True, False], ids=["one-shared-file", "default-sinks"])
async def test_a_forged_flood_does_not_rotate_audit_records_away(
    aiohttp_client: Any, tmp_path: Path, shared: bool
) -> None:
    """Y5: a paced flood of forged 401 lines over UDP rotates the access file, never the audit
    records (with one shared file, as access and audit records once had, it pushes them out of
    records.jsonl)."""
    udp = free_port(socket.SOCK_DGRAM)
    small = {"max_bytes": MiB // 2, "backups": 1}
    sinks = (
        (_sink({"type": "jsonl", **small}),)
        if shared
        else tuple(replace(s, options=replace(s.options, **small)) for s in default_sinks(True))
    )
    config = replace(_config(tmp_path, udp=udp), sinks=sinks)
    client = await aiohttp_client(create_app(config))
    for name in ("0001.json", "0002.json", "0003.json"):
        assert (await post_capture(client, CAPTURES / name))[0] == 200
    await settle(client)
    records = config.data_dir / "records.jsonl"
    audit = _audit_ids(records)
    assert audit

    await _send(client, udp, 1500)  # ~1 MB of access records
    await client.app[RUNTIME].access.flush(everything=True)
    await settle(client)

    if shared:
        assert _audit_ids(records) == []  # the finding: the audit history was rotated away
        return
    assert _audit_ids(records) == audit  # still in records.jsonl, not moved to .1
    assert not (config.data_dir / "records.jsonl.1").exists()
    assert {r["type"] for r in read_jsonl(records)} <= {"audit", "alert"}
    assert (config.data_dir / "access.jsonl.1").exists()  # the flood was larger than max_bytes


async def test_a_loud_peer_is_limited_and_counted_while_another_gets_through(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    """One source floods far beyond its bucket: the excess is dropped and counted; a second
    source's lines all arrive."""
    udp = free_port(socket.SOCK_DGRAM)
    limit = AccessRateLimitConfig(lines_per_s=1, burst=100)
    config = _config(tmp_path, udp=udp, rate_limit=limit)
    client = await aiohttp_client(create_app(config))

    started = time.monotonic()
    await _send(client, udp, 1000)
    elapsed = time.monotonic() - started
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as quiet:
        quiet.bind(("127.0.0.2", 0))
        for i in range(10):
            quiet.sendto(_forged(5000 + i, addr="192.0.2.50"), ("127.0.0.1", udp))

    def from_ip(ip: str) -> int:
        access = read_jsonl(config.data_dir / "access.jsonl")
        return sum(1 for r in access if r["type"] == "access" and r["client"]["ip"] == ip)

    async def quiet_arrived() -> bool:
        return from_ip("192.0.2.50") == 10

    await _until(quiet_arrived)
    await client.app[RUNTIME].access.flush(everything=True)
    await settle(client)
    loud_kept = from_ip("198.51.100.9")
    assert 100 <= loud_kept <= 100 + (elapsed + 1)
    dropped = await _metric(
        client, "ingress_audit_access_lines_dropped_total", input="syslog-udp", reason="rate-limited"
    )
    assert dropped >= 500  # most of the flood (a datagram or two may be lost by the kernel)
    assert dropped + loud_kept <= 1000
    assert "192.0.2" not in "".join(
        line for line in (await (await client.get("/metrics")).text()).splitlines() if "dropped" in line
    )


async def test_a_tcp_peer_is_limited_and_counted(aiohttp_client: Any, tmp_path: Path) -> None:
    """Over TCP the bucket is the peer's: 500 lines on one connection, 100 pass at once."""
    tcp = free_port()
    config = _config(tmp_path, tcp=tcp, rate_limit=AccessRateLimitConfig(lines_per_s=1, burst=100))
    client = await aiohttp_client(create_app(config))

    _, writer = await asyncio.open_connection("127.0.0.1", tcp)
    writer.write(b"".join(_forged(i) + b"\n" for i in range(500)))
    await writer.drain()

    async def all_seen() -> bool:
        parsed = await _metric(
            client, "ingress_audit_access_lines_total", input="syslog-tcp", result="parsed"
        )
        dropped = await _metric(
            client, "ingress_audit_access_lines_dropped_total", input="syslog-tcp", reason="rate-limited"
        )
        return parsed + dropped >= 500

    await _until(all_seen)
    writer.close()
    await writer.wait_closed()
    parsed = await _metric(client, "ingress_audit_access_lines_total", input="syslog-tcp", result="parsed")
    assert 100 <= parsed <= 110


async def test_idle_holders_give_their_place_to_a_relay(aiohttp_client: Any, tmp_path: Path) -> None:
    """Y2: with every connection slot held by idle connections, a relay still gets in: the
    connection idle longest is closed for it."""
    tcp = free_port()
    config = _config(tmp_path, tcp=tcp, max_connections=4)
    client = await aiohttp_client(create_app(config))
    holders = [await asyncio.open_connection("127.0.0.1", tcp) for _ in range(4)]

    async def all_held() -> bool:
        return await _metric(client, "ingress_audit_access_syslog_connections") == 4

    await _until(all_held)
    await asyncio.sleep(EVICT_IDLE_S + 0.2)

    _, relay = await asyncio.open_connection("127.0.0.1", tcp)
    relay.write(_forged(1) + b"\n")
    await relay.drain()

    async def relayed() -> bool:
        parsed = await _metric(
            client, "ingress_audit_access_lines_total", input="syslog-tcp", result="parsed"
        )
        return parsed == 1

    await _until(relayed, 5)
    async with asyncio.timeout(5):
        assert await holders[0][0].read() == b""  # the oldest idle holder was closed
    assert (
        await _metric(client, "ingress_audit_access_syslog_connections_closed_total", reason="evicted-idle")
        == 1
    )
    for _, writer in [*holders, (None, relay)]:
        writer.close()


async def test_a_configured_shared_file_is_named_at_start(aiohttp_client: Any, tmp_path: Path) -> None:
    """A sinks list whose JSONL sink takes every type is kept, and the start says so once."""
    config = replace(_config(tmp_path), sinks=(_sink({"type": "jsonl"}),))
    with structlog.testing.capture_logs() as logs:
        await aiohttp_client(create_app(config))
    warnings = [line for line in logs if line["event"] == "access.records_share_audit_file"]

    assert [line["sinks"] for line in warnings] == [["jsonl"]]
    with structlog.testing.capture_logs() as logs:
        await aiohttp_client(create_app(_config(tmp_path / "split")))
    assert not [line for line in logs if line["event"] == "access.records_share_audit_file"]
