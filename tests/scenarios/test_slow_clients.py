"""Slow-loris: a client that never finishes its headers is disconnected, and holds no request slot."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import aiohttp

from tests.conftest import event_list, make_config, make_event
from webhook.server.app import start_server


async def test_a_connection_that_never_finishes_its_headers_is_closed(tmp_path: Path) -> None:
    """Idle or half-sent headers are cut at keepalive_timeout_s; real requests go on meanwhile."""
    config = make_config(tmp_path, keepalive_timeout_s=0.5, max_concurrent_requests=1)
    config = replace(config, server=replace(config.server, port=0))
    server = await start_server(config)
    host, port = server.addresses[0]
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"POST /audit?timeout=30s HTTP/1.1\r\nHost: x\r\nContent-Type: appl")
        await writer.drain()
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"http://{host}:{port}/audit",
                data=event_list(make_event()),
                headers={"Content-Type": "application/json"},
            ) as resp,
        ):
            assert resp.status == 200  # the slow client holds no request slot

        async with asyncio.timeout(5):
            rest = await reader.read()  # EOF once the server gives up on it
        assert b"200" not in rest
        writer.close()
    finally:
        await server.stop()
