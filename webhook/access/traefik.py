"""Traefik's JSON access log (``accessLog.format: json``), with its documented field names.

Durations are nanoseconds; headers appear as ``request_<Name>`` when ``accessLog.fields.headers``
keeps them. ``Downstream*`` is what the client got, ``Origin*`` what the backend answered.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from webhook.access.entry import AccessEntry, AccessParseError, entry_builder
from webhook.access.fields import EMPTY, host_only
from webhook.access.jsonvalues import as_float, as_int, as_status, as_str, as_time

__all__ = ["TRAEFIK_KEYS", "parse_traefik"]

TRAEFIK_KEYS = frozenset(("DownstreamStatus", "RequestMethod", "ClientHost", "RouterName", "StartUTC"))
_NS = 1e-9
_REDACTED = "REDACTED"  # accessLog.fields.headers.names: <name>: redact

_entry = entry_builder(
    [
        "time",
        "client_ip",
        "method",
        "host",
        "path",
        "query",
        "protocol",
        "status",
        "bytes_sent",
        "request_length",
        "request_time_s",
        "remote_user",
        "referer",
        "user_agent",
        "forwarded_for",
        "upstream_addrs",
        "upstream_statuses",
        "upstream_times_s",
        "upstream_response_lengths",
        "request_id",
        "service_name",
        "router",
        "format",
    ]
)


def _header(obj: Mapping[str, Any], name: str) -> str | None:
    value = as_str(obj.get(f"request_{name}"), f"request_{name}")
    return None if value == _REDACTED else value


def _client_ip(obj: Mapping[str, Any]) -> str | None:
    host = as_str(obj.get("ClientHost"), "ClientHost")
    if host is not None:
        return host
    addr = as_str(obj.get("ClientAddr"), "ClientAddr")  # "ip:port", "[v6]:port"
    if addr is None:
        return None
    if addr.startswith("["):
        return addr[1 : addr.find("]")] or None
    return addr.rpartition(":")[0] if addr.count(":") == 1 else addr


def _upstream(obj: Mapping[str, Any]) -> str | None:
    addr = as_str(obj.get("ServiceAddr"), "ServiceAddr")
    if addr is not None:
        return addr
    raw = obj.get("ServiceURL")
    if isinstance(raw, dict):  # Traefik 1.x/2.0 logged Go's url.URL as an object
        raw = raw.get("Host")
    url = as_str(raw, "ServiceURL")
    if url is None:
        return None
    try:
        return urlsplit(url).netloc or url
    except ValueError:
        return url


def parse_traefik(obj: Mapping[str, Any]) -> AccessEntry:
    client_ip = _client_ip(obj)
    if client_ip is None:
        raise AccessParseError("missing-field", "field ClientHost (client address) is missing")
    status = as_status(obj.get("DownstreamStatus"), "DownstreamStatus")
    origin = obj.get("OriginStatus")
    origin_status = None if origin in (0, "0") else as_status(origin, "OriginStatus")  # 0: no answer
    if status is None:
        status = origin_status
    if status is None:
        raise AccessParseError("missing-field", "field DownstreamStatus is missing")
    target = as_str(obj.get("RequestPath"), "RequestPath")
    path = query = None
    if target is not None:
        path, sep, q = target.partition("?")
        query = q if sep else None
    time = as_time(obj.get("StartUTC"), "StartUTC")
    if time is None:
        time = as_time(obj.get("StartLocal"), "StartLocal")
    upstream = _upstream(obj)
    origin_time = as_float(obj.get("OriginDuration"), "OriginDuration", _NS)
    attempts = upstream is not None
    user = as_str(obj.get("ClientUsername"), "ClientUsername")
    return _entry(
        time,
        client_ip,
        as_str(obj.get("RequestMethod"), "RequestMethod"),
        host_only(as_str(obj.get("RequestHost"), "RequestHost")),
        path,
        query,
        as_str(obj.get("RequestProtocol"), "RequestProtocol"),
        status,
        as_int(obj.get("DownstreamContentSize"), "DownstreamContentSize"),
        as_int(obj.get("RequestContentSize"), "RequestContentSize"),
        as_float(obj.get("Duration"), "Duration", _NS),
        None if user in EMPTY else user,
        _header(obj, "Referer"),
        _header(obj, "User-Agent"),
        _header(obj, "X-Forwarded-For"),
        (upstream,) if upstream is not None else (),
        (origin_status,) if attempts else (),
        (origin_time,) if attempts else (),
        (as_int(obj.get("OriginContentSize"), "OriginContentSize"),) if attempts else (),
        _header(obj, "X-Request-Id"),
        as_str(obj.get("ServiceName"), "ServiceName"),
        as_str(obj.get("RouterName"), "RouterName"),
        "traefik-json",
    )
