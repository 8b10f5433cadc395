"""A sink that is down fills the spool; then /audit answers 503 and /readyz says which sink."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Client, delivered, event_list, make_config, make_event
from webhook.errors import SinkError
from webhook.record.line import RecordLine
from webhook.server.app import create_app
from webhook.sinks.jsonl import JsonlSink
from webhook.spool.settings import SpoolConfig

JSON = {"Content-Type": "application/json"}


def _batch(n: int) -> bytes:
    return event_list(
        *[
            make_event(audit_id=f"00000000-0000-4000-8000-{n * 100 + i:012d}", name=f"web-{n}-{i}")
            for i in range(20)
        ]
    )


async def test_a_dead_sink_fills_the_spool_then_503_then_recovery(
    aiohttp_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing acknowledged is lost: 503 + Retry-After at the cap, everything delivered after."""
    config = make_config(tmp_path)
    config = replace(config, spool=SpoolConfig(max_bytes=1024 * 1024, segment_bytes=64 * 1024))
    down = True
    real_send = JsonlSink.send

    async def flaky(self: JsonlSink, batch: Sequence[RecordLine]) -> None:
        if down:
            raise SinkError("simulated outage")
        await real_send(self, batch)

    monkeypatch.setattr(JsonlSink, "send", flaky)
    client: Client = await aiohttp_client(create_app(config))

    accepted = 0
    status = 200
    for n in range(2000):
        resp = await client.post("/audit", data=_batch(n), headers=JSON)
        status = resp.status
        if status != 200:
            break
        accepted += 1
    assert status == 503
    assert resp.headers["Retry-After"] == "1"
    assert (await resp.json())["error"] == "spool-full"
    ready = await client.get("/readyz")
    assert ready.status == 503
    body = await ready.json()
    assert "jsonl" in body["problems"]["spool"]
    assert body["sinks"]["jsonl"]["ok"] is False

    down = False
    records = await delivered(client, config)
    assert len(records) == accepted * 20
    assert len({r["id"] for r in records}) == accepted * 20
    assert (await client.post("/audit", data=_batch(99_999), headers=JSON)).status == 200
    assert (await client.get("/readyz")).status == 200
