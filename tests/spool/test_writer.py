"""The record writer keeps records and dead letters durably, and says typed why it cannot."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from webhook.errors import BodyTimeoutError, SpoolFullError, StorageError
from webhook.metrics import Metrics
from webhook.record.dead_letter import DeadLetter
from webhook.spool.appendlog import AppendLog
from webhook.spool.segments import Spool
from webhook.spool.writer import RecordWriter

RECEIVED_AT = "2026-11-24T14:30:00.000000Z"


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def writer(tmp_path: Path, metrics: Metrics) -> AsyncIterator[RecordWriter]:
    spool = Spool(tmp_path / "spool", max_bytes=100, segment_bytes=4096)
    dead_letters = AppendLog(tmp_path / "dead-letter.jsonl", max_bytes=1 << 20, backups=1)
    writer = RecordWriter(spool, dead_letters, metrics)
    await writer.open()
    yield writer
    await writer.aclose()


def _letter(reason: str) -> DeadLetter:
    return DeadLetter(reason=reason, detail="a field is wrong", received_at=RECEIVED_AT)


def _dead_letters(path: Path) -> list[str]:
    return [orjson.loads(line)["reason"] for line in path.read_bytes().splitlines()]


async def test_a_refused_batch_keeps_the_spool_full_until_a_batch_fits(writer: RecordWriter) -> None:
    """After a refusal the answer is SpoolFullError, and /readyz's text stays as it was."""
    assert writer.refusal() is None
    await writer.write_batch([b"x" * 70], [])

    with pytest.raises(SpoolFullError):
        await writer.write_batch([b"y" * 40], [])

    refusal = writer.refusal()
    assert isinstance(refusal, SpoolFullError)
    assert refusal.message == "cannot keep records now: spool: full; behind: "
    assert writer.problems() == {"spool": "full; behind: "}
    await writer.write_records([{"type": "access"}])  # other records fit, the refusal stays
    assert isinstance(writer.refusal(), SpoolFullError)
    await writer.write_batch([b"z"], [])
    assert writer.refusal() is None


async def test_a_broken_dead_letter_file_is_a_storage_error(writer: RecordWriter) -> None:
    """Not the spool's fault: the answer is StorageError, not SpoolFullError."""
    await writer.dead_letters.aclose()

    refusal = writer.refusal()

    assert type(refusal) is StorageError
    assert refusal.message == "cannot keep records now: dead_letter: closed"
    with pytest.raises(StorageError):
        await writer.write_records([], [_letter("access-bad-format")])


async def test_dead_letters_are_counted_once_written(
    writer: RecordWriter, metrics: Metrics, tmp_path: Path
) -> None:
    """Dead letters of a write and of a rejected request land in the file and in the metric."""
    await writer.write_records([], [_letter("not-json"), _letter("not-json")])
    await writer.reject(BodyTimeoutError("body not received within 5 s"), received_at=RECEIVED_AT)

    assert _dead_letters(tmp_path / "dead-letter.jsonl") == ["not-json", "not-json", "body-timeout"]
    counted = {
        reason: metrics.registry.get_sample_value("ingress_audit_dead_letters_total", {"reason": reason})
        for reason in ("not-json", "body-timeout")
    }
    assert counted == {"not-json": 2, "body-timeout": 1}
