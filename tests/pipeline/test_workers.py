"""Large batches through the worker processes: the same records as in-process, nothing leaks."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import (
    assert_diffed_against,
    capture_events,
    captured_bodies,
    delivered,
    event_list,
    ingress_changes,
    iter_files,
    make_config,
    make_event,
    scenario_secrets,
)
from webhook.config import Config
from webhook.errors import BodyTooLargeError, NotJSONError, OverloadedError
from webhook.pipeline.stages import BatchResult
from webhook.pipeline.workers import MIN_BODY_BYTES, Remote
from webhook.redact.leaks import scan
from webhook.runtime import Runtime
from webhook.server.app import RUNTIME, create_app, start_server

RECEIVED_AT = "2026-11-24T14:30:00.000000Z"


def _large_body() -> bytes:
    """Every captured event (Secrets, TLS keys, Ingresses…) among enough unmatched ones to need a worker."""
    kept = [event for body in captured_bodies() for event in capture_events(body.name)]
    filler = [
        make_event(verb="get", api_group="", resource="pods", name=f"p{n}", audit_id=f"filler-{n:06d}")
        for n in range(200)
    ]
    body = event_list(*filler[:100], *kept, *filler[100:])
    assert len(body) >= MIN_BODY_BYTES
    return body


def _config(tmp_path: Path, workers: int) -> Config:
    config = make_config(tmp_path / f"w{workers}", workers=workers)
    # One fingerprint key for every config of a test, so their records can be compared whole.
    key_file = tmp_path / "fingerprint.key"
    return replace(config, redaction=replace(config.redaction, fingerprint_key_file=key_file))


async def _records(config: Config, body: bytes) -> tuple[list[dict[str, Any]], list[int]]:
    runtime = await Runtime.open(config)
    try:
        await runtime.prepare_pool.start()
        result = await runtime.ingestor.ingest_body(body, received_at=RECEIVED_AT, max_events=10_000)
        pids = runtime.prepare_pool.pids()
    finally:
        await runtime.aclose(drain_timeout_s=10)
    return [orjson.loads(line) for line in result.lines], pids


async def test_workers_build_the_same_records_as_the_event_loop(tmp_path: Path) -> None:
    body = _large_body()
    inline, no_pids = await _records(_config(tmp_path, 0), body)
    pooled, pids = await _records(_config(tmp_path, 2), body)
    assert no_pids == []
    assert pids, "the large body was not prepared by a worker process"
    assert len(inline) > 10
    assert any(record.get("secret") for record in inline)
    assert pooled == inline
    for pid in pids:  # the pool was shut down with the runtime
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def test_no_secret_value_reaches_disk_through_the_workers(tmp_path: Path) -> None:
    config = _config(tmp_path, 2)
    await _records(config, _large_body())
    assert list(iter_files(config.data_dir))
    assert scan([config.data_dir], scenario_secrets()) == []


async def test_a_large_body_that_is_not_an_event_list_is_refused_as_such(tmp_path: Path) -> None:
    config = _config(tmp_path, 1)
    runtime = await Runtime.open(config)
    try:
        await runtime.prepare_pool.start()
        with pytest.raises(NotJSONError):
            await runtime.ingestor.ingest_body(
                b"{" + b" " * MIN_BODY_BYTES, received_at=RECEIVED_AT, max_events=10
            )
        with pytest.raises(BodyTooLargeError):
            await runtime.ingestor.ingest_body(_large_body(), received_at=RECEIVED_AT, max_events=10)
    finally:
        await runtime.aclose()


async def test_a_worker_keeps_a_prepared_batch_until_it_is_finished_or_dropped(tmp_path: Path) -> None:
    """The two round trips: prepare hands back ids and state keys, finish the records; a batch
    dropped instead (its request failed in between) is forgotten by the worker."""
    runtime = await Runtime.open(_config(tmp_path, 1))
    pool = runtime.prepare_pool
    try:
        await pool.start()
        body = _large_body()
        remote = await pool.prepare(body, received_at=RECEIVED_AT, max_events=10_000)
        assert isinstance(remote, Remote)
        assert remote.keys
        assert any(key.startswith("networking.k8s.io/ingresses/") for key in remote.lookups)
        result = await remote.finish([], {}, frozenset(), True)
        assert len(result.lines) == len(remote.keys)
        assert [orjson.loads(line)["id"] for line in result.lines] == result.keys
        assert result.documents == [orjson.loads(line) for line in result.lines]

        dropped = await pool.prepare(body, received_at=RECEIVED_AT, max_events=10_000)
        assert isinstance(dropped, Remote)
        dropped.drop()
        dropped.sent = False  # as if it had not been: the worker no longer holds it
        with pytest.raises(KeyError):
            await dropped.finish([], {}, frozenset(), True)

        nothing_kept = event_list(
            *(
                make_event(verb="get", api_group="", resource="pods", audit_id=f"p-{n:06d}")
                for n in range(300)
            )
        )
        assert isinstance(
            await pool.prepare(nothing_kept, received_at=RECEIVED_AT, max_events=10_000), BatchResult
        )
    finally:
        await runtime.aclose()


async def test_a_worker_diffs_a_batch_against_its_own_earlier_one_the_event_loop_had_not_seen(
    tmp_path: Path,
) -> None:
    """Two batches of one Ingress finished at once, each sent without the other's state: the
    worker lays the state its earlier finish revealed over what the later one was sent."""
    earlier, later = ingress_changes()
    runtime = await Runtime.open(_config(tmp_path, 1))
    pool = runtime.prepare_pool
    try:
        await pool.start()
        first = await pool.prepare(event_list(earlier), received_at=RECEIVED_AT, max_events=10)
        second = await pool.prepare(event_list(later), received_at=RECEIVED_AT, max_events=10)
        assert isinstance(first, Remote)
        assert isinstance(second, Remote)
        _, result = await asyncio.gather(
            first.finish([], {}, frozenset(), True), second.finish([], {}, frozenset(), True)
        )
    finally:
        await runtime.aclose()
    assert_diffed_against(result.lines, earlier)


async def test_a_dead_worker_costs_a_503_then_the_pool_starts_again(tmp_path: Path) -> None:
    config = _config(tmp_path, 1)
    body = _large_body()
    runtime = await Runtime.open(config)
    pool = runtime.prepare_pool
    try:
        await pool.start()
        first = await runtime.ingestor.ingest_body(body, received_at=RECEIVED_AT, max_events=10_000)
        (pid,) = pool.pids()
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(OverloadedError):
            await runtime.ingestor.ingest_body(body, received_at=RECEIVED_AT, max_events=10_000)
        # The resent batch is prepared in the event loop while a new worker starts.
        again = await runtime.ingestor.ingest_body(body, received_at=RECEIVED_AT, max_events=10_000)
        await pool.start()
        assert pool.wants(body)
        assert pool.pids()
        assert pool.pids() != [pid]
    finally:
        await runtime.aclose()
    assert first.lines
    assert again.duplicates == len(first.lines)  # the dedupe window is the event loop's


async def test_a_worker_seen_failing_by_a_write_leaves_the_pool_at_once(tmp_path: Path) -> None:
    """A failed write to a dead worker can see its death before the reader does: the pool must
    drop it right then, or the next batch goes to the dead worker and gets a 503 too (seen on a
    loaded machine: the test above failed 6 runs of 6 with a busy loop on one core)."""
    body = _large_body()
    runtime = await Runtime.open(_config(tmp_path, 1))
    pool = runtime.prepare_pool
    try:
        await pool.start()
        (worker,) = pool._running
        worker._fail()  # what a failed write does, before the reader sees the EOF
        assert pool._running == []
        assert not pool.wants(body)  # prepared here while a new worker starts
        again = await runtime.ingestor.ingest_body(body, received_at=RECEIVED_AT, max_events=10_000)
        await pool.start()
        assert pool.pids() not in ([], [worker.pid])
    finally:
        await runtime.aclose()
    assert again.lines


async def test_large_bodies_are_prepared_here_until_the_workers_have_started(tmp_path: Path) -> None:
    body = _large_body()
    runtime = await Runtime.open(_config(tmp_path, 2))
    pool = runtime.prepare_pool
    try:
        assert not pool.wants(b"x" * (MIN_BODY_BYTES - 1))
        assert pool.pids() == []
        assert not pool.wants(body)  # and the workers start in the background
        result = await runtime.ingestor.ingest_body(body, received_at=RECEIVED_AT, max_events=10_000)
        await pool.start()
        assert pool.wants(body)
        assert len(pool.pids()) == 2
    finally:
        await runtime.aclose()
    assert result.lines


@pytest.mark.parametrize("workers", [0, 1])
async def test_a_started_server_starts_its_workers_before_any_request(tmp_path: Path, workers: int) -> None:
    """A restarted server's first batches (its senders' backlog) find the workers running."""
    running = await start_server(make_config(tmp_path, port=0, workers=workers))
    pool = running.runner.app[RUNTIME].prepare_pool
    try:
        assert pool.starting is (workers > 0)
        await pool.start()  # waits for the start under way
        assert len(pool.pids()) == workers
        assert pool.wants(_large_body()) is (workers > 0)
    finally:
        await running.stop()
    assert pool.pids() == []


async def test_the_server_answers_a_large_batch_once_its_records_are_durable(tmp_path: Path) -> None:
    config = make_config(tmp_path, workers=2)
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(config)))
    await client.start_server()
    try:
        data = io.BytesIO(_large_body())  # over 1 MB: aiohttp wants a stream
        resp = await client.post("/audit", data=data, headers={"Content-Type": "application/json"})
        assert resp.status == 200
        answer = await resp.json()
        records = await delivered(client, config)
    finally:
        await client.close()
    assert answer["records"] == len(records) > 10


_HOLDER = """
import asyncio, sys
from pathlib import Path
from webhook.config import Config
from webhook.runtime import prepare_settings
from webhook.pipeline.workers import PreparePool

async def main() -> None:
    pool = PreparePool(prepare_settings(Config()), b"k" * 32, workers=2)
    await pool.start()
    print(" ".join(map(str, pool.pids())), flush=True)
    await asyncio.sleep(60)

if __name__ == "__main__":
    asyncio.run(main())
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(sys.platform != "linux", reason="parent-death signal: Linux")
def test_the_workers_die_with_the_serve_process(tmp_path: Path) -> None:
    """A serve process killed with -9 (or by the OOM killer) leaves no worker behind."""
    script = tmp_path / "holder.py"
    script.write_text(_HOLDER)
    holder = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert holder.stdout is not None
        pids = [int(pid) for pid in holder.stdout.readline().split()]
        assert len(pids) == 2
        assert all(_alive(pid) for pid in pids)
    finally:
        holder.kill()
        holder.wait(10)
        if holder.stdout is not None:
            holder.stdout.close()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in pids)
