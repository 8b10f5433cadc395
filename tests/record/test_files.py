"""Record files: one naming rule for the writer and every reader, gzip'd backups included."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

from webhook.errors import RecordsNotFoundError, UnreadableFileError
from webhook.record.files import (
    backup,
    open_maybe_gzip,
    read_lines,
    read_records,
    record_files,
    record_ids,
    rotated,
    with_backups,
)
from webhook.spool.appendlog import AppendLog


def record(rid: str, kind: str = "audit") -> bytes:
    return orjson.dumps({"schema_version": 1, "type": kind, "id": rid}) + b"\n"


def write(path: Path, data: bytes, *, compress: bool = False) -> Path:
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def test_backups_are_numbered_newest_first_whatever_their_compression(tmp_path: Path) -> None:
    """.1 is the newest; .N and .N.gz sort by N as numbers; other names are not backups."""
    live = write(tmp_path / "records.jsonl", b"")
    for name in ["records.jsonl.10", "records.jsonl.2.gz", "records.jsonl.1", "records.jsonl.3"]:
        write(tmp_path / name, b"")
    for other in ["records.jsonl.tmp", "records.jsonl.1.bak", "records.jsonl.x.gz", "access.jsonl.1"]:
        write(tmp_path / other, b"")

    assert [p.name for p in rotated(live)] == [
        "records.jsonl.1",
        "records.jsonl.2.gz",
        "records.jsonl.3",
        "records.jsonl.10",
    ]
    assert [p.name for p in with_backups(live)] == [
        "records.jsonl.10",
        "records.jsonl.3",
        "records.jsonl.2.gz",
        "records.jsonl.1",
        "records.jsonl",
    ]
    assert backup(live, 4) == tmp_path / "records.jsonl.4"


async def test_the_writer_names_backups_as_the_readers_find_them(tmp_path: Path) -> None:
    """AppendLog's rotation and ``with_backups`` agree: every line, oldest first, once."""
    path = tmp_path / "records.jsonl"
    log = AppendLog(path, max_bytes=len(record("r0")) * 2, backups=3)
    log.open()
    for n in range(8):
        await log.append(record(f"r{n}"))
    await log.aclose()

    files = with_backups(path)

    assert [p.name for p in files] == [
        "records.jsonl.3",
        "records.jsonl.2",
        "records.jsonl.1",
        "records.jsonl",
    ]
    assert [doc and doc["id"] for doc in read_records(files)] == [f"r{n}" for n in range(8)]


def test_gzip_is_known_by_its_bytes_not_its_name(tmp_path: Path) -> None:
    """A compressed file without ``.gz`` and a plain one with it both read as what they are."""
    data = record("a") + record("b")
    for path in [write(tmp_path / "x.1", data, compress=True), write(tmp_path / "y.2.gz", data)]:
        raw, stream = open_maybe_gzip(path)
        with raw, stream:
            assert stream.read() == data


def test_lines_are_numbered_and_blank_ones_skipped(tmp_path: Path) -> None:
    """(line number, line) as a person counts them in the file."""
    path = write(tmp_path / "r.gz", record("a") + b"\n  \n" + record("b"), compress=True)

    assert list(read_lines(path)) == [(1, record("a")), (4, record("b"))]


def test_a_line_that_is_not_an_object_reads_as_none(tmp_path: Path) -> None:
    """The reader counts what it cannot read instead of stopping there."""
    path = write(tmp_path / "r", record("a") + b"not json\n[1]\n" + record("b"))

    assert [doc and doc["id"] for doc in read_records([path])] == ["a", None, None, "b"]


def test_record_ids_read_every_backup_and_skip_types(tmp_path: Path) -> None:
    """An id only in ``.2.gz`` is found; records of a skipped type are not."""
    live = write(tmp_path / "records.jsonl", record("live"))
    write(tmp_path / "records.jsonl.2.gz", record("old") + record("alert-1", "alert"), compress=True)

    assert record_ids(with_backups(live)) == {"live", "old", "alert-1"}
    assert record_ids(with_backups(live), skip={"alert"}) == {"live", "old"}


def test_no_records_file_at_all_is_an_error(tmp_path: Path) -> None:
    """Backups alone are enough; neither file nor backup is ``not-found``."""
    write(tmp_path / "records.jsonl.1.gz", record("a"), compress=True)

    assert [p.name for p in record_files([tmp_path / "records.jsonl"])] == ["records.jsonl.1.gz"]
    with pytest.raises(RecordsNotFoundError, match=r"no records file at .*other\.jsonl"):
        record_files([tmp_path / "other.jsonl"])


def test_an_unreadable_file_is_named_never_quoted(tmp_path: Path) -> None:
    """A missing file and a cut-off gzip name the path and where reading stopped."""
    with pytest.raises(UnreadableFileError, match=r"cannot read .*missing\.jsonl"):
        open_maybe_gzip(tmp_path / "missing.jsonl")
    secret = b"s3cr3t-marker-value"
    whole = gzip.compress(record("a") + orjson.dumps({"id": secret.decode()}) + b"\n" * 50_000)
    path = write(tmp_path / "cut.gz", whole[: len(whole) // 2])

    with pytest.raises(UnreadableFileError, match=r"cut\.gz: after line \d+: cannot read further") as info:
        list(read_lines(path))
    assert secret.decode() not in str(info.value)
