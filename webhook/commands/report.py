"""``ingress-audit report``: the weekly review (webhook/review/), written to a file or stdout."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from webhook.commands import _args
from webhook.config import jsonl_sink_for
from webhook.record.line import ALERT
from webhook.review.render import Report, render
from webhook.review.report import report_for

__all__ = ["add_arguments", "run", "write"]

_PLAIN_WIDTH: Final = 160


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="records files, rotated backups included (default: the audit/alert JSONL file, dead letters)",
    )
    _args.add_config(parser)
    _args.add_data_dir(parser)
    parser.add_argument(
        "--since",
        type=_args.since,
        help="a duration (24h, 7d) or an RFC 3339 time (default: 7 days before --until or the newest record)",
    )
    parser.add_argument(
        "--until",
        type=_args.since,
        help="end of the period, exclusive (default: now; the newest record without --since)",
    )
    parser.add_argument("--format", choices=["table", "markdown", "html", "json"], default="table")
    parser.add_argument("--output", type=Path, metavar="FILE", help="write to FILE (mode 0600), not stdout")
    parser.add_argument("--cluster", action="append", default=[], help="only these clusters; repeatable")
    parser.add_argument(
        "--expiring-within", type=_args.duration, default="30d", metavar="DURATION", help="default: 30d"
    )
    parser.add_argument("--top", type=int, default=10, metavar="N", help="rows per ranking (default: 10)")


def run(args: argparse.Namespace) -> int:
    paths: list[Path] = args.paths
    if not paths:
        records, config = _args.jsonl_file(args)
        # The files of the audit records and of the alerts (edge alerts included); the report
        # has no section of access records, so access.jsonl is not read.
        alerts = jsonl_sink_for(config, ALERT) or records
        paths = list(dict.fromkeys([records, alerts, config.in_data_dir(config.dead_letter.path)]))
    report = report_for(
        paths,
        since=args.since,
        until=args.until,
        now=datetime.now(UTC),
        clusters=args.cluster,
        expiring_within=args.expiring_within,
        top=args.top,
    )
    write(report, args.format, args.output)
    return 0


def write(report: Report, fmt: str, output: Path | None) -> None:
    """To ``output`` (mode 0600, as the records it summarizes), else to stdout: styled on a
    terminal, as wide as ``COLUMNS`` in a pipe."""
    if output is not None:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w", encoding="utf-8") as f:
            render(report, fmt, f)
        return
    terminal = sys.stdout.isatty()
    width = None if terminal else int(os.environ.get("COLUMNS") or 0) or _PLAIN_WIDTH
    try:
        render(report, fmt, sys.stdout, terminal=terminal, width=width)
        sys.stdout.flush()
    except BrokenPipeError:  # `| head` went away: nothing more to say
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
