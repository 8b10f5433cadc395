"""Who made the request: the authenticated caller, whom it impersonated, and from where."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from webhook.events import opt_object, opt_str, opt_strings

__all__ = [
    "Actor",
    "ActorKind",
    "Client",
    "Identity",
    "ServiceAccount",
    "SourceTrust",
    "Trust",
    "actor_of",
    "classify",
    "parse_user_agent",
]

Trust = Literal["trusted", "untrusted", "unknown"]
ActorKind = Literal["user", "service_account", "node", "anonymous", "system", "unauthenticated"]

_SA_PREFIX: Final = "system:serviceaccount:"
_NODE_PREFIX: Final = "system:node:"
_USER_AGENT: Final = re.compile(r"([^/\s]+)(?:/(\S+))?")


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceTrust:
    """One source IP and whether it is in ``actors.trusted_cidrs`` (unknown: none configured)."""

    ip: str
    trust: Trust


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceAccount:
    namespace: str
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """A Kubernetes user as the apiserver saw it, with its kind made explicit."""

    username: str | None
    uid: str | None
    groups: tuple[str, ...]
    kind: ActorKind
    service_account: ServiceAccount | None
    node: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Client:
    name: str
    version: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Actor:
    """``user`` is who authenticated; ``impersonated`` whom it acted as, when it did."""

    user: Identity
    impersonated: Identity | None
    source_ips: tuple[str, ...]
    user_agent: str | None
    client: Client | None
    source_ip_trust: tuple[SourceTrust, ...] = ()  # per source IP, against actors.trusted_cidrs

    @property
    def effective(self) -> Identity:
        """The identity the request was authorized as."""
        return self.impersonated or self.user


def classify(username: str | None) -> tuple[ActorKind, ServiceAccount | None, str | None]:
    """Kind, service account and node name implied by a Kubernetes username."""
    if not username:
        return "unauthenticated", None, None
    if username == "system:anonymous":
        return "anonymous", None, None
    if username.startswith(_SA_PREFIX):
        namespace, sep, name = username.removeprefix(_SA_PREFIX).partition(":")
        if sep and namespace and name:
            return "service_account", ServiceAccount(namespace=namespace, name=name), None
        return "system", None, None
    if username.startswith(_NODE_PREFIX):
        return "node", None, username.removeprefix(_NODE_PREFIX) or None
    if username.startswith("system:"):
        return "system", None, None
    return "user", None, None


def _identity(user: dict[str, Any], path: str) -> Identity:
    username = opt_str(user, "username", f"{path}.username")
    kind, service_account, node = classify(username)
    return Identity(
        username=username or None,
        uid=opt_str(user, "uid", f"{path}.uid"),
        groups=opt_strings(user, "groups", f"{path}.groups"),
        kind=kind,
        service_account=service_account,
        node=node,
    )


def parse_user_agent(user_agent: str | None) -> Client | None:
    """``kubectl/v1.26.0 (linux/amd64) kubernetes/b46a3f8`` → kubectl, v1.26.0."""
    if not user_agent:
        return None
    match = _USER_AGENT.match(user_agent)
    if match is None:
        return None
    return Client(name=match.group(1)[:128], version=(match.group(2) or "")[:64] or None)


def actor_of(
    event: dict[str, Any], trust: Callable[[tuple[str, ...]], tuple[SourceTrust, ...]] | None = None
) -> Actor:
    """Who sent the event; ``trust`` judges its source IPs (actors.trusted_cidrs)."""
    impersonated = opt_object(event, "impersonatedUser", "impersonatedUser")
    user_agent = opt_str(event, "userAgent", "userAgent")
    source_ips = opt_strings(event, "sourceIPs", "sourceIPs")
    return Actor(
        user=_identity(opt_object(event, "user", "user"), "user"),
        impersonated=_identity(impersonated, "impersonatedUser") if impersonated else None,
        source_ips=source_ips,
        user_agent=user_agent,
        client=parse_user_agent(user_agent),
        source_ip_trust=trust(source_ips) if trust is not None else (),
    )
