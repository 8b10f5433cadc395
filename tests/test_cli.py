from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson
import pytest
import trustme

from tests.conftest import CAPTURES, capture_headers, capture_path, find_event, read_jsonl
from webhook.cli import main
from webhook.config import config_schema
from webhook.record.audit import record_schema

SCRIPT = Path(sys.executable).parent / "ingress-audit"
DEADLINE_S = 20.0


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """``--help`` exits 0 and names every subcommand."""
    with pytest.raises(SystemExit) as info:
        main(["--help"])

    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("serve", "check-config", "schema"):
        assert command in out


def test_serve_help_lists_the_flags(capsys: pytest.CaptureFixture[str]) -> None:
    """``serve --help`` documents the flags and their environment variables."""
    with pytest.raises(SystemExit) as info:
        main(["serve", "--help"])

    assert info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--config", "--host", "--port", "--data-dir", "INGRESS_AUDIT_PORT"):
        assert flag in out


@pytest.mark.parametrize("argv", [["--help"], ["tail", "--help"], ["render", "--help"], ["schema", "--help"]])
def test_help_does_not_load_the_server(argv: list[str]) -> None:
    """``--help`` answers at once: the server stack is imported only by the commands that
    run it, never by the command table or a light command."""
    probe = (
        "import sys\nfrom webhook.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "heavy = ('aiohttp', 'jsonschema', 'webhook.server.app', 'webhook.runtime')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, check=True
    )

    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_the_server_leaves_rich_out_and_the_reports_keep_it() -> None:
    """structlog imports rich (and pygments) when it can: 3.4 MB the server never prints with."""
    probe = (
        "import sys\nfrom webhook.cli import _command\n"
        "_command(sys.argv[1])\n"
        "print(sys.modules.get('rich') is not None, 'structlog' in sys.modules)"
    )
    seen = {
        name: subprocess.run(
            [sys.executable, "-c", probe, name], capture_output=True, text=True, timeout=60, check=True
        ).stdout.split()
        for name in ("serve", "report")
    }

    assert seen == {"serve": ["False", "True"], "report": ["True", "True"]}


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown command is a usage error (2), not a failure (1)."""
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_check_config_accepts_a_good_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A valid file: exit 0 and ``FILE: ok``."""
    path = tmp_path / "good.yaml"
    path.write_text(
        "cluster: prod\nserver:\n  port: 9555\nfilter:\n  exclude:\n    - users: [system:apiserver]\n"
    )

    assert main(["check-config", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: ok\n"


def test_check_config_reports_errors_with_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An invalid file: exit 1, a summary line, then one line per error with its JSON path."""
    path = tmp_path / "bad.yaml"
    path.write_text("server:\n  prot: 9440\nlog:\n  level: loud-s3cr3t\n")

    assert main(["check-config", str(path)]) == 1

    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("ingress-audit: config: ")
    assert "bad.yaml" in err[0]
    details = sorted(line.strip().split(":")[0] for line in err[1:])
    assert details == ["$.log.level", "$.server"]
    assert "loud-s3cr3t" not in "\n".join(err)


def test_check_config_on_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A path that does not exist is a clean failure, not a traceback."""
    assert main(["check-config", str(tmp_path / "missing.yaml")]) == 1
    assert capsys.readouterr().err.startswith("ingress-audit: config: cannot read config file")


def test_schema_prints_the_record_schema(capsys: pytest.CaptureFixture[str]) -> None:
    """``schema`` prints the shipped record schema as JSON; ``schema config`` the config's."""
    assert main(["schema"]) == 0
    assert orjson.loads(capsys.readouterr().out) == record_schema()

    assert main(["schema", "config"]) == 0
    assert orjson.loads(capsys.readouterr().out) == config_schema()


def test_the_console_script_is_installed() -> None:
    """The ``ingress-audit`` entry point runs (``--version``) from the venv."""
    done = subprocess.run([str(SCRIPT), "--version"], capture_output=True, text=True, timeout=30, check=True)
    assert done.stdout.startswith("ingress-audit ")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def drain(stream: asyncio.StreamReader, lines: list[bytes]) -> None:
    while line := await stream.readline():
        lines.append(line)


async def wait_healthy(
    session: aiohttp.ClientSession, url: str, proc: asyncio.subprocess.Process, err: list[bytes]
) -> None:
    async with asyncio.timeout(DEADLINE_S):
        while True:
            await asyncio.sleep(0.05)
            if proc.returncode is not None:
                await asyncio.sleep(0.2)  # let the stderr reader catch the last lines
                pytest.fail(f"serve exited {proc.returncode}: {b''.join(err).decode(errors='replace')}")
            with contextlib.suppress(aiohttp.ClientConnectionError):
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return


@dataclass
class Serving:
    base: str
    proc: asyncio.subprocess.Process
    out: list[bytes]
    err: list[bytes]
    session: aiohttp.ClientSession


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, *args: str) -> AsyncIterator[Serving]:
    """The real ``ingress-audit serve`` on loopback with its defaults (and ``args``), healthy;
    killed if still running at the end (a test that stops it checks the exit itself)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGRESS_AUDIT_")}
    proc = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(tmp_path / "data"),
        *args,
        cwd=tmp_path,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    out: list[bytes] = []
    err: list[bytes] = []
    readers = [asyncio.create_task(drain(proc.stdout, out)), asyncio.create_task(drain(proc.stderr, err))]
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=DEADLINE_S)) as session:
            await wait_healthy(session, f"{base}/healthz", proc, err)
            yield Serving(base, proc, out, err, session)
        if proc.returncode is not None:
            await asyncio.wait_for(asyncio.gather(*readers), DEADLINE_S)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        for reader in readers:
            reader.cancel()


@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio", None])
async def test_serve_runs_records_and_stops_on_sigterm(tmp_path: Path, event_loop: str | None) -> None:
    """The real process: listens on loopback, records a POSTed capture to disk, exits 0 on
    SIGTERM; on either event loop (None: the default, uvloop)."""
    body = CAPTURES / "0009.json"
    args: list[str] = []
    if event_loop is not None:
        config = tmp_path / "config.yaml"
        config.write_text(f"server:\n  event_loop: {event_loop}\n")
        args = ["--config", str(config)]
    async with serving(tmp_path, *args) as serve:
        async with serve.session.post(
            serve.base + capture_path(body), data=body.read_bytes(), headers=capture_headers(body)
        ) as resp:
            status, answer = resp.status, await resp.json()
        async with serve.session.get(f"{serve.base}/readyz") as ready:
            assert ready.status == 200

        assert (status, answer["records"]) == (200, 1), (status, answer, b"".join(serve.err))
        create = find_event("0009.json", stage="ResponseComplete", verb="create")
        # A 200 means spooled; the JSONL sink's delivery loop writes the file just after.
        records = tmp_path / "data" / "records.jsonl"
        for _ in range(int(DEADLINE_S / 0.05)):
            if records.exists() and read_jsonl(records):
                break
            await asyncio.sleep(0.05)
        assert [r["audit_id"] for r in read_jsonl(records)] == [create["auditID"]]

        serve.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(serve.proc.wait(), DEADLINE_S)

    assert code == 0, b"".join(serve.err).decode(errors="replace")
    logged = [orjson.loads(line) for line in serve.err if line.startswith(b"{")]
    events = [entry["event"] for entry in logged]
    assert events[0] == "server.started"
    assert logged[0]["event_loop"] == (event_loop or "uvloop")
    assert events.index("server.stopping") < events.index("server.stopped") == len(events) - 1
    assert "batch.accepted" in events
    assert serve.out == []  # logs go to stderr; stdout stays clean


def _samples(text: str) -> dict[str, float]:
    return {name: float(value) for name, value in re.findall(r"^(\S+) (\S+)$", text, re.MULTILINE)}


async def test_serve_exports_its_process_and_collects_cycles_every_second(tmp_path: Path) -> None:
    """/metrics carries the serve process's memory as /proc sees it, and full collections (the
    cycle collector, webhook/core/heap.py) happen about once a second."""
    async with serving(tmp_path) as serve:
        async with serve.session.get(f"{serve.base}/metrics") as resp:
            first = _samples(await resp.text())
        started = time.monotonic()
        await asyncio.sleep(3.0)
        async with serve.session.get(f"{serve.base}/metrics") as resp:
            second = _samples(await resp.text())
        elapsed = time.monotonic() - started
        status = Path(f"/proc/{serve.proc.pid}/status").read_text()

    rss_kib = int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)[1])  # type: ignore[index]
    assert abs(second["process_resident_memory_bytes"] / 1024 - rss_kib) < 0.2 * rss_kib
    assert second["process_open_fds"] > 0
    full = 'python_gc_collections_total{generation="2"}'
    assert 2 <= second[full] - first[full] <= elapsed + 2


def test_scan_leaks_finds_values_and_never_prints_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``scan-leaks`` exits 1 with the file and encoding of a planted value, 0 on clean files."""
    secrets = tmp_path / "secrets.txt"
    secrets.write_text("s3cr3t-value-for-cli\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "clean.jsonl").write_text('{"id": "x"}\n')

    assert main(["scan-leaks", str(secrets), str(out)]) == 0
    (out / "leaky.jsonl").write_text('{"v": "czNjcjN0LXZhbHVlLWZvci1jbGk="}\n')  # base64 of the value
    assert main(["scan-leaks", str(secrets), str(out)]) == 1
    printed = capsys.readouterr().out
    assert "leaky.jsonl" in printed
    assert "base64" in printed
    assert "s3cr3t" not in printed


def test_check_config_connect_reports_each_sink(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--connect`` opens every sink and runs its health check: exit 1 when one is unreachable."""
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "config.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        "sinks:\n  - type: jsonl\n"
        f"  - type: http\n    name: down\n    url: http://127.0.0.1:{port}/ingest\n"
    )

    assert main(["check-config", "--connect", str(config)]) == 1
    out = capsys.readouterr().out
    assert "sink jsonl (jsonl): ok" in out
    assert "sink down (http): FAILED" in out


def test_check_config_connect_reaches_the_redis_state_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With a Redis state store, ``--connect`` pings it too."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "config.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\nstate:\n  type: redis\n  url: redis://127.0.0.1:{port}/0\n"
    )

    assert main(["check-config", "--connect", str(config)]) == 1
    assert "state redis: FAILED" in capsys.readouterr().out


def test_check_config_refuses_https_without_client_auth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """9 (c3): HTTPS with no client CA and no tokens on a non-loopback address needs
    ``server.auth.allow_unauthenticated``, as plain HTTP needs ``insecure_http``; with it,
    check-config says what serve warns about."""
    path = tmp_path / "noauth.yaml"
    leaf = trustme.CA().issue_cert("127.0.0.1")
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "tls.crt"))
    leaf.private_key_pem.write_to_path(str(tmp_path / "tls.key"))
    tls = f"  tls: {{cert_file: {tmp_path}/tls.crt, key_file: {tmp_path}/tls.key}}\n"
    path.write_text("server:\n  host: 0.0.0.0\n" + tls)

    assert main(["check-config", str(path)]) == 1
    assert "allow_unauthenticated" in capsys.readouterr().err

    path.write_text("server:\n  host: 0.0.0.0\n" + tls + "  auth: {allow_unauthenticated: true}\n")
    assert main(["check-config", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"{path}: ok\n"
    assert "warning: HTTPS without client authentication on 0.0.0.0" in captured.err

    path.write_text("server:\n  host: 127.0.0.1\n" + tls)  # loopback: a sidecar or a test
    assert main(["check-config", str(path)]) == 0
    assert capsys.readouterr().err == ""


def test_check_config_warns_about_plain_http(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """c2: ``insecure_http: true`` is accepted, and check-config says so as serve does."""
    path = tmp_path / "http.yaml"
    path.write_text("server:\n  host: 0.0.0.0\n  insecure_http: true\n")

    assert main(["check-config", str(path)]) == 0
    assert "warning: plain HTTP on 0.0.0.0" in capsys.readouterr().err
