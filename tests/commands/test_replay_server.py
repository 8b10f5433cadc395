"""``replay --server``: a log file sent to a running server's webhook, as the apiserver would."""

from __future__ import annotations

import gzip
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web

from tests.conftest import Client, delivered, make_config
from tests.paths import ROOT
from tests.pki import make_pki
from webhook.commands.replay_server import ClientCredentials, replay_to_server
from webhook.config import Config
from webhook.errors import ReplaySendError
from webhook.server.app import create_app, start_server

SAMPLE = ROOT / "examples" / "audit.log"


async def test_a_log_file_is_sent_and_recorded_once(aiohttp_client: Any, tmp_path: Path) -> None:
    """Every event goes to /audit in batches; a second send is all duplicates."""
    config = make_config(tmp_path)
    client: Client = await aiohttp_client(create_app(config))
    url = str(client.make_url("/audit"))
    zipped = tmp_path / "audit.log.gz"
    zipped.write_bytes(gzip.compress(SAMPLE.read_bytes()))

    first = await replay_to_server(url, [zipped], chunk_size=50)
    second = await replay_to_server(url, [SAMPLE], chunk_size=400)

    lines = [x for x in SAMPLE.read_bytes().splitlines() if x.strip()]
    assert first.events == second.events == len(lines)
    assert first.records > 0
    assert first.duplicates == 0
    assert (second.records, second.duplicates) == (0, first.records)
    records = await delivered(client, config)
    assert len(records) == len({r["id"] for r in records}) == first.records
    assert "sent to" in first.line()


async def test_bad_lines_are_skipped_by_position(aiohttp_client: Any, tmp_path: Path, capsys: Any) -> None:
    """A line that is not JSON is reported by file and line, never by content, and skipped."""
    config = make_config(tmp_path)
    client: Client = await aiohttp_client(create_app(config))
    log = tmp_path / "audit.log"
    good = SAMPLE.read_bytes().splitlines()[0]
    log.write_bytes(good + b"\n" + b"{not json, password=hunter2\n" + good + b"\n")

    summary = await replay_to_server(str(client.make_url("/audit")), [log])

    assert summary.events == 3
    assert summary.dead_letters == 1
    err = capsys.readouterr().err
    assert "audit.log:2" in err
    assert "hunter2" not in err


# --- a running, secured server (deploy.md's configuration) ------------------------------------

TOKEN = "replay-token-0123456789abcdefghij"


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[tuple[str, Path, trustme.CA]]:
    """An HTTPS server that wants a client certificate from its client CA *and* a token.

    Yields its /audit URL, a directory with ``ca.crt``, ``client.crt``, ``client.key`` and
    ``token``, and the client CA (to issue other certificates)."""
    pki = make_pki(tmp_path, TOKEN, names=("127.0.0.1",))  # not localhost: see the port-forward test
    client = pki.client_ca.issue_cert("kube-apiserver-audit")
    client.cert_chain_pems[0].write_to_path(str(tmp_path / "client.crt"))
    client.private_key_pem.write_to_path(str(tmp_path / "client.key"))
    server = pki.server()
    running = await start_server(Config(data_dir=tmp_path / "data", server=server))
    host, port = running.addresses[0]
    try:
        yield f"https://{host}:{port}/audit", tmp_path, pki.client_ca
    finally:
        await running.stop()


def _full(pki: Path) -> ClientCredentials:
    return ClientCredentials(
        ca_file=pki / "ca.crt",
        client_cert=pki / "client.crt",
        client_key=pki / "client.key",
        token_file=pki / "token",
    )


async def test_a_backfill_reaches_an_mtls_server_with_a_token(
    secured: tuple[str, Path, trustme.CA],
) -> None:
    """--ca-file, --client-cert/--client-key and --token-file together pass ``require: all``."""
    url, pki, _ = secured

    summary = await replay_to_server(url, [SAMPLE], credentials=_full(pki))

    assert summary.records > 0
    assert summary.dead_letters == 0


@pytest.mark.parametrize(
    ("missing", "expected"),
    [
        ("client_cert", "refused the batch: 401 unauthenticated: a valid client certificate and"),
        ("token_file", "refused the batch: 401 unauthenticated"),
    ],
)
async def test_a_refusal_ends_the_backfill_at_once_with_the_servers_reason(
    secured: tuple[str, Path, trustme.CA], missing: str, expected: str, capsys: Any
) -> None:
    """A 4xx cannot change on a resend: the first one ends the replay, with the reason."""
    url, pki, _ = secured
    credentials = replace(
        _full(pki), **{missing: None, **({"client_key": None} if missing == "client_cert" else {})}
    )

    started = time.monotonic()
    with pytest.raises(ReplaySendError, match=expected):
        await replay_to_server(url, [SAMPLE], credentials=credentials)

    assert time.monotonic() - started < 5
    assert "retry" not in capsys.readouterr().err


async def test_a_certificate_from_another_ca_fails_the_handshake_at_once(
    secured: tuple[str, Path, trustme.CA], tmp_path: Path
) -> None:
    """Without the server's CA, or with a client certificate the server does not trust, the
    TLS handshake fails: said at once, not after 30 silent attempts."""
    url, pki, _ = secured
    stranger = trustme.CA().issue_cert("kube-apiserver-audit")
    stranger.cert_chain_pems[0].write_to_path(str(tmp_path / "stranger.crt"))
    stranger.private_key_pem.write_to_path(str(tmp_path / "stranger.key"))

    started = time.monotonic()
    with pytest.raises(ReplaySendError, match=r"TLS with .* failed: certificate verify failed"):
        await replay_to_server(url, [SAMPLE], credentials=replace(_full(pki), ca_file=None))
    with pytest.raises(ReplaySendError, match=r"TLS with .* failed: the server reset the connection 3 times"):
        await replay_to_server(
            url,
            [SAMPLE],
            credentials=replace(
                _full(pki), client_cert=tmp_path / "stranger.crt", client_key=tmp_path / "stranger.key"
            ),
        )

    assert time.monotonic() - started < 10


async def test_a_port_forward_checks_the_certificate_for_the_services_name(
    secured: tuple[str, Path, trustme.CA],
) -> None:
    """Through ``localhost`` (as through a port-forward) the certificate's name does not match:
    refused at once; ``--tls-server-name`` names what the certificate is for, and it passes."""
    url, pki, _ = secured
    forwarded = url.replace("127.0.0.1", "localhost")

    with pytest.raises(ReplaySendError, match="certificate verify failed"):
        await replay_to_server(forwarded, [SAMPLE], credentials=_full(pki))
    summary = await replay_to_server(
        forwarded, [SAMPLE], credentials=replace(_full(pki), server_name="127.0.0.1")
    )

    assert summary.records > 0


async def test_busy_answers_are_retried_and_each_retry_is_said(aiohttp_server: Any, capsys: Any) -> None:
    """503 with Retry-After is retried after it; stderr says so each time, never silence."""
    answers = iter([503, 503, 200])

    async def audit(request: web.Request) -> web.Response:
        await request.read()
        status = next(answers)
        if status == 503:
            return web.json_response(
                {"error": "overloaded", "reason": "more than 64 requests in flight"},
                status=503,
                headers={"Retry-After": "0"},
            )
        return web.json_response({"records": 3, "duplicates": 0, "dead_lettered": 0})

    app = web.Application()
    app.router.add_post("/audit", audit)
    server = await aiohttp_server(app)
    log = SAMPLE.read_bytes().splitlines()[0] + b"\n"

    summary = await replay_to_server(str(server.make_url("/audit")), [_write(log)])

    assert summary.records == 3
    err = capsys.readouterr().err
    assert "answered 503 overloaded: more than 64 requests in flight; retry 1 of 29" in err
    assert "retry 2 of 29" in err


async def test_an_unreachable_server_is_retried_then_named(capsys: Any) -> None:
    """A closed port: every retry is said, and the end names why."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused

        with pytest.raises(
            ReplaySendError, match="did not accept a batch after 3 attempts: cannot be reached"
        ):
            await replay_to_server(f"http://127.0.0.1:{port}/audit", [SAMPLE], attempts=3)

    assert capsys.readouterr().err.count("cannot be reached") == 2


def _replay_command(*argv: str) -> subprocess.CompletedProcess[str]:
    """``ingress-audit replay`` as users run it (in-process, it would configure this process's
    logging for the tests that follow)."""
    script = Path(sys.executable).parent / "ingress-audit"
    return subprocess.run(
        [str(script), "replay", *argv], capture_output=True, text=True, timeout=60, check=False
    )


def test_unusable_credential_files_are_one_line_each(tmp_path: Path) -> None:
    """A key that is not a key, a missing CA, an empty token file: one line, exit 1, and the
    file's contents never appear."""
    (tmp_path / "not-a-key.pem").write_text(
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXZhbHVl\n-----END PRIVATE KEY-----\n"
    )
    (tmp_path / "empty-token").write_text("")
    log = _write(SAMPLE.read_bytes().splitlines()[0] + b"\n")
    url = "https://127.0.0.1:9/audit"
    cases = [
        (["--client-cert", str(tmp_path / "not-a-key.pem")], "--client-cert"),
        (["--ca-file", str(tmp_path / "missing.crt")], "--ca-file"),
        (["--token-file", str(tmp_path / "empty-token")], "the file is empty"),
    ]
    for flags, expected in cases:
        done = _replay_command("--server", url, *flags, str(log))
        assert done.returncode == 1
        err = done.stderr
        assert err.count("\n") == 1, err
        assert expected in err
        assert "c2VjcmV0" not in err
        assert "Traceback" not in err


def test_client_options_without_server_are_a_usage_error() -> None:
    """The credential flags only mean something with --server; a key needs its certificate."""
    assert _replay_command("--ca-file", "ca.crt", str(SAMPLE)).returncode == 2
    done = _replay_command("--server", "https://127.0.0.1:9/audit", "--client-key", "k.pem", str(SAMPLE))
    assert done.returncode == 2
    assert "--client-key needs --client-cert" in done.stderr


def _write(data: bytes) -> Path:
    path = Path(tempfile.mkdtemp()) / "audit.log"
    path.write_bytes(data)
    return path
