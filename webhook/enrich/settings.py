"""The ``change:``, ``actors:`` and ``findings:`` config sections: how diffs are written, whom
to trust, which findings to raise. Owned by enrichment; webhook/config.py builds them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

__all__ = ["DEFAULT_IGNORE_PATHS", "ActorsConfig", "ChangeConfig", "FindingsConfig"]

DEFAULT_IGNORE_PATHS: Final = (
    "/metadata/resourceVersion",
    "/metadata/generation",
    "/metadata/managedFields",
    "/metadata/creationTimestamp",
    "/metadata/uid",
    "/metadata/selfLink",
    "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration",
    "/status",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangeConfig:
    """How diffs are written: paths to ignore (RFC 6901, ``*`` matches one segment) and caps."""

    ignore_paths: tuple[str, ...] = DEFAULT_IGNORE_PATHS
    max_value_bytes: int = 1024
    max_operations: int = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorsConfig:
    """Which source addresses are trusted and which users are automation (CI, GitOps)."""

    trusted_cidrs: tuple[str, ...] = ()
    automation_users: tuple[str, ...] = ()
    automation_groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class FindingsConfig:
    disabled: frozenset[str] = frozenset()
    severity: Mapping[str, str] = field(default_factory=dict)
    internal_hosts: tuple[str, ...] = ("*.svc", "*.svc.cluster.local", "*.cluster.local", "localhost")
