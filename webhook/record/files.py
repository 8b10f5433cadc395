"""How record files are named and read, in one place for the writer and every reader.

``records.jsonl`` is the live file, ``records.jsonl.1`` the newest backup, ``.2`` the one before,
and so on (``AppendLog`` rotates them so); a backup that logrotate (or a person) compressed is
``records.jsonl.N.gz``. ``tail``, ``report`` and ``replay``'s duplicate check read the same set:
a reader that missed the ``.gz`` ones would see history that another one sees, and count or
record it again.
"""

from __future__ import annotations

import glob
import gzip
from collections.abc import Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Final, cast

import orjson

from webhook.errors import RecordsNotFoundError, UnreadableFileError

__all__ = [
    "backup",
    "open_maybe_gzip",
    "read_lines",
    "read_records",
    "record_files",
    "record_ids",
    "rotated",
    "with_backups",
]

_GZIP_MAGIC: Final = b"\x1f\x8b"


def backup(path: Path, index: int) -> Path:
    """The name of ``path``'s ``index``-th backup (1 is the newest)."""
    return path.with_name(f"{path.name}.{index}")


def rotated(path: Path) -> list[Path]:
    """``path``'s backups that exist, ``.N`` and ``.N.gz``, newest first."""
    found = []
    for candidate in path.parent.glob(f"{glob.escape(path.name)}.*"):
        suffix = candidate.name[len(path.name) + 1 :].removesuffix(".gz")
        if suffix.isdigit():
            found.append((int(suffix), candidate.name.endswith(".gz"), candidate))
    return [p for _, _, p in sorted(found)]


def with_backups(path: Path) -> list[Path]:
    """``path``'s backups, oldest first, then ``path`` itself: the files that exist, in the
    order their records were written."""
    files = [*reversed(rotated(path)), path]
    return [p for p in files if p.is_file()]


def record_files(paths: Sequence[Path]) -> list[Path]:
    """``with_backups`` of each path; RecordsNotFoundError when there is none at all."""
    files = [file for path in paths for file in with_backups(path)]
    if not files:
        raise RecordsNotFoundError(f"no records file at {', '.join(map(str, paths))}")
    return files


def open_maybe_gzip(path: Path) -> tuple[BinaryIO, BinaryIO]:
    """(the raw file, the stream of its bytes): gzip is recognised by its magic bytes, whatever
    the name. Raises UnreadableFileError when the file cannot be opened."""
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise UnreadableFileError(f"cannot read {path}: {exc.strerror}") from None
    if raw.read(2) == _GZIP_MAGIC:
        raw.seek(0)
        return raw, cast(BinaryIO, gzip.GzipFile(fileobj=raw, mode="rb"))
    raw.seek(0)
    return raw, raw


def read_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of each non-blank line of a plain or gzip'd file, newline included;
    UnreadableFileError names the file and where it stopped (a truncated or corrupt gzip)."""
    raw, stream = open_maybe_gzip(path)
    with raw, stream:
        lineno = 0
        try:
            for lineno, line in enumerate(stream, start=1):
                if line.strip():
                    yield lineno, line
        except (OSError, EOFError) as exc:
            where = f"{path}: after line {lineno}"
            raise UnreadableFileError(f"{where}: cannot read further ({type(exc).__name__})") from None


def read_records(files: Iterable[Path]) -> Iterator[dict[str, Any] | None]:
    """Each line's JSON object, one at a time; ``None`` for a line that is not one."""
    for path in files:
        for _, line in read_lines(path):
            yield _object(line)


def record_ids(files: Iterable[Path], *, skip: Collection[str] = ()) -> set[str]:
    """The ids of the records in ``files``, but for those whose type is in ``skip``."""
    ids: set[str] = set()
    for record in read_records(files):
        if record is not None and isinstance(rid := record.get("id"), str) and record.get("type") not in skip:
            ids.add(rid)
    return ids


def _object(line: bytes) -> dict[str, Any] | None:
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None
