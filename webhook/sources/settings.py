"""The ``sources:`` config section: inputs that are off until configured, one key each
(docs/managed.md). Each key's dataclass and parser live with its source; webhook/config.py
builds the section."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webhook.sources.aks_settings import AksStorageOptions, parse_aks

__all__ = ["SourcesConfig", "parse_sources"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SourcesConfig:
    aks: AksStorageOptions | None = None  # the storage container of an AKS diagnostic setting


def parse_sources(raw: Mapping[str, Any] | None) -> SourcesConfig:
    """Build the section from schema-valid YAML; raises ConfigError naming each bad key."""
    options = raw or {}
    return SourcesConfig(aks=parse_aks(options.get("aks")))
