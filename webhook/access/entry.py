"""One parsed access-log line, whatever the controller and format it came from.

Every parser (ingress-nginx text and JSON, Traefik JSON, nginx ``combined``) produces an
``AccessEntry``; enrichment, aggregation and detections read only this type. Fields a format
does not carry are ``None`` (or empty tuples). Upstream fields are tuples because a request
retried across backends lists one address, status and time per attempt, in order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, fields
from datetime import datetime
from typing import Any

__all__ = ["AccessEntry", "AccessParseError", "entry_builder"]


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
    alternative_upstream_name: str | None = None  # ``$proxy_alternative_upstream_name`` (canary)
    upstream_addrs: tuple[str, ...] = ()
    upstream_statuses: tuple[int | None, ...] = ()
    upstream_times_s: tuple[float | None, ...] = ()
    upstream_response_lengths: tuple[int | None, ...] = ()
    request_id: str | None = None  # ``$req_id``
    namespace: str | None = None  # when the format logs ``$namespace`` / ``$ingress_name``
    ingress_name: str | None = None
    service_name: str | None = None
    service_port: str | None = None  # a number or a port name, as the format logs it
    router: str | None = None  # Traefik ``RouterName``
    format: str = ""  # which parser produced it: nginx-ingress, nginx-ingress-json, traefik-json, combined


def entry_builder(names: Sequence[str]) -> Callable[..., AccessEntry]:
    """A positional constructor for the parsers' hot loop: ``entry_builder(["time", ...])(t, ...)``.

    It sets each slot through its descriptor instead of the frozen ``__init__``'s per-field
    ``object.__setattr__`` (twice as fast; 100k lines/s is the budget). Fields not named get
    their defaults; leaving out a field without one is an error here, at start-up.
    """
    slots: dict[str, Any] = {f.name: f for f in fields(AccessEntry)}
    unknown = [n for n in names if n not in slots]
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"unknown or repeated AccessEntry fields: {unknown}")
    missing = [n for n, f in slots.items() if n not in names and f.default is MISSING]
    if missing:
        raise ValueError(f"AccessEntry fields without a default must be given: {missing}")
    rest = [n for n in slots if n not in names]
    setters = tuple(getattr(AccessEntry, n).__set__ for n in (*names, *rest))
    defaults = tuple(slots[n].default for n in rest)
    count = len(names)
    new = object.__new__

    def build(*values: Any) -> AccessEntry:
        if len(values) != count:
            raise TypeError(f"expected {count} values")
        entry: AccessEntry = new(AccessEntry)
        for set_value, value in zip(setters, values + defaults, strict=True):
            set_value(entry, value)
        return entry

    return build
