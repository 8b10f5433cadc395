"""Real TLS handshakes on loopback: serving, reload, client certificates and bearer tokens."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
import trustme
from cryptography import x509

from tests.paths import ROOT
from webhook.config import AuthConfig, Config, ServerConfig, TlsConfig
from webhook.errors import ConfigError
from webhook.server.admission import STATE
from webhook.server.app import RunningServer, start_server
from webhook.server.auth import Authenticator
from webhook.server.tls import TlsFiles, TlsReloader, build_context

SAMPLE = (ROOT / "examples" / "eventlist.json").read_bytes()
TOKEN = "token-for-tests-0123456789abcdef"
JSON = {"Content-Type": "application/json"}


def _write_server_cert(ca: trustme.CA, directory: Path, name: str = "server") -> TlsFiles:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    files = TlsFiles(cert_file=directory / f"{name}.crt", key_file=directory / f"{name}.key")
    cert.cert_chain_pems[0].write_to_path(str(files.cert_file))
    cert.private_key_pem.write_to_path(str(files.key_file))
    return files


def _client_context(ca: trustme.CA, client: trustme.LeafCert | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    if client is not None:
        client.configure_cert(context)
    return context


Serve = Callable[[ServerConfig], Awaitable[RunningServer]]


@pytest.fixture
def server_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def client_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Serve]:
    """Start servers on a free loopback port; stop them after the test."""
    running: list[RunningServer] = []

    async def start(server: ServerConfig) -> RunningServer:
        config = Config(data_dir=tmp_path / "data", server=replace(server, host="127.0.0.1", port=0))
        started = await start_server(config)
        running.append(started)
        return started

    yield start
    for server in running:
        await server.stop()


def _url(server: RunningServer) -> str:
    host, port = server.addresses[0]
    return f"https://{host}:{port}/audit?timeout=30s"


async def _post(server: RunningServer, context: ssl.SSLContext, headers: dict[str, str] | None = None) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(_url(server), data=SAMPLE, headers={**JSON, **(headers or {})}, ssl=context) as resp,
    ):
        await resp.read()
        return resp.status


async def _peer_serial(server: RunningServer, context: ssl.SSLContext) -> int:
    host, port = server.addresses[0]
    _, writer = await asyncio.open_connection(host, port, ssl=context)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    await writer.wait_closed()
    return x509.load_der_x509_certificate(der).serial_number


async def test_serves_tls_and_accepts_a_batch(
    serve: Serve,
    server_ca: trustme.CA,
    tmp_path: Path,
) -> None:
    """A client that trusts the serving CA posts a batch over HTTPS and gets 200."""
    files = _write_server_cert(server_ca, tmp_path)
    server = await serve(ServerConfig(tls=TlsConfig(cert_file=files.cert_file, key_file=files.key_file)))

    assert await _post(server, _client_context(server_ca)) == 200


async def test_old_protocol_versions_are_refused(
    serve: Serve,
    server_ca: trustme.CA,
    tmp_path: Path,
) -> None:
    """TLS 1.1 and older never complete a handshake."""
    files = _write_server_cert(server_ca, tmp_path)
    server = await serve(ServerConfig(tls=TlsConfig(cert_file=files.cert_file, key_file=files.key_file)))
    assert build_context(files).minimum_version == ssl.TLSVersion.TLSv1_2
    tls12 = _client_context(server_ca)
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    assert await _post(server, tls12) == 200

    context = _client_context(server_ca)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    with contextlib.suppress(ssl.SSLError):  # let the client offer what it can
        context.set_ciphers("ALL:@SECLEVEL=0")
    with pytest.raises((aiohttp.ClientError, ssl.SSLError)):
        await _post(server, context)


async def test_certificate_rotated_in_place_is_served_without_restart(
    serve: Serve,
    server_ca: trustme.CA,
    tmp_path: Path,
) -> None:
    """New handshakes get the new certificate once the files change; no restart."""
    files = _write_server_cert(server_ca, tmp_path)
    server = await serve(ServerConfig(tls=TlsConfig(cert_file=files.cert_file, key_file=files.key_file)))
    context = _client_context(server_ca)
    before = await _peer_serial(server, context)

    rotated = _write_server_cert(server_ca, tmp_path, name="rotated")
    files.cert_file.write_bytes(rotated.cert_file.read_bytes())
    files.key_file.write_bytes(rotated.key_file.read_bytes())
    assert server.reloader is not None
    assert server.reloader.check()

    after = await _peer_serial(server, context)
    assert after != before
    assert after == x509.load_pem_x509_certificate(rotated.cert_file.read_bytes()).serial_number
    assert await _post(server, context) == 200


async def test_half_written_rotation_keeps_the_old_certificate(
    serve: Serve,
    server_ca: trustme.CA,
    tmp_path: Path,
) -> None:
    """A key that does not match the new certificate is not loaded; serving goes on."""
    files = _write_server_cert(server_ca, tmp_path)
    server = await serve(ServerConfig(tls=TlsConfig(cert_file=files.cert_file, key_file=files.key_file)))
    context = _client_context(server_ca)
    before = await _peer_serial(server, context)

    rotated = _write_server_cert(server_ca, tmp_path, name="rotated")
    files.cert_file.write_bytes(rotated.cert_file.read_bytes())  # the key is not updated yet
    assert server.reloader is not None
    assert not server.reloader.check()

    assert await _peer_serial(server, context) == before


def test_unloadable_files_are_a_config_error(tmp_path: Path) -> None:
    """Missing or garbage files stop the start with a message that names no content."""
    (tmp_path / "bad.crt").write_text("garbage-content")
    (tmp_path / "bad.key").write_text("garbage-content")
    pair = r"server\.tls\.cert_file .*bad\.crt and key_file .*bad\.key: not a valid certificate or key"
    with pytest.raises(ConfigError, match=pair) as bad:
        build_context(TlsFiles(cert_file=tmp_path / "bad.crt", key_file=tmp_path / "bad.key"))
    assert "garbage" not in str(bad.value)
    with pytest.raises(ConfigError, match=r"server\.tls\.cert_file .*none\.crt: no such file or directory"):
        TlsReloader(TlsFiles(cert_file=tmp_path / "none.crt", key_file=tmp_path / "none.key"))


def test_a_key_of_another_certificate_is_named_as_such(server_ca: trustme.CA, tmp_path: Path) -> None:
    """A pair that does not match says so, naming both files."""
    files = _write_server_cert(server_ca, tmp_path)
    other = _write_server_cert(server_ca, tmp_path, name="other")

    with pytest.raises(ConfigError, match="the key does not belong to the certificate"):
        build_context(TlsFiles(cert_file=files.cert_file, key_file=other.key_file))


def _mtls(files: TlsFiles, ca_file: Path, **auth: object) -> ServerConfig:
    return ServerConfig(
        tls=TlsConfig(cert_file=files.cert_file, key_file=files.key_file, client_ca_file=ca_file),
        auth=AuthConfig(**auth),  # type: ignore[arg-type]
    )


@pytest.fixture
def mtls_files(server_ca: trustme.CA, client_ca: trustme.CA, tmp_path: Path) -> tuple[TlsFiles, Path]:
    files = _write_server_cert(server_ca, tmp_path)
    ca_file = tmp_path / "clients-ca.crt"
    client_ca.cert_pem.write_to_path(str(ca_file))
    return files, ca_file


async def test_client_certificate_from_the_ca_is_accepted(
    serve: Serve,
    server_ca: trustme.CA,
    client_ca: trustme.CA,
    mtls_files: tuple[TlsFiles, Path],
) -> None:
    """A certificate signed by the client CA, with an allowed subject, posts events."""
    server = await serve(_mtls(*mtls_files, client_subjects=("kube-apiserver",)))
    client = client_ca.issue_cert("kube-apiserver")

    assert await _post(server, _client_context(server_ca, client)) == 200


async def test_no_credentials_get_401(
    serve: Serve,
    server_ca: trustme.CA,
    mtls_files: tuple[TlsFiles, Path],
) -> None:
    """Without a certificate or a token the handshake succeeds and the request gets 401."""
    server = await serve(_mtls(*mtls_files))

    assert await _post(server, _client_context(server_ca)) == 401


async def test_subject_not_on_the_allow_list_gets_403(
    serve: Serve,
    server_ca: trustme.CA,
    client_ca: trustme.CA,
    mtls_files: tuple[TlsFiles, Path],
) -> None:
    """A valid certificate for someone else is authenticated but not allowed."""
    server = await serve(_mtls(*mtls_files, client_subjects=("kube-apiserver",)))
    client = client_ca.issue_cert("someone-else")

    assert await _post(server, _client_context(server_ca, client)) == 403


@pytest.mark.parametrize("case", ["other-ca", "expired"])
async def test_untrusted_client_certificates_fail_the_handshake(
    serve: Serve,
    server_ca: trustme.CA,
    client_ca: trustme.CA,
    mtls_files: tuple[TlsFiles, Path],
    case: str,
) -> None:
    """A certificate from another CA, or an expired one, never reaches the handler."""
    server = await serve(_mtls(*mtls_files))
    if case == "other-ca":
        client = trustme.CA().issue_cert("kube-apiserver")
    else:
        client = client_ca.issue_cert(
            "kube-apiserver",
            not_before=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
            not_after=dt.datetime(2021, 1, 1, tzinfo=dt.UTC),
        )

    with pytest.raises(aiohttp.ClientError):
        await _post(server, _client_context(server_ca, client))
    assert await _post(server, _client_context(server_ca, client_ca.issue_cert("ok"))) == 200


async def test_bearer_tokens_and_their_rotation(
    serve: Serve,
    server_ca: trustme.CA,
    tmp_path: Path,
) -> None:
    """A good token passes, a wrong one gets 401; after rotation old and new are both valid."""
    files = _write_server_cert(server_ca, tmp_path)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    server = await serve(
        ServerConfig(
            tls=TlsConfig(cert_file=files.cert_file, key_file=files.key_file),
            auth=AuthConfig(bearer_token_files=(token_file,)),
        )
    )
    context = _client_context(server_ca)
    new_token = "rotated-token-for-tests-fedcba987654"

    assert await _post(server, context, {"Authorization": f"Bearer {TOKEN}"}) == 200
    assert await _post(server, context, {"Authorization": f"Bearer {new_token}"}) == 401
    assert await _post(server, context) == 401

    token_file.write_text(f"{new_token}\n{TOKEN}\n")
    runtime_auth = _authenticator(server)
    assert runtime_auth.reload_tokens()
    assert await _post(server, context, {"Authorization": f"Bearer {new_token}"}) == 200
    assert await _post(server, context, {"Authorization": f"Bearer {TOKEN}"}) == 200

    token_file.write_text(new_token)
    assert runtime_auth.reload_tokens()
    assert await _post(server, context, {"Authorization": f"Bearer {TOKEN}"}) == 401


def _authenticator(server: RunningServer) -> Authenticator:
    return server.runner.app[STATE].authenticator
