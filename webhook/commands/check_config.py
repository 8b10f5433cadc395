"""``ingress-audit check-config``: what serve would refuse, found before it starts; with
``--connect``, whether every sink (and a Redis state store, and the AKS storage container)
answers. The sources it enables are listed with their clusters (never a key)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final, Protocol

from webhook.config import Config, check_listen, listen_warnings, load_config
from webhook.errors import WebhookError
from webhook.server.app import tls_files_for
from webhook.server.auth import Authenticator
from webhook.server.tls import build_context
from webhook.sinks import sink_types
from webhook.sinks.base import Health
from webhook.sources.aks_access import StorageAccess
from webhook.sources.aks_settings import describe_aks, with_data_dir
from webhook.sources.aks_source import check_aks
from webhook.sources.firehose_http import FIREHOSE_MAX_BODY_BYTES, FIREHOSE_PATH, load_keys
from webhook.sources.jwks import JwksFile
from webhook.sources.pubsub_http import PUBSUB_PATH
from webhook.state import open_store

__all__ = ["add_arguments", "run"]

PROBE_TIMEOUT_S: Final = 15


class _Opened(Protocol):
    async def open(self) -> None: ...
    async def aclose(self) -> None: ...


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path)
    parser.add_argument(
        "--connect", action="store_true", help="also reach every sink (health check) and report each"
    )


def run(args: argparse.Namespace) -> int:
    config = load_config(args.file)
    check_listen(config)
    # What serve loads before it listens: the TLS files (readable, a matching pair, a CA that
    # parses) and the bearer token files (mode and strength).
    if (files := tls_files_for(config)) is not None:
        build_context(files)
    Authenticator.for_server(config.server)
    # The sources' own credentials: the Firehose key files, a JWKS file, the AKS credential.
    sources = _sources(config)
    if (aks := config.sources.aks) is not None:
        # The state file and the credential (mode, form), as serve reads them; never printed.
        aks = with_data_dir(aks, config.data_dir)
        asyncio.run(check_aks(aks))
        sources.append(f"{args.file}: {describe_aks(aks)}")
    for warning in [*listen_warnings(config), *_source_warnings(config)]:
        print(f"{args.file}: warning: {warning}", file=sys.stderr)
    print(f"{args.file}: ok")
    if clusters := config.server.auth.clusters:
        print(f"{args.file}: clusters bound to credentials: {', '.join(sorted(clusters))}")
    for line in sources:
        print(line)
    if not args.connect:
        return 0
    failed = asyncio.run(_connect(config))
    return 1 if failed else 0


def _sources(config: Config) -> list[str]:
    """One line per source the config enables, once its files are read as serve reads them."""
    lines = []
    if (firehose := config.sources.firehose) is not None:
        keys = load_keys(firehose)
        lines.append(f"source firehose: POST {FIREHOSE_PATH}, {len(keys)} access key(s)")
        lines.extend(
            f"  key {entry.key_file}: clusters {', '.join(entry.clusters)}" for entry in firehose.access_keys
        )
    if (pubsub := config.sources.pubsub) is not None:
        if pubsub.jwks_file is None:
            keys_from = "Google's published keys (fetched at the first push)"
        else:
            keys_from = f"{pubsub.jwks_file} ({len(JwksFile(pubsub.jwks_file))} key(s))"
        lines.append(f"source pubsub: POST {PUBSUB_PATH}, audience {pubsub.audience}, keys: {keys_from}")
        lines.append(f"  service accounts: {', '.join(pubsub.service_accounts)}")
        lines.append(f"  clusters: {', '.join(pubsub.clusters)}")
    return lines


def _source_warnings(config: Config) -> list[str]:
    if config.sources.firehose is not None and config.server.max_body_bytes < FIREHOSE_MAX_BODY_BYTES:
        return [
            "server.max_body_bytes is below 64 MiB, Firehose's largest request: a stream whose "
            "buffering size is above it gets 400s"
        ]
    return []


async def _connect(config: Config) -> int:
    """Open each sink and run its health check, as delivery would; print one line per sink."""
    types = sink_types()
    failed = 0
    for settings in config.sinks:
        sink = types[settings.type].build(settings, config.data_dir)
        health = await _probe(sink, sink.health)
        failed += not health.ok
        outcome = "ok" if health.ok else "FAILED"
        detail = f": {health.detail}" if health.detail else ""
        print(f"sink {settings.name} ({settings.type}): {outcome}{detail}")
    if config.state.type == "redis":  # the local stores are created by serve, not probed here
        store = open_store(config.state, data_dir=config.data_dir, cluster=config.cluster, dedupe_ttl_s=1.0)
        health = await _probe(store, store.problem)
        failed += not health.ok
        print(f"state {config.state.type}: {'ok' if health.ok else 'FAILED: ' + health.detail}")
    if config.sources.aks is not None:
        access = StorageAccess(with_data_dir(config.sources.aks, config.data_dir))
        health = await _probe(access, access.problem)
        failed += not health.ok
        print(f"source aks: {'ok' if health.ok else 'FAILED: ' + health.detail}")
    return failed


async def _probe(opened: _Opened, check: Callable[[], Awaitable[Health | str | None]]) -> Health:
    """Open it and check it within the time limit, then close it, whatever happened."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            await opened.open()
            found = await check()
    except TimeoutError:
        return Health(ok=False, detail=f"timed out after {PROBE_TIMEOUT_S} s")
    except WebhookError as exc:
        return Health(ok=False, detail=exc.message)
    except OSError as exc:
        return Health(ok=False, detail=f"{type(exc).__name__}: {exc.strerror or 'unreachable'}")
    finally:
        with contextlib.suppress(Exception):  # one that failed to open may not close cleanly
            await opened.aclose()
    # A state store names its problem (None: it answers); a sink answers with its health.
    return found if isinstance(found, Health) else Health(ok=found is None, detail=found or "")
