"""The README's command table names every command and every flag the CLI has."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator

from tests.paths import ROOT
from webhook.cli import _parser


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> Iterator[tuple[str, set[str]]]:
    """Every leaf command (``render audit-policy``…) with its long options, ``--help`` aside."""
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers:
        options = {
            o for a in parser._actions for o in a.option_strings if o.startswith("--") and o != "--help"
        }
        yield prefix.strip(), options
        return
    for name, sub in subparsers[0].choices.items():
        yield from _commands(sub, f"{prefix} {name}")


def _table_rows() -> dict[str, str]:
    rows = re.findall(
        r"^\| `ingress-audit ([a-z-]+(?: [a-z-]+)?)\b([^`]*)` \|", (ROOT / "README.md").read_text(), re.M
    )
    return dict(rows)


def test_every_command_and_flag_is_in_the_readmes_table() -> None:
    """A flag added to the CLI and not to the table fails here."""
    rows = _table_rows()
    gaps = []
    for command, options in _commands(_parser()):
        if command not in rows:
            gaps.append(f"no row for `ingress-audit {command}`")
        elif missing := sorted(o for o in options if o not in rows[command]):
            gaps.append(f"the row for `{command}` does not name {missing}")
    assert not gaps, "README's command table: " + "; ".join(gaps)
