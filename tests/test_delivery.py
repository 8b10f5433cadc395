"""The delivery loop: retries until delivered, dead-letters what a sink refuses, moves the cursor last.

The sink here is a test double of our own Sink protocol (records what it received, fails on
command); real sinks have their own tests against real servers.
"""

from __future__ import annotations

import asyncio
import errno
import os
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest

from webhook.delivery import SinkWorker
from webhook.errors import PartialDeliveryError, SinkError
from webhook.metrics import Metrics
from webhook.record.line import RecordLine
from webhook.sinks.base import BatchOptions, Health, RetryOptions, SinkSettings
from webhook.spool.appendlog import AppendLog
from webhook.spool.segments import Spool

FAST_RETRY = RetryOptions(initial_backoff_s=0.005, max_backoff_s=0.02)


@dataclass
class ScriptedSink:
    """Fails with the queued errors first, then accepts."""

    name: str = "scripted"
    errors: list[Exception] = field(default_factory=list)
    received: list[str] = field(default_factory=list)
    attempts: int = 0

    async def open(self) -> None:
        pass

    async def send(self, batch: Sequence[RecordLine]) -> None:
        self.attempts += 1
        if self.errors:
            raise self.errors.pop(0)
        self.received.extend(r.record["id"] for r in batch)

    async def health(self) -> Health:
        return Health(True)

    async def aclose(self) -> None:
        pass


@dataclass
class Harness:
    spool: Spool
    dead: AppendLog
    metrics: Metrics
    path: Path


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    spool = Spool(tmp_path / "spool", max_bytes=1 << 20, segment_bytes=1 << 16)
    spool.open()
    dead = AppendLog(tmp_path / "dead.jsonl", max_bytes=1 << 20, backups=1)
    dead.open()
    yield Harness(spool, dead, Metrics(), tmp_path)
    await spool.aclose()
    await dead.aclose()


def _worker(h: Harness, sink: ScriptedSink, max_events: int = 500) -> SinkWorker:
    settings = SinkSettings(
        type="test", name=sink.name, batch=BatchOptions(timeout_s=0, max_events=max_events), retry=FAST_RETRY
    )
    return SinkWorker(sink, settings, h.spool, metrics=h.metrics, dead_letters=h.dead)


def _records(*ids: str) -> list[bytes]:
    return [orjson.dumps({"id": i, "received_at": "2026-11-25T00:00:00Z"}) for i in ids]


def _metric(h: Harness, name: str, sink: str) -> float:
    value = h.metrics.registry.get_sample_value(name, {"sink": sink})
    return value or 0.0


async def test_retryable_failures_are_retried_until_delivered(harness: Harness) -> None:
    """Three failures, then success: every record delivered once, the cursor at the end."""
    sink = ScriptedSink(errors=[SinkError("down"), SinkError("down"), ConnectionResetError()])
    worker = _worker(harness, sink)
    await harness.spool.append(_records("a", "b", "c"))
    worker.start()

    assert await worker.drain(5)
    await worker.stop()
    assert sink.received == ["a", "b", "c"]
    assert sink.attempts == 4
    assert _metric(harness, "ingress_audit_sink_retries_total", "scripted") == 3
    assert _metric(harness, "ingress_audit_sink_delivered_records_total", "scripted") == 3
    assert harness.spool.lag("scripted") == (0, 0)


async def test_refused_records_are_dead_lettered_and_skipped(harness: Harness) -> None:
    """A non-retryable failure puts the (redacted) records in the dead letters and moves on."""
    sink = ScriptedSink(errors=[SinkError("schema mismatch", retryable=False)])
    worker = _worker(harness, sink, max_events=2)
    await harness.spool.append(_records("a", "b", "c"))
    worker.start()

    assert await worker.drain(5)
    await worker.stop()
    assert sink.received == ["c"]
    letters = [orjson.loads(line) for line in (harness.path / "dead.jsonl").read_bytes().splitlines()]
    assert [(d["reason"], d["record"]["id"]) for d in letters] == [
        ("sink-rejected", "a"),
        ("sink-rejected", "b"),
    ]
    assert "schema mismatch" in letters[0]["detail"]


async def test_partial_delivery_retries_only_what_failed(harness: Harness) -> None:
    """A bulk answer with some items failed: those are resent, refused ones dead-lettered."""
    sink = ScriptedSink(errors=[PartialDeliveryError("bulk", retry=[1], rejected={2: "mapping"})])
    worker = _worker(harness, sink)
    await harness.spool.append(_records("a", "b", "c"))
    worker.start()

    assert await worker.drain(5)
    await worker.stop()
    assert sink.received == ["b"]  # "a" was accepted by the first (partial) attempt
    letters = (harness.path / "dead.jsonl").read_bytes().splitlines()
    assert [orjson.loads(x)["record"]["id"] for x in letters] == ["c"]


async def test_the_cursor_moves_only_after_delivery(harness: Harness) -> None:
    """While a sink keeps failing its records stay in the spool and count as lag."""
    sink = ScriptedSink(errors=[SinkError("down")] * 1000)
    worker = _worker(harness, sink)
    await harness.spool.append(_records("a", "b"))
    worker.start()
    await asyncio.sleep(0.2)

    assert harness.spool.lag("scripted")[0] == 2
    assert (await worker.health()).ok is False
    assert harness.metrics.registry.get_sample_value("ingress_audit_sink_up", {"sink": "scripted"}) == 0
    await worker.stop()
    assert sink.received == []


async def test_records_arriving_later_wake_the_loop(harness: Harness) -> None:
    """An idle loop delivers new records promptly, without waiting for its idle timeout."""
    sink = ScriptedSink()
    worker = _worker(harness, sink)
    worker.start()
    await asyncio.sleep(0.05)
    await harness.spool.append(_records("late"))

    assert await worker.drain(0.5)
    await worker.stop()
    assert sink.received == ["late"]


async def test_a_receivers_retry_after_is_honoured(harness: Harness) -> None:
    """``retry_after_s`` holds the next attempt back at least that long, whatever the backoff."""
    sink = ScriptedSink(errors=[SinkError("busy", retry_after_s=0.3)])
    worker = _worker(harness, sink)
    await harness.spool.append(_records("a"))
    started = asyncio.get_running_loop().time()
    worker.start()

    assert await worker.drain(5)
    elapsed = asyncio.get_running_loop().time() - started
    await worker.stop()
    assert sink.received == ["a"]
    assert sink.attempts == 2
    assert elapsed >= 0.3


async def test_a_cursor_that_cannot_be_written_does_not_stop_delivery(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC while persisting the cursor (the disk is full) is logged; the loop goes on."""
    real_write = os.write
    failures = [OSError(errno.ENOSPC, "No space left on device")]

    def write(fd: int, data: bytes | memoryview) -> int:
        if failures and "/cursors/" in os.readlink(f"/proc/self/fd/{fd}"):
            raise failures.pop()
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    sink = ScriptedSink()
    worker = _worker(harness, sink)
    await harness.spool.append(_records("a"))
    worker.start()
    assert await worker.drain(1)
    await harness.spool.append(_records("b"))

    assert await worker.drain(1)
    await worker.stop()
    assert not failures
    assert sink.received == ["a", "b"]


async def test_record_types_deliver_only_those_and_move_past_the_rest(harness: Harness) -> None:
    """A sink with record_types gets only records of those types; its cursor passes the others,
    whether the type is read from the line's prefix or from the parsed record."""
    lines = [
        orjson.dumps({"schema_version": 1, "type": "audit", "id": "a1"}),
        orjson.dumps({"schema_version": 1, "type": "alert", "id": "x1"}),
        orjson.dumps({"id": "x2", "type": "alert"}),  # another key order: parsed
        orjson.dumps({"schema_version": 1, "type": "access", "id": "h1"}),
        orjson.dumps({"schema_version": 1, "type": "audit", "id": "a2"}),
    ]
    only_alerts, everything = ScriptedSink(name="alerts"), ScriptedSink(name="all")
    alerts_settings = SinkSettings(
        type="test",
        name="alerts",
        batch=BatchOptions(timeout_s=0, max_events=2),
        retry=FAST_RETRY,
        record_types=frozenset({"alert"}),
    )
    workers = [
        SinkWorker(
            only_alerts, alerts_settings, harness.spool, metrics=harness.metrics, dead_letters=harness.dead
        ),
        _worker(harness, everything),
    ]
    await harness.spool.append(lines)
    for worker in workers:
        worker.start()

    for worker in workers:
        assert await worker.drain(5)
        await worker.stop()
    assert only_alerts.received == ["x1", "x2"]
    assert only_alerts.attempts == 2  # the batch of audit + access only was never sent
    assert everything.received == ["a1", "x1", "x2", "h1", "a2"]
    assert harness.spool.lag("alerts") == (0, 0)


@dataclass
class BatchesSink(ScriptedSink):
    """Keeps each send's ids and when it came."""

    sends: list[tuple[float, list[str]]] = field(default_factory=list)

    async def send(self, batch: Sequence[RecordLine]) -> None:
        await super().send(batch)
        self.sends.append((time.monotonic(), [r.record["id"] for r in batch]))


def _paced(h: Harness, sink: ScriptedSink, *, min_interval_s: float, max_events: int = 500) -> SinkWorker:
    batch = BatchOptions(timeout_s=0, max_events=max_events, min_interval_s=min_interval_s)
    settings = SinkSettings(type="test", name=sink.name, batch=batch, retry=FAST_RETRY)
    return SinkWorker(sink, settings, h.spool, metrics=h.metrics, dead_letters=h.dead)


async def test_min_interval_sends_the_first_at_once_and_what_follows_together(harness: Harness) -> None:
    sink = BatchesSink()
    worker = _paced(harness, sink, min_interval_s=0.4)
    worker.start()
    started = time.monotonic()
    await harness.spool.append(_records("first"))
    for _ in range(100):
        if sink.sends:
            break
        await asyncio.sleep(0.01)
    assert [ids for _, ids in sink.sends] == [["first"]]
    assert sink.sends[0][0] - started < 0.3  # after a quiet spell: at once
    for name in ("a", "b", "c"):
        await harness.spool.append(_records(name))
        await asyncio.sleep(0.02)
    assert len(sink.sends) == 1  # held: the last send was under 0.4 s ago
    assert await worker.drain(2.0)
    await worker.stop()
    assert [ids for _, ids in sink.sends] == [["first"], ["a", "b", "c"]]
    assert sink.sends[1][0] - sink.sends[0][0] >= 0.35


async def test_min_interval_does_not_hold_a_full_batch(harness: Harness) -> None:
    sink = BatchesSink()
    worker = _paced(harness, sink, min_interval_s=30.0, max_events=2)
    worker.start()
    await harness.spool.append(_records("first"))
    for _ in range(100):
        if sink.sends:
            break
        await asyncio.sleep(0.01)
    await harness.spool.append(_records("a", "b"))
    assert await worker.drain(2.0)  # two is max_events: no 30 s wait
    await worker.stop()
    assert [ids for _, ids in sink.sends] == [["first"], ["a", "b"]]
