"""Summarize a py-spy profile (collapsed stacks, from ``python -m bench --py-spy prof.txt``).

``python -m bench.profile prof-batch.txt`` prints, per process and thread (the serve process, the
worker processes of ``server.workers``) and per function (file, no line),
the share of samples spent in the function itself and in it plus what it called, and the
samples grouped into the server's stages (``BUCKETS``: the innermost frame that names one wins).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

__all__ = ["BUCKETS", "Profile", "main", "read_profile"]

_LINE: Final = re.compile(r" \(([^()]*?):\d+\)$")
# (substring of a frame, stage); frames are tried from the innermost out, the first hit wins.
BUCKETS: Final = (
    ("structlog/", "logging"),
    ("prometheus_client/", "metrics"),
    ("webhook/redact/certs.py", "redaction: certificates"),
    ("webhook/redact", "redaction: walk and fingerprints"),
    ("webhook/record/audit.py", "record: build and to_json"),
    ("webhook/enrich/", "record: build and to_json"),
    ("webhook/filter.py", "filter"),
    ("check_event", "check_event"),
    ("decode_event_list", "decode (orjson)"),
    ("webhook/pipeline/stages.py", "pipeline: digest, id, dedupe"),
    ("webhook/dedupe.py", "pipeline: digest, id, dedupe"),
    ("webhook/state/", "state store (previous objects for diffs)"),
    ("Spool._write", "spool: write + fsync (thread)"),
    ("AppendLog._write", "jsonl sink: write + fsync (thread)"),
    ("webhook/spool/groupcommit.py", "spool or jsonl sink: write + fsync (thread)"),
    ("Spool.commit", "sink cursor: write + fsync + rename (event loop)"),
    ("webhook/delivery.py", "delivery loop: read spool, send"),
    ("Spool.read", "delivery loop: read spool, send"),
    ("webhook/sinks/", "delivery loop: read spool, send"),
    ("webhook/spool/segments.py", "spool: append, group commit"),
    ("webhook/spool/appendlog.py", "spool: append, group commit"),
    ("_receive (webhook/pipeline/workers.py", "worker processes: pickling, pipes (both ends)"),
    ("_send (webhook/pipeline/workers.py", "worker processes: pickling, pipes (both ends)"),
    ("_Batches.answer (webhook/pipeline/workers.py", "worker processes: pickling, pipes (both ends)"),
    ("_read_answer (webhook/pipeline/workers.py", "worker processes: pickling, pipes (both ends)"),
    ("_batch (webhook/pipeline/workers.py", "worker processes: reading their lines (event loop)"),
    ("webhook/pipeline/workers.py", "worker processes: rest, incl. freeing the batch"),
    ("importlib", "worker processes: start-up imports"),
    ("multiprocessing/", "worker processes: pickling, pipes (both ends)"),
    ("concurrent/futures/process.py", "worker processes: pickling, pipes (both ends)"),
    ("concurrent/futures", "thread pool hand-off"),
    ("webhook/pipeline/ingestor.py", "ingest (rest)"),
    ("webhook/server/", "handler (rest, incl. freeing the batch)"),
    ("webhook/sources/webhook.py", "handler (rest, incl. freeing the batch)"),
    ("aiohttp/", "HTTP (aiohttp) and sockets"),
    ("asyncio/selector_events.py", "HTTP (aiohttp) and sockets"),
    ("selectors.py", "HTTP (aiohttp) and sockets"),
    ("asyncio/", "event loop"),
)


def _function(frame: str) -> str:
    """``keep (webhook/filter.py:212)`` → ``keep (webhook/filter.py)``: one entry per function."""
    return _LINE.sub(r" (\1)", frame)


@dataclass(slots=True)
class Profile:
    samples: int = 0
    threads: Counter[str] = field(default_factory=Counter)
    own: Counter[str] = field(default_factory=Counter)
    total: Counter[str] = field(default_factory=Counter)
    stages: Counter[str] = field(default_factory=Counter)

    def add(self, frames: Sequence[str], count: int) -> None:
        self.samples += count
        # py-spy --subprocesses starts each stack with the process (and its parent), as
        # 'process PID:"command line"'; a command line with a ';' spans two frames.
        lead = 0
        while lead < len(frames) and (
            frames[lead].startswith("process ") or frames[lead].endswith('--multiprocessing-fork"')
        ):
            lead += 1
        process = "worker processes: " if any("spawn_main" in f for f in frames[:lead]) else ""
        frames = frames[lead:] or ["(idle)"]
        names = [_function(f) for f in frames]
        thread = "worker threads" if frames[0].startswith("Thread._bootstrap") else "main"
        self.threads[process + thread] += count
        self.own[names[-1]] += count
        for name in set(names):
            self.total[name] += count
        self.stages[_stage(frames)] += count


def _stage(frames: Sequence[str]) -> str:
    for frame in reversed(frames):
        for needle, stage in BUCKETS:
            if needle in frame:
                return stage
    return "other"


def read_profile(lines: Iterable[str]) -> Profile:
    profile = Profile()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if stack and count.isdigit():
            profile.add(stack.split(";"), int(count))
    return profile


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n")[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    with args.file.open() as handle:
        profile = read_profile(handle)
    out = sys.stdout
    if not profile.samples:
        out.write(f"{args.file}: no samples\n")
        return 1
    out.write(f"{profile.samples} samples\n")
    for thread, count in profile.threads.most_common():
        out.write(f"  {count / profile.samples:6.1%}  {thread}\n")
    for title, counter, top in (
        ("stages", profile.stages, None),
        ("self", profile.own, args.top),
        ("inclusive", profile.total, args.top),
    ):
        out.write(f"-- {title}\n")
        for name, count in counter.most_common(top):
            out.write(f"  {count / profile.samples:6.1%}  {name}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
