"""The detections over audit records: what each counts, under which key, and how it reads.

A rule says which record ``type``s it consumes and turns one record (its JSON dict) into
zero or more hits: a grouping key (``labels``), a token to count and the context of the
alert. Windows, thresholds, firing and resolving are the engine's (webhook/detect/engine.py),
so a rule for another record type (``access``) is one more class here or in its own module.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from webhook.detect.alert import AlertActor, AlertObject
from webhook.detect.settings import (
    WEEKDAYS,
    ChangeWindow,
    DeploymentIdentities,
    DetectionsConfig,
    Exceptions,
    RuleSettings,
)
from webhook.detect.windows import Window
from webhook.filter import Matcher
from webhook.findings import SEVERITIES, Severity

__all__ = ["DRIFT_TARGETS", "Hit", "Rule", "build_rules", "zone"]

Record = Mapping[str, Any]

_CHANGES: Final = frozenset({"create", "update", "patch", "delete", "deletecollection"})
_READS: Final = frozenset({"get", "list", "watch"})
# (api group, resource) of the ingress objects whose change rate is watched
_INGRESS_OBJECTS: Final = frozenset(
    {
        ("networking.k8s.io", "ingresses"),
        ("networking.k8s.io", "ingressclasses"),
        *(
            ("gateway.networking.k8s.io", r)
            for r in ("gateways", "gatewayclasses", "httproutes", "grpcroutes", "tlsroutes", "tcproutes")
        ),
    }
)
# ingress, gateway, ingress class; TLS Secrets and the CoreDNS ConfigMap are checked apart
DRIFT_TARGETS: Final = frozenset(
    {
        ("networking.k8s.io", "ingresses"),
        ("networking.k8s.io", "ingressclasses"),
        ("gateway.networking.k8s.io", "gateways"),
        ("gateway.networking.k8s.io", "gatewayclasses"),
    }
)
_TLS_SECRET: Final = "kubernetes.io/tls"  # noqa: S105 - a Secret type, not a value


@dataclass(frozen=True, slots=True, kw_only=True)
class Hit:
    """One record counted by one rule under one key."""

    labels: Mapping[str, str]
    token: str | None = None  # counted once per window; None: the record id (every record counts)
    namespace: str | None = None
    actor: AlertActor | None = None
    object: AlertObject | None = None
    severity: Severity | None = None  # instead of the rule's (findings keep their own)
    note: str = ""  # what this record says, for the description; never a secret value
    records: tuple[str, ...] = ()  # other records behind the alert, listed before this one's
    change: Mapping[str, Any] | None = None  # see Alert.change
    effect: Mapping[str, Any] | None = None  # see Alert.effect


def _dict(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _code(record: Record) -> int | None:
    code = _dict(record.get("outcome")).get("code")
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def _succeeded(record: Record) -> bool:
    code = _code(record)
    return code is None or code < 400


def _is_change(record: Record) -> bool:
    return record.get("verb") in _CHANGES and not record.get("dry_run") and _succeeded(record)


def _source_ips(record: Record) -> list[str]:
    ips = _dict(record.get("actor")).get("source_ips")
    return [ip for ip in ips if isinstance(ip, str)] if isinstance(ips, list) else []


def _identity(record: Record, *, effective: bool) -> Mapping[str, Any]:
    actor = _dict(record.get("actor"))
    if effective and actor.get("impersonated"):
        return _dict(actor.get("impersonated"))
    return _dict(actor.get("user"))


def _actor(record: Record, *, effective: bool = False) -> AlertActor:
    who = _identity(record, effective=effective)
    return AlertActor(
        username=_str(who.get("username")),
        kind=_str(who.get("kind")),
        source_ips=tuple(_source_ips(record)[:10]),
    )


def _object(record: Record) -> AlertObject | None:
    obj = record.get("object")
    if not isinstance(obj, Mapping):
        return None
    return AlertObject(
        api_group=_str(obj.get("api_group")) or "",
        resource=_str(obj.get("resource")),
        namespace=_str(obj.get("namespace")),
        name=_str(obj.get("name")),
    )


def _where(obj: AlertObject | None) -> str:
    if obj is None:
        return "an unknown object"
    kind = obj.resource or "object"
    if obj.name:
        return f"{kind} {obj.namespace}/{obj.name}" if obj.namespace else f"{kind} {obj.name}"
    return f"{kind} in {obj.namespace}" if obj.namespace else f"{kind} in all namespaces"


def _networks(cidrs: Sequence[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def _in_networks(ip: str, networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in network for network in networks)


class _Excepted:
    """True for a record an exception covers: its authenticated caller (not whom it impersonated,
    as in the filter), one of the caller's groups, the object's namespace, or a source IP."""

    def __init__(self, *sets: Exceptions) -> None:
        self.users = Matcher(tuple(u for s in sets for u in s.users))
        self.groups = Matcher(tuple(g for s in sets for g in s.groups))
        self.namespaces = Matcher(tuple(n for s in sets for n in s.namespaces))
        self.networks = _networks([c for s in sets for c in s.source_cidrs])

    def __call__(self, record: Record) -> bool:
        caller = _identity(record, effective=False)
        if self.users(caller.get("username")) or self.groups.any_of(caller.get("groups")):
            return True
        if self.namespaces(_dict(record.get("object")).get("namespace")):
            return True
        return bool(self.networks) and any(_in_networks(ip, self.networks) for ip in _source_ips(record))


class Rule:
    """One detection. Subclasses set ``id`` and implement ``match`` and ``text``."""

    id: ClassVar[str]
    consumes: ClassVar[frozenset[str]] = frozenset({"audit"})

    def __init__(self, settings: RuleSettings, *, max_keys: int, exceptions: Exceptions) -> None:
        self.settings = settings
        self.threshold = settings.threshold
        self.window_s = settings.window_s
        self.severity: Severity = settings.severity
        self.max_keys = settings.max_keys or max_keys
        self._excepted = _Excepted(exceptions, settings.exceptions)

    @property
    def cap(self) -> int:
        """Tokens kept per key: enough to decide ``trips``."""
        return self.threshold

    def hits(self, record: Record, now: float) -> list[Hit]:
        if self._excepted(record):
            return []
        return self.match(record, now)

    def match(self, record: Record, now: float) -> list[Hit]:
        """The hits of one record not covered by an exception; ``now`` is the detection time."""
        raise NotImplementedError

    def trips(self, window: Window) -> bool:
        """Given the tokens live in a key's window, should it fire?"""
        return len(window) >= self.threshold

    def text(self, labels: Mapping[str, str], count: int, hit: Hit) -> tuple[str, str]:
        """Summary (one line) and description of the alert; ``hit`` is the latest record's."""
        raise NotImplementedError


class BruteForceSourceIp(Rule):
    """401s by client address: failed authentications carry no user, only ``sourceIPs``."""

    id = "brute-force-source-ip"

    def match(self, record: Record, now: float) -> list[Hit]:
        ips = _source_ips(record)
        if _code(record) != 401 or not ips:
            return []
        actor = AlertActor(username=None, kind="unauthenticated", source_ips=tuple(ips[:10]))
        obj = _object(record)
        return [
            Hit(
                labels={"source_ip": ips[0]},
                actor=actor,
                object=obj,
                namespace=obj.namespace if obj else None,
            )
        ]

    def text(self, labels: Mapping[str, str], count: int, hit: Hit) -> tuple[str, str]:
        ip = labels["source_ip"]
        return (
            f"{count} failed authentication(s) (401) from {ip}",
            f"The apiserver refused {count} requests from {ip} as unauthenticated (a bad, expired or "
            f"guessed credential); the rule fires at {self.threshold} within {self.window_s:g} s.",
        )


class BruteForceUser(Rule):
    """403s by the identity the request was authorized as (the impersonated one, if any)."""

    id = "brute-force-user"

    def match(self, record: Record, now: float) -> list[Hit]:
        if _code(record) != 403:
            return []
        actor = _actor(record, effective=True)
        if actor.username is None:
            return []
        obj = _object(record)
        return [
            Hit(
                labels={"user": actor.username},
                actor=actor,
                object=obj,
                namespace=obj.namespace if obj else None,
            )
        ]

    def text(self, labels: Mapping[str, str], count: int, hit: Hit) -> tuple[str, str]:
        user = labels["user"]
        return (
            f"{count} forbidden request(s) (403) for {user}",
            f"The apiserver denied {count} requests by {user}, the latest on {_where(hit.object)}; "
            f"the rule fires at {self.threshold} within {self.window_s:g} s.",
        )


class SecretEnumeration(Rule):
    """Distinct Secrets read (get, or named in a list's answer) and namespaces listed, per identity.

    Tokens are ``s:<namespace>/<name>`` per Secret and ``n:<namespace>`` per namespace listed; a
    list across all namespaces is ``n:*`` and fires by itself.
    """

    id = "secret-enumeration"

    def __init__(self, settings: RuleSettings, *, max_keys: int, exceptions: Exceptions) -> None:
        super().__init__(settings, max_keys=max_keys, exceptions=exceptions)
        self.namespace_threshold = settings.namespace_threshold or 3

    @property
    def cap(self) -> int:
        return self.threshold + self.namespace_threshold

    def match(self, record: Record, now: float) -> list[Hit]:
        obj = _object(record)
        verb = record.get("verb")
        if obj is None or obj.resource != "secrets" or obj.api_group or verb not in _READS:
            return []
        if not _succeeded(record):
            return []
        actor = _actor(record, effective=True)
        if actor.username is None:
            return []
        labels = {"user": actor.username}
        hit = Hit(labels=labels, actor=actor, object=obj, namespace=obj.namespace)
        if verb == "get":
            if obj.name is None:
                return []
            return [_with_token(hit, f"s:{obj.namespace or ''}/{obj.name}")]
        hits = [_with_token(hit, f"n:{obj.namespace or '*'}")]
        names = _dict(record.get("secret_list")).get("names")
        if isinstance(names, list):
            hits.extend(_with_token(hit, f"s:{name}") for name in names if isinstance(name, str))
        return hits

    def trips(self, window: Window) -> bool:
        tokens = window.tokens()
        if "n:*" in tokens:
            return True
        namespaces = sum(1 for t in tokens if t.startswith("n:"))
        return namespaces >= self.namespace_threshold or len(tokens) - namespaces >= self.threshold

    def text(self, labels: Mapping[str, str], count: int, hit: Hit) -> tuple[str, str]:
        user = labels["user"]
        return (
            f"{user} read many Secrets or listed them across namespaces",
            f"{user} read {count} distinct Secrets or namespaces of Secrets; the rule fires at "
            f"{self.threshold} Secrets or {self.namespace_threshold} namespaces (or one list across "
            f"all namespaces) within {self.window_s:g} s. The latest: {_where(hit.object)}.",
        )


def _with_token(hit: Hit, token: str) -> Hit:
    return Hit(
        labels=hit.labels,
        token=token,
        namespace=hit.namespace,
        actor=hit.actor,
        object=hit.object,
        severity=hit.severity,
        note=hit.note,
    )


class UntrustedSourceChange(Rule):
    """A successful change from an address outside ``actors.trusted_cidrs``."""

    id = "untrusted-source-change"

    def match(self, record: Record, now: float) -> list[Hit]:
        if not _is_change(record):
            return []
        trust = _dict(record.get("actor")).get("source_ip_trust")
        untrusted = [
            t.get("ip")
            for t in (trust if isinstance(trust, list) else ())
            if _dict(t).get("trust") == "untrusted"
        ]
        ip = next((i for i in untrusted if isinstance(i, str)), None)
        if ip is None:
            return []
        obj = _object(record)
        return [
            Hit(
                labels={"source_ip": ip},
                actor=_actor(record),
                object=obj,
                namespace=obj.namespace if obj else None,
                note=f"{record.get('verb')} {_where(obj)}",
            )
        ]

    def text(self, labels: Mapping[str, str], count: int, hit: Hit) -> tuple[str, str]:
        ip = labels["source_ip"]
        who = hit.actor.username if hit.actor and hit.actor.username else "an unknown identity"
        return (
            f"{count} change(s) from untrusted address {ip}",
            f"{who} changed objects from {ip}, outside the trusted networks (actors.trusted_cidrs); "
            f"the latest: {hit.note}.",
        )


def _is_drift_target(record: Record, obj: AlertObject) -> bool:
    if (obj.api_group, obj.resource) in DRIFT_TARGETS:
        return True
    if obj.api_group == "" and obj.resource == "secrets":
        return _dict(record.get("secret")).get("type") == _TLS_SECRET
    return (
        obj.api_group == ""
        and obj.resource == "configmaps"
        and obj.namespace == "kube-system"
        and (obj.name == "coredns" or record.get("dns") is not None)
    )


def _drift_hit(record: Record) -> Hit | None:
    obj = _object(record)
    if obj is None or not _is_change(record) or not _is_drift_target(record, obj):
        return None
    actor = _actor(record)
    labels = {"user": actor.username or "", "resource": obj.resource or ""}
    if obj.namespace:
        labels["namespace"] = obj.namespace
    if obj.name:
        labels["name"] = obj.name
    return Hit(labels=labels, actor=actor, object=obj, namespace=obj.namespace, note=str(record.get("verb")))


class DriftIdentity(Rule):
    """A change to an ingress object by an identity outside ``deployment_identities``.

    Both the authenticated caller and, if it impersonated someone, that identity must be a
    deployment identity: impersonating the GitOps controller does not make a change GitOps.
    """

    id = "drift-identity"

    def __init__(
        self,
        settings: RuleSettings,
        *,
        max_keys: int,
        exceptions: Exceptions,
        identities: DeploymentIdentities,
    ) -> None:
        super().__init__(settings, max_keys=max_keys, exceptions=exceptions)
        accounts = [f"system:serviceaccount:{sa.replace('/', ':', 1)}" for sa in identities.service_accounts]
        self._users = Matcher((*identities.users, *accounts))
        self._groups = Matcher(identities.groups)

    def _deploys(self, who: Mapping[str, Any]) -> bool:
        return self._users(who.get("username")) or self._groups.any_of(who.get("groups"))

    def match(self, record: Record, now: float) -> list[Hit]:
        hit = _drift_hit(record)
        if hit is None:
            return []
        caller = _identity(record, effective=False)
        impersonated = _dict(_dict(record.get("actor")).get("impersonated"))
        if self._deploys(caller) and (not impersonated or self._deploys(impersonated)):
            return []
        return [hit]

    def text(self, labels: Mapping[str, str], count: int, hit: Hit) -> tuple[str, str]:
        who = labels.get("user") or "an unauthenticated caller"
        return (
            f"{_where(hit.object)} changed by {who}, not a deployment identity",
            f"{who} made {count} change(s) to {_where(hit.object)} (latest: {hit.note}); only the "
            "configured deployment identities (GitOps, CI) are expected to change it.",
        )


def zone(name: str) -> ZoneInfo | Any:
    """The time zone named ``name``; UTC works even without the system's tz database."""
    if name.upper() == "UTC":
        return UTC
    return ZoneInfo(name)


@dataclass(frozen=True, slots=True)
class _Window:
    days: frozenset[int]
    start: int  # minutes after midnight
    end: int
    tz: Any = field(compare=False)

    def contains(self, when: datetime) -> bool:
        local = when.astimezone(self.tz)
        minute = local.hour * 60 + local.minute
        if self.start < self.end:
            return local.weekday() in self.days and self.start <= minute < self.end
        # past midnight: the evening of a listed day, or the early hours after one
        yesterday = (local.weekday() - 1) % 7
        return (local.weekday() in self.days and minute >= self.start) or (
            yesterday in self.days and minute < self.end
        )


def _compile_window(window: ChangeWindow) -> _Window:
    try:
        tz = zone(window.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {window.timezone!r}") from None
    return _Window(
        days=frozenset(WEEKDAYS.index(d) for d in window.days),
        start=window.start.hour * 60 + window.start.minute,
        end=window.end.hour * 60 + window.end.minute,
        tz=tz,
    )


def _event_time(record: Record, now: float) -> datetime:
    value = record.get("time")
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return when if when.tzinfo else when.replace(tzinfo=UTC)
    return datetime.fromtimestamp(now, UTC)


class DriftChangeWindow(Rule):
    """A change to an ingress object at a time (the event's own) outside every change window."""

    id = "drift-change-window"

    def __init__(
        self,
        settings: RuleSettings,
        *,
        max_keys: int,
        exceptions: Exceptions,
        windows: Sequence[ChangeWindow],
    ) -> None:
        super().__init__(settings, max_keys=max_keys, exceptions=exceptions)
        self._windows = [_compile_window(w) for w in windows]

    def match(self, record: Record, now: float) -> list[Hit]:
        hit = _drift_hit(record)
        if hit is None:
            return []
        when = _event_time(record, now)
        if any(w.contains(when) for w in self._windows):
            return []
        return [
            Hit(
                labels=hit.labels,
                namespace=hit.namespace,
                actor=hit.actor,
                object=hit.object,
                note=f"{hit.note} at {when.strftime('%a %H:%M')} UTC",
            )
        ]

    def text(self, labels: Mapping[str, str], count: int, hit: Hit) -> tuple[str, str]:
        who = labels.get("user") or "an unauthenticated caller"
        return (
            f"{_where(hit.object)} changed outside the change window",
            f"{who} made {count} change(s) to {_where(hit.object)} outside every configured change "
            f"window (latest: {hit.note}).",
        )


class IngressChangeBurst(Rule):
    """Successful changes to ingress objects across the cluster, one key for all."""

    id = "ingress-change-burst"

    def match(self, record: Record, now: float) -> list[Hit]:
        obj = _object(record)
        if obj is None or (obj.api_group, obj.resource) not in _INGRESS_OBJECTS or not _is_change(record):
            return []
        return [Hit(labels={}, actor=_actor(record), object=obj, note=f"{record.get('verb')} {_where(obj)}")]

    def text(self, labels: Mapping[str, str], count: int, hit: Hit) -> tuple[str, str]:
        return (
            f"{count} changes to ingress objects within {self.window_s:g} s",
            f"Ingress objects (Ingresses, IngressClasses, Gateway API resources) changed {count} "
            f"times; the rule fires at {self.threshold} within {self.window_s:g} s. "
            f"The latest: {hit.note}.",
        )


class HighSeverityFinding(Rule):
    """Each finding at or above ``findings_min_severity``, keyed by finding id and object.

    The alert takes the finding's severity. ``skip`` leaves out findings that a dedicated
    detection reports (untrusted-source-ip, when untrusted-source-change runs).
    """

    id = "high-severity-finding"

    def __init__(
        self,
        settings: RuleSettings,
        *,
        max_keys: int,
        exceptions: Exceptions,
        min_severity: Severity,
        skip: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__(settings, max_keys=max_keys, exceptions=exceptions)
        self._min = SEVERITIES.index(min_severity)
        self._skip = skip

    def match(self, record: Record, now: float) -> list[Hit]:
        findings = record.get("findings")
        if not isinstance(findings, list) or not findings:
            return []
        obj = _object(record)
        hits: dict[str, Hit] = {}
        for finding in findings:
            fid, severity = _dict(finding).get("id"), _dict(finding).get("severity")
            if not isinstance(fid, str) or fid in self._skip or fid in hits or severity not in SEVERITIES:
                continue
            if SEVERITIES.index(severity) < self._min:
                continue
            labels = {"finding": fid}
            if obj is not None:
                labels.update(
                    {
                        k: v
                        for k, v in (
                            ("resource", obj.resource),
                            ("namespace", obj.namespace),
                            ("name", obj.name),
                        )
                        if v
                    }
                )
            message = _dict(finding).get("message")
            hits[fid] = Hit(
                labels=labels,
                namespace=obj.namespace if obj else None,
                actor=_actor(record),
                object=obj,
                severity=severity,
                note=message[:500] if isinstance(message, str) else fid,
            )
        return list(hits.values())

    def text(self, labels: Mapping[str, str], count: int, hit: Hit) -> tuple[str, str]:
        who = hit.actor.username if hit.actor and hit.actor.username else "an unknown identity"
        return (
            f"{labels['finding']}: {hit.note}"[:300],
            f"Finding {labels['finding']} ({hit.severity}) on {_where(hit.object)}, by {who}: {hit.note}. "
            f"Seen {count} time(s); see docs/findings.md.",
        )


def build_rules(config: DetectionsConfig, *, trusted_cidrs: Sequence[str]) -> list[Rule]:
    """The enabled rules that can fire with this config (drift needs identities or windows,
    untrusted-source-change needs trusted networks); raises ValueError for a bad time zone."""
    if not config.enabled:
        return []
    common: dict[str, Any] = {"max_keys": config.max_keys, "exceptions": config.exceptions}
    settings = config.rules
    rules: list[Rule] = []

    def on(rule_id: str) -> RuleSettings | None:
        rule = settings.get(rule_id)
        return rule if rule is not None and rule.enabled else None

    if s := on("brute-force-source-ip"):
        rules.append(BruteForceSourceIp(s, **common))
    if s := on("brute-force-user"):
        rules.append(BruteForceUser(s, **common))
    if s := on("secret-enumeration"):
        rules.append(SecretEnumeration(s, **common))
    untrusted = on("untrusted-source-change") if trusted_cidrs else None
    if untrusted:
        rules.append(UntrustedSourceChange(untrusted, **common))
    if (s := on("drift-identity")) and config.deployment_identities:
        rules.append(DriftIdentity(s, identities=config.deployment_identities, **common))
    if (s := on("drift-change-window")) and config.change_windows:
        rules.append(DriftChangeWindow(s, windows=config.change_windows, **common))
    if s := on("ingress-change-burst"):
        rules.append(IngressChangeBurst(s, **common))
    if s := on("high-severity-finding"):
        skip = frozenset({"untrusted-source-ip"}) if untrusted else frozenset()
        rules.append(HighSeverityFinding(s, min_severity=config.findings_min_severity, skip=skip, **common))
    return rules
