"""Previous object state for diffs, and the dedupe keys, shared across restarts and replicas.

One module per store type, registered here by name and imported only once configured, so a
process that keeps its state in SQLite never loads the Redis client. Each module's ``build``
makes its store from the config section.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

from webhook.errors import ConfigError
from webhook.state.base import StateStore, StoredObject, is_newer, object_key

if TYPE_CHECKING:
    from webhook.state.settings import StateConfig

__all__ = ["StateStore", "StoredObject", "is_newer", "object_key", "open_store"]

_TYPES: Final = frozenset({"memory", "sqlite", "redis"})  # each the name of its module here


class _Build(Protocol):
    def __call__(
        self, config: StateConfig, *, data_dir: Path, cluster: str, dedupe_ttl_s: float
    ) -> StateStore: ...


def open_store(config: StateConfig, *, data_dir: Path, cluster: str, dedupe_ttl_s: float) -> StateStore:
    """Build the configured store; call its ``open()`` (if any) before use."""
    if config.type not in _TYPES:  # the schema allows no other; never import an arbitrary name
        raise ConfigError("state.type: unknown store type")
    build: _Build = importlib.import_module(f"webhook.state.{config.type}").build
    return build(config, data_dir=data_dir, cluster=cluster, dedupe_ttl_s=dedupe_ttl_s)
