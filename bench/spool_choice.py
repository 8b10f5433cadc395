"""Was a segment-file spool the right choice? Append batches with one fsync each, two ways.

(a) what webhook/spool/segments.py does: whole JSON lines appended to a segment file (O_APPEND), one
``os.fsync`` per batch, a new segment (and a directory fsync) every 64 MiB;
(b) SQLite in WAL mode with ``synchronous=FULL``: one transaction per batch, a row per record.

``python -m bench.spool_choice`` prints batches/s, records/s, MB/s and the per-batch latency
(p50/p99) for 400-record batches (the brief's case) and 20-record batches (what one 400-event
apiserver batch at 5 % matched yields): medians of five interleaved runs, and the paired ratio.
Append only: neither side pays for reading or for dropping what the sinks have delivered.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import orjson

from bench.report import percentile, table

__all__ = ["Figures", "main", "measure"]

SEGMENT_BYTES: Final = 64 * 1024 * 1024
Appender = Callable[[Sequence[bytes]], None]


def _lines(count: int, size: int, seed: int) -> list[bytes]:
    """Record-like JSON lines of about ``size`` bytes (a record at HEAD is ~1.3 kB at the median)."""
    rng = random.Random(seed)  # noqa: S311 - filler, not security
    lines = []
    for n in range(count):
        doc = {"schema_version": 1, "type": "audit", "id": f"{rng.getrandbits(128):032x}", "seq": n}
        doc["pad"] = "x" * max(size - len(orjson.dumps(doc)) - 10, 0)
        lines.append(orjson.dumps(doc))
    return lines


class _Segments:
    """The write path of webhook/spool/segments.py's ``Spool._write``, without the asyncio around it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.number = 0
        self.offset = 0
        self.fd = -1
        self._roll()

    def _roll(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        self.number += 1
        path = self.directory / f"{self.number:020d}.seg"
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.offset = 0
        dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def append(self, lines: Sequence[bytes]) -> None:
        data = b"\n".join(lines) + b"\n"
        if self.offset and self.offset + len(data) > SEGMENT_BYTES:
            self._roll()
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]
        os.fsync(self.fd)
        self.offset += len(data)

    def close(self) -> None:
        os.close(self.fd)


class _Sqlite:
    def __init__(self, directory: Path) -> None:
        self.db = sqlite3.connect(directory / "spool.db", isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("CREATE TABLE records (seq INTEGER PRIMARY KEY, line BLOB NOT NULL)")

    def append(self, lines: Sequence[bytes]) -> None:
        self.db.execute("BEGIN")
        self.db.executemany("INSERT INTO records (line) VALUES (?)", ((line,) for line in lines))
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()


@dataclass(frozen=True, slots=True)
class Figures:
    batches_per_s: float
    records_per_s: float
    mb_per_s: float
    p50_ms: float
    p99_ms: float


def _run(kind: str, directory: Path, batches: Sequence[Sequence[bytes]]) -> Figures:
    spool: _Segments | _Sqlite = _Segments(directory) if kind == "segments" else _Sqlite(directory)
    latencies = []
    try:
        started = time.perf_counter()
        for batch in batches:
            t0 = time.perf_counter()
            spool.append(batch)
            latencies.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - started
    finally:
        spool.close()
    records = sum(map(len, batches))
    size = sum(len(line) + 1 for batch in batches for line in batch)
    return Figures(
        batches_per_s=len(batches) / elapsed,
        records_per_s=records / elapsed,
        mb_per_s=size / elapsed / 1e6,
        p50_ms=percentile(latencies, 50) * 1000,
        p99_ms=percentile(latencies, 99) * 1000,
    )


def measure(
    *, batch_records: int, batches: int, record_bytes: int, repeats: int = 3
) -> tuple[Figures, Figures, float]:
    """Both kinds, interleaved (A B A B ...) so that disk noise hits both alike, each run in a fresh dir.

    Returns the per-figure medians for segments and for SQLite, and the median of the paired
    ratios of records/s (SQLite over segments).
    """
    lines = _lines(batch_records * batches, record_bytes, seed=batch_records)
    chunks = [lines[i : i + batch_records] for i in range(0, len(lines), batch_records)]
    runs: dict[str, list[Figures]] = {"segments": [], "sqlite": []}
    for _ in range(repeats):
        for kind, results in runs.items():
            with tempfile.TemporaryDirectory(prefix="ingress-audit-spool-") as tmp:
                results.append(_run(kind, Path(tmp), chunks))
    ratio = statistics.median(
        b.records_per_s / a.records_per_s for a, b in zip(runs["segments"], runs["sqlite"], strict=True)
    )
    segments, sqlite = (
        Figures(*(statistics.median(getattr(r, f) for r in results) for f in Figures.__slots__))
        for results in runs.values()
    )
    return segments, sqlite, ratio


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spool_choice", description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=200, help="batches per run (200)")
    parser.add_argument("--record-bytes", type=int, default=1300, help="bytes per record line (1300)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[400, 20], help="records per batch")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved runs of each kind (5)")
    args = parser.parse_args(argv)
    rows = []
    for size in args.sizes:
        segments, sqlite, ratio = measure(
            batch_records=size, batches=args.batches, record_bytes=args.record_bytes, repeats=args.repeats
        )
        for kind, f in (("segment files", segments), ("SQLite WAL, synchronous=FULL", sqlite)):
            rows.append(
                [
                    f"{kind}, {size} records/batch",
                    f"{f.batches_per_s:,.0f}",
                    f"{f.records_per_s:,.0f}",
                    f"{f.mb_per_s:.0f}",
                    f"{f.p50_ms:.2f} / {f.p99_ms:.2f}",
                    f"{ratio:.2f}" if kind.startswith("SQLite") else "1",
                ]
            )
    header = [
        f"append + fsync, median of {args.repeats}",
        "batches/s",
        "records/s",
        "MB/s",
        "batch p50 / p99 (ms)",
        "records/s vs segments",
    ]
    sys.stdout.write(f"{args.batches} batches per run, {args.record_bytes} B per record\n")
    sys.stdout.write(table(header, rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
