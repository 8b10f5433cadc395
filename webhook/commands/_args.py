"""The options several commands share, declared once, and the argument types they parse with.

Each option's default is its ``INGRESS_AUDIT_*`` environment variable, read when the parser is
built; a type's ``ArgumentTypeError`` becomes argparse's usage error (exit 2).
"""

from __future__ import annotations

import argparse
import os
import re
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from webhook.config import Config, jsonl_sink_for, load_config, with_overrides
from webhook.errors import ConfigError
from webhook.record.line import AUDIT

__all__ = [
    "add_config",
    "add_data_dir",
    "add_logging",
    "count",
    "duration",
    "env",
    "http_url",
    "jsonl_file",
    "parse_since",
    "port",
    "since",
]

_DURATION: Final = re.compile(r"(\d+)([smhdw])")
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def env(name: str) -> str | None:
    """``INGRESS_AUDIT_<name>``; unset and empty alike mean no value."""
    return os.environ.get(f"INGRESS_AUDIT_{name}") or None


def add_config(parser: argparse.ArgumentParser, help: str | None = "[INGRESS_AUDIT_CONFIG]") -> None:
    parser.add_argument("--config", type=Path, default=env("CONFIG"), help=help)


def add_data_dir(parser: argparse.ArgumentParser, help: str = "[INGRESS_AUDIT_DATA_DIR]") -> None:
    parser.add_argument("--data-dir", type=Path, default=env("DATA_DIR"), help=help)


def add_logging(parser: argparse.ArgumentParser, *, level: str | None = None) -> None:
    """``--log-format`` and ``--log-level``; ``level`` is the command's own default level, else
    the config's."""
    parser.add_argument(
        "--log-format",
        choices=["json", "console"],
        default=env("LOG_FORMAT"),
        help="[INGRESS_AUDIT_LOG_FORMAT]",
    )
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default=env("LOG_LEVEL") or level,
        help="[INGRESS_AUDIT_LOG_LEVEL]" + (f" (default: {level})" if level else ""),
    )


def jsonl_file(args: argparse.Namespace, record_type: str = AUDIT) -> tuple[Path, Config]:
    """The file of the JSONL sink that takes ``record_type`` (``tail`` and ``report`` read it
    when given no path): ``records.jsonl``, or ``access.jsonl`` for access records by default."""
    config = with_overrides(load_config(args.config), data_dir=args.data_dir)
    path = jsonl_sink_for(config, record_type)
    if path is None:
        raise ConfigError(f"no jsonl sink takes {record_type} records: pass the path of a JSONL file")
    return path, config


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """A duration back from now (``90s``, ``10m``, ``2h``, ``7d``, ``1w``) or an RFC 3339 time."""
    match = _DURATION.fullmatch(text.strip())
    if match:
        amount, unit = int(match[1]), _UNITS[match[2]]
        return (now or datetime.now(UTC)) - timedelta(**{unit: amount})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError("expected a duration such as 10m, 2h, 7d or an RFC 3339 time") from None
    if when.tzinfo is None:
        raise ValueError("an RFC 3339 time needs a UTC offset, e.g. 2026-11-24T14:20:00Z")
    return when


def since(text: str) -> datetime:
    try:
        return parse_since(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def duration(text: str) -> timedelta:
    if not _DURATION.fullmatch(text.strip()):
        raise argparse.ArgumentTypeError("expected a duration such as 30d, 12h or 2w")
    now = datetime.now(UTC)
    return now - parse_since(text, now)


def count(text: str) -> int | None:
    """A number of records, or ``all`` (None)."""
    if text == "all":
        return None
    if not text.isdigit():
        raise argparse.ArgumentTypeError("expected a number of records or 'all'")
    return int(text)


def port(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, not {number}")
    return number


def http_url(text: str) -> str:
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"expected an http:// or https:// URL, not {text!r}")
    return text
