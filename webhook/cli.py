"""The ``ingress-audit`` command: a table of subcommands, one module each in webhook/commands/.

A command's module is imported only when the command line names it (pip's lazy command table),
so that ``--help`` and the light commands answer at once. Each module has
``add_arguments(parser)`` and ``run(args) -> int``.
Exit codes: 0 success, 1 a ``WebhookError`` (printed as ``ingress-audit: <code>: <message>``),
2 a usage error.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Collection, Sequence
from typing import Final, Protocol, cast

from webhook import __version__
from webhook.errors import WebhookError

__all__ = ["main", "run"]

# name → (module, summary); the order is the order of ``--help``.
_COMMANDS: Final = {
    "serve": ("webhook.commands.serve", "run the webhook server"),
    "check-config": ("webhook.commands.check_config", "validate a config file and print its errors"),
    "render": ("webhook.commands.render", "print what the apiserver needs"),
    "tail": (
        "webhook.commands.tail",
        "follow the records file across rotation, one readable line per record",
    ),
    "replay": (
        "webhook.commands.replay",
        "feed kube-apiserver audit log files (log backend, .gz too), then access logs, into the sinks",
    ),
    "report": (
        "webhook.commands.report",
        "the weekly review: changes, findings, auth failures, expiring certificates, alerts",
    ),
    "scan-leaks": (
        "webhook.commands.scan_leaks",
        "search files for known secret values (plain, base64, hex, ...); exit 1 if found",
    ),
    "schema": ("webhook.commands.schema", "print a JSON Schema (the record's by default)"),
}


class _Command(Protocol):
    """What a module of webhook/commands/ offers."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


# Commands that print nothing with rich: structlog imports it for its tracebacks when it can,
# and a process that has not imported structlog yet leaves it out: 3.4 MB (rich and pygments)
# less for the long-running server, whose tracebacks are plain text anyway.
_WITHOUT_RICH: Final = frozenset({"serve"})


def _command(name: str) -> _Command:
    module, _ = _COMMANDS[name]
    if name in _WITHOUT_RICH and "structlog" not in sys.modules:
        sys.modules.setdefault("rich", None)  # type: ignore[arg-type]  # None: not importable
    return cast(_Command, importlib.import_module(module))


def _named(argv: Sequence[str]) -> Collection[str]:
    """The command ``argv`` names, if any: its first word that is not an option, since the
    program's own options (``--help``, ``--version``) take no value."""
    first = next((word for word in argv if not word.startswith("-")), None)
    return () if first is None else (first,)


def _parser(load: Collection[str] = _COMMANDS.keys()) -> argparse.ArgumentParser:
    """Every command, with the arguments of those in ``load`` (whose modules are imported)."""
    parser = argparse.ArgumentParser(
        prog="ingress-audit",
        description="Audit webhook backend for Kubernetes ingress access.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, summary) in _COMMANDS.items():
        command = commands.add_parser(name, help=summary)
        if name in load:
            _command(name).add_arguments(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command: expected errors are one line on stderr and a non-zero exit, never a
    traceback (a traceback means a bug)."""
    words = sys.argv[1:] if argv is None else argv
    args = _parser(load=_named(words)).parse_args(words)
    try:
        code = _command(args.command).run(args)
    except WebhookError as exc:
        print(f"ingress-audit: {exc.code}: {exc.message}", file=sys.stderr)
        for line in getattr(exc, "errors", ()):
            print(f"  {line}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (``| head``): nothing more to say, and nobody to say it to.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except OSError as exc:  # a path that cannot be used: named, with the system's reason
        where = f"{exc.filename}: " if exc.filename else ""
        print(
            f"ingress-audit: {args.command}: {where}{(exc.strerror or type(exc).__name__).lower()}",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 130
    return code


def run() -> None:
    sys.exit(main())
