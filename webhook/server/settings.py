"""The ``server:`` config section: where and how ``serve`` listens, and who may post.

Kept with the server because only it reads the section (the pipeline gets ``max_event_bytes``
alone); webhook/config.py builds it and checks what the schema cannot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

__all__ = ["AuthConfig", "ClusterAuth", "ServerConfig", "TlsConfig"]

_MiB: Final = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsConfig:
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    reload_interval_s: float = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterAuth:
    """One ``server.auth.clusters`` entry: credentials that speak for that cluster alone."""

    client_subjects: tuple[str, ...] = ()
    bearer_token_files: tuple[Path, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthConfig:
    # The global credentials speak for the configured ``cluster``; ``clusters`` bind others.
    bearer_token_files: tuple[Path, ...] = ()
    client_subjects: tuple[str, ...] = ()
    clusters: Mapping[str, ClusterAuth] = field(default_factory=dict)
    require: Literal["any", "all"] = "any"
    # HTTPS with neither client_ca_file nor any bearer token file on a non-loopback address
    allow_unauthenticated: bool = False
    protect_metrics: bool = False  # /metrics (and /readyz's detail) need the /audit credentials

    @property
    def has_tokens(self) -> bool:
        """Whether any bearer token file is configured, global or bound to a cluster."""
        return bool(self.bearer_token_files) or any(c.bearer_token_files for c in self.clusters.values())


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 9440
    insecure_http: bool = False
    tls: TlsConfig | None = None
    auth: AuthConfig = field(default_factory=AuthConfig)
    max_body_bytes: int = 64 * _MiB
    max_events_per_request: int = 10_000
    max_event_bytes: int = 16 * _MiB
    max_concurrent_requests: int = 64
    workers: int = 1
    body_timeout_s: float = 30.0
    keepalive_timeout_s: float = 75.0
    shutdown_timeout_s: float = 20.0
    # Before authentication: open connections (TLS handshakes included) cost memory each.
    max_connections: int = 1024
    tls_handshake_timeout_s: float = 10.0
    header_timeout_s: float = 10.0  # for a new connection's first request head
