"""batch.accepted and batch.rejected: a line per request at a reading pace, one summing line a
second (per key) beyond it."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import MutableMapping
from typing import Any

from structlog.testing import capture_logs

from webhook.log import FoldingLog
from webhook.server.batch_log import Rejections, write_rejected
from webhook.sources.webhook import BatchSums, write_accepted


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _batch(records: int = 1) -> BatchSums:
    return BatchSums(
        batches=1, events=400, matched=records + 1, records=records, duplicates=1, dead_lettered=0
    )


def _accepted_log(**options: Any) -> FoldingLog[None, BatchSums]:
    return FoldingLog(write_accepted, **options)


def _accepted(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == "batch.accepted"]


async def test_a_line_per_request_at_a_reading_pace() -> None:
    clock = Clock()
    batch_log = _accepted_log(per_second=10, clock=clock)
    with capture_logs() as logs:
        for _ in range(50):
            batch_log.add(None, _batch())
            clock.now += 0.2  # 5 requests a second: under the budget
    lines = _accepted(logs)
    assert len(lines) == 50
    assert lines[0] == {
        "event": "batch.accepted",
        "log_level": "info",
        "batches": 1,
        "events": 400,
        "matched": 2,
        "records": 1,
        "duplicates": 1,
        "dead_lettered": 0,
    }


async def test_a_burst_is_summed_into_one_line_after_the_interval() -> None:
    clock = Clock()
    batch_log = _accepted_log(per_second=10, interval_s=0.05, clock=clock)
    with capture_logs() as logs:
        for records in range(1000):  # one instant: the bucket holds 10
            batch_log.add(None, _batch(records))
        assert len(_accepted(logs)) == 10
        await asyncio.sleep(0.2)
    lines = _accepted(logs)
    assert len(lines) == 11
    folded = lines[-1]
    assert folded["batches"] == 990
    assert folded["events"] == 990 * 400
    # Summing a field over the lines gives the total, whatever was folded.
    assert sum(line["records"] for line in lines) == sum(range(1000))
    assert sum(line["batches"] for line in lines) == 1000


async def test_a_steady_flood_costs_a_few_lines_a_second() -> None:
    clock = Clock()
    batch_log = _accepted_log(per_second=10, interval_s=1.0, clock=clock)
    with capture_logs() as logs:
        for _second in range(5):
            for _ in range(3000):
                batch_log.add(None, _batch())
                clock.now += 1 / 3000
            batch_log.flush()  # what the timer does once a second
    lines = _accepted(logs)
    assert len(lines) <= 5 * 11
    assert sum(line["batches"] for line in lines) == 15_000


async def test_flush_logs_what_is_pending_once() -> None:
    clock = Clock()
    batch_log = _accepted_log(per_second=1, interval_s=0.05, clock=clock)
    with capture_logs() as logs:
        batch_log.add(None, _batch())
        batch_log.add(None, _batch())
        batch_log.add(None, _batch())
        batch_log.flush()  # shutdown: at once, and the timer no longer fires
        await asyncio.sleep(0.1)
        batch_log.flush()  # nothing left
    assert [line["batches"] for line in _accepted(logs)] == [1, 2]


async def test_lines_per_request_again_once_the_bucket_refills() -> None:
    clock = Clock()
    batch_log = _accepted_log(per_second=2, interval_s=0.05, clock=clock)
    with capture_logs() as logs:
        for _ in range(5):
            batch_log.add(None, _batch())
        await asyncio.sleep(0.1)
        clock.now += 10.0
        batch_log.add(None, _batch())
    assert [line["batches"] for line in _accepted(logs)] == [1, 1, 3, 1]


async def test_refusals_fold_per_reason_and_status() -> None:
    clock = Clock()
    rejected = FoldingLog(write_rejected, per_second=2, interval_s=0.05, clock=clock)
    with capture_logs() as logs:
        for _ in range(100):
            rejected.add(("unauthenticated", 401), Rejections(requests=1))
        for _ in range(5):
            rejected.add(("not-json", 400), Rejections(requests=1))
        await asyncio.sleep(0.1)
    lines = [(entry["reason"], entry["status"], entry["requests"], entry["log_level"]) for entry in logs]
    assert lines == [
        ("unauthenticated", 401, 1, "warning"),
        ("unauthenticated", 401, 1, "warning"),
        ("unauthenticated", 401, 98, "warning"),
        ("not-json", 400, 5, "warning"),
    ]
    assert {entry["event"] for entry in logs} == {"batch.rejected"}


def test_batch_sums_add_every_field() -> None:
    names = [field.name for field in dataclasses.fields(BatchSums)]
    total = BatchSums(**dict.fromkeys(names, 1))
    total.add(BatchSums(**{name: n for n, name in enumerate(names, start=2)}))
    assert [getattr(total, name) for name in names] == list(range(3, len(names) + 3))
