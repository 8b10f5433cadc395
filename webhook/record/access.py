"""The two access record types: ``access`` (one request) and ``access_summary`` (one window).

Documented in docs/record.md, checked by webhook/record/schema.json (schema_version 1, the same
additive rules as the audit record). Ids are UUIDv5, so a line or a window sent twice (an HTTP
batch retried, a file replayed again) gets the same id and sinks can drop the second copy.
Records never carry the query string: it can hold tokens.
"""

from __future__ import annotations

import hashlib
import os
import socket
import uuid
from dataclasses import dataclass
from typing import Final, Literal

from webhook.record.line import ACCESS, ACCESS_SUMMARY, RecordHeader

__all__ = [
    "AccessClient",
    "AccessIngress",
    "AccessRecord",
    "AccessRequest",
    "AccessSummary",
    "AccessUpstream",
    "ClientCount",
    "Latency",
    "access_record_id",
    "replica_name",
    "summary_id",
]

_NAMESPACE: Final = uuid.UUID("8d2f7c31-6a0b-4f55-b1d4-3e9c0a7d5b62")

Trust = Literal["trusted", "untrusted", "unknown"]


def access_record_id(source: str, line: bytes) -> str:
    """Same source and same raw line, same id: a resent batch or replayed file adds nothing."""
    digest = hashlib.sha1(_NAMESPACE.bytes + source.encode() + b"\n" + line, usedforsecurity=False)
    return str(uuid.UUID(bytes=digest.digest()[:16], version=5))  # uuid5 over bytes


def summary_id(cluster: str, window_start: str, scope: str, key: str, replica: str | None = None) -> str:
    """Stable per window and key; with ``replica``, distinct per replica (each counts its share)."""
    name = f"summary/{cluster}/{window_start}/{scope}/{key}"
    return str(uuid.uuid5(_NAMESPACE, name if replica is None else f"{name}/{replica}"))


def replica_name() -> str:
    """This process's replica: ``INGRESS_AUDIT_REPLICA``, else the host name (the pod's name)."""
    return os.environ.get("INGRESS_AUDIT_REPLICA") or socket.gethostname()


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessClient:
    ip: str  # the client after X-Forwarded-For handling
    trust: Trust
    peer: str | None = None  # the logged address, when it was a trusted proxy


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessRequest:
    method: str | None
    host: str | None
    path: str | None  # without the query string
    protocol: str | None
    status: int
    status_class: str  # "2xx" … "5xx"
    bytes_sent: int | None
    request_time_s: float | None
    user_agent: str | None
    referer_host: str | None  # only the referer's host: its path and query can hold tokens
    remote_user: str | None
    request_id: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessUpstream:
    name: str | None
    addresses: tuple[str, ...]
    statuses: tuple[int | None, ...]
    times_s: tuple[float | None, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessIngress:
    """The ingress that serves the request's host and path, as the audit records last saw it."""

    namespace: str
    name: str
    ingress_class: str | None = None
    tls: bool | None = None  # the host is listed under spec.tls
    tls_secret: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessRecord(RecordHeader):
    type: Literal["access"] = ACCESS
    id: str
    cluster: str
    time: str | None  # when the controller logged the request
    received_at: str
    input: str  # syslog-udp, syslog-tcp, http, replay
    format: str
    client: AccessClient
    request: AccessRequest
    upstream: AccessUpstream | None
    ingress: AccessIngress | None
    kept_because: tuple[str, ...]  # keep rules that matched: status, sensitive, all


@dataclass(frozen=True, slots=True, kw_only=True)
class Latency:
    """Upper bounds of fixed log-spaced buckets (≤ 19 % above the true value), milliseconds."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientCount:
    ip: str
    trust: Trust
    requests: int  # a lower bound (Misra-Gries); at most ``error_bound`` below the truth
    auth_failures: int  # 401 and 403, a lower bound too


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessSummary(RecordHeader):
    type: Literal["access_summary"] = ACCESS_SUMMARY
    id: str
    cluster: str
    replica: str | None = None  # who counted: replicas each summarize the lines they received
    time: str  # the window's end: when its counts were complete
    received_at: str  # when the summary was made
    window_start: str
    window_end: str
    scope: Literal["host", "clients"]
    host: str | None = None  # scope host: the Host, "(other)" past max_hosts, "-" when not logged
    upstream: str | None = None  # scope host, no Host logged and no ingress known: the upstream
    ingress: AccessIngress | None = None
    requests: int
    statuses: dict[str, int]  # by class: "2xx": n
    auth_failures: int  # 401 + 403
    bytes_sent: int = 0
    latency: Latency | None = None
    clients: tuple[ClientCount, ...] = ()  # scope clients: the heaviest, most requests first
    error_bound: int = 0  # scope clients: each request count is at most this much below the truth
    auth_error_bound: int = 0  # the same for auth_failures
    late: int = 0  # requests that arrived after their window was summarized (counted here)
