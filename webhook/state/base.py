"""One small interface for the state store: last known redacted object per key, and dedupe keys.

Only redacted objects ever reach a store. Writes are conditional: an older version never
replaces a newer one (``is_newer``), because the apiserver sends batches concurrently and
retries some for ~90 s, so events for one object can arrive out of order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["StateStore", "StoredObject", "cluster_key", "is_newer", "lay_newer", "object_key", "split_key"]


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredObject:
    """The last known version of one object; ``object`` is None when only its name is known
    (Metadata-level events) and ``deleted`` marks a tombstone."""

    object: dict[str, Any] | None
    resource_version: str | None
    audit_id: str
    time: str | None
    deleted: bool = False
    # A TLS Secret's leaf certificate names (read before redaction), for Ingress host checks.
    certificate_sans: tuple[str, ...] | None = None

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickled as one tuple: the worker processes send thousands a second (a listed Secret
        each), and a slotted dataclass's own state is read field by field in Python."""
        return _stored_object, (
            self.object,
            self.resource_version,
            self.audit_id,
            self.time,
            self.deleted,
            self.certificate_sans,
        )


def _stored_object(
    obj: dict[str, Any] | None,
    resource_version: str | None,
    audit_id: str,
    time: str | None,
    deleted: bool,
    certificate_sans: tuple[str, ...] | None,
) -> StoredObject:
    return StoredObject(
        object=obj,
        resource_version=resource_version,
        audit_id=audit_id,
        time=time,
        deleted=deleted,
        certificate_sans=certificate_sans,
    )


def object_key(group: str, resource: str, namespace: str | None, name: str) -> str:
    """``group/resource/namespace/name``; ``/`` cannot occur in any of the parts."""
    return f"{group}/{resource}/{namespace or ''}/{name}"


def cluster_key(cluster: str | None, key: str) -> str:
    """The store key of ``cluster``'s object ``key``: ``@<cluster>/<key>``. The configured
    cluster's (None) is ``key`` itself, as it always was, so its stored state stays valid; the
    rare one of its keys that starts with ``@`` (an API group cannot) gets a second ``@``, so
    that no event can name another cluster's key."""
    if cluster:
        return f"@{cluster}/{key}"
    return f"@{key}" if key.startswith("@") else key


def split_key(stored: str) -> tuple[str | None, str]:
    """``cluster_key`` undone: the cluster (None: the configured one) and the object key."""
    if not stored.startswith("@") or stored.startswith("@@"):
        return None, stored.removeprefix("@")
    cluster, _, key = stored[1:].partition("/")
    return cluster, key


def _int(value: str | None) -> int | None:
    if value is None or not value.isdigit():
        return None
    return int(value)


def is_newer(new: StoredObject, old: StoredObject | None) -> bool:
    """Whether ``new`` may replace ``old``: resourceVersions compared as integers when both are,
    else the event times (RFC 3339, compared as strings); equal versions are the same state."""
    if old is None:
        return True
    a, b = _int(new.resource_version), _int(old.resource_version)
    if a is not None and b is not None:
        # A delete keeps the object's last resourceVersion: it supersedes that version.
        return a > b or (a == b and new.deleted and not old.deleted)
    return (new.time or "") > (old.time or "")


def lay_newer(
    states: dict[str, StoredObject], newer: Mapping[str, StoredObject], keys: Iterable[str] | None = None
) -> dict[str, StoredObject]:
    """``states`` with each state of ``newer`` (of ``keys`` only, when given) laid over it where
    it is newer (``is_newer``); returns ``states``."""
    if newer:
        for key in newer if keys is None else keys:
            state = newer.get(key)
            if state is not None and is_newer(state, states.get(key)):
                states[key] = state
    return states


class StateStore(Protocol):
    """Async because Redis runs over the network (and SQLite writes in a thread)."""

    name: str
    # True when reads go over the network. A local store's ``claim`` and ``get_many`` answer
    # without waiting, so they are called in turn, with no task or pass of the event loop.
    remote: bool

    async def open(self) -> None:
        """Connect or create; raises StateError when the store cannot be used at all."""

    async def get_many(self, keys: Sequence[str]) -> dict[str, StoredObject]:
        """The stored state of each key that has one."""

    async def put_many(self, items: Mapping[str, StoredObject]) -> None:
        """Store each item unless the store already holds a newer one (``is_newer``)."""

    async def scan(self, prefix: str, *, limit: int) -> dict[str, StoredObject]:
        """Up to ``limit`` stored states whose key starts with ``prefix`` (start-up loads only)."""

    async def claim(self, keys: Sequence[str]) -> set[str]:
        """Which of the dedupe keys are already recorded (or being recorded by another replica).

        The other keys are claimed for a short while; ``commit`` keeps them, ``release`` frees
        them when the batch could not be written (so that its retry is recorded).
        """

    async def commit(self, keys: Iterable[str]) -> None: ...

    async def release(self, keys: Iterable[str]) -> None: ...

    async def problem(self) -> str | None:
        """None when the store answers; else what is wrong (never a credential)."""

    async def aclose(self) -> None: ...
