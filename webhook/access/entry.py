"""One parsed access-log line, whatever the controller and format it came from.

Every parser (ingress-nginx text and JSON, Traefik JSON, nginx ``combined``) produces an
``AccessEntry``; enrichment, aggregation and detections read only this type. Fields a format
does not carry are ``None`` (or empty tuples). Upstream fields are tuples because a request
retried across backends lists one address, status and time per attempt, in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["AccessEntry", "AccessParseError"]


class AccessParseError(ValueError):
    """A line that is not in the expected format; ``reason`` is a short stable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessEntry:
    time: datetime | None  # aware, UTC; None when the format has no timestamp
    client_ip: str  # the peer address as logged (``$remote_addr``, Traefik ``ClientHost``)
    method: str | None
    host: str | None  # ``$host``, Traefik ``RequestHost``; lower-cased, without port
    path: str | None  # path without the query string
    query: str | None = None
    protocol: str | None = None  # ``HTTP/1.1``, ``HTTP/2.0``
    status: int  # the status sent to the client
    bytes_sent: int | None = None  # body bytes sent to the client
    request_length: int | None = None
    request_time_s: float | None = None  # total time, seconds
    remote_user: str | None = None
    referer: str | None = None
    user_agent: str | None = None
    forwarded_for: str | None = None  # raw X-Forwarded-For, when logged
    upstream_name: str | None = None  # ingress-nginx ``$proxy_upstream_name``: ns-service-port
    upstream_addrs: tuple[str, ...] = ()
    upstream_statuses: tuple[int | None, ...] = ()
    upstream_times_s: tuple[float | None, ...] = ()
    upstream_response_lengths: tuple[int | None, ...] = ()
    request_id: str | None = None  # ``$req_id``
    namespace: str | None = None  # when the format logs ``$namespace`` / ``$ingress_name``
    ingress_name: str | None = None
    service_name: str | None = None
    router: str | None = None  # Traefik ``RouterName``
    format: str = ""  # which parser produced it: nginx-ingress, nginx-ingress-json, traefik-json, combined
