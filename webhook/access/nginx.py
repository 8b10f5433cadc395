"""nginx text access logs: ingress-nginx's default ``upstreaminfo`` format and plain ``combined``.

A compiled regex finds the fields and each value is then checked, so a bad line gets a precise
reason. nginx (``escape=default``) writes ``"``, ``\\`` and bytes outside printable ASCII as
``\\xHH``; quoted fields with ``\\"`` (other writers) take a slower second regex.
"""

from __future__ import annotations

import re

from webhook.access.entry import AccessEntry, AccessParseError, entry_builder
from webhook.access.fields import (
    EMPTY,
    opt_float,
    opt_int,
    parse_local_time,
    split_request,
    status_code,
    unescape,
    upstreams,
)

__all__ = ["parse_combined", "parse_nginx_ingress"]

_QUOTED = r'"([^"]*)"'
_ESCAPED = r'"((?:[^"\\]++|\\.)*+)"'  # a quoted field that may hold \"


def _head(q: str) -> str:
    """``$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "ref" "ua"``."""
    return rf"([^ ]+) - (.*?) \[([^\]]*)\] {q} ([^ ]+) ([^ ]+) {q} {q}"


# ... $request_length $request_time [$proxy_upstream_name] [$proxy_alternative_upstream_name] <tail>
_INGRESS = [
    re.compile(rf"{_head(q)} ([^ ]+) ([^ ]+) \[([^\]]*)\] \[([^\]]*)\] (.*)", re.DOTALL)
    for q in (_QUOTED, _ESCAPED)
]
# <tail>: $upstream_addr $upstream_response_length $upstream_response_time $upstream_status $req_id,
# the first four lists of ", " (retries) and " : " (internal redirects) separated items
_LIST = r"([^ ,]+(?:(?:, | : )[^ ,]+)*)"
_TAIL = re.compile(rf"{_LIST} {_LIST} {_LIST} {_LIST} ([^ ]+)", re.DOTALL)
_COMBINED = [re.compile(rf"{_head(q)}(?: {q})?", re.DOTALL) for q in (_QUOTED, _ESCAPED)]

_ingress_entry = entry_builder(
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
        "upstream_name",
        "alternative_upstream_name",
        "upstream_addrs",
        "upstream_response_lengths",
        "upstream_times_s",
        "upstream_statuses",
        "request_id",
        "format",
    ]
)
_combined_entry = entry_builder(
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
        "remote_user",
        "referer",
        "user_agent",
        "forwarded_for",
        "format",
    ]
)


def _match(patterns: list[re.Pattern[str]], line: str, name: str) -> tuple[str, ...]:
    for pattern in patterns:
        m = pattern.fullmatch(line)
        if m is not None:
            return m.groups()
    raise AccessParseError("bad-format", f"line does not match the {name} format")


def parse_nginx_ingress(line: str) -> AccessEntry:
    (
        addr,
        user,
        time_local,
        request,
        status,
        body_bytes,
        referer,
        agent,
        request_length,
        request_time,
        upstream_name,
        alternative,
        tail,
    ) = _match(_INGRESS, line, "ingress-nginx upstreaminfo")
    parts = tail.split(" ")
    if len(parts) != 5:  # retries or redirects: lists with spaces
        m = _TAIL.fullmatch(tail)
        if m is None:
            raise AccessParseError("bad-format", "upstream fields after the upstream names do not match")
        parts = list(m.groups())
    up_addr, up_length, up_time, up_status, req_id = parts
    method, path, query, protocol = split_request(unescape(request) if "\\" in request else request)
    return _ingress_entry(
        parse_local_time(time_local),
        addr,
        method,
        None,
        path,
        query,
        protocol,
        status_code(status),
        opt_int(body_bytes, "body_bytes_sent"),
        opt_int(request_length, "request_length"),
        opt_float(request_time, "request_time"),
        None if user in EMPTY else unescape(user),
        None if referer in EMPTY else unescape(referer),
        None if agent in EMPTY else unescape(agent),
        upstream_name or None,
        alternative or None,
        *upstreams(up_addr, up_length, up_time, up_status),
        None if req_id in EMPTY else req_id,
        "nginx-ingress",
    )


def parse_combined(line: str) -> AccessEntry:
    """``combined``, optionally followed by ``"$http_x_forwarded_for"`` (the nginx image's ``main``)."""
    addr, user, time_local, request, status, body_bytes, referer, agent, forwarded = _match(
        _COMBINED, line, "nginx combined"
    )
    method, path, query, protocol = split_request(unescape(request) if "\\" in request else request)
    return _combined_entry(
        parse_local_time(time_local),
        addr,
        method,
        None,
        path,
        query,
        protocol,
        status_code(status),
        opt_int(body_bytes, "body_bytes_sent"),
        None if user in EMPTY else unescape(user),
        None if referer in EMPTY else unescape(referer),
        None if agent in EMPTY else unescape(agent),
        None if forwarded is None or forwarded in EMPTY else unescape(forwarded),
        "combined",
    )
