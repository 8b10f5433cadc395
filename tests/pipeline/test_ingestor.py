"""The audit ingestor's paths through the event loop: blocking mode waits for no thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

import orjson
import pytest
from pytest_aiohttp import AiohttpClient

from tests.conftest import (
    assert_diffed_against,
    delivered,
    event_list,
    ingress_changes,
    make_config,
    make_event,
)
from webhook.errors import StorageError
from webhook.pipeline.stages import BatchResult
from webhook.record.dead_letter import DeadLetter
from webhook.runtime import Runtime
from webhook.server.app import create_app
from webhook.spool import groupcommit
from webhook.spool.writer import RecordWriter
from webhook.state.base import StoredObject

_JSON: Final = {"Content-Type": "application/json"}
RECEIVED_AT: Final = "2026-11-24T14:30:00.000000Z"


def hold_first_write(writer: RecordWriter) -> tuple[asyncio.Event, asyncio.Event]:
    """Make the writer's first ``write_batch`` wait: set ``writing`` once it has begun, and go
    on once ``release`` is set."""
    write_batch = writer.write_batch
    writing, release = asyncio.Event(), asyncio.Event()

    async def held(lines: Sequence[bytes], letters: Sequence[DeadLetter]) -> None:
        if not writing.is_set():
            writing.set()
            await release.wait()
        await write_batch(lines, letters)

    writer.write_batch = held  # type: ignore[method-assign,assignment]
    return writing, release


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
    aiohttp_client: AiohttpClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocking mode's fast path: state read, record written and fsync'd, answer sent, with
    no hand-off to a thread that could keep the request waiting."""
    # On a loaded machine one fsync can take longer than a fast disk's: the path is the point
    # here, not the measure of the disk (tests/spool/test_groupcommit.py).
    monkeypatch.setattr(groupcommit, "INLINE_MAX_S", 60.0)
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


async def test_a_later_batch_diffs_against_an_earlier_one_still_being_written(tmp_path: Path) -> None:
    """The new states of a batch whose records are built are read by the next batches at once,
    before its write is done: each record is diffed against the one built before it."""
    runtime = await Runtime.open(make_config(tmp_path))
    try:
        writing, release = hold_first_write(runtime.writer)
        earlier, later = ingress_changes()
        first = asyncio.create_task(runtime.ingestor.ingest([earlier], received_at=RECEIVED_AT))
        await writing.wait()
        result = await runtime.ingestor.ingest([later], received_at=RECEIVED_AT)
        release.set()
        await first
    finally:
        await runtime.aclose()
    assert_diffed_against(result.lines, earlier)


async def test_a_read_answered_after_the_store_took_a_state_still_diffs_against_it(
    tmp_path: Path,
) -> None:
    """A remote store answers a read with what it held when the read reached it. If the
    write-behind stores the earlier state meanwhile (and stops overlaying it), that answer
    lacks it: the later batch must still diff against it."""
    runtime = await Runtime.open(make_config(tmp_path))
    try:
        get_many = runtime.state.get_many

        async def served_before_the_write(keys: Sequence[str]) -> dict[str, StoredObject]:
            stored = await get_many(keys)  # the read reaches the store first...
            await runtime.state_writes.drain()  # ...and its answer arrives after the write
            return stored

        runtime.state.get_many = served_before_the_write  # type: ignore[method-assign]
        earlier, later = ingress_changes()
        await runtime.ingestor.ingest([earlier], received_at=RECEIVED_AT)
        result = await runtime.ingestor.ingest([later], received_at=RECEIVED_AT)
    finally:
        await runtime.aclose()
    assert_diffed_against(result.lines, earlier)


async def test_the_states_of_a_batch_that_could_not_be_written_are_not_read(tmp_path: Path) -> None:
    runtime = await Runtime.open(make_config(tmp_path))
    try:
        writer = runtime.writer
        write_batch = writer.write_batch
        failed = asyncio.Event()

        async def failing_once(lines: Sequence[bytes], letters: Sequence[DeadLetter]) -> None:
            if not failed.is_set():
                failed.set()
                raise StorageError("cannot write the spool: ENOSPC")
            await write_batch(lines, letters)

        writer.write_batch = failing_once  # type: ignore[method-assign,assignment]
        earlier, later = ingress_changes()
        with pytest.raises(StorageError):
            await runtime.ingestor.ingest([earlier], received_at=RECEIVED_AT)
        result = await runtime.ingestor.ingest([later], received_at=RECEIVED_AT)
    finally:
        await runtime.aclose()
    (record,) = [orjson.loads(line) for line in result.lines]
    assert record["change"]["baseline"] != "state"


async def test_a_batch_reads_an_object_only_once_the_batch_building_it_elsewhere_is_done(
    tmp_path: Path,
) -> None:
    """While a worker builds a batch's records (a round trip), a batch of the same object built
    elsewhere waits; one of other objects does not, nor one the same worker builds (it lays
    the states of its own earlier batches over what it is sent: workers._Batches)."""
    runtime = await Runtime.open(make_config(tmp_path))
    ingestor = runtime.ingestor
    worker, other_worker = object(), object()
    building, release = asyncio.Event(), asyncio.Event()
    order: list[str] = []

    def finish_as(name: str, *, slow: bool = False) -> Any:
        async def finish(states: Any, duplicates: Any, available: bool) -> BatchResult:
            order.append(f"{name} reads")
            if slow:
                building.set()
                await release.wait()
            order.append(f"{name} built")
            return BatchResult()

        return finish

    try:
        first = asyncio.create_task(ingestor._record(["a"], ["obj/1"], finish_as("first", slow=True), worker))
        await building.wait()
        here = asyncio.create_task(ingestor._record(["b"], ["obj/1", "obj/2"], finish_as("here")))
        there = asyncio.create_task(ingestor._record(["c"], ["obj/2"], finish_as("there"), other_worker))
        await ingestor._record(["d"], ["obj/3"], finish_as("other object"))
        await ingestor._record(["e"], ["obj/1"], finish_as("same worker"), worker)
        await asyncio.sleep(0.01)
        assert not here.done()
        release.set()
        await asyncio.gather(first, here, there)
    finally:
        await runtime.aclose()
    built_before = order[: order.index("first built")]
    assert {"there built", "other object built", "same worker built"} <= set(built_before)
    assert order.index("here reads") > order.index("first built")


async def test_batches_of_other_objects_do_not_wait_for_each_other(tmp_path: Path) -> None:
    runtime = await Runtime.open(make_config(tmp_path))
    try:
        writing, _ = hold_first_write(runtime.writer)  # held until cancelled
        held_back = asyncio.create_task(runtime.ingestor.ingest([secret_event(1)], received_at=RECEIVED_AT))
        await writing.wait()
        async with asyncio.timeout(5):
            result = await runtime.ingestor.ingest([secret_event(2)], received_at=RECEIVED_AT)
        assert len(result.lines) == 1
        held_back.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await held_back
    finally:
        await runtime.aclose()
