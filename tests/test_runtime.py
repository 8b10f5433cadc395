"""What serve and replay share opens in order and closes in reverse, also when opening fails."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import capture_events, make_config, records_in
from tests.servers import free_port
from webhook.access.settings import AccessConfig, AccessSyslogConfig
from webhook.errors import ConfigError
from webhook.runtime import Runtime
from webhook.server.app import start_server


def _leftover_tasks(before: set[asyncio.Task[Any]]) -> set[asyncio.Task[Any]]:
    """Tasks started since ``before`` that still run (a sink loop, a tick, a timer)."""
    return {task for task in asyncio.all_tasks() - before if task is not asyncio.current_task()}


async def test_an_open_that_fails_half_way_closes_what_it_opened(tmp_path: Path) -> None:
    """A bad access format fails after the spool is locked and the sink and tick loops run:
    they are stopped and the lock released, so the next open of the data dir succeeds."""
    config = make_config(tmp_path)
    broken = replace(config, access=replace(config.access, enabled=True, format="no-such-format"))
    before = asyncio.all_tasks()

    with pytest.raises(ConfigError):
        await Runtime.open(broken)

    assert not _leftover_tasks(before)
    runtime = await Runtime.open(config)
    await runtime.aclose()


async def test_records_are_delivered_before_the_sinks_close(tmp_path: Path) -> None:
    """Closing lets the sinks catch up: what the ingestor wrote reaches the JSONL sink."""
    config = make_config(tmp_path)
    runtime = await Runtime.open(config)
    try:
        result = await runtime.ingestor.ingest(
            capture_events("0009.json"), received_at="2026-11-24T14:20:41.000000Z"
        )
    finally:
        await runtime.aclose(drain_timeout_s=10)

    assert result.records
    assert [r["id"] for r in records_in(config)] == [r.id for r in result.records]


async def test_a_server_whose_syslog_port_is_taken_closes_the_runtime(tmp_path: Path) -> None:
    """The listeners start after the runtime: when they cannot, the runtime is closed again."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        syslog = AccessSyslogConfig(udp=f"127.0.0.1:{port}")
        base = make_config(tmp_path, port=free_port())
        config = replace(base, access=AccessConfig(enabled=True, syslog=syslog))
        before = asyncio.all_tasks()

        with pytest.raises(ConfigError):
            await start_server(config)

    assert not _leftover_tasks(before)
    runtime = await Runtime.open(config)  # the spool lock was released
    await runtime.aclose()


async def test_the_host_index_follows_the_configured_cluster_alone(tmp_path: Path) -> None:
    """Access logs are the configured cluster's: another cluster's Ingress names no host in them."""
    config = replace(make_config(tmp_path), access=AccessConfig(enabled=True))
    runtime = await Runtime.open(config)
    try:
        received = "2026-11-24T14:20:41.000000Z"
        await runtime.ingestor.ingest(capture_events("0009.json"), received_at=received, cluster="prod-eu")
        assert runtime.access is not None
        assert len(runtime.access.index) == 0
        await runtime.ingestor.ingest(capture_events("0009.json"), received_at=received)
        assert len(runtime.access.index) == 1
    finally:
        await runtime.aclose()
