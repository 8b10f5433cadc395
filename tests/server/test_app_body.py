"""Reading a request body: a compressed body is counted as it is decompressed, so a gzip bomb
costs the limit, not its decompressed size (security review finding 5, I20/I23)."""

from __future__ import annotations

import asyncio
import io
import time
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

from tests.conftest import event_list, make_config, make_event
from webhook.server.app import create_app

MiB = 1024 * 1024


def gzip_of_zeros(size: int) -> bytes:
    """A gzip member of ``size`` zero bytes (1 GiB is about 1 MB), built a MiB at a time."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(MiB)
    parts = [compressor.compress(block) for _ in range(size // MiB)]
    return b"".join([*parts, compressor.flush()])


async def test_a_gzip_bomb_costs_the_limit_not_its_size(aiohttp_client: Any, tmp_path: Path) -> None:
    """256 MiB of zeros in 256 kB of gzip: 413, and the peak of Python allocations during the
    request stays under twice the 4 MiB limit (it was several times the limit)."""
    limit = 4 * MiB
    client = await aiohttp_client(create_app(make_config(tmp_path, max_body_bytes=limit)))
    bomb = gzip_of_zeros(256 * MiB)
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}

    tracemalloc.start()
    try:
        resp = await client.post("/audit", data=bomb, headers=headers)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert resp.status == 413
    assert (await resp.json())["error"] == "body-too-large"
    assert resp.headers["Connection"] == "close"  # the rest of the bomb is not read
    assert peak < 2 * limit, f"peak {peak / MiB:.1f} MiB"


async def test_a_gzipped_batch_under_the_limit_is_read_whole(aiohttp_client: Any, tmp_path: Path) -> None:
    """Small decompression steps still give the whole body: a gzipped batch is accepted."""
    client = await aiohttp_client(create_app(make_config(tmp_path)))
    items = [make_event(audit_id=f"00000000-0000-0000-0000-{i:012d}", name=f"n{i}") for i in range(2000)]
    body = event_list(*items)
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    gzipped = compressor.compress(body) + compressor.flush()
    assert len(body) > 20 * len(gzipped) > 0  # many decompression steps of 64 KiB

    resp = await client.post(
        "/audit", data=gzipped, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}
    )

    assert resp.status == 200
    assert (await resp.json())["accepted"] == 2000


async def test_a_body_refused_before_it_is_read_is_not_read_afterwards(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    """A 415 (as a 401 would) before the body is read: the answer closes the connection, and
    the 1 GiB bomb behind it is not decompressed (aiohttp read it for up to 10 s, in the loop)."""
    client = await aiohttp_client(create_app(make_config(tmp_path)))
    bomb = gzip_of_zeros(1024 * MiB)
    started = time.process_time()

    resp = await client.post(
        "/audit", data=io.BytesIO(bomb), headers={"Content-Type": "text/plain", "Content-Encoding": "gzip"}
    )
    await asyncio.sleep(1.0)  # when aiohttp's lingering read would decompress it

    assert resp.status == 415
    assert resp.headers["Connection"] == "close"
    assert time.process_time() - started < 0.5  # decompressing 1 GiB takes seconds
    assert (await client.get("/healthz")).status == 200
