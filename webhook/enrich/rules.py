"""Findings about a change: TLS, exposure, ingress class, annotations, DNS, and who made it.

Pure: the caller passes the redacted old and new objects (the old one from the state store)
and which referenced Secrets the store knows. ``FindingRules`` is built once from the config;
``apply`` disables and re-grades findings of every stage as the config says.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Final

from webhook.core.findings import CATALOG, Finding, Severity
from webhook.core.net import parse_networks
from webhook.core.patterns import Matcher
from webhook.enrich.actor import Actor, SourceTrust, Trust
from webhook.enrich.annotations import nginx_findings, traefik_findings
from webhook.enrich.diff import pointer
from webhook.enrich.dns import DnsChange
from webhook.enrich.gateway import ROUTE_KINDS, gateway_summary, is_default_class, route_summary
from webhook.enrich.objects import IngressSummary, ingress_summary
from webhook.redact.certs import host_covered
from webhook.state.base import object_key

__all__ = ["FindingRules", "SourceTrust", "Trust", "change_findings"]

_PLAIN: Final = frozenset({"HTTP", "TCP", "UDP"})
_DNS_IDS: Final = {
    "forward": "dns-forwarder-changed",
    "rewrite": "dns-rewrite-changed",
    "hosts": "dns-hosts-changed",
    "stub_domain": "dns-stub-domain-changed",
}


class FindingRules:
    """The config's findings and actors sections, compiled once."""

    def __init__(
        self,
        *,
        disabled: Iterable[str] = (),
        severity: Mapping[str, str] | None = None,
        internal_hosts: Iterable[str] = (),
        trusted_cidrs: Iterable[str] = (),
        automation_users: Iterable[str] = (),
        automation_groups: Iterable[str] = (),
    ) -> None:
        self.disabled = frozenset(disabled)
        self.severity: dict[str, Severity] = dict(severity or {})  # type: ignore[arg-type]
        self.internal_hosts = Matcher(tuple(h.lower() for h in internal_hosts))
        self.networks = parse_networks(trusted_cidrs, where="actors.trusted_cidrs")
        self.automation_users = Matcher(tuple(automation_users))
        self.automation_groups = Matcher(tuple(automation_groups))

    def internal(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return "." not in host or self.internal_hosts(host)

    def trust(self, ips: Sequence[str]) -> tuple[SourceTrust, ...]:
        found = []
        for ip in ips:
            trust: Trust = "unknown"
            if self.networks:
                try:
                    address = ipaddress.ip_address(ip)
                except ValueError:
                    pass
                else:
                    trust = "trusted" if any(address in n for n in self.networks) else "untrusted"
            found.append(SourceTrust(ip=ip, trust=trust))
        return tuple(found)

    def automation(self, username: str | None, groups: Sequence[str]) -> bool:
        return self.automation_users(username or "") or any(self.automation_groups(g) for g in groups)

    def make(self, finding_id: str, message: str, path: str | None = None) -> Finding:
        return Finding(id=finding_id, severity=CATALOG[finding_id], message=message, path=path)

    def apply(self, findings: Iterable[Finding]) -> tuple[Finding, ...]:
        """Drop disabled ids, apply severity overrides, keep one of each (id, path, message)."""
        kept: dict[tuple[str, str | None, str], Finding] = {}
        for finding in findings:
            if finding.id in self.disabled:
                continue
            if finding.id in self.severity:
                finding = replace(finding, severity=self.severity[finding.id])
            kept.setdefault((finding.id, finding.path, finding.message), finding)
        return tuple(kept.values())


def _empty_ingress() -> IngressSummary:
    return IngressSummary(ingress_class=None, hosts=(), rules=(), default_backend=None, tls=(), tls_hosts=())


def _covered(host: str, tls_hosts: Sequence[str]) -> bool:
    for pattern in tls_hosts:
        if pattern == host or (
            pattern.startswith("*.")
            and host.count(".") == pattern.count(".")
            and fnmatch.fnmatchcase(host, pattern)
        ):
            return True
    return False


def _ingress(
    rules: FindingRules,
    old: dict[str, Any] | None,
    new: dict[str, Any],
    known: frozenset[str],
    sans: Mapping[str, Sequence[str]],
) -> list[Finding]:
    before = ingress_summary(old) if old is not None else _empty_ingress()
    after = ingress_summary(new)
    make = rules.make
    found: list[Finding] = []
    namespace = (new.get("metadata") or {}).get("namespace")
    if not after.tls and (after.rules or after.default_backend):
        found.append(
            make(
                "ingress-without-tls",
                "the Ingress has no TLS: its hosts are served over plain HTTP",
                "/spec/tls",
            )
        )
    lost = [h for h in before.tls_hosts if h not in after.tls_hosts]
    if lost or (before.tls and not after.tls):
        found.append(
            make("tls-removed", "TLS removed for " + (", ".join(lost) or "the Ingress"), "/spec/tls")
        )
    added_hosts = [h for h in after.hosts if h not in before.hosts]
    if after.tls:
        found.extend(
            make("host-without-tls", f"host {host} added without a TLS entry covering it", "/spec/rules")
            for host in added_hosts
            if not _covered(host, after.tls_hosts)
        )
    old_secrets = {t.secret_name for t in before.tls}
    for index, entry in enumerate(after.tls):
        name = entry.secret_name
        if name and name not in old_secrets and object_key("", "secrets", namespace, name) not in known:
            found.append(
                make(
                    "tls-secret-unknown",
                    f"TLS secret {name} has never been seen",
                    f"/spec/tls/{index}/secretName",
                )
            )
    old_pairs = {(host, t.secret_name) for t in before.tls for host in t.hosts}
    for index, entry in enumerate(after.tls):
        names = (
            sans.get(object_key("", "secrets", namespace, entry.secret_name)) if entry.secret_name else None
        )
        if names is None:
            continue
        found.extend(
            make(
                "tls-host-not-in-certificate",
                f"host {host} is not covered by the certificate of TLS secret {entry.secret_name}",
                f"/spec/tls/{index}/hosts",
            )
            for host in entry.hosts
            if (host, entry.secret_name) not in old_pairs and not host_covered(host, names)
        )
    found.extend(
        make("wildcard-host", f"wildcard host {host} added", "/spec/rules")
        for host in added_hosts
        if host.startswith("*")
    )
    if sum(r.host is None for r in after.rules) > sum(r.host is None for r in before.rules):
        found.append(
            make("catch-all-rule", "a rule without a host added: it matches every host", "/spec/rules")
        )
    if after.default_backend is not None and before.default_backend is None:
        found.append(
            make(
                "default-backend-added",
                "default backend added: unmatched requests go to it",
                "/spec/defaultBackend",
            )
        )
    if old is not None:
        found.extend(_backends(rules, before, after))
        if before.ingress_class != after.ingress_class:
            found.append(
                make(
                    "ingress-class-changed",
                    f"ingress class changed from {before.ingress_class} to {after.ingress_class}",
                    "/spec/ingressClassName",
                )
            )
    found.extend(nginx_findings(old, new, internal=rules.internal, make=make))
    return found


def _backends(rules: FindingRules, before: IngressSummary, after: IngressSummary) -> list[Finding]:
    old = {(r.host, p.path): p.backend for r in before.rules for p in r.paths}
    found = []
    for r_index, rule in enumerate(after.rules):
        for p_index, path in enumerate(rule.paths):
            key = (rule.host, path.path)
            if key in old and old[key] is not None and path.backend != old[key]:
                was, now = old[key], path.backend
                found.append(
                    rules.make(
                        "backend-changed",
                        f"backend of {rule.host or '*'}{path.path or ''} changed from "
                        f"{_backend(was)} to {_backend(now)}",
                        f"/spec/rules/{r_index}/http/paths/{p_index}/backend",
                    )
                )
    if before.default_backend is not None and after.default_backend not in (None, before.default_backend):
        found.append(rules.make("backend-changed", "default backend changed", "/spec/defaultBackend"))
    return found


def _backend(backend: Any) -> str:
    if backend is None:
        return "nothing"
    if backend.resource:
        return str(backend.resource)
    return f"{backend.service}:{backend.port}"


def _gateway(
    rules: FindingRules, old: dict[str, Any] | None, new: dict[str, Any], known: frozenset[str]
) -> list[Finding]:
    before = {item.name: item for item in gateway_summary(old).listeners} if old is not None else {}
    after = gateway_summary(new)
    namespace = (new.get("metadata") or {}).get("namespace")
    found = []
    for index, listener in enumerate(after.listeners):
        path = f"/spec/listeners/{index}"
        was = before.get(listener.name)
        if (listener.protocol or "").upper() in _PLAIN and (was is None or was.protocol != listener.protocol):
            found.append(
                rules.make(
                    "listener-without-tls",
                    f"listener {listener.name} speaks {listener.protocol} without TLS",
                    path,
                )
            )
        if was is not None and was.tls_mode and not listener.tls_mode:
            found.append(
                rules.make("tls-removed", f"TLS removed from listener {listener.name}", path + "/tls")
            )
        if (
            listener.hostname
            and listener.hostname.startswith("*")
            and (was is None or was.hostname != listener.hostname)
        ):
            found.append(
                rules.make(
                    "wildcard-host",
                    f"wildcard host {listener.hostname} on listener {listener.name}",
                    path + "/hostname",
                )
            )
        old_refs = set(was.certificate_refs) if was is not None else set()
        for ref in listener.certificate_refs:
            key = object_key("", "secrets", ref.namespace or namespace, ref.name or "")
            if ref not in old_refs and (ref.kind or "Secret") == "Secret" and key not in known:
                found.append(
                    rules.make(
                        "tls-secret-unknown",
                        f"TLS secret {ref.name} has never been seen",
                        path + "/tls/certificateRefs",
                    )
                )
    return found


def _route(rules: FindingRules, old: dict[str, Any] | None, new: dict[str, Any]) -> list[Finding]:
    after = route_summary(new)
    before = route_summary(old) if old is not None else None
    found = [
        rules.make("wildcard-host", f"wildcard hostname {host} added", "/spec/hostnames")
        for host in after.hostnames
        if host.startswith("*") and (before is None or host not in before.hostnames)
    ]
    if before is not None and set(before.backend_refs) != set(after.backend_refs):
        names = ", ".join(sorted(f"{b.name}:{b.port}" for b in after.backend_refs))
        found.append(
            rules.make("backend-changed", f"backend refs changed to {names or 'nothing'}", "/spec/rules")
        )
    return found


def _ingress_class(
    rules: FindingRules, old: dict[str, Any] | None, new: dict[str, Any] | None
) -> list[Finding]:
    was = old is not None and is_default_class(old)
    now = new is not None and is_default_class(new)
    if was == now:
        return []
    name = ((new or old or {}).get("metadata") or {}).get("name")
    what = "is now the default IngressClass" if now else "is no longer the default IngressClass"
    path = pointer(("metadata", "annotations", "ingressclass.kubernetes.io/is-default-class"))
    return [rules.make("default-ingress-class-changed", f"{name} {what}", path)]


def _dns(rules: FindingRules, dns: DnsChange | None) -> list[Finding]:
    if dns is None:
        return []
    found = []
    for directive in dns.directives:
        message = f"{directive.directive.replace('_', ' ')} {directive.change}: {directive.line}"
        found.append(rules.make(_DNS_IDS[directive.directive], message[:300], "/data/Corefile"))
    return found


def _who(rules: FindingRules, actor: Actor, trust: Sequence[SourceTrust]) -> list[Finding]:
    found = []
    untrusted = [s.ip for s in trust if s.trust == "untrusted"]
    if untrusted:
        found.append(
            rules.make("untrusted-source-ip", "change made from untrusted address " + ", ".join(untrusted))
        )
    user, acted_as = actor.user, actor.impersonated
    if acted_as is not None:
        found.append(
            rules.make("change-by-impersonation", f"{user.username} made the change as {acted_as.username}")
        )
    if actor.effective.kind in ("anonymous", "unauthenticated") or user.kind == "anonymous":
        found.append(rules.make("change-by-anonymous", "change made by the anonymous user"))
    elif acted_as is None and user.kind == "user" and not rules.automation(user.username, user.groups):
        found.append(
            rules.make(
                "change-by-human", f"{user.username} changed the object directly, not through automation"
            )
        )
    return found


def change_findings(
    rules: FindingRules,
    *,
    kind: str | None,
    old: dict[str, Any] | None,
    new: dict[str, Any] | None,
    actor: Actor,
    trust: Sequence[SourceTrust],
    known_secrets: frozenset[str] = frozenset(),
    secret_sans: Mapping[str, Sequence[str]] | None = None,
    dns: DnsChange | None = None,
) -> list[Finding]:
    """Findings of one successful, non-dry-run write; ``new`` is None for a delete."""
    found = _who(rules, actor, trust)
    if kind == "Ingress" and new is not None:
        found += _ingress(rules, old, new, known_secrets, secret_sans or {})
    elif kind == "Gateway" and new is not None:
        found += _gateway(rules, old, new, known_secrets)
    elif kind in ROUTE_KINDS and new is not None:
        found += _route(rules, old, new)
    elif kind == "IngressClass":
        found += _ingress_class(rules, old, new)
    found += traefik_findings(old, new, make=rules.make)
    found += _dns(rules, dns)
    return found
