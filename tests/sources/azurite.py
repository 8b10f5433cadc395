"""A real Azurite (Microsoft's storage emulator) for the AKS storage tests, and how to write to it.

Azurite runs from ``.tools/azurite`` (``npm install --prefix .tools/azurite azurite``) or from
the PATH, on a free loopback port in a temporary directory, with telemetry off. Its account is
the documented development account. The fixtures are registered in tests/sources/conftest.py.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import pytest
from azure.core.credentials import AzureNamedKeyCredential
from azure.storage.blob import ContainerSasPermissions, generate_container_sas
from azure.storage.blob.aio import BlobServiceClient, ContainerClient

from tests.paths import ROOT
from tests.servers import free_port, port_open, spawn, stop_process, wait_until

__all__ = [
    "ACCOUNT",
    "KEY",
    "Azurite",
    "append",
    "azurite",
    "container",
    "container_sas",
    "key_file",
    "need_azurite",
]

# Azurite's well-known development account: public, documented, useless anywhere else.
ACCOUNT: Final = "devstoreaccount1"
KEY: Final = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
# Blocks may be 4 MiB; aiohttp warns (an error here) of a raw body over 1 MiB.
_MAX_BLOCK: Final = 1024 * 1024


def need_azurite() -> list[str]:
    """The command that starts Azurite's blob service; fails under CI, skips elsewhere."""
    message = "azurite not found: npm install --prefix .tools/azurite azurite (scripts/test.sh does)"
    node = shutil.which("node")
    for candidate in (ROOT / ".tools/azurite/node_modules/.bin/azurite-blob", shutil.which("azurite-blob")):
        if node and candidate and os.path.isfile(candidate):
            return [str(candidate)]
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass(frozen=True)
class Azurite:
    port: int
    directory: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};BlobEndpoint={self.url};"
        )

    def client(self) -> BlobServiceClient:
        return BlobServiceClient(self.url, credential=AzureNamedKeyCredential(ACCOUNT, KEY))


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    command = need_azurite()
    directory = tmp_path_factory.mktemp("azurite")
    port = free_port()
    argv = [
        *command,
        "--blobHost", "127.0.0.1",
        "--blobPort", str(port),
        "--location", str(directory),
        "--skipApiVersionCheck",  # the SDK may speak a newer API version than the emulator
        "--loose",
        "--disableTelemetry",  # no traffic off loopback
        "--silent",
    ]  # fmt: skip
    proc = spawn(argv, directory)
    try:
        wait_until(lambda: port_open(port), 30.0, "azurite", proc)
        yield Azurite(port=port, directory=directory)
    finally:
        stop_process(proc)


@pytest.fixture
async def container(azurite: Azurite) -> AsyncIterator[ContainerClient]:
    """A fresh container with the diagnostic setting's name pattern, for this test alone."""
    async with azurite.client() as service:
        client = service.get_container_client(f"insights-logs-kube-audit-{uuid.uuid4().hex[:8]}")
        await client.create_container()
        yield client


def key_file(tmp_path: Path, name: str = "account.key") -> Path:
    path = tmp_path / name
    path.write_text(KEY + "\n")
    path.chmod(0o600)
    return path


def container_sas(container: str) -> str:
    return generate_container_sas(
        ACCOUNT,
        container,
        account_key=KEY,
        permission=ContainerSasPermissions(read=True, list=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )


async def append(container: ContainerClient, name: str, data: bytes) -> None:
    """Append ``data`` to the append blob ``name``, created when missing, 1 MiB at most at a
    time (a poll in between sees a line cut short, as it can with Azure's own writes)."""
    blob = container.get_blob_client(name)
    if not await blob.exists():
        await blob.create_append_blob()
    for start in range(0, len(data), _MAX_BLOCK):
        await blob.append_block(data[start : start + _MAX_BLOCK])
