"""``ingress-audit scan-leaks``: where known secret values occur in files, in any encoding
(webhook/redact/leaks.py); a leak is named by file, offset, line of the secrets file and
encoding, never by its value."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from webhook.redact.leaks import scan

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("secrets_file", type=Path, help="one secret value per line")
    parser.add_argument("paths", nargs="+", type=Path, help="files or directories, e.g. the data dir")


def run(args: argparse.Namespace) -> int:
    """1 when a value is found, 2 when a file cannot be read, else 0."""
    try:
        lines = args.secrets_file.read_text(encoding="utf-8").splitlines()
        leaks = scan(args.paths, lines)
    except OSError as exc:
        print(
            f"ingress-audit: scan-leaks: {exc.filename}: {(exc.strerror or 'unreadable').lower()}",
            file=sys.stderr,
        )
        return 2
    for leak in leaks:
        print(
            f"{leak.file}: byte {leak.offset}: the secret on line {leak.secret + 1} of "
            f"{args.secrets_file} ({leak.encoding})"
        )
    print(f"{len(leaks)} leak(s) in {len(args.paths)} path(s)")
    return 1 if leaks else 0
