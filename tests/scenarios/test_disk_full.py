"""The data dir on a small filesystem that fills up: 503s, no crash, nothing acknowledged lost.

The data dir (spool, cursors, records, dead letters, state) is a 4 MiB tmpfs, else a
loop-mounted ext4 image; both need root. Where neither can be mounted the test skips (fails
under CI): tests/server/test_app.py and tests/spool/test_segments.py cover ENOSPC with a patched os.pwrite.
Space "returns" when a filler file is deleted, as when an operator frees the volume.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import event_list, make_event, read_jsonl
from webhook.config import parse_config
from webhook.server.app import RUNTIME, create_app

JSON = {"Content-Type": "application/json"}
SIZE = "4m"


def _mount(target: Path, image: Path) -> str | None:
    """Mount a small filesystem on ``target``; say which, or None if none can be mounted."""
    if os.geteuid() != 0:
        return None
    tmpfs = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "tmpfs", str(target)], capture_output=True
    )
    if tmpfs.returncode == 0:
        return "tmpfs"
    mkfs = shutil.which("mkfs.ext4")
    if mkfs is None:
        return None
    with open(image, "wb") as handle:
        handle.truncate(4 * 1024 * 1024)
    subprocess.run([mkfs, "-q", "-F", str(image)], check=True, capture_output=True)
    loop = subprocess.run(["mount", "-o", "loop", str(image), str(target)], capture_output=True)
    return "ext4 on a loop device" if loop.returncode == 0 else None


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    target = tmp_path / "small"
    target.mkdir()
    kind = _mount(target, tmp_path / "fs.img")
    if kind is None:
        message = "cannot mount a small filesystem here (needs root and mount)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield target
    finally:
        deadline = time.monotonic() + 10
        while subprocess.run(["umount", str(target)], capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                subprocess.run(["umount", "-l", str(target)], check=True)  # detach, then fail
                pytest.fail("the small filesystem was still busy at the end of the test")
            time.sleep(0.1)


def _batch(n: int) -> tuple[bytes, list[str]]:
    """Sizes vary as the apiserver's do: a small batch may fit where a large one failed."""
    ids = [str(uuid.UUID(int=n * 1000 + i)) for i in range(50 if n % 3 else 2)]
    return event_list(*[make_event(audit_id=i, name=f"full-{n}-{k}") for k, i in enumerate(ids)]), ids


async def test_a_full_disk_answers_503_and_recovers_without_loss(small_fs: Path, aiohttp_client: Any) -> None:
    """Filling the data dir's filesystem: 503 + Retry-After and a reason in /readyz, the server
    keeps answering; once space is freed, batches are accepted again and every acknowledged
    record is in the JSONL file exactly once, in whole lines."""
    filler = small_fs / "filler"
    filler.write_bytes(b"\0" * (1536 * 1024))
    config = parse_config(
        {
            "cluster": "disk-full",
            "data_dir": str(small_fs),
            "spool": {"segment_bytes": 128 * 1024, "max_bytes": 64 * 1024 * 1024},
        }
    )
    client = await aiohttp_client(create_app(config))
    acked: list[str] = []
    statuses: list[int] = []
    n = 0
    while statuses.count(503) < 5:
        n += 1
        assert n < 500, "the filesystem never filled up"
        body, ids = _batch(n)
        resp = await client.post("/audit", data=body, headers=JSON)
        statuses.append(resp.status)
        if resp.status == 200:
            acked.extend(ids)
        else:
            assert resp.status == 503
            assert resp.headers["Retry-After"].isdigit()
            payload = await resp.json()
            assert "ENOSPC" in payload["reason"], payload
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert (await client.get("/healthz")).status == 200  # still alive

    filler.unlink()  # space returns
    for _ in range(3):
        n += 1
        body, ids = _batch(n)
        resp = await client.post("/audit", data=body, headers=JSON)
        assert resp.status == 200
        acked.extend(ids)
    assert await client.app[RUNTIME].sinks.drain(20), "sinks did not catch up after the disk recovered"

    records = [r["audit_id"] for r in read_jsonl(small_fs / "records.jsonl") if r["type"] == "audit"]
    assert sorted(records) == sorted(acked)
    assert len(acked) > 300
    assert (await client.get("/readyz")).status == 200
    with contextlib.suppress(FileNotFoundError):
        assert not list((small_fs / "spool" / "cursors").glob("*.tmp"))
