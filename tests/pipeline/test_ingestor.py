"""The audit ingestor's paths through the event loop: blocking mode waits for no thread."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

import orjson
from pytest_aiohttp import AiohttpClient

from tests.conftest import delivered, event_list, make_config, make_event
from webhook.server.app import create_app

_JSON: Final = {"Content-Type": "application/json"}


def secret_event(n: int) -> dict[str, Any]:
    return make_event(
        audit_id=f"00000000-0000-0000-0000-{n:012d}",
        verb="update",
        api_group="",
        resource="secrets",
        name=f"tls-{n}",
        code=200,
    )


async def test_a_one_event_request_is_answered_while_every_worker_thread_is_busy(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """Blocking mode's fast path: state read, record written and fsync'd, answer sent, with
    no hand-off to a thread that could keep the request waiting."""
    config = make_config(tmp_path)
    client = await aiohttp_client(create_app(config))
    # The first append goes through the thread and measures the disk.
    first = await client.post("/audit", data=event_list(secret_event(1)), headers=_JSON)
    assert first.status == 200

    loop = asyncio.get_running_loop()
    executor = ThreadPoolExecutor(max_workers=1)
    release = threading.Event()
    busy = loop.run_in_executor(executor, release.wait, 10)
    loop.set_default_executor(executor)
    try:
        async with asyncio.timeout(5):
            answer = await client.post("/audit", data=event_list(secret_event(2)), headers=_JSON)
            body = orjson.loads(await answer.read())
    finally:
        release.set()
        await busy
    assert answer.status == 200
    assert body["records"] == 1
    assert [r["object"]["name"] for r in await delivered(client, config)] == ["tls-1", "tls-2"]
