"""Drift: changes to ingress objects by someone other than the deployment identities, or
outside the change windows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from webhook.core.patterns import Matcher
from webhook.core.values import as_mapping
from webhook.detect.fields import Record, actor_of, identity, is_change, object_of, where
from webhook.detect.rules import Hit, Rule
from webhook.detect.settings import WEEKDAYS, ChangeWindow, DeploymentIdentities, Exceptions, RuleSettings
from webhook.record.alert import AlertObject
from webhook.record.time import parse_time

__all__ = ["DRIFT_TARGETS", "DriftChangeWindow", "DriftIdentity", "zone"]

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


def _is_drift_target(record: Record, obj: AlertObject) -> bool:
    if (obj.api_group, obj.resource) in DRIFT_TARGETS:
        return True
    if obj.api_group == "" and obj.resource == "secrets":
        return as_mapping(record.get("secret")).get("type") == _TLS_SECRET
    return (
        obj.api_group == ""
        and obj.resource == "configmaps"
        and obj.namespace == "kube-system"
        and (obj.name == "coredns" or record.get("dns") is not None)
    )


def _drift_hit(record: Record) -> Hit | None:
    obj = object_of(record)
    if obj is None or not is_change(record) or not _is_drift_target(record, obj):
        return None
    actor = actor_of(record)
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
        caller = identity(record, effective=False)
        impersonated = as_mapping(as_mapping(record.get("actor")).get("impersonated"))
        if self._deploys(caller) and (not impersonated or self._deploys(impersonated)):
            return []
        return [hit]

    def text(self, labels: Mapping[str, str], count: int, hit: Hit) -> tuple[str, str]:
        who = labels.get("user") or "an unauthenticated caller"
        return (
            f"{where(hit.object)} changed by {who}, not a deployment identity",
            f"{who} made {count} change(s) to {where(hit.object)} (latest: {hit.note}); only the "
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
    return parse_time(record.get("time")) or datetime.fromtimestamp(now, UTC)


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
            f"{where(hit.object)} changed outside the change window",
            f"{who} made {count} change(s) to {where(hit.object)} outside every configured change "
            f"window (latest: {hit.note}).",
        )
