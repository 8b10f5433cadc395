"""Previous object state for diffs, and the dedupe keys, shared across restarts and replicas."""

from __future__ import annotations

from webhook.state.base import StateStore, StoredObject, is_newer, object_key, open_store

__all__ = ["StateStore", "StoredObject", "is_newer", "object_key", "open_store"]
