"""ingress-nginx JSON access logs (``log-format-escape-json`` + a JSON ``log-format-upstream``).

There is no single JSON format: each entry field is read from the first key present among the
usual community names (``DEFAULT_KEYS``), and ``field_map`` ({entry_field: json_key}) pins a
field to the key a deployment uses instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from webhook.access.entry import AccessEntry, AccessParseError, entry_builder
from webhook.access.fields import host_only, split_request, unescape
from webhook.access.jsonvalues import as_float, as_int, as_list, as_status, as_str, as_time

__all__ = ["DEFAULT_KEYS", "compile_nginx_json"]

DEFAULT_KEYS: Mapping[str, tuple[str, ...]] = {
    "time": ("time", "time_iso8601", "@timestamp", "timestamp", "time_local", "msec"),
    "client_ip": ("remote_addr", "client_addr", "client_ip", "real_ip"),
    "method": ("method", "request_method"),
    "host": ("vhost", "host", "http_host", "server_name"),
    "path": ("path", "uri"),
    "query": ("request_query", "args", "query_string"),
    "request": ("request",),  # "$request", read when method or path are not logged on their own
    "request_uri": ("request_uri",),  # "$request_uri": path and query, read when path is absent
    "protocol": ("request_proto", "server_protocol", "protocol"),
    "status": ("status",),
    "bytes_sent": ("body_bytes_sent", "bytes_sent"),
    "request_length": ("request_length",),
    "request_time_s": ("request_time", "duration"),
    "remote_user": ("remote_user",),
    "referer": ("http_referrer", "http_referer", "referer", "referrer"),
    "user_agent": ("http_user_agent", "user_agent"),
    "forwarded_for": ("x_forwarded_for", "http_x_forwarded_for", "x-forward-for"),
    "upstream_name": ("proxy_upstream_name",),
    "alternative_upstream_name": ("proxy_alternative_upstream_name",),
    "upstream_addrs": ("upstream_addr",),
    "upstream_statuses": ("upstream_status",),
    "upstream_times_s": ("upstream_response_time",),
    "upstream_response_lengths": ("upstream_response_length",),
    "request_id": ("request_id", "req_id"),
    "namespace": ("namespace",),
    "ingress_name": ("ingress_name",),
    "service_name": ("service_name",),
    "service_port": ("service_port",),
}
_FIELDS = tuple(k for k in DEFAULT_KEYS if k not in ("request", "request_uri"))
_TEXT_FIELDS = (
    "client_ip",
    "method",
    "host",
    "path",
    "query",
    "request",
    "request_uri",
    "protocol",
    "remote_user",
    "referer",
    "user_agent",
    "forwarded_for",
    "upstream_name",
    "alternative_upstream_name",
    "request_id",
    "namespace",
    "ingress_name",
    "service_name",
    "service_port",
)
_EMPTY = frozenset((None, "", "-"))
_entry = entry_builder([*_FIELDS, "format"])


def compile_nginx_json(
    field_map: Mapping[str, str] | None = None,
) -> Callable[[Mapping[str, Any]], AccessEntry]:
    """Resolve the key list once; unknown entry fields in ``field_map`` are a config error."""
    keys = dict(DEFAULT_KEYS)
    for field, key in (field_map or {}).items():
        if field not in keys:
            raise ValueError(f"field_map: {field!r} is not an access entry field ({', '.join(keys)})")
        keys[field] = (key,)
    plan = tuple((field, tuple(names)) for field, names in keys.items())
    label = {field: "/".join(names) for field, names in plan}  # for messages: the keys, never values

    def lookup(obj: Mapping[str, Any]) -> dict[str, Any]:
        """Each entry field's value from the first of its keys that is present (and not null)."""
        get = obj.get
        found: dict[str, Any] = {}
        for field, names in plan:
            for name in names:
                value = get(name)
                if value is not None:
                    found[field] = value
                    break
        return found

    def parse(obj: Mapping[str, Any]) -> AccessEntry:
        found = lookup(obj)
        text: dict[str, str | None] = {}
        for field in _TEXT_FIELDS:
            value = found.get(field)
            if value is None or value.__class__ is str:
                text[field] = None if value in _EMPTY else value
            else:
                text[field] = as_str(value, label[field])
        client_ip = text["client_ip"]
        if client_ip is None:
            raise AccessParseError("missing-field", f"field {label['client_ip']} (client address) is missing")
        status = as_status(found.get("status"), label["status"])
        if status is None:
            raise AccessParseError("missing-field", f"field {label['status']} is missing")
        method, path, query, protocol = text["method"], text["path"], text["query"], text["protocol"]
        if path is None and (uri := text["request_uri"]) is not None:
            path, sep, q = uri.partition("?")
            query = query if query is not None or not sep else q
        if (method is None or path is None) and (request := text["request"]) is not None:
            r_method, r_path, r_query, r_protocol = split_request(unescape(request))
            method, path = method or r_method, path or r_path
            query, protocol = query or r_query, protocol or r_protocol
        addrs = as_list(found.get("upstream_addrs"), label["upstream_addrs"])
        statuses: tuple[int | None, ...] = ()
        times: tuple[float | None, ...] = ()
        lengths: tuple[int | None, ...] = ()
        if addrs:  # a lone "-" next to an address is an attempt without that value
            key = label["upstream_statuses"]
            statuses = tuple(as_status(v, key) for v in _companion(found, "upstream_statuses", key))
            key = label["upstream_times_s"]
            times = tuple(as_float(v, key) for v in _companion(found, "upstream_times_s", key))
            key = label["upstream_response_lengths"]
            lengths = tuple(as_int(v, key) for v in _companion(found, "upstream_response_lengths", key))
        return _entry(
            as_time(found.get("time"), label["time"]),
            client_ip,
            method,
            host_only(text["host"]),
            path,
            query,
            protocol,
            status,
            as_int(found.get("bytes_sent"), label["bytes_sent"]),
            as_int(found.get("request_length"), label["request_length"]),
            as_float(found.get("request_time_s"), label["request_time_s"]),
            text["remote_user"],
            text["referer"],
            text["user_agent"],
            text["forwarded_for"],
            text["upstream_name"],
            text["alternative_upstream_name"],
            addrs,
            statuses,
            times,
            lengths,
            text["request_id"],
            text["namespace"],
            text["ingress_name"],
            text["service_name"],
            text["service_port"],
            "nginx-ingress-json",
        )

    return parse


def _companion(found: Mapping[str, Any], field: str, key: str) -> tuple[str, ...]:
    value = found.get(field)
    if value is None:
        return ()
    return as_list(value, key) or ("-",)
