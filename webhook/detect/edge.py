"""Detections over access logs: the edge of the cluster, through the same engine and alerts.

Which signal each rule reads, and so how soon it can fire:

- ``edge-brute-force-client``, ``edge-brute-force-host``, ``edge-sensitive-access`` count
  individual ``access`` records. 401/403 and untrusted requests to sensitive hosts/paths are
  kept by default (``access.keep``), so these fire within about a second of the line arriving
  (syslog records are written every 0.2 s, then counted). Without 401 and 403 in
  ``access.keep.statuses`` the brute-force rules see nothing and are not started.
- ``edge-request-rate``, ``edge-5xx-spike`` and ``change-correlation`` read the window
  summaries (``access_summary``): every request is counted there, bounded (top-K clients,
  exact per host), but only when the window closes: up to ``access.window_s`` plus a few
  seconds after the first request of a burst.

A 5xx spike compares the window's 5xx ratio with the host's own recent past (the windows before
it, at most ``HISTORY`` of them), not only a fixed threshold, with a floor of requests so one
failed request of two is not a spike. Change correlation ties such a shift (or a traffic surge
or drop) in a window after an audit change of the host's Ingress, its TLS Secret or its
IngressClass to that change: one alert per (host, change), naming both.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import orjson

from webhook.core.net import parse_networks
from webhook.core.patterns import Matcher
from webhook.core.values import as_mapping, as_nonempty_str
from webhook.detect.fields import Record, actor_of, in_networks, is_change, object_of
from webhook.detect.rules import Hit, Rule
from webhook.detect.settings import DetectionsConfig, Exceptions, RuleSettings
from webhook.detect.windows import LruMap, Window
from webhook.record.alert import AlertActor, AlertObject
from webhook.record.line import ACCESS, ACCESS_SUMMARY, AUDIT
from webhook.record.time import parse_time

__all__ = [
    "EDGE_RULES",
    "HISTORY",
    "MAX_CHANGES",
    "BruteForceClient",
    "BruteForceHost",
    "ChangeCorrelation",
    "ChangeSource",
    "FiveXxSpike",
    "RequestRate",
    "SensitiveAccess",
    "build_edge_rules",
]

HISTORY: Final = 10  # windows remembered per host: the baseline
MAX_CHANGES: Final = 1000  # changes change-correlation remembers (fewer if max_keys is lower)
MAX_DIFF_OPS: Final = 20
MAX_VALUE_CHARS: Final = 200
_INGRESS_GROUP: Final = "networking.k8s.io"
# What, when changed, changes what serves a host (core Secrets: the TLS certificate).
_CORRELATED: Final = frozenset(
    {(_INGRESS_GROUP, "ingresses"), (_INGRESS_GROUP, "ingressclasses"), ("", "secrets")}
)


# The last audit change per host (webhook/access/hosts.py ``HostIndex.last_change``): a
# ``ChangeRef`` or None.
ChangeSource = Callable[[str], Any]


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _seconds(value: object) -> float | None:
    when = parse_time(value)
    return when.timestamp() if when is not None else None


def _ingress(doc: Record) -> AlertObject | None:
    ingress = doc.get("ingress")
    if not isinstance(ingress, Mapping) or not as_nonempty_str(ingress.get("name")):
        return None
    return AlertObject(
        api_group=_INGRESS_GROUP,
        resource="ingresses",
        namespace=as_nonempty_str(ingress.get("namespace")),
        name=as_nonempty_str(ingress.get("name")),
    )


def _ingress_name(obj: AlertObject | None) -> str | None:
    return f"{obj.namespace}/{obj.name}" if obj is not None else None


def _target(host: str | None, obj: AlertObject | None, upstream: str | None) -> dict[str, str]:
    """Grouping labels of a host: the Host (or the ingress rule's), its ingress, else the upstream."""
    labels: dict[str, str] = {}
    if host and host != "-":
        labels["host"] = host
    if obj is not None:
        labels["ingress"] = _ingress_name(obj) or ""
    if not labels:
        labels["upstream" if upstream else "host"] = upstream or "-"
    return labels


def _where(labels: Mapping[str, str]) -> str:
    host, ingress, upstream = labels.get("host"), labels.get("ingress"), labels.get("upstream")
    if host and ingress:
        return f"{host} (ingress {ingress})"
    if ingress:
        return f"ingress {ingress}"
    return host or f"upstream {upstream}"


class EdgeRule(Rule):
    """A rule over access records: exceptions match the client address and the ingress namespace
    (``users`` and ``groups`` name Kubernetes identities, which access logs do not carry)."""

    consumes: ClassVar[frozenset[str]] = frozenset({ACCESS})

    def __init__(self, settings: RuleSettings, *, max_keys: int, exceptions: Exceptions) -> None:
        super().__init__(settings, max_keys=max_keys, exceptions=exceptions)
        sets = (exceptions, settings.exceptions)
        self._namespaces = Matcher(tuple(n for s in sets for n in s.namespaces))
        self._networks = parse_networks([c for s in sets for c in s.source_cidrs], where="source_cidrs")

    def hits(self, record: Record, now: float) -> list[Hit]:
        return self.match(record, now)  # each rule checks exceptions on what it keys by

    def skip_client(self, ip: str | None) -> bool:
        if not ip or not self._networks:
            return False
        return in_networks(ip, self._networks)

    def skip_object(self, obj: AlertObject | None) -> bool:
        return obj is not None and self._namespaces(obj.namespace)


def _request(doc: Record) -> tuple[str, Mapping[str, Any], AlertObject | None]:
    client = as_mapping(doc.get("client"))
    return str(client.get("ip") or ""), as_mapping(doc.get("request")), _ingress(doc)


def _line(request: Mapping[str, Any]) -> str:
    """``GET host/path -> 401``: never the query string (records do not carry it)."""
    host = request.get("host") or ""
    return f"{request.get('method') or '-'} {host}{request.get('path') or ''} -> {request.get('status')}"


class BruteForceClient(EdgeRule):
    """401/403 answers to one client address, over every host it tried."""

    id = "edge-brute-force-client"

    def match(self, record: Record, now: float) -> list[Hit]:
        ip, request, obj = _request(record)
        if request.get("status") not in (401, 403) or not ip:
            return []
        if self.skip_client(ip) or self.skip_object(obj):
            return []
        username = as_nonempty_str(request.get("remote_user"))
        actor = AlertActor(username=username, kind="client", source_ips=(ip,))
        namespace = obj.namespace if obj else None
        return [
            Hit(labels={"client_ip": ip}, actor=actor, object=obj, namespace=namespace, note=_line(request))
        ]

    def text(self, labels: Mapping[str, str], count: int, hit: Hit) -> tuple[str, str]:
        ip = labels["client_ip"]
        return (
            f"{count} refused request(s) (401/403) at the edge from {ip}",
            f"The ingress controller answered {count} requests from {ip} with 401 or 403 (guessed or "
            f"stolen credentials?); the rule fires at {self.threshold} within {self.window_s:g} s. "
            f"The latest: {hit.note}.",
        )


class BruteForceHost(EdgeRule):
    """401/403 answers on one host or ingress, from any number of clients (a spread attack)."""

    id = "edge-brute-force-host"

    def match(self, record: Record, now: float) -> list[Hit]:
        ip, request, obj = _request(record)
        if request.get("status") not in (401, 403):
            return []
        if self.skip_client(ip) or self.skip_object(obj):
            return []
        upstream = as_nonempty_str(as_mapping(record.get("upstream")).get("name"))
        labels = _target(as_nonempty_str(request.get("host")), obj, upstream)
        actor = AlertActor(username=None, kind="client", source_ips=(ip,) if ip else ())
        namespace = obj.namespace if obj else None
        return [Hit(labels=labels, actor=actor, object=obj, namespace=namespace, note=_line(request))]

    def text(self, labels: Mapping[str, str], count: int, hit: Hit) -> tuple[str, str]:
        where = _where(labels)
        return (
            f"{count} refused request(s) (401/403) on {where}",
            f"{where} answered {count} requests with 401 or 403; the rule fires at {self.threshold} "
            f"within {self.window_s:g} s. The latest: {hit.note}.",
        )


class SensitiveAccess(EdgeRule):
    """A request from an untrusted address to a sensitive host or path (``access.keep``)."""

    id = "edge-sensitive-access"

    def match(self, record: Record, now: float) -> list[Hit]:
        ip, request, obj = _request(record)
        kept = record.get("kept_because")
        if not isinstance(kept, list) or "sensitive" not in kept:
            return []
        if as_mapping(record.get("client")).get("trust") != "untrusted" or not ip:
            return []
        if self.skip_client(ip) or self.skip_object(obj):
            return []
        labels = {"client_ip": ip, **_target(as_nonempty_str(request.get("host")), obj, None)}
        actor = AlertActor(
            username=as_nonempty_str(request.get("remote_user")), kind="client", source_ips=(ip,)
        )
        namespace = obj.namespace if obj else None
        return [Hit(labels=labels, actor=actor, object=obj, namespace=namespace, note=_line(request))]

    def text(self, labels: Mapping[str, str], count: int, hit: Hit) -> tuple[str, str]:
        ip = labels["client_ip"]
        where = _where(labels)
        return (
            f"untrusted {ip} reached sensitive {where}",
            f"{count} request(s) from {ip}, outside the trusted networks, to {where}, a sensitive "
            f"host or path (access.keep). The latest: {hit.note}.",
        )


class _SummaryRule(EdgeRule):
    """Reads window summaries: each hit is a whole window that crossed the line, so the engine
    fires at ``threshold`` such windows within ``window_s`` (1: the first one)."""

    consumes: ClassVar[frozenset[str]] = frozenset({ACCESS_SUMMARY})

    def trips(self, window: Window) -> bool:
        return len(window) >= self.windows

    @property
    def windows(self) -> int:
        return self.threshold

    @property
    def cap(self) -> int:
        return self.windows


class RequestRate(_SummaryRule):
    """One client's requests in one access window at or above ``threshold`` (top-K counts)."""

    id = "edge-request-rate"

    @property
    def windows(self) -> int:
        return 1

    def match(self, record: Record, now: float) -> list[Hit]:
        if record.get("scope") != "clients":
            return []
        clients = record.get("clients")
        bound = _int(record.get("error_bound"))
        span = self._span(record)
        hits = []
        for client in clients if isinstance(clients, list) else ():
            ip, requests = as_mapping(client).get("ip"), _int(as_mapping(client).get("requests"))
            if not isinstance(ip, str) or requests < self.threshold or self.skip_client(ip):
                continue
            note = f"{requests} requests in {span:g} s" + (f" (at most {bound} more)" if bound else "")
            actor = AlertActor(username=None, kind="client", source_ips=(ip,))
            hits.append(
                Hit(labels={"client_ip": ip}, token=str(record.get("window_start")), actor=actor, note=note)
            )
        return hits

    @staticmethod
    def _span(record: Record) -> float:
        start, end = _seconds(record.get("window_start")), _seconds(record.get("window_end"))
        return end - start if start is not None and end is not None else 0.0

    def text(self, labels: Mapping[str, str], count: int, hit: Hit) -> tuple[str, str]:
        ip = labels["client_ip"]
        return (
            f"{ip} sent {hit.note}",
            f"{ip} sent {hit.note}, at or above {self.threshold} per access window; {count} such "
            f"window(s) so far. Counts are heavy-hitter lower bounds (docs/access-logs.md).",
        )


@dataclass(frozen=True, slots=True)
class _Span:
    start: float
    end: float
    requests: int
    errors: int  # 5xx


@dataclass(frozen=True, slots=True)
class _Totals:
    windows: int
    requests: int
    errors: int
    seconds: float

    @property
    def ratio(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def doc(self) -> dict[str, Any]:
        return {
            "windows": self.windows,
            "requests": self.requests,
            "errors_5xx": self.errors,
            "error_ratio": round(self.ratio, 4),
            "requests_per_s": round(self.rate, 4),
        }


def _totals(spans: Sequence[_Span]) -> _Totals:
    return _Totals(
        windows=len(spans),
        requests=sum(s.requests for s in spans),
        errors=sum(s.errors for s in spans),
        seconds=sum(s.end - s.start for s in spans),
    )


class _History:
    """The last ``HISTORY`` windows of one host, and the changes already alerted for it."""

    __slots__ = ("alerted", "spans")

    def __init__(self) -> None:
        self.spans: deque[_Span] = deque(maxlen=HISTORY)
        self.alerted: deque[str] = deque(maxlen=4)

    def before(self, t: float) -> list[_Span]:
        return [s for s in self.spans if s.end <= t]

    def add(self, span: _Span) -> None:
        if not any(s.start == span.start for s in self.spans):
            self.spans.append(span)


@dataclass(frozen=True, slots=True)
class _HostWindow:
    labels: dict[str, str]
    host: str | None  # as the host index knows it: the rule's host, "" for host-less rules
    obj: AlertObject | None
    span: _Span


def _host_window(record: Record) -> _HostWindow | None:
    if record.get("scope") != "host":
        return None
    start, end = _seconds(record.get("window_start")), _seconds(record.get("window_end"))
    if start is None or end is None or end <= start:
        return None
    statuses = as_mapping(record.get("statuses"))
    host = as_nonempty_str(record.get("host"))
    obj = _ingress(record)
    labels = _target(host if host != "*" else None, obj, as_nonempty_str(record.get("upstream")))
    if host == "*":
        host = ""
    elif host in ("-", "(other)"):
        host = None
    span = _Span(
        start=start, end=end, requests=_int(record.get("requests")), errors=_int(statuses.get("5xx"))
    )
    return _HostWindow(labels=labels, host=host, obj=obj, span=span)


def _window_doc(window: _HostWindow, record: Record) -> dict[str, Any]:
    span = window.span
    now = _totals([span])
    return {
        "host": window.labels.get("host"),
        "ingress": window.labels.get("ingress"),
        "upstream": window.labels.get("upstream"),
        "window_start": record.get("window_start"),
        "window_end": record.get("window_end"),
        "summary_id": record.get("id"),
        "requests": span.requests,
        "errors_5xx": span.errors,
        "error_ratio": round(now.ratio, 4),
        "requests_per_s": round(now.rate, 4),
    }


class FiveXxSpike(_SummaryRule):
    """A host's 5xx ratio in one window against its recent baseline, with a floor of requests."""

    id = "edge-5xx-spike"

    def __init__(self, settings: RuleSettings, *, max_keys: int, exceptions: Exceptions) -> None:
        super().__init__(settings, max_keys=max_keys, exceptions=exceptions)
        self.min_requests = settings.min_requests or 20
        self.ratio = settings.ratio if settings.ratio is not None else 0.1
        self.factor = settings.factor or 3.0
        self._hosts: LruMap[_History] = LruMap(self.max_keys)

    def match(self, record: Record, now: float) -> list[Hit]:
        window = _host_window(record)
        if window is None or self.skip_object(window.obj):
            return []
        history = self._hosts.touch(_host_key(window.labels), _History)
        before = _totals(history.before(window.span.start))
        history.add(window.span)
        current = _totals([window.span])
        if current.requests < self.min_requests or current.ratio < self.ratio:
            return []
        known = before.requests >= self.min_requests
        if known and current.ratio < self.factor * before.ratio:
            return []
        effect = {
            "kind": "error-rate",
            **_window_doc(window, record),
            "baseline": before.doc() if known else None,
        }
        obj = window.obj
        return [
            Hit(
                labels=window.labels,
                token=str(record.get("window_start")),
                object=obj,
                namespace=obj.namespace if obj else None,
                note=_spike_note(current, before if known else None),
                effect=effect,
            )
        ]

    def text(self, labels: Mapping[str, str], count: int, hit: Hit) -> tuple[str, str]:
        where = _where(labels)
        return (
            f"5xx spike on {where}: {hit.note}",
            f"{where} answered {hit.note}; the rule fires when a window of at least "
            f"{self.min_requests} requests has a 5xx ratio of at least {self.ratio:g} and "
            f"{self.factor:g} times its baseline (the previous windows).",
        )


def _pct(ratio: float) -> str:
    return f"{ratio * 100:.1f} %"


def _spike_note(current: _Totals, before: _Totals | None) -> str:
    text = f"{_pct(current.ratio)} 5xx of {current.requests} requests"
    if before is None:
        return f"{text} (no baseline yet)"
    return f"{text}, against {_pct(before.ratio)} of {before.requests} before"


def _host_key(labels: Mapping[str, str]) -> str:
    return "\x1f".join(f"{k}={v}" for k, v in sorted(labels.items()))


@dataclass(frozen=True, slots=True)
class _Change:
    """An audit change of an Ingress, TLS Secret or IngressClass, as the alert shows it."""

    record_id: str
    time: float | None
    actor: AlertActor
    object: AlertObject
    doc: Mapping[str, Any]


def _short(value: object) -> object:
    if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
        return value[:MAX_VALUE_CHARS] + "…"
    if isinstance(value, dict | list):
        text = orjson.dumps(value).decode()
        return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS] + "…"
    return value


def _diff(record: Record, obj: AlertObject) -> tuple[list[dict[str, Any]], int]:
    """The change's operations (at most MAX_DIFF_OPS); a Secret's without values, ever."""
    change = as_mapping(record.get("change"))
    ops = change.get("operations")
    ops = [op for op in ops if isinstance(op, Mapping)] if isinstance(ops, list) else []
    secret = obj.resource == "secrets"
    out = []
    for op in ops[:MAX_DIFF_OPS]:
        item: dict[str, Any] = {"op": op.get("op"), "path": op.get("path")}
        if not secret:
            item["old"], item["new"] = _short(op.get("old")), _short(op.get("new"))
        out.append(item)
    return out, len(ops) + _int(change.get("omitted_operations"))


def _change_of(record: Record) -> _Change | None:
    obj = object_of(record)
    if obj is None or (obj.api_group, obj.resource) not in _CORRELATED or not is_change(record):
        return None
    if as_mapping(record.get("object")).get("subresource"):
        return None
    diff, total = _diff(record, obj)
    record_id = str(record.get("id"))
    findings = record.get("findings")
    actor = actor_of(record, effective=True)
    doc = {
        "record_id": record_id,
        "time": record.get("time"),
        "verb": record.get("verb"),
        "actor": actor.username,
        "object": {
            "api_group": obj.api_group,
            "resource": obj.resource,
            "namespace": obj.namespace,
            "name": obj.name,
        },
        "diff": diff,
        "diff_total": total,
        "finding_ids": sorted(
            {f["id"] for f in findings if isinstance(f, Mapping) and isinstance(f.get("id"), str)}
        )
        if isinstance(findings, list)
        else [],
    }
    return _Change(record_id=record_id, time=_seconds(record.get("time")), actor=actor, object=obj, doc=doc)


def _from_ref(ref: Any) -> _Change | None:
    """A change the host index remembers (``ChangeRef``) but this rule did not see (a restart)."""
    record_id = getattr(ref, "record_id", None)
    if not isinstance(record_id, str):
        return None
    resource = str(getattr(ref, "resource", ""))
    obj = AlertObject(
        api_group="" if resource == "secrets" else _INGRESS_GROUP,
        resource=resource,
        namespace=getattr(ref, "namespace", None),
        name=getattr(ref, "name", None),
    )
    paths = tuple(getattr(ref, "changed_paths", ()))
    doc = {
        "record_id": record_id,
        "time": getattr(ref, "time", None),
        "verb": getattr(ref, "verb", None),
        "actor": getattr(ref, "actor", None),
        "object": {
            "api_group": obj.api_group,
            "resource": resource,
            "namespace": obj.namespace,
            "name": obj.name,
        },
        "diff": [{"op": None, "path": p} for p in paths],
        "diff_total": len(paths),
        "finding_ids": list(getattr(ref, "finding_ids", ())),
    }
    actor = AlertActor(username=getattr(ref, "actor", None), kind=None)
    return _Change(record_id=record_id, time=_seconds(doc["time"]), actor=actor, object=obj, doc=doc)


class ChangeCorrelation(EdgeRule):
    """An error-rate or traffic shift on a host within ``window_s`` after a change that touched it.

    The audit side: each successful change of an Ingress, a Secret or an IngressClass is kept
    (at most ``MAX_CHANGES``, least recently used dropped), with its actor and diff, once access
    logs are wired in (``changes`` set). Which hosts a
    change touched is the host index's answer (``changes``: an Ingress's hosts before and after,
    the hosts whose TLS names a Secret, the hosts of a class's Ingresses). The access side: each
    host window that starts before ``change time + window_s`` and ends after the change is
    compared with the host's windows that ended before it. One alert per host and change.
    """

    id = "change-correlation"
    consumes: ClassVar[frozenset[str]] = frozenset({AUDIT, ACCESS_SUMMARY})

    def __init__(self, settings: RuleSettings, *, max_keys: int, exceptions: Exceptions) -> None:
        super().__init__(settings, max_keys=max_keys, exceptions=exceptions)
        self.min_requests = settings.min_requests or 20
        self.ratio = settings.ratio if settings.ratio is not None else 0.1
        self.factor = settings.factor or 3.0
        self._changes: LruMap[_Change] = LruMap(min(self.max_keys, MAX_CHANGES))
        self._hosts: LruMap[_History] = LruMap(self.max_keys)
        self.changes: ChangeSource | None = None  # set by the access service (its host index)

    @property
    def cap(self) -> int:
        return 1

    def trips(self, window: Window) -> bool:
        return len(window) >= 1

    def match(self, record: Record, now: float) -> list[Hit]:
        if record.get("type") == AUDIT:
            if self.changes is None:  # no access logs (yet): nothing to correlate with
                return []
            change = _change_of(record)
            if change is not None and not self._excepted(record):
                self._changes.touch(change.record_id, lambda c=change: c)  # type: ignore[misc]
            return []
        window = _host_window(record)
        if window is None or window.host is None:
            return []
        history = self._hosts.touch(_host_key(window.labels), _History)
        try:
            return self._correlate(window, history, record)
        finally:
            history.add(window.span)

    def _correlate(self, window: _HostWindow, history: _History, record: Record) -> list[Hit]:
        ref = (
            self.changes(window.host or "") if self.changes is not None and window.host is not None else None
        )
        if ref is None or self.skip_object(window.obj):
            return []
        record_id = getattr(ref, "record_id", None)
        change = self._changes.get(record_id) if isinstance(record_id, str) else None
        change = change or _from_ref(ref)
        if change is None or change.time is None or change.record_id in history.alerted:
            return []
        span = window.span
        if not (span.end > change.time and span.start < change.time + self.window_s):
            return []
        before = _totals(history.before(change.time))
        after = _totals([span])
        kind = self._shift(before, after)
        if kind is None:
            return []
        history.alerted.append(change.record_id)
        known = before.requests >= self.min_requests
        effect = {
            "kind": kind,
            **_window_doc(window, record),
            "baseline": before.doc() if before.windows else None,
        }
        note = _effect_note(kind, after, before if known else None)
        return [
            Hit(
                labels={**window.labels, "change": change.record_id},
                actor=change.actor,
                object=change.object,
                namespace=change.object.namespace,
                note=note,
                records=(change.record_id,),
                change=change.doc,
                effect=effect,
            )
        ]

    def _shift(self, before: _Totals, after: _Totals) -> str | None:
        """``error-rate``, ``traffic-surge``, ``traffic-drop`` or None (no shift)."""
        known = before.requests >= self.min_requests
        errors = after.requests >= self.min_requests and after.ratio >= self.ratio
        if errors and (not known or after.ratio >= self.factor * before.ratio):
            return "error-rate"
        if known and before.rate > 0:
            if after.requests >= self.min_requests and after.rate >= self.factor * before.rate:
                return "traffic-surge"
            if after.rate * self.factor <= before.rate:
                return "traffic-drop"
        return None

    def text(self, labels: Mapping[str, str], count: int, hit: Hit) -> tuple[str, str]:
        change = hit.change or {}
        where = _where(labels)
        obj = as_mapping(change.get("object"))
        what = (
            f"{obj.get('resource')} {'/'.join(str(p) for p in (obj.get('namespace'), obj.get('name')) if p)}"
        )
        who = change.get("actor") or "an unknown identity"
        paths = [str(op.get("path")) for op in change.get("diff") or () if isinstance(op, Mapping)]
        diff = ", ".join(paths[:5]) + (" …" if len(paths) > 5 else "") if paths else "no diff recorded"
        return (
            f"{where}: {hit.note} after {who} changed {what}",
            f"{where} shows {hit.note} in the window after {change.get('verb')} {what} by {who} at "
            f"{change.get('time')} (record {change.get('record_id')}; changed: {diff}). The rule "
            f"looks {self.window_s:g} s past each change of a host's Ingress, TLS Secret or IngressClass.",
        )


def _effect_note(kind: str, after: _Totals, before: _Totals | None) -> str:
    if kind == "error-rate":
        return (
            "5xx "
            + (f"{_pct(before.ratio)} -> " if before is not None else "")
            + (f"{_pct(after.ratio)} of {after.requests} requests")
        )
    assert before is not None  # noqa: S101 - traffic shifts need a baseline
    return f"requests {before.rate:.2f}/s -> {after.rate:.2f}/s ({kind.replace('-', ' ')})"


EDGE_RULES: Final[Mapping[str, Callable[..., EdgeRule]]] = {
    "edge-brute-force-client": BruteForceClient,
    "edge-brute-force-host": BruteForceHost,
    "edge-request-rate": RequestRate,
    "edge-5xx-spike": FiveXxSpike,
    "edge-sensitive-access": SensitiveAccess,
    "change-correlation": ChangeCorrelation,
}


def build_edge_rules(
    config: DetectionsConfig,
    *,
    keep_statuses: Sequence[int] = (401, 403),
    keep_all: bool = False,
    sensitive: bool = False,
    trusted: bool = False,
) -> list[Rule]:
    """The enabled edge rules that can see their input with this access config: brute force
    needs 401 and 403 kept (or keep_all); sensitive access needs sensitive hosts or paths and
    trusted networks (else no client is untrusted)."""
    if not config.enabled:
        return []
    rules: list[Rule] = []
    auth_kept = keep_all or {401, 403} <= set(keep_statuses)
    for rule_id, build in EDGE_RULES.items():
        settings = config.rules.get(rule_id)
        if settings is None or not settings.enabled:
            continue
        if rule_id.startswith("edge-brute-force") and not auth_kept:
            continue
        if rule_id == "edge-sensitive-access" and not (sensitive and trusted):
            continue
        rules.append(build(settings, max_keys=config.max_keys, exceptions=config.exceptions))
    return rules
