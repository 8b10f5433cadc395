"""Summarize a py-spy profile (collapsed stacks, from ``python -m bench --py-spy prof.txt``).

``python -m bench.profile prof-batch.txt`` prints, per thread and per function (file, no line),
the share of samples spent in the function itself and in it plus what it called.
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

__all__ = ["Profile", "main", "read_profile"]

_LINE: Final = re.compile(r" \(([^()]*?):\d+\)$")


def _function(frame: str) -> str:
    """``keep (webhook/filter.py:212)`` → ``keep (webhook/filter.py)``: one entry per function."""
    return _LINE.sub(r" (\1)", frame)


@dataclass(slots=True)
class Profile:
    samples: int = 0
    threads: Counter[str] = field(default_factory=Counter)
    own: Counter[str] = field(default_factory=Counter)
    total: Counter[str] = field(default_factory=Counter)

    def add(self, frames: Sequence[str], count: int) -> None:
        self.samples += count
        names = [_function(f) for f in frames]
        self.threads["main" if "asyncio/runners.py" in "".join(frames[:8]) else "worker threads"] += count
        self.own[names[-1]] += count
        for name in set(names):
            self.total[name] += count


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
    for title, counter in (("self", profile.own), ("inclusive", profile.total)):
        out.write(f"-- {title}\n")
        for name, count in counter.most_common(args.top):
            out.write(f"  {count / profile.samples:6.1%}  {name}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
