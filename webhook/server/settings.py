"""The ``server:`` config section: where and how ``serve`` listens, and who may post.

Kept with the server because only it reads the section (the pipeline gets ``max_event_bytes``
alone); webhook/config.py builds it and checks what the schema cannot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

__all__ = ["AuthConfig", "ServerConfig", "TlsConfig"]

_MiB: Final = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsConfig:
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    reload_interval_s: float = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthConfig:
    bearer_token_files: tuple[Path, ...] = ()
    client_subjects: tuple[str, ...] = ()
    require: Literal["any", "all"] = "any"
    # HTTPS with neither client_ca_file nor bearer_token_files on a non-loopback address
    allow_unauthenticated: bool = False
    protect_metrics: bool = False  # /metrics (and /readyz's detail) need the /audit credentials


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
