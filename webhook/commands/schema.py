"""``ingress-audit schema``: the JSON Schema of the record (what consumers rely on) or of the config."""

from __future__ import annotations

import argparse
import sys

import orjson

from webhook.config import config_schema
from webhook.record.audit import record_schema

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("which", nargs="?", choices=["record", "config"], default="record")


def run(args: argparse.Namespace) -> int:
    schema = record_schema() if args.which == "record" else config_schema()
    sys.stdout.write(orjson.dumps(schema, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0
