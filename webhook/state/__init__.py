"""Previous object state for diffs, and the dedupe keys, shared across restarts and replicas."""

from __future__ import annotations

from webhook.state.base import StateError, StateStore, StoredObject, is_newer, object_key, open_store

__all__ = ["StateError", "StateStore", "StoredObject", "is_newer", "object_key", "open_store"]
