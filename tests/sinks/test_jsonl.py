from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import orjson
import pytest

from tests.conftest import enrichment_of, find_event, read_jsonl
from webhook.errors import StorageError
from webhook.record.audit import Record, record_id
from webhook.record.line import RecordLine, to_json
from webhook.sinks.base import Sink, SinkError
from webhook.sinks.jsonl import JsonlOptions, JsonlSink


def records(*names: str) -> list[Record]:
    """Records of the captured ResponseComplete events of these captures' create requests."""
    out = []
    for name in names:
        event = find_event(name, stage="ResponseComplete", verb="create")
        out.append(
            Record.from_event(
                event,
                record_id=record_id(event["auditID"], event["stage"], "d"),
                cluster="c",
                received_at="2026-11-24T14:20:41.000000Z",
                enrichment=enrichment_of(event),
            )
        )
    return out


async def opened(tmp_path: Path, options: JsonlOptions | None = None) -> JsonlSink:
    sink = JsonlSink("jsonl", options or JsonlOptions(), tmp_path / "data")
    await sink.open()
    return sink


def spooled(batch: list[Record]) -> list[RecordLine]:
    """Records as the delivery loop hands them to a sink: their spooled JSON lines."""
    return [RecordLine.of(record) for record in batch]


async def test_one_record_per_line_in_order(tmp_path: Path) -> None:
    """``send`` appends each record as one compact JSON line, in batch order."""
    sink = await opened(tmp_path)
    batch = records("0009.json", "0007.json", "0008.json")

    await sink.send(spooled(batch[:2]))
    await sink.send(spooled(batch[2:]))
    await sink.aclose()

    assert read_jsonl(sink.path) == [orjson.loads(to_json(r)) for r in batch]
    assert sink.path.read_bytes().count(b"\n") == 3


async def test_an_empty_batch_writes_nothing(tmp_path: Path) -> None:
    """No records, no bytes: not even an empty line."""
    sink = await opened(tmp_path)
    await sink.send([])
    await sink.aclose()

    assert sink.path.read_bytes() == b""


async def test_file_mode_and_dir_mode(tmp_path: Path) -> None:
    """The sink creates its directory 0700 and its file 0600."""
    sink = await opened(tmp_path)
    await sink.send(spooled(records("0009.json")))
    await sink.aclose()

    assert stat.S_IMODE(sink.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(sink.path.parent.stat().st_mode) == 0o700


async def test_rotation_by_size(tmp_path: Path) -> None:
    """``max_bytes`` and ``backups`` from the config rotate the file."""
    batch = records("0009.json")
    line_size = len(to_json(batch[0])) + 1
    sink = await opened(tmp_path, JsonlOptions(max_bytes=line_size * 2, backups=1))
    for _ in range(5):
        await sink.send(spooled(batch))
    await sink.aclose()

    assert len(read_jsonl(sink.path)) == 1
    assert len(read_jsonl(sink.path.with_name("records.jsonl.1"))) == 2
    assert not sink.path.with_name("records.jsonl.2").exists()


async def test_a_failed_write_is_a_retryable_sink_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk surfaces as SinkError(retryable=True): the delivery loop retries, nothing is lost."""
    sink = await opened(tmp_path)

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(SinkError) as info:
        await sink.send(spooled(records("0009.json")))
    monkeypatch.undo()

    assert isinstance(info.value, StorageError)
    assert info.value.retryable
    health = await sink.health()
    assert (health.ok, health.detail) == (False, "ENOSPC")
    await sink.aclose()


async def test_health_follows_the_file(tmp_path: Path) -> None:
    """Healthy once open; not after close."""
    sink = await opened(tmp_path)
    assert (await sink.health()).ok

    await sink.aclose()

    health = await sink.health()
    assert not health.ok
    assert health.detail == "closed"


def test_is_a_sink(tmp_path: Path) -> None:
    """JsonlSink implements the one Sink protocol (checked by mypy) and carries its name."""
    sink: Sink = JsonlSink("main", JsonlOptions(), tmp_path)
    assert sink.name == "main"
