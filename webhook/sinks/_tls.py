"""Client TLS for the sinks that open their own connections (syslog, nats): options and context."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ClientTls", "client_context", "parse_client_tls"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientTls:
    ca_file: Path | None = None  # None: the system's trust store
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None  # None: the host


def parse_client_tls(raw: Mapping[str, Any]) -> ClientTls:
    def path(key: str) -> Path | None:
        return Path(raw[key]) if key in raw else None

    return ClientTls(
        ca_file=path("ca_file"),
        cert_file=path("cert_file"),
        key_file=path("key_file"),
        server_name=raw.get("server_name"),
    )


def client_context(tls: ClientTls) -> ssl.SSLContext:
    """TLS 1.2+, the server verified against ``ca_file``; a client certificate if one is set."""
    context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.cert_file is not None:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    return context
