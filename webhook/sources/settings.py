"""The ``sources:`` config section: the managed clouds' inputs, each off unless configured.

Kept with the sources because only they read it; webhook/config.py builds it. Key files,
JWKS files and storage credentials are named here and read when the source starts (and by
``check-config``), never by the commands that only read records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from webhook.sources.aks_settings import AksStorageOptions, parse_aks
from webhook.sources.firehose_keys import FirehoseKey

__all__ = ["FirehoseSettings", "PubsubSettings", "SourcesConfig", "parse_sources"]


@dataclass(frozen=True, slots=True, kw_only=True)
class FirehoseSettings:
    """``sources.firehose``: EKS through Amazon Data Firehose, one access key per stream."""

    access_keys: tuple[FirehoseKey, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class PubsubSettings:
    """``sources.pubsub``: GKE through a Pub/Sub push subscription and its OIDC token."""

    audience: str
    service_accounts: tuple[str, ...]
    clusters: tuple[str, ...]  # project_id/cluster_name
    jwks_file: Path | None = None  # None: Google's published keys


@dataclass(frozen=True, slots=True, kw_only=True)
class SourcesConfig:
    firehose: FirehoseSettings | None = None
    pubsub: PubsubSettings | None = None
    aks: AksStorageOptions | None = None  # the storage container of an AKS diagnostic setting

    @property
    def enabled(self) -> tuple[str, ...]:
        """The names of the sources configured (for logs and ``check-config``)."""
        return tuple(f.name for f in fields(self) if getattr(self, f.name) is not None)


def parse_sources(raw: Mapping[str, Any] | None) -> SourcesConfig:
    """The section as the schema passed it; a source left out (or null) is off. Raises
    ConfigError naming each bad key."""
    options = raw or {}
    firehose = options.get("firehose")
    pubsub = options.get("pubsub")
    return SourcesConfig(
        firehose=None
        if firehose is None
        else FirehoseSettings(
            access_keys=tuple(
                FirehoseKey(key_file=Path(entry["key_file"]), clusters=tuple(entry["clusters"]))
                for entry in firehose["access_keys"]
            )
        ),
        pubsub=None
        if pubsub is None
        else PubsubSettings(
            audience=pubsub["audience"],
            service_accounts=tuple(pubsub["service_accounts"]),
            clusters=tuple(pubsub["clusters"]),
            jwks_file=Path(pubsub["jwks_file"]) if pubsub.get("jwks_file") is not None else None,
        ),
        aks=parse_aks(options.get("aks")),
    )
