"""``ingress-audit replay``: log-backend files (plain, rotated, gzip) through the ingest path."""

from __future__ import annotations

import contextlib
import gzip
import os
import pty
import select
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import capture_events, dead_letters_in, make_config, make_event, read_jsonl, records_in
from tests.paths import ROOT
from webhook.commands.replay import replay
from webhook.config import Config
from webhook.errors import UnreadableFileError
from webhook.runtime import Runtime
from webhook.sinks.base import BatchOptions, SinkSettings
from webhook.sinks.jsonl import JsonlOptions

SAMPLE = ROOT / "examples" / "audit.log"
SCRIPT = Path(sys.executable).parent / "ingress-audit"
MARKER = "do-not-copy-this-7f3k9q"


def ids(config: Config) -> list[str]:
    return [r["id"] for r in records_in(config)]


def all_record_ids(config: Config) -> list[str]:
    """Record ids in records.jsonl and its rotated files."""
    found: list[str] = []
    for path in sorted(config.data_dir.glob("records.jsonl*")):
        found.extend(r["id"] for r in read_jsonl(path))
    return found


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


async def test_plain_file(config: Config) -> None:
    """Every final event the filter keeps becomes one record; the rest is counted, not written."""
    summary = await replay(config, [SAMPLE])

    lines = SAMPLE.read_bytes().splitlines()
    assert summary.events == len(lines)
    assert summary.records == summary.matched == len(records_in(config)) > 0
    assert summary.duplicates == summary.dead_letters == summary.already_recorded == 0
    assert dead_letters_in(config) == []
    resources = {r["object"]["resource"] for r in records_in(config) if r["object"]}
    assert {"ingresses", "ingressclasses", "secrets", "configmaps", "gateways", "httproutes"} <= resources


async def test_twice_adds_nothing(config: Config) -> None:
    """A second replay of the same file writes no record: every event is a duplicate."""
    first = await replay(config, [SAMPLE])
    second = await replay(config, [SAMPLE])

    assert second.records == 0
    assert second.duplicates == second.already_recorded == first.records
    assert len(ids(config)) == first.records == len(set(ids(config)))


async def test_twice_with_rotated_sink_files(config: Config) -> None:
    """Records already rotated to records.jsonl.1, .2 … are known too."""
    rotating = SinkSettings(
        type="jsonl",
        name="jsonl",
        batch=BatchOptions(max_events=10, timeout_s=0),
        options=JsonlOptions(max_bytes=8192, backups=50),
    )
    config = replace(config, sinks=(rotating,))
    first = await replay(config, [SAMPLE], chunk_size=10)
    assert (config.data_dir / "records.jsonl.2").exists()

    second = await replay(config, [SAMPLE], chunk_size=10)

    assert second.records == 0
    assert second.already_recorded == first.records
    assert sorted(all_record_ids(config)) == sorted(set(all_record_ids(config)))


async def test_twice_with_a_gzipd_backup(config: Config) -> None:
    """A backup that logrotate compressed (``records.jsonl.1.gz``) is known too, as ``tail`` and
    ``report`` read it: replaying the same file again records nothing twice."""
    first = await replay(config, [SAMPLE])
    live = config.data_dir / "records.jsonl"
    (config.data_dir / "records.jsonl.1.gz").write_bytes(gzip.compress(live.read_bytes()))
    live.write_bytes(b"")
    # Only the records files remember now: the state store's dedupe keys expired, and the
    # spool's delivered segments were removed.
    for gone in [*config.data_dir.glob("state.sqlite3*"), *config.data_dir.glob("spool/*.seg")]:
        gone.unlink()

    second = await replay(config, [SAMPLE])

    assert second.records == 0
    assert second.already_recorded == first.records


async def test_a_record_only_in_an_older_gzipd_backup_is_known(config: Config) -> None:
    """A record id found only in ``records.jsonl.2.gz`` (no ``.1``, no ``.2``) is already
    recorded: replay reads the backups that ``tail`` and ``report`` read, by one naming rule."""
    first = await replay(config, [SAMPLE])
    live = config.data_dir / "records.jsonl"
    (config.data_dir / "records.jsonl.2.gz").write_bytes(gzip.compress(live.read_bytes()))
    live.write_bytes(b"")
    for gone in [*config.data_dir.glob("state.sqlite3*"), *config.data_dir.glob("spool/*.seg")]:
        gone.unlink()

    second = await replay(config, [SAMPLE])

    assert second.records == 0
    assert second.already_recorded == first.records
    assert read_jsonl(live) == []


async def test_rotated_and_gzip_files(config: Config, tmp_path: Path) -> None:
    """lumberjack-style rotated files, gzip'd or not, give the same records as the single file."""
    lines = SAMPLE.read_bytes().splitlines(keepends=True)
    third = len(lines) // 3
    logs = tmp_path / "logs"
    logs.mkdir()
    oldest = logs / "audit-2026-11-24T14-21-00.000.log.gz"
    oldest.write_bytes(gzip.compress(b"".join(lines[:third])))
    older = logs / "audit-2026-11-24T14-21-40.000.log"
    older.write_bytes(b"".join(lines[third : 2 * third]))
    current = logs / "audit.log"
    current.write_bytes(b"".join(lines[2 * third :]))
    whole = make_config(tmp_path / "whole")
    await replay(whole, [SAMPLE])

    summary = await replay(config, sorted(logs.iterdir()))

    assert [p.name for p in sorted(logs.iterdir())] == [oldest.name, older.name, current.name]
    assert summary.files == 3
    assert summary.events == len(lines)
    assert ids(config) == ids(whole)


async def test_same_ids_as_the_webhook(config: Config) -> None:
    """A logged event gets the record id the webhook gives it: a backfill over live records adds nothing."""
    live = capture_events("0009.json")  # A05, as the webhook received it
    runtime = await Runtime.open(config)
    try:
        result = await runtime.ingestor.ingest(live, received_at="2026-11-24T14:20:41.000000Z")
    finally:
        await runtime.aclose(drain_timeout_s=10)
    assert result.records

    summary = await replay(config, [SAMPLE])

    assert summary.already_recorded == len(result.records)
    assert summary.duplicates == len(result.records)
    assert len(ids(config)) == len(set(ids(config)))


async def test_malformed_lines_are_dead_lettered_with_line_numbers(config: Config, tmp_path: Path) -> None:
    """Not JSON, not an object, not an event: a dead letter naming file and line, never the content."""
    good = SAMPLE.read_bytes().splitlines(keepends=True)[:4]
    bad_event = {
        "kind": "Event",
        "auditID": "a1",
        "stage": "ResponseComplete",
        "verb": "create",
        "requestObject": {"data": {"password": MARKER}},
    }
    path = tmp_path / "audit.log"
    path.write_bytes(
        good[0]
        + f'{{"user": "{MARKER}"\n'.encode()  # line 2: truncated JSON
        + good[1]
        + b"\n"  # line 4: blank, skipped
        + f'["{MARKER}"]\n'.encode()  # line 5: an array
        + orjson.dumps(bad_event)  # line 6: no requestURI
        + b"\n"
        + good[2]
        + good[3]
    )

    summary = await replay(config, [path])

    letters = dead_letters_in(config)
    assert summary.dead_letters == len(letters) == 3
    assert summary.events == 7
    assert [(d["reason"], d["detail"].split(": ")[0]) for d in letters] == [
        ("not-json", "audit.log:2"),
        ("malformed-event", "audit.log:5"),
        ("malformed-event", "audit.log:6"),
    ]
    assert letters[1]["detail"] == "audit.log:5: event is not a JSON object"
    assert letters[2]["event"] == {"auditID": "a1", "stage": "ResponseComplete", "verb": "create"}
    assert all(d["type"] == "dead_letter" and d["index"] is None for d in letters)
    assert MARKER not in (config.data_dir / "dead-letter.jsonl").read_text()


async def test_eventlist_lines_are_accepted(config: Config) -> None:
    """A saved webhook body (an EventList on one line) replays like the POST it was."""
    summary = await replay(config, [ROOT / "examples" / "eventlist.json"])

    assert summary.records == 7
    assert summary.dead_letters == 0


async def test_missing_file_is_an_error_before_anything_is_written(config: Config, tmp_path: Path) -> None:
    """A file that cannot be read stops the replay before it starts, naming the path."""
    with pytest.raises(UnreadableFileError, match=r"cannot read .*missing\.log"):
        await replay(config, [SAMPLE, tmp_path / "missing.log"])

    assert not config.data_dir.exists()


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``ingress-audit replay ARGS`` as a subprocess, without the caller's INGRESS_AUDIT_* env."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGRESS_AUDIT_")}
    return subprocess.run(
        [str(SCRIPT), "replay", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
        check=False,
    )


def test_cli_piped_prints_a_summary_and_no_progress_bar(tmp_path: Path) -> None:
    """Piped: one summary line on stdout, nothing on stderr (no progress bar, no log noise)."""
    done = run_cli(str(SAMPLE), "--data-dir", "data", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    (summary,) = done.stdout.splitlines()
    assert summary.startswith(f"{len(SAMPLE.read_bytes().splitlines())} events read, ")
    for part in ("matched", "records written", "0 duplicates", "0 dead letters"):
        assert part in summary
    records: list[dict[str, Any]] = read_jsonl(tmp_path / "data" / "records.jsonl")
    assert records

    again = run_cli(str(SAMPLE), "--data-dir", "data", cwd=tmp_path)
    assert ", 0 records written, " in again.stdout
    assert read_jsonl(tmp_path / "data" / "records.jsonl") == records


def test_cli_missing_file(tmp_path: Path) -> None:
    """A missing input exits 1 with ``ingress-audit: input: …``."""
    done = run_cli("nope.log", "--data-dir", "data", cwd=tmp_path)

    assert done.returncode == 1
    assert done.stderr.startswith("ingress-audit: input: cannot read nope.log")


def test_cli_on_a_terminal_shows_a_progress_bar(tmp_path: Path) -> None:
    """With stderr on a terminal (a pty), rich draws a progress bar there; stdout keeps the summary."""
    controller, terminal = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGRESS_AUDIT_") and k != "NO_COLOR"}
    env.update(TERM="xterm-256color", COLUMNS="120")
    proc = subprocess.Popen(
        [str(SCRIPT), "replay", str(SAMPLE), "--data-dir", "data"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=terminal,
    )
    os.close(terminal)
    drawn = b""
    deadline = time.monotonic() + 60
    with contextlib.suppress(OSError):  # EIO once the process has closed the terminal
        while time.monotonic() < deadline:
            if select.select([controller], [], [], 0.5)[0]:
                if not (chunk := os.read(controller, 65536)):
                    break
                drawn += chunk
            elif proc.poll() is not None:
                break
    os.close(controller)
    out, _ = proc.communicate(timeout=60)

    assert proc.returncode == 0
    assert "━".encode() in drawn
    assert b"audit.log" in drawn
    assert out.decode().startswith(f"{len(SAMPLE.read_bytes().splitlines())} events read, ")


async def test_a_line_that_does_not_decode_costs_only_its_events(config: Config, tmp_path: Path) -> None:
    """A log line or a saved EventList holding bytes orjson refuses (1e999, a lone surrogate)
    costs only the event that holds them; it is dead-lettered with its identity."""
    good = [orjson.dumps(make_event(name=f"web-{n}", audit_id=f"a{n}")) for n in range(3)]
    poisoned = orjson.dumps(make_event(name="bad", audit_id="p1", requestObject="@@"))
    poisoned_list = orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": ["@@"]})
    path = tmp_path / "audit.log"
    path.write_bytes(
        good[0]
        + b"\n"
        + poisoned.replace(b'"@@"', b'{"x":1e999}')
        + b"\n"
        + poisoned_list.replace(b'"@@"', good[1] + b"," + poisoned.replace(b'"@@"', b'"\\ud800"'))
        + b"\n"
        + good[2]
        + b"\n"
    )

    summary = await replay(config, [path])

    letters = dead_letters_in(config)
    assert (summary.events, summary.records, summary.dead_letters) == (5, 3, 2)
    assert [(d["reason"], d["event"]["auditID"], d["event"]["objectRef"]["name"]) for d in letters] == [
        ("event-not-json", "p1", "bad"),
        ("event-not-json", "p1", "bad"),
    ]
