"""How rotated files are named, in one place for the writer and every reader.

``records.jsonl`` is the live file, ``records.jsonl.1`` the newest backup, ``.2`` the one before,
and so on (``AppendLog`` rotates them so); a backup that logrotate (or a person) compressed is
``records.jsonl.N.gz``. ``tail``, ``report`` and ``replay``'s duplicate check read the same set:
a reader that missed the ``.gz`` ones would see history that another one sees, and count or
record it again.
"""

from __future__ import annotations

import glob
import gzip
from pathlib import Path
from typing import BinaryIO, Final, cast

__all__ = ["backup", "open_maybe_gzip", "rotated"]

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


def open_maybe_gzip(path: Path) -> tuple[BinaryIO, BinaryIO]:
    """(the raw file, the stream of its bytes): gzip is recognised by its magic bytes, whatever
    the name. Raises ``OSError`` when the file cannot be opened."""
    raw = path.open("rb")
    if raw.read(2) == _GZIP_MAGIC:
        raw.seek(0)
        return raw, cast(BinaryIO, gzip.GzipFile(fileobj=raw, mode="rb"))
    raw.seek(0)
    return raw, raw
