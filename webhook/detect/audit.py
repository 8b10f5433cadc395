"""The detections over audit records: brute force, secret enumeration, untrusted sources,
bursts, findings; and ``build_rules``, which picks the ones the config enables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from webhook.core.findings import SEVERITIES, Severity
from webhook.core.values import as_mapping
from webhook.detect.drift import DriftChangeWindow, DriftIdentity
from webhook.detect.fields import (
    READS,
    Record,
    actor_of,
    code_of,
    is_change,
    object_of,
    source_ips,
    succeeded,
    where,
)
from webhook.detect.rules import Hit, Rule
from webhook.detect.settings import DetectionsConfig, Exceptions, RuleSettings
from webhook.detect.windows import Window
from webhook.record.alert import AlertActor

__all__ = [
    "BruteForceSourceIp",
    "BruteForceUser",
    "HighSeverityFinding",
    "IngressChangeBurst",
    "SecretEnumeration",
    "UntrustedSourceChange",
    "build_rules",
]

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


class BruteForceSourceIp(Rule):
    """401s by client address: failed authentications carry no user, only ``sourceIPs``."""

    id = "brute-force-source-ip"

    def match(self, record: Record, now: float) -> list[Hit]:
        ips = source_ips(record)
        if code_of(record) != 401 or not ips:
            return []
        actor = AlertActor(username=None, kind="unauthenticated", source_ips=tuple(ips[:10]))
        obj = object_of(record)
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
        if code_of(record) != 403:
            return []
        actor = actor_of(record, effective=True)
        if actor.username is None:
            return []
        obj = object_of(record)
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
            f"The apiserver denied {count} requests by {user}, the latest on {where(hit.object)}; "
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
        obj = object_of(record)
        verb = record.get("verb")
        if obj is None or obj.resource != "secrets" or obj.api_group or verb not in READS:
            return []
        if not succeeded(record):
            return []
        actor = actor_of(record, effective=True)
        if actor.username is None:
            return []
        labels = {"user": actor.username}
        hit = Hit(labels=labels, actor=actor, object=obj, namespace=obj.namespace)
        if verb == "get":
            if obj.name is None:
                return []
            return [hit.with_token(f"s:{obj.namespace or ''}/{obj.name}")]
        hits = [hit.with_token(f"n:{obj.namespace or '*'}")]
        names = as_mapping(record.get("secret_list")).get("names")
        if isinstance(names, list):
            hits.extend(hit.with_token(f"s:{name}") for name in names if isinstance(name, str))
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
            f"all namespaces) within {self.window_s:g} s. The latest: {where(hit.object)}.",
        )


class UntrustedSourceChange(Rule):
    """A successful change from an address outside ``actors.trusted_cidrs``."""

    id = "untrusted-source-change"

    def match(self, record: Record, now: float) -> list[Hit]:
        if not is_change(record):
            return []
        trust = as_mapping(record.get("actor")).get("source_ip_trust")
        untrusted = [
            t.get("ip")
            for t in (trust if isinstance(trust, list) else ())
            if as_mapping(t).get("trust") == "untrusted"
        ]
        ip = next((i for i in untrusted if isinstance(i, str)), None)
        if ip is None:
            return []
        obj = object_of(record)
        return [
            Hit(
                labels={"source_ip": ip},
                actor=actor_of(record),
                object=obj,
                namespace=obj.namespace if obj else None,
                note=f"{record.get('verb')} {where(obj)}",
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


class IngressChangeBurst(Rule):
    """Successful changes to ingress objects across the cluster, one key for all."""

    id = "ingress-change-burst"

    def match(self, record: Record, now: float) -> list[Hit]:
        obj = object_of(record)
        if obj is None or (obj.api_group, obj.resource) not in _INGRESS_OBJECTS or not is_change(record):
            return []
        return [Hit(labels={}, actor=actor_of(record), object=obj, note=f"{record.get('verb')} {where(obj)}")]

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
        obj = object_of(record)
        hits: dict[str, Hit] = {}
        for finding in findings:
            fid, severity = as_mapping(finding).get("id"), as_mapping(finding).get("severity")
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
            message = as_mapping(finding).get("message")
            hits[fid] = Hit(
                labels=labels,
                namespace=obj.namespace if obj else None,
                actor=actor_of(record),
                object=obj,
                severity=severity,
                note=message[:500] if isinstance(message, str) else fid,
            )
        return list(hits.values())

    def text(self, labels: Mapping[str, str], count: int, hit: Hit) -> tuple[str, str]:
        who = hit.actor.username if hit.actor and hit.actor.username else "an unknown identity"
        return (
            f"{labels['finding']}: {hit.note}"[:300],
            f"Finding {labels['finding']} ({hit.severity}) on {where(hit.object)}, by {who}: {hit.note}. "
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
