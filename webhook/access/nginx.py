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

__all__ = ["combined_fast", "ingress_fast", "parse_combined", "parse_nginx_ingress"]

_QUOTED = r'"([^"]*)"'
_ESCAPED = r'"((?:[^"\\]++|\\.)*+)"'  # a quoted field that may hold \"
_INT = r"([0-9]{1,19})"
_SECONDS = r"([0-9]{1,15}(?:\.[0-9]{1,9})?)"
_STATUS = r"([1-9][0-9][0-9])"
_TIME = r"([0-9]{2}/[A-Z][a-z]{2}/[0-9]{4}:[0-9]{2}:[0-9]{2}:[0-9]{2} [+-][0-9]{4})"


def _head(q: str, *, strict: bool = False) -> str:
    """``$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "ref" "ua"``.

    Strict: values that need no further check, and a user without spaces (no backtracking).
    """
    if strict:
        return rf"([^ ]+) - ([^ ]*) \[{_TIME}\] {q} {_STATUS} {_INT} {q} {q}"
    return rf"([^ ]+) - (.*?) \[([^\]]*)\] {q} ([^ ]+) ([^ ]+) {q} {q}"


# ... $request_length $request_time [$proxy_upstream_name] [$proxy_alternative_upstream_name] <tail>
# Two passes: a strict pattern whose groups need no checks (nearly every line), then loose ones
# that find the fields of an odd line so that each value is checked and the reason is precise.
_INGRESS_STRICT = re.compile(
    rf"{_head(_QUOTED, strict=True)} {_INT} {_SECONDS} \[([^\]]*)\] \[([^\]]*)\] "
    rf"([^ ,]+) {_INT} {_SECONDS} {_STATUS} ([^ ]+)",  # one upstream: no retries, no "-"
    re.DOTALL,
)
_INGRESS = [
    re.compile(rf"{_head(q)} ([^ ]+) ([^ ]+) \[([^\]]*)\] \[([^\]]*)\] (.*)", re.DOTALL)
    for q in (_QUOTED, _ESCAPED)
]
# <tail>: $upstream_addr $upstream_response_length $upstream_response_time $upstream_status $req_id,
# the first four lists of ", " (retries) and " : " (internal redirects) separated items
_LIST = r"([^ ,]+(?:(?:, | : )[^ ,]+)*)"
_TAIL = re.compile(rf"{_LIST} {_LIST} {_LIST} {_LIST} ([^ ]+)", re.DOTALL)
_COMBINED_STRICT = re.compile(rf"{_head(_QUOTED, strict=True)}(?: {_QUOTED})?", re.DOTALL)
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


def _text(value: str) -> str | None:
    """A quoted field: ``-`` and empty are None, nginx's ``\\xHH`` escapes are undone."""
    if value == "-" or not value:
        return None
    return unescape(value) if "\\" in value else value


def parse_nginx_ingress(line: str) -> AccessEntry:
    entry = ingress_fast(line)
    return entry if entry is not None else _ingress_checked(line)


def ingress_fast(line: str) -> AccessEntry | None:
    """The common line (one upstream, well-formed values) or None; no value needs checking."""
    m = _INGRESS_STRICT.fullmatch(line)
    if m is None or '\\"' in line:  # \" is not nginx's escaping: let the checked pass split fields
        return None
    (
        addr,
        user,
        when,
        request,
        status,
        size,
        referer,
        agent,
        length,
        seconds,
        name,
        alt,
        up_addr,
        up_length,
        up_time,
        up_status,
        req_id,
    ) = m.groups()
    method, path, query, protocol = split_request(unescape(request) if "\\" in request else request)
    return _ingress_entry(
        parse_local_time(when),
        addr,
        method,
        None,
        path,
        query,
        protocol,
        int(status),
        int(size),
        int(length),
        float(seconds),
        None if user == "-" else _text(user),
        _text(referer),
        _text(agent),
        name or None,
        alt or None,
        (up_addr,),
        (int(up_length),),
        (float(up_time),),
        (int(up_status),),
        None if req_id == "-" else req_id,
        "nginx-ingress",
    )


def _ingress_checked(line: str) -> AccessEntry:
    """Escapes, retries, ``-`` values, and the lines that are wrong: every value checked."""
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
    t = _TAIL.fullmatch(tail)
    if t is None:
        raise AccessParseError("bad-format", "upstream fields after the upstream names do not match")
    up_addr, up_length, up_time, up_status, req_id = t.groups()
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
    entry = combined_fast(line)
    return entry if entry is not None else _combined_checked(line)


def combined_fast(line: str) -> AccessEntry | None:
    m = _COMBINED_STRICT.fullmatch(line)
    if m is None or '\\"' in line:
        return None
    addr, user, when, request, status, size, referer, agent, forwarded = m.groups()
    method, path, query, protocol = split_request(unescape(request) if "\\" in request else request)
    return _combined_entry(
        parse_local_time(when),
        addr,
        method,
        None,
        path,
        query,
        protocol,
        int(status),
        int(size),
        _text(user),
        _text(referer),
        _text(agent),
        None if forwarded is None else _text(forwarded),
        "combined",
    )


def _combined_checked(line: str) -> AccessEntry:
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
