"""``ingress-audit tail``: the records file as a person reads it, followed across rotation.

Follows the file by name like ``tail -F`` (the appendlog renames ``records.jsonl`` to ``.1`` and
starts a new one): the old file is read to its end before the new one is opened, so every line
is printed once. Stops quietly on Ctrl-C and when the reader of a pipe goes away (``| head``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Final

import orjson
from rich.console import Console
from rich.text import Text

from webhook.commands import _args
from webhook.core.patterns import Matcher
from webhook.core.values import as_dict
from webhook.core.visible import visible_doc, visible_json_line
from webhook.errors import RecordsNotFoundError
from webhook.record.files import rotated
from webhook.record.line import ACCESS, ACCESS_SUMMARY, ALERT, AUDIT
from webhook.record.time import record_time

__all__ = [
    "SEVERITIES",
    "TailFilter",
    "add_arguments",
    "compile_filter",
    "follow",
    "history",
    "print_records",
    "render",
    "run",
]

SEVERITIES: Final = ("info", "low", "medium", "high", "critical")
_SEVERITY_STYLES: Final = {
    "info": "dim",
    "low": "cyan",
    "medium": "yellow",
    "high": "bold red",
    "critical": "bold white on red",
}
_BLOCK: Final = 64 * 1024
_READ: Final = 1024 * 1024

Line = tuple[bytes, dict[str, Any]]


@dataclass(frozen=True, slots=True, kw_only=True)
class TailFilter:
    """Each field is a set of shell patterns (any may match); all set fields must match."""

    namespaces: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ()
    findings: tuple[str, ...] = ()
    clusters: tuple[str, ...] = ()
    severity: str | None = None
    since: datetime | None = None


def _get(record: Any, *path: str) -> Any:
    value: Any = record
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def compile_filter(spec: TailFilter) -> Callable[[dict[str, Any]], bool]:
    """One predicate over a parsed record, built once."""
    floor = SEVERITIES.index(spec.severity) if spec.severity else None
    namespaces, resources = Matcher(spec.namespaces), Matcher(spec.resources)
    users, verbs, finding_ids = Matcher(spec.users), Matcher(spec.verbs), Matcher(spec.findings)
    clusters = Matcher(spec.clusters)

    def keep(record: dict[str, Any]) -> bool:
        if spec.clusters and not clusters(record.get("cluster")):
            return False
        obj = record.get("object") if isinstance(record.get("object"), dict) else {}
        if spec.namespaces and not namespaces(_get(obj, "namespace")):
            return False
        if spec.resources:
            resource, group = _get(obj, "resource"), _get(obj, "api_group")
            dotted = f"{resource}.{group}" if resource and group else None
            if not (resources(resource) or resources(dotted)):
                return False
        if spec.users and not (
            users(_get(record, "actor", "user", "username"))
            or users(_get(record, "actor", "impersonated", "username"))
            or users(_get(record, "actor", "username"))  # an alert's
        ):
            return False
        if spec.verbs and not verbs(record.get("verb")):
            return False
        findings = [f for f in record.get("findings") or () if isinstance(f, dict)]
        if record.get("type") == ALERT:  # its finding (or detection) and its own severity
            finding = _get(record, "labels", "finding") or record.get("detection")
            findings = [{"id": finding, "severity": record.get("severity")}]
        if spec.findings and not any(finding_ids(f.get("id")) for f in findings):
            return False
        if floor is not None and not any(
            f.get("severity") in SEVERITIES and SEVERITIES.index(f["severity"]) >= floor for f in findings
        ):
            return False
        if spec.since is not None:
            when = record_time(record)
            if when is None or when < spec.since:
                return False
        return True

    return keep


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def _backups(path: Path) -> list[Path]:
    """The uncompressed backups, which tail can read backwards, newest first."""
    return [p for p in rotated(path) if not p.name.endswith(".gz")]


def _complete_end(f: IO[bytes], size: int) -> int:
    """The offset just after the last newline before ``size`` (0 if there is none)."""
    pos = size
    while pos > 0:
        start = max(0, pos - _BLOCK)
        f.seek(start)
        cut = f.read(pos - start).rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        pos = start
    return 0


def _backwards(f: IO[bytes], end: int) -> Iterator[bytes]:
    """The whole lines of ``f[:end]`` (which ends with a newline), last first."""
    pos, carry = end, b""
    while pos > 0:
        start = max(0, pos - _BLOCK)
        f.seek(start)
        parts = (f.read(pos - start) + carry).split(b"\n")
        carry = parts[0]
        yield from (line for line in reversed(parts[1:]) if line)
        pos = start
    if carry:
        yield carry


def _forwards(f: IO[bytes], end: int) -> Iterator[bytes]:
    f.seek(0)
    remaining = end
    for line in f:
        if remaining <= 0:
            break
        remaining -= len(line)
        if line.strip():
            yield line.rstrip(b"\n")


def history(
    path: Path, f: IO[bytes] | None, count: int | None, keep: Callable[[dict[str, Any]], bool]
) -> tuple[list[Line], int]:
    """The last ``count`` kept records (all with ``None``), oldest first, reading into backups
    when the current file has too few; and the offset in ``f`` where following resumes."""
    end = _complete_end(f, os.fstat(f.fileno()).st_size) if f is not None else 0
    if count == 0:
        return [], end
    sources: list[tuple[IO[bytes], int]] = []
    with contextlib.ExitStack() as stack:
        if f is not None:
            sources.append((f, end))
        for backup in _backups(path):
            with contextlib.suppress(OSError):
                b = stack.enter_context(backup.open("rb"))
                sources.append((b, os.fstat(b.fileno()).st_size))
        if count is None:
            lines = (line for src, size in reversed(sources) for line in _forwards(src, size))
            return [(line, doc) for line in lines if (doc := _parse(line)) is not None and keep(doc)], end
        found: list[Line] = []
        for src, size in sources:
            for line in _backwards(src, _complete_end(src, size)):
                doc = _parse(line)
                if doc is not None and keep(doc):
                    found.append((line, doc))
                    if len(found) == count:
                        return found[::-1], end
        return found[::-1], end


def follow(path: Path, f: IO[bytes] | None, offset: int, *, poll_s: float = 0.2) -> Iterator[list[bytes]]:
    """Whole lines appended from ``offset`` on, across renames; ``[]`` after each idle poll."""
    carry = b""
    try:
        while True:
            if f is None:
                try:
                    f, offset, carry = path.open("rb"), 0, b""
                except FileNotFoundError:
                    yield []
                    time.sleep(poll_s)
                    continue
            f.seek(offset)
            data = f.read(_READ)
            if data:
                offset += len(data)
                *lines, carry = (carry + data).split(b"\n")
                yield [line for line in lines if line.strip()]
                continue
            try:
                current = os.stat(path)
            except FileNotFoundError:
                current = None
            mine = os.fstat(f.fileno())
            if current is None or (current.st_ino, current.st_dev) != (mine.st_ino, mine.st_dev):
                f.close()  # renamed away: it was read to its end just above
                f = None
                continue
            if mine.st_size < offset:  # truncated in place
                offset, carry = 0, b""
                continue
            yield []
            time.sleep(poll_s)
    finally:
        if f is not None:
            f.close()


def _reader_gone() -> bool:
    """True when stdout is a pipe whose reading end was closed (``| head`` has exited)."""
    poller = select.poll()
    poller.register(sys.stdout.fileno(), 0)
    return any(event & (select.POLLERR | select.POLLHUP) for _, event in poller.poll(0))


class _PipeClosed(Exception):
    pass


class _Console(Console):
    def on_broken_pipe(self) -> None:
        raise _PipeClosed


def _console() -> Console:
    return _Console(highlight=False, markup=False, emoji=False, soft_wrap=True)


def _code_style(code: Any) -> str:
    if not isinstance(code, int):
        return "dim"
    if code in (401, 403):
        return "bold red"
    return "green" if code < 400 else "yellow" if code < 500 else "red"


def _render_alert(record: dict[str, Any]) -> Text:
    """An alert record (docs/detections.md): time, ALERT or resolved, severity, detection, summary."""
    line = Text()
    line.append(f"{str(record.get('time') or '-')[:19]}Z  ", style="dim")
    firing = record.get("status") == "firing"
    line.append("ALERT   " if firing else "resolved", style="bold red" if firing else "green")
    severity = str(record.get("severity", "info"))
    line.append(f"  [{severity}] {record.get('detection', '?')}", style=_SEVERITY_STYLES.get(severity, ""))
    line.append(f"  {record.get('summary', '')}")
    return line


def render(record: dict[str, Any]) -> Text:
    """One line: time, actor, verb, object, outcome, findings (for an alert: its summary)."""
    record = visible_doc(record)  # every field printed, whoever sent it, shows its controls escaped
    if record.get("type") == ALERT:
        return _render_alert(record)
    line = Text()
    when = record.get("time") or record.get("received_at") or "-"
    line.append(f"{str(when)[:19]}Z  ", style="dim")
    if record.get("type") in (ACCESS, ACCESS_SUMMARY):
        _render_access(line, record)
        return line
    user = _get(record, "actor", "user", "username") or "(unauthenticated)"
    actor = Text(str(user), style="bold")
    if (impersonated := _get(record, "actor", "impersonated", "username")) is not None:
        actor.append(f" as {impersonated}", style="magenta")
    actor.pad_right(max(0, 22 - actor.cell_len))
    line.append_text(actor)
    line.append(f"  {record.get('verb', '-')!s:<7}", style="cyan")
    if record.get("dry_run"):
        line.append(" (dry run)", style="dim")
    obj = record.get("object") if isinstance(record.get("object"), dict) else None
    if obj:
        resource = "/".join(p for p in (obj.get("resource"), obj.get("subresource")) if p) or "-"
        name = "/".join(p for p in (obj.get("namespace"), obj.get("name")) if p)
        line.append(f"  {resource} {name}".rstrip())
    else:
        line.append(f"  {record.get('request_uri', '-')}")
    code = _get(record, "outcome", "code")
    line.append(f"  {code if code is not None else '-'}", style=_code_style(code))
    if (decision := _get(record, "outcome", "decision")) == "forbid":
        line.append(f" {decision}", style="bold red")
    # Two findings of one id (a forwarder removed and one added) are one mark with a count.
    shown = Counter(
        (str(finding.get("severity", "info")), str(finding.get("id", "?")))
        for finding in record.get("findings") or ()
        if isinstance(finding, dict)
    )
    for (severity, finding_id), times in shown.items():
        count = f" (x{times})" if times > 1 else ""
        line.append(f"  [{severity}] {finding_id}{count}", style=_SEVERITY_STYLES.get(severity, ""))
    return line


def _render_access(line: Text, record: dict[str, Any]) -> None:
    """An access request (client, request, status) or a window (requests by status class)."""
    ingress = as_dict(record.get("ingress"))
    where = "/".join(str(p) for p in (ingress.get("namespace"), ingress.get("name")) if p)
    if record.get("type") == ACCESS:
        client = _get(record, "client", "ip") or "-"
        trust = _get(record, "client", "trust") or ""
        line.append(f"{client!s:<22}", style="bold red" if trust == "untrusted" else "bold")
        request = as_dict(record.get("request"))
        line.append(f"  {request.get('method') or '-'!s:<7}", style="cyan")
        line.append(f"  {request.get('host') or '-'}{request.get('path') or ''}")
        code = request.get("status")
        line.append(f"  {code if code is not None else '-'}", style=_code_style(code))
    else:
        scope = record.get("scope")
        line.append(f"{'window':<22}", style="bold")
        line.append(f"  {scope!s:<7}", style="cyan")
        line.append(f"  {record.get('host') or record.get('upstream') or ''}".rstrip())
        statuses = as_dict(record.get("statuses"))
        counts = " ".join(f"{k}:{v}" for k, v in sorted(statuses.items()))
        line.append(f"  {record.get('requests', 0)} requests {counts}".rstrip())
        if record.get("auth_failures"):
            line.append(f"  401/403:{record['auth_failures']}", style="bold red")
    if where:
        line.append(f"  ({where})", style="dim")


def print_records(
    path: Path,
    *,
    count: int | None,
    keep: Callable[[dict[str, Any]], bool],
    raw: bool,
    follow_file: bool,
    poll_s: float = 0.2,
) -> int:
    """Print the history, then follow; 0 on Ctrl-C and on a closed pipe."""
    console = None if raw else _console()

    def emit(lines: Sequence[Line]) -> None:
        if raw:
            sys.stdout.buffer.write(b"".join(visible_json_line(line) + b"\n" for line, _ in lines))
            sys.stdout.buffer.flush()
        elif console is not None:
            for _, doc in lines:
                console.print(render(doc))
            console.file.flush()

    try:
        f: IO[bytes] | None = path.open("rb")
    except FileNotFoundError:
        if not follow_file:
            raise RecordsNotFoundError(f"{path} does not exist") from None
        sys.stderr.write(f"ingress-audit: waiting for {path} to appear\n")
        f = None
    try:
        past, offset = history(path, f, count, keep)
        emit(past)
        if not follow_file:
            return 0
        for lines in follow(path, f, offset, poll_s=poll_s):
            if lines:
                emit([(line, doc) for line in lines if (doc := _parse(line)) is not None and keep(doc)])
            elif _reader_gone():
                break
    except (BrokenPipeError, _PipeClosed):
        pass
    except KeyboardInterrupt:
        return 0
    finally:
        if f is not None:
            f.close()
    # Nothing more can reach the reader; keep the interpreter's final flush from failing.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path", nargs="?", type=Path, help="records file (default: the JSONL sink of the config)"
    )
    _args.add_config(parser)
    _args.add_data_dir(parser)
    parser.add_argument(
        "-n",
        "--lines",
        type=_args.count,
        default=10,
        metavar="N",
        help="print the last N records first (or all)",
    )
    parser.add_argument("--no-follow", action="store_true", help="print and exit")
    parser.add_argument("--json", action="store_true", help="the records' JSON lines, unchanged")
    parser.add_argument(
        "--access", action="store_true", help="the access records' file (access.jsonl), not the audit one"
    )
    for flag, what in (
        ("--namespace", "object namespace"),
        ("--resource", "resource, e.g. ingresses or ingresses.networking.k8s.io"),
        ("--user", "username (the caller or the identity it impersonated)"),
        ("--verb", "verb"),
        ("--finding", "finding id"),
        ("--cluster", "cluster (records, alerts and access records all name theirs)"),
    ):
        parser.add_argument(flag, action="append", default=[], metavar="PATTERN", help=f"{what}; repeatable")
    parser.add_argument(
        "--severity", choices=SEVERITIES, help="records with a finding at this severity or above"
    )
    parser.add_argument("--since", type=_args.since, help="a duration (10m, 2h, 7d) or an RFC 3339 time")


def run(args: argparse.Namespace) -> int:
    path: Path | None = args.path
    if path is None:
        path, _ = _args.jsonl_file(args, ACCESS if args.access else AUDIT)
    keep = compile_filter(
        TailFilter(
            namespaces=tuple(args.namespace),
            resources=tuple(args.resource),
            users=tuple(args.user),
            verbs=tuple(args.verb),
            findings=tuple(args.finding),
            clusters=tuple(args.cluster),
            severity=args.severity,
            since=args.since,
        )
    )
    return print_records(path, count=args.lines, keep=keep, raw=args.json, follow_file=not args.no_follow)
