"""Many clusters into one receiver, end to end over real TLS: the /audit handler records a batch as
the cluster its sender's credential proves."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Final

import aiohttp
import pytest
import trustme

from tests.conftest import records_in
from tests.paths import ROOT
from webhook.config import AuthConfig, ClusterAuth, Config, ServerConfig, TlsConfig
from webhook.server.app import RUNTIME, RunningServer, start_server

SAMPLE: Final = (ROOT / "examples" / "eventlist.json").read_bytes()
GLOBAL: Final = "global-token-for-tests-0123456789"
EU: Final = "prod-eu-token-for-tests-012345678"
JSON: Final = {"Content-Type": "application/json"}


def _token_file(directory: Path, name: str, token: str) -> Path:
    path = directory / name
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


Serve = Callable[[AuthConfig], Awaitable[tuple[RunningServer, Config, aiohttp.TCPConnector]]]


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Serve]:
    """An HTTPS server on a free loopback port with the given auth section; stopped afterwards."""
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "tls.crt"))
    leaf.private_key_pem.write_to_path(str(tmp_path / "tls.key"))
    tls = TlsConfig(cert_file=tmp_path / "tls.crt", key_file=tmp_path / "tls.key")
    running: list[RunningServer] = []

    async def start(auth: AuthConfig) -> tuple[RunningServer, Config, aiohttp.TCPConnector]:
        server = replace(ServerConfig(), host="127.0.0.1", port=0, tls=tls, auth=auth)
        config = Config(cluster="hub", data_dir=tmp_path / "data", server=server)
        started = await start_server(config)
        running.append(started)
        context = ssl.create_default_context()
        ca.configure_trust(context)
        return started, config, aiohttp.TCPConnector(ssl=context)

    yield start
    for started in running:
        await started.stop()


async def _post(server: RunningServer, connector: aiohttp.TCPConnector, token: str | None) -> int:
    host, port = server.addresses[0]
    headers = {**JSON, **({"Authorization": f"Bearer {token}"} if token else {})}
    async with (
        aiohttp.ClientSession(connector=connector, connector_owner=False) as session,
        session.post(f"https://{host}:{port}/audit", data=SAMPLE, headers=headers) as resp,
    ):
        await resp.read()
        return resp.status


async def test_cluster_tokens_alone_guard_the_endpoint(serve: Serve, tmp_path: Path) -> None:
    """With only clusters' tokens configured, a request without one is refused."""
    eu = _token_file(tmp_path, "eu", EU)
    server, _, connector = await serve(
        AuthConfig(clusters={"prod-eu": ClusterAuth(bearer_token_files=(eu,))})
    )
    try:
        assert await _post(server, connector, None) == 401
        assert await _post(server, connector, EU) == 200
    finally:
        await connector.close()


async def test_a_batch_is_the_cluster_its_token_proves(serve: Serve, tmp_path: Path) -> None:
    """prod-eu's token: prod-eu's records; the global token: the configured cluster's."""
    auth = AuthConfig(
        bearer_token_files=(_token_file(tmp_path, "global", GLOBAL),),
        clusters={"prod-eu": ClusterAuth(bearer_token_files=(_token_file(tmp_path, "eu", EU),))},
    )
    server, config, connector = await serve(auth)
    try:
        assert await _post(server, connector, EU) == 200
        assert await _post(server, connector, GLOBAL) == 200
        assert await server.runner.app[RUNTIME].sinks.drain(10.0)
    finally:
        await connector.close()

    records = records_in(config)
    half = len(records) // 2
    assert half
    assert {r["cluster"] for r in records[:half]} == {"prod-eu"}
    assert {r["cluster"] for r in records[half:]} == {"hub"}
