"""The managed clouds' sources in a real app: configs with a Firehose key file or a Pub/Sub
audience, and what the webhook path records for the same events, to compare with.

The records of one path and another differ only in when they were received.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import capture_bytes, captured_bodies, event_list, make_config, records_in, settle
from webhook.config import Config
from webhook.core.files import ensure_private_dir
from webhook.server.app import create_app
from webhook.sources.firehose_keys import FirehoseKey
from webhook.sources.settings import FirehoseSettings, PubsubSettings, SourcesConfig

__all__ = [
    "EKS_CLUSTER",
    "FIREHOSE_KEY",
    "GKE_CLUSTER",
    "OTHER_KEY",
    "capture_lists",
    "event_lists",
    "firehose_settings",
    "pubsub_settings",
    "sans_arrival",
    "webhook_records",
    "with_sources",
    "write_key",
]

EKS_CLUSTER: Final = "prod-eu"
GKE_CLUSTER: Final = "my-project/prod-eu"
FIREHOSE_KEY: Final = "fh-7Qm2xK9pLw4ZrT8vB3nY6cJ1"  # what the stream sends, never echoed
OTHER_KEY: Final = "fh-2Hd8sW5qNe3LxR7tV1mZ9kP4"


def write_key(path: Path, key: str = FIREHOSE_KEY) -> Path:
    path.write_text(key + "\n")
    os.chmod(path, 0o600)
    return path


def firehose_settings(tmp_path: Path, clusters: Sequence[str] = (EKS_CLUSTER,)) -> FirehoseSettings:
    """One stream's key (``FIREHOSE_KEY``) bound to ``clusters``."""
    key_file = write_key(tmp_path / "prod.key")
    return FirehoseSettings(access_keys=(FirehoseKey(key_file=key_file, clusters=tuple(clusters)),))


def pubsub_settings(jwks_file: Path | None, audience: str, pusher: str) -> PubsubSettings:
    return PubsubSettings(
        audience=audience, service_accounts=(pusher,), clusters=(GKE_CLUSTER,), jwks_file=jwks_file
    )


def with_sources(
    config: Config,
    *,
    firehose: FirehoseSettings | None = None,
    pubsub: PubsubSettings | None = None,
    cluster: str = EKS_CLUSTER,
) -> Config:
    """``config`` with the sources on; its own cluster is ``cluster``, so that the webhook path
    records the same events under the same name."""
    return replace(config, cluster=cluster, sources=SourcesConfig(firehose=firehose, pubsub=pubsub))


def sans_arrival(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records without ``received_at``: what two paths must agree on."""
    return [{k: v for k, v in record.items() if k != "received_at"} for record in records]


async def webhook_records(
    tmp_path: Path, bodies: Iterable[bytes], *, key_for: Config, cluster: str = EKS_CLUSTER
) -> list[dict[str, Any]]:
    """What ``POST /audit`` records for the EventList ``bodies``, in order, under ``cluster``.

    Its fingerprint key is copied into ``key_for``'s data dir, so that the two paths'
    records fingerprint secret values alike."""
    config = replace(make_config(tmp_path), cluster=cluster)
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(config)))
    await client.start_server()
    try:
        for body in bodies:
            resp = await client.post("/audit", data=body, headers={"Content-Type": "application/json"})
            assert resp.status == 200, await resp.text()
        await settle(client)
    finally:
        await client.close()
    key = config.in_data_dir(config.redaction.fingerprint_key_file)
    shared = key_for.in_data_dir(key_for.redaction.fingerprint_key_file)
    ensure_private_dir(shared.parent)
    shutil.copyfile(key, shared)
    shared.chmod(0o600)
    return records_in(config)


def capture_lists() -> list[bytes]:
    """Every captured EventList body of scenario A, as the apiserver sent it."""
    return [capture_bytes(body) for body in captured_bodies()]


def event_lists(events: Sequence[dict[str, Any]], size: int = 400) -> list[bytes]:
    """``events`` as EventList bodies of at most ``size`` events."""
    return [event_list(*events[i : i + size]) for i in range(0, len(events), size)]
