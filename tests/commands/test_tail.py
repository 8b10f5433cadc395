"""``ingress-audit tail``: filters, pipes, rotation while following, and a real terminal (tmux)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import make_config, read_jsonl
from tests.paths import ROOT
from webhook.cli import main
from webhook.commands._args import parse_since
from webhook.commands.replay import replay
from webhook.commands.tail import TailFilter, compile_filter, history, render
from webhook.detect.settings import DetectionsConfig
from webhook.spool.appendlog import AppendLog

SCRIPT = Path(sys.executable).parent / "ingress-audit"
DEADLINE_S = 15.0


def wait_for(check: Callable[[], bool], what: str, timeout: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def records_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The records of examples/audit.log, written by the real ingest path (audit records only)."""
    config = replace(make_config(tmp_path_factory.mktemp("tail")), detections=DetectionsConfig(enabled=False))
    asyncio.run(replay(config, [ROOT / "examples" / "audit.log"]))
    return config.data_dir / "records.jsonl"


@pytest.fixture
def records(records_file: Path) -> list[dict[str, Any]]:
    return read_jsonl(records_file)


def kept(path: Path, count: int | None = None, **spec: Any) -> list[dict[str, Any]]:
    with path.open("rb") as f:
        lines, _ = history(path, f, count, compile_filter(TailFilter(**spec)))
    return [doc for _, doc in lines]


def tail(*args: str, timeout: float = DEADLINE_S) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [str(SCRIPT), "tail", *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def test_since_takes_durations_and_rfc3339() -> None:
    """``--since`` accepts 90s/10m/2h/7d/1w back from now, or an RFC 3339 time with an offset."""
    now = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)

    assert parse_since("10m", now) == datetime(2026, 11, 24, 13, 50, tzinfo=UTC)
    assert parse_since("7d", now) == datetime(2026, 11, 17, 14, 0, tzinfo=UTC)
    assert parse_since("2026-11-24T14:21:30Z") == datetime(2026, 11, 24, 14, 21, 30, tzinfo=UTC)
    for bad in ("yesterday", "10x", "2026-11-24T14:21:30"):
        with pytest.raises(ValueError, match=r"duration|offset"):
            parse_since(bad, now)


def test_last_n_then_nothing_more_with_no_follow(records_file: Path, records: list[dict[str, Any]]) -> None:
    """``-n 3 --no-follow`` prints the last three records, one line each, and exits 0."""
    done = tail(str(records_file), "-n", "3", "--no-follow")

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3
    for line, record in zip(lines, records[-3:], strict=True):
        assert record["verb"] in line
        assert record["object"]["name"] in line
        assert str(record["outcome"]["code"]) in line
    assert "\x1b[" not in done.stdout  # no colours into a pipe


def test_json_prints_the_lines_unchanged(records_file: Path) -> None:
    """``--json`` writes the records' lines byte for byte."""
    done = tail(str(records_file), "-n", "all", "--no-follow", "--json")

    assert done.returncode == 0, done.stderr
    assert done.stdout == records_file.read_text()


def test_filters(records_file: Path, records: list[dict[str, Any]]) -> None:
    """Each filter keeps exactly the matching records; patterns are shell patterns."""
    alice = kept(records_file, users=("alice",))
    assert alice
    assert all(
        "alice" in (r["actor"]["user"]["username"], (r["actor"]["impersonated"] or {}).get("username"))
        for r in alice
    )
    secrets = kept(records_file, resources=("secrets",), verbs=("get",))
    assert secrets
    assert {(r["object"]["resource"], r["verb"]) for r in secrets} == {("secrets", "get")}
    assert kept(records_file, resources=("ingresses.networking.k8s.io",)) == kept(
        records_file, resources=("ingresses",)
    )
    coredns = kept(records_file, namespaces=("kube-*",))
    assert {r["object"]["name"] for r in coredns} == {"coredns"}
    since = datetime(2026, 11, 24, 14, 22, tzinfo=UTC)
    late = kept(records_file, since=since)
    assert late == [r for r in records if datetime.fromisoformat(r["time"]) >= since]
    assert len(kept(records_file, 2, verbs=("patch",))) == 2
    assert kept(records_file, users=("nobody",)) == []


def test_cluster_filter(records_file: Path, records: list[dict[str, Any]], tmp_path: Path) -> None:
    """``--cluster`` (repeatable, shell patterns) keeps the records, alerts and access records of
    those clusters; a line that names none is not one of theirs."""
    eu, us, hub = ({**records[n], "cluster": c} for n, c in ((0, "prod-eu"), (1, "prod-us"), (2, "hub")))
    alert = {"type": "alert", "cluster": "prod-eu", "status": "firing", "detection": "d", "severity": "high"}
    nameless = {k: v for k, v in records[3].items() if k != "cluster"}
    path = tmp_path / "records.jsonl"
    path.write_bytes(b"".join(orjson.dumps(doc) + b"\n" for doc in (eu, us, hub, alert, nameless)))

    assert kept(path, clusters=("prod-eu",)) == [eu, alert]
    assert kept(path, clusters=("prod-*", "hub")) == [eu, us, hub, alert]
    assert kept(path) == [eu, us, hub, alert, nameless]
    assert len(kept(records_file, clusters=(records[0]["cluster"],))) == len(records)

    done = tail(str(path), "-n", "all", "--no-follow", "--json", "--cluster", "prod-us", "--cluster", "hub")
    assert done.returncode == 0, done.stderr
    assert [orjson.loads(line) for line in done.stdout.splitlines()] == [us, hub]


def test_finding_and_severity_filters(records: list[dict[str, Any]]) -> None:
    """``--finding`` matches finding ids, ``--severity`` keeps records with a finding at or above it."""
    plain, low, high = {**records[0], "findings": []}, {**records[1]}, {**records[2]}
    low["findings"] = [{"id": "ingress-snippet", "severity": "low", "message": "m"}]
    high["findings"] = [{"id": "ingress-tls-removed", "severity": "high", "message": "m"}]

    def matching(**spec: Any) -> list[dict[str, Any]]:
        keep = compile_filter(TailFilter(**spec))
        return [r for r in (plain, low, high) if keep(r)]

    assert matching(findings=("ingress-tls-*",)) == [high]
    assert matching(severity="medium") == [high]
    assert matching(severity="info") == [low, high]
    assert "[high] ingress-tls-removed" in render(high).plain


def test_render_names_actor_object_and_outcome(records: list[dict[str, Any]]) -> None:
    """A line says when, who (and as whom), what verb on which object, and how it ended."""
    impersonated = next(r for r in records if r["actor"]["impersonated"] and r["outcome"]["code"] == 403)
    unauthenticated = next(r for r in records if r["outcome"]["code"] == 401)

    line = render(impersonated).plain
    assert line.startswith(impersonated["time"][:19] + "Z")
    assert "admin as alice" in line
    assert "get" in line
    assert "ingresses shop/shop-web" in line
    assert "403 forbid" in line
    assert "(unauthenticated)" in render(unauthenticated).plain


def test_two_findings_of_one_id_are_one_mark_with_a_count(records: list[dict[str, Any]]) -> None:
    """A Corefile change that removes a forwarder and adds one has two findings of one id."""
    record = {
        **records[0],
        "findings": [
            {"id": "dns-forwarder-changed", "severity": "high", "message": "removed"},
            {"id": "dns-forwarder-changed", "severity": "high", "message": "added"},
            {"id": "change-by-human", "severity": "info"},
        ],
    }

    line = render(record).plain

    assert line.count("dns-forwarder-changed") == 1
    assert line.endswith("[high] dns-forwarder-changed (x2)  [info] change-by-human")


def test_render_access_records_and_windows() -> None:
    """An access record shows client, request and status; a window its counts by class."""
    ingress = {"namespace": "shop", "name": "web", "ingress_class": None, "tls": True, "tls_secret": None}
    request = {"method": "POST", "host": "shop.example.com", "path": "/login", "status": 401}
    access = {
        "type": "access",
        "time": "2026-11-25T21:00:01Z",
        "client": {"ip": "203.0.113.7", "trust": "untrusted"},
        "request": request,
        "ingress": ingress,
    }
    window = {
        "type": "access_summary",
        "time": "2026-11-25T21:01:00.000Z",
        "scope": "host",
        "host": "shop.example.com",
        "requests": 12,
        "statuses": {"2xx": 9, "4xx": 3},
        "auth_failures": 3,
        "ingress": ingress,
    }

    assert render(access).plain == (
        "2026-11-25T21:00:01Z  203.0.113.7             POST     shop.example.com/login  401  (shop/web)"
    )
    assert "12 requests 2xx:9 4xx:3  401/403:3  (shop/web)" in render(window).plain


def test_closed_pipe_ends_tail_quietly(records_file: Path) -> None:
    """``tail | head -n 2`` prints two lines, and tail itself exits 0 without a traceback."""
    script = f'"{SCRIPT}" tail "{records_file}" 2>tail.err | head -n 2; echo "tail=${{PIPESTATUS[0]}}"'
    done = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        cwd=records_file.parent,
        check=True,
    )

    *lines, status = done.stdout.splitlines()
    assert len(lines) == 2
    assert status == "tail=0"
    assert "Traceback" not in (records_file.parent / "tail.err").read_text()


def test_closed_pipe_in_json_mode(records_file: Path) -> None:
    """``--json`` into ``head -n 1`` exits 0 too (a raw write hits the closed pipe)."""
    script = (
        f'"{SCRIPT}" tail --json -n all --no-follow "{records_file}" | head -n 1; echo "${{PIPESTATUS[0]}}"'
    )
    done = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=DEADLINE_S, check=True
    )

    first, status = done.stdout.splitlines()
    assert orjson.loads(first)["type"] == "audit"
    assert status == "0"
    assert "Traceback" not in done.stderr


def test_missing_file_with_no_follow_is_an_error(tmp_path: Path) -> None:
    """Without following, a missing file is an error (exit 1) naming the path."""
    done = tail(str(tmp_path / "records.jsonl"), "--no-follow")

    assert done.returncode == 1
    assert done.stderr.startswith("ingress-audit: not-found: ")


def test_data_dir_finds_the_records(records_file: Path) -> None:
    """``--data-dir DIR`` tails DIR/records.jsonl."""
    done = tail("--data-dir", str(records_file.parent), "-n", "1", "--no-follow", "--json")

    assert done.stdout.strip() == records_file.read_text().splitlines()[-1]


class Follower:
    """``ingress-audit tail --json -n 0`` running on ``path``; its output lines, collected."""

    def __init__(self, path: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [str(SCRIPT), "tail", "--json", "-n", "0", *args, str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.lines: list[bytes] = []
        os.set_blocking(self.proc.stdout.fileno(), False)  # type: ignore[union-attr]
        os.set_blocking(self.proc.stderr.fileno(), False)  # type: ignore[union-attr]
        self._carry = b""
        self.err = b""

    def wait_stderr(self, text: str) -> None:
        def seen() -> bool:
            self.err += self.proc.stderr.read() or b""  # type: ignore[union-attr]
            return text.encode() in self.err

        wait_for(seen, f"{text!r} on stderr")

    def read(self) -> list[bytes]:
        data = self.proc.stdout.read() or b""  # type: ignore[union-attr]
        *lines, self._carry = (self._carry + data).split(b"\n")
        self.lines.extend(lines)
        return self.lines

    def wait_lines(self, count: int) -> None:
        wait_for(lambda: len(self.read()) >= count, f"{count} lines (have {len(self.lines)})")

    def interrupt(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout=DEADLINE_S)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=DEADLINE_S)
        self.read()
        os.set_blocking(self.proc.stderr.fileno(), True)  # type: ignore[union-attr]
        err = (self.err + (self.proc.stderr.read() or b"")).decode()  # type: ignore[union-attr]
        return code, err


@pytest.fixture
def follower_factory() -> Iterator[Callable[..., Follower]]:
    started: list[Follower] = []

    def start(path: Path, *args: str) -> Follower:
        follower = Follower(path, *args)
        started.append(follower)
        return follower

    yield start
    for follower in started:
        if follower.proc.poll() is None:
            follower.proc.kill()
            follower.proc.wait(timeout=DEADLINE_S)
        for stream in (follower.proc.stdout, follower.proc.stderr):
            if stream is not None:
                stream.close()


def line(n: int) -> bytes:
    record = {"schema_version": 1, "type": "audit", "id": str(uuid.UUID(int=n)), "verb": "get", "n": n}
    return orjson.dumps(record) + b"\n"


async def test_every_line_once_across_rotation(
    tmp_path: Path, follower_factory: Callable[..., Follower]
) -> None:
    """Write, rotate by rename (as the JSONL sink does), write more: every line is printed once."""
    path = tmp_path / "records.jsonl"
    log = AppendLog(path, max_bytes=len(line(0)) * 5, backups=3)
    log.open()
    try:
        await log.append(line(0) + line(1))
        follower = follower_factory(path, "-n", "all")
        await asyncio.to_thread(follower.wait_lines, 2)  # it has reached the end of the file
        sent = 2
        for _ in range(4):  # each round fills the file past max_bytes: the next append rotates
            for _ in range(3):
                await log.append(line(sent))
                sent += 1
            await asyncio.to_thread(follower.wait_lines, sent)
    finally:
        await log.aclose()

    assert (tmp_path / "records.jsonl.1").exists()
    code, err = follower.interrupt()
    assert [orjson.loads(x)["n"] for x in follower.lines] == list(range(sent))
    assert code == 0
    assert "Traceback" not in err


def test_rotation_between_polls_loses_nothing(
    tmp_path: Path, follower_factory: Callable[..., Follower]
) -> None:
    """Lines written to the old file just before the rename, and to the new one after, all show."""
    path = tmp_path / "records.jsonl"
    path.write_bytes(line(9))
    follower = follower_factory(path, "-n", "all")
    follower.wait_lines(1)  # it has reached the end of the file
    with path.open("ab") as f:
        f.write(line(0) + line(1))
    path.rename(tmp_path / "records.jsonl.1")
    path.write_bytes(line(2))
    follower.wait_lines(4)
    with path.open("ab") as f:
        f.write(line(3))
    follower.wait_lines(5)

    assert [orjson.loads(x)["n"] for x in follower.lines] == [9, 0, 1, 2, 3]
    assert follower.interrupt()[0] == 0


def test_waits_for_the_file_to_appear(tmp_path: Path, follower_factory: Callable[..., Follower]) -> None:
    """Following a file that does not exist yet waits for it, like ``tail -F``."""
    path = tmp_path / "records.jsonl"
    follower = follower_factory(path, "--verb", "get")
    follower.wait_stderr("waiting for")
    path.write_bytes(line(0) + orjson.dumps({"verb": "list"}) + b"\n" + line(1))
    follower.wait_lines(2)

    code, err = follower.interrupt()
    assert [orjson.loads(x)["n"] for x in follower.lines] == [0, 1]
    assert code == 0
    assert "waiting for" in err


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """A private tmux server running bash in a 200x50 terminal; yields a command runner."""
    binary = shutil.which("tmux")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("tmux is missing: scripts/test.sh installs it")
        pytest.skip("tmux is not installed (scripts/test.sh installs it)")
    socket = f"ingress-audit-test-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TMUX")}
    env["TERM"] = "xterm-256color"

    def run(*args: str) -> str:
        done = subprocess.run(
            [binary, "-L", socket, *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=DEADLINE_S,
            check=True,
        )
        return done.stdout

    run("-f", "/dev/null", "new-session", "-d", "-x", "200", "-y", "50", "bash --norc --noprofile")
    try:
        yield run
    finally:
        subprocess.run(
            [binary, "-L", socket, "kill-server"], capture_output=True, timeout=DEADLINE_S, check=False
        )


def test_in_a_real_terminal(tmux: Callable[..., str], records_file: Path, tmp_path: Path) -> None:
    """In a terminal: coloured lines, new records appear as written, Ctrl-C exits 0 quietly."""
    path = tmp_path / "records.jsonl"
    shutil.copy(records_file, path)
    status = tmp_path / "status"
    tmux("send-keys", f'"{SCRIPT}" tail -n 3 "{path}"; echo $? > "{status}"', "Enter")

    def screen() -> str:
        return tmux("capture-pane", "-p", "-e")  # -e keeps the colours

    wait_for(lambda: "shop/shop-web" in screen(), "the last records on screen")
    assert "\x1b[" in screen()  # a terminal gets colours

    extra = replace_record(read_jsonl(records_file)[-1], name="added-later", code=403)
    with path.open("ab") as f:
        f.write(orjson.dumps(extra) + b"\n")
    wait_for(lambda: "shop/added-later" in screen(), "the appended record on screen")
    tmux("send-keys", "C-c")
    wait_for(lambda: status.exists() and status.read_text().strip() != "", "tail to exit")

    plain = tmux("capture-pane", "-p")
    assert status.read_text().strip() == "0"
    assert "Traceback" not in plain
    shown = [row for row in plain.splitlines() if row.startswith("2026-")]
    assert len(shown) == 4


def replace_record(record: dict[str, Any], *, name: str, code: int) -> dict[str, Any]:
    obj = {**record["object"], "name": name}
    outcome = {**record["outcome"], "code": code, "decision": "forbid"}
    return {**record, "id": str(uuid.uuid4()), "object": obj, "outcome": outcome}


def test_config_data_dir_is_used(tmp_path: Path, records_file: Path) -> None:
    """``--config`` finds the records through the config's data dir and sink path."""
    conf = tmp_path / "c.yaml"
    conf.write_text(f"data_dir: {records_file.parent}\n")
    done = tail("--config", str(conf), "-n", "1", "--no-follow", "--json")

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == records_file.read_text().splitlines()[-1]


def test_bad_since_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """An unparsable ``--since`` or ``-n`` exits 2 with argparse's message."""
    for args in (["--since", "yesterday"], ["-n", "-3"]):
        with pytest.raises(SystemExit) as info:
            main(["tail", "--no-follow", *args])
        assert info.value.code == 2
    assert "expected a duration" in capsys.readouterr().err


def test_alert_records_read_as_alerts(tmp_path: Path) -> None:
    """An alert line shows its status, severity, detection and summary; the filters see its actor
    and severity."""
    config = make_config(tmp_path)
    asyncio.run(replay(config, [ROOT / "examples" / "audit.log"]))
    alerts = [r for r in read_jsonl(config.data_dir / "records.jsonl") if r["type"] == "alert"]
    firing = next(a for a in alerts if a["status"] == "firing")

    text = render(firing).plain

    assert text.startswith(firing["time"][:19])
    assert f"ALERT     [{firing['severity']}] {firing['detection']}  {firing['summary']}" in text
    assert "resolved" in render(next(a for a in alerts if a["status"] == "resolved")).plain
    keep = compile_filter(TailFilter(severity="high"))
    assert keep(firing) is (firing["severity"] in ("high", "critical"))


def _hostile_records(records_file: Path, path: Path) -> None:
    """The last real record, then an access line and an audit record carrying terminal escapes."""
    last = read_jsonl(records_file)[-1]
    access = {
        "type": "access",
        "time": "2026-11-25T21:00:01Z",
        "client": {"ip": "203.0.113.7", "trust": "untrusted"},
        "request": {"method": "GET", "host": "-", "path": "/admin\x1b[2J\x1b]0;PWNED\x07", "status": 401},
    }
    user = {**last["actor"]["user"], "username": "oidc:eve\x1b[1A\x1b[2K\x1b]0;X\x1b\\\x9b2J"}
    audit = {**last, "id": str(uuid.uuid4()), "actor": {**last["actor"], "user": user}}
    path.write_bytes(b"".join(orjson.dumps(doc) + b"\n" for doc in (last, access, audit)))


def test_control_characters_are_shown_escaped(records_file: Path, tmp_path: Path) -> None:
    """A11: ESC, BEL and C1 CSI from a path or a username are printed as ``\\x1b`` etc., never raw."""
    path = tmp_path / "records.jsonl"
    _hostile_records(records_file, path)

    done = tail(str(path), "-n", "all", "--no-follow")

    assert done.returncode == 0, done.stderr
    assert not {"\x1b", "\x07", "\x9b"} & set(done.stdout)
    assert "/admin\\x1b[2J\\x1b]0;PWNED\\x07  401" in done.stdout
    assert "oidc:eve\\x1b[1A\\x1b[2K\\x1b]0;X\\x1b\\\\x9b2J" in done.stdout


def test_json_escapes_c1_characters_without_changing_the_records(records_file: Path, tmp_path: Path) -> None:
    """A11: ``--json`` writes C1 characters (raw in JSON) as ``\\u009b``: the same records, no raw CSI."""
    path = tmp_path / "records.jsonl"
    _hostile_records(records_file, path)

    done = tail(str(path), "-n", "all", "--no-follow", "--json")

    assert done.returncode == 0, done.stderr
    assert not {"\x1b", "\x07", "\x9b"} & set(done.stdout)
    assert [orjson.loads(line) for line in done.stdout.splitlines()] == read_jsonl(path)


def test_escapes_cannot_rewrite_the_terminal(
    tmux: Callable[..., str], records_file: Path, tmp_path: Path
) -> None:
    """A11 in a real terminal: ``ESC[1A ESC[2K`` in a username does not erase the line above it."""
    path = tmp_path / "records.jsonl"
    _hostile_records(records_file, path)
    status = tmp_path / "status"
    tmux("send-keys", f'"{SCRIPT}" tail -n all --no-follow "{path}"; echo $? > "{status}"', "Enter")
    wait_for(lambda: status.exists() and status.read_text().strip() != "", "tail to exit")

    plain = tmux("capture-pane", "-p")
    shown = [row for row in plain.splitlines() if row.startswith("2026-")]
    assert len(shown) == 3
    assert "/admin\\x1b[2J" in shown[1]
    assert "oidc:eve\\x1b[1A\\x1b[2K" in shown[2]


def test_access_follows_the_access_file(tmp_path: Path) -> None:
    """With access logs on, ``tail`` reads records.jsonl and ``tail --access`` access.jsonl."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "records.jsonl").write_bytes(
        orjson.dumps({"schema_version": 1, "type": "audit", "id": "a"}) + b"\n"
    )
    access = b"".join(
        orjson.dumps({"schema_version": 1, "type": "access", "id": f"x{i}"}) + b"\n" for i in range(3)
    )
    (data / "access.jsonl").write_bytes(access)
    conf = tmp_path / "c.yaml"
    conf.write_text(f"data_dir: {data}\naccess: {{enabled: true}}\n")

    audit = tail("--config", str(conf), "-n", "all", "--no-follow", "--json")
    edge = tail("--config", str(conf), "--access", "-n", "all", "--no-follow", "--json")

    assert audit.returncode == edge.returncode == 0, audit.stderr + edge.stderr
    assert audit.stdout == (data / "records.jsonl").read_text()
    assert edge.stdout == access.decode()
