"""One event's enrichment, built in one place: who acted and from where, what the objects say,
what changed against the stored state, the findings, and the states to store.

``Enricher`` compiles the ``change:``, ``actors:`` and ``findings:`` sections once; ``enrich``
is pure per event: the caller fetches the states ``state_keys`` names and passes them in.
Everything here reads the redacted event and what redaction reported, never a value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webhook.core.findings import Finding
from webhook.enrich.actor import Actor, actor_of
from webhook.enrich.change import (
    Change,
    ChangeOptions,
    compute_change,
    event_key,
    new_object,
    observe,
    referenced_secret_keys,
    request_flags,
)
from webhook.enrich.diff import compile_ignore
from webhook.enrich.dns import DnsChange, corefile_change, corefile_of, is_coredns
from webhook.enrich.gateway import (
    ROUTE_KINDS,
    GatewaySummary,
    IngressClassSummary,
    ReferenceGrantSummary,
    RouteSummary,
    gateway_summary,
    ingress_class_summary,
    reference_grant_summary,
    route_summary,
)
from webhook.enrich.objects import IngressSummary, ingress_summary, object_of
from webhook.enrich.rules import FindingRules, change_findings
from webhook.enrich.secrets import SecretList, SecretSummary, secret_findings, secret_list, secret_summary
from webhook.enrich.settings import ActorsConfig, ChangeConfig, FindingsConfig
from webhook.events import opt_object, opt_str
from webhook.redact.redactor import RedactionResult
from webhook.redact.request_uri import redact_request_uri
from webhook.state.base import StoredObject

__all__ = ["Enricher", "Enrichment"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Enrichment:
    """What an event's record holds beyond the event's own fields, and the states it reveals.

    ``dropped`` is what redaction removed as unknown; ``state_updates`` are to be stored once
    the record is durable, where newer than what is stored."""

    request_uri: str
    dry_run: bool
    field_manager: str | None
    actor: Actor
    ingress: IngressSummary | None
    secret: SecretSummary | None
    secret_list: SecretList | None
    findings: tuple[Finding, ...]
    dropped: tuple[str, ...]
    change: Change | None
    gateway: GatewaySummary | None
    route: RouteSummary | None
    reference_grant: ReferenceGrantSummary | None
    ingress_class: IngressClassSummary | None
    dns: DnsChange | None
    state_updates: Mapping[str, StoredObject]


class Enricher:
    """Built once from its config sections; ``enrich`` does the work for one event."""

    __slots__ = ("_change", "_rules")

    def __init__(self, *, change: ChangeConfig, actors: ActorsConfig, findings: FindingsConfig) -> None:
        self._change = ChangeOptions(
            ignored=compile_ignore(change.ignore_paths),
            max_value_bytes=change.max_value_bytes,
            max_operations=change.max_operations,
        )
        self._rules = FindingRules(
            disabled=findings.disabled,
            severity=findings.severity,
            internal_hosts=findings.internal_hosts,
            trusted_cidrs=actors.trusted_cidrs,
            automation_users=actors.automation_users,
            automation_groups=actors.automation_groups,
        )

    @staticmethod
    def state_keys(event: dict[str, Any]) -> list[str]:
        """The stored states ``enrich`` reads for ``event``: its object's and its TLS Secrets'."""
        key = event_key(event)
        return [key, *referenced_secret_keys(event)] if key is not None else []

    def enrich(
        self, redacted: RedactionResult, states: Mapping[str, StoredObject], *, available: bool = True
    ) -> Enrichment:
        """The enrichment of one redacted event, against ``states`` (by key, as ``state_keys``
        names them; earlier events of the batch included). ``available`` is False when the state
        store could not be read: the change says so and no state is learnt.

        Raises MalformedEventError naming a field of the wrong type."""
        event, secrets = redacted.event, redacted.secrets
        request_uri, dry_run, field_manager = _request(event)
        actor = actor_of(event, self._rules.trust)
        secret = secret_summary(event, secrets)
        key = event_key(event)
        previous = states.get(key) if key is not None else None
        change = compute_change(event, previous, self._change, available=available)
        new = None if event.get("verb") == "delete" else new_object(event)
        old = previous.object if change is not None and change.baseline == "state" and previous else None
        kind = (new or old or {}).get("kind")
        dns = None
        if change is not None and change.baseline in ("state", "none") and is_coredns(event):
            dns = corefile_change(corefile_of(old), corefile_of(new))
        findings = list(secret_findings(event, actor, secrets))
        if change is not None and change.baseline != "late" and not dry_run:
            findings += self._change_findings(
                event, states, kind=kind, old=old, new=new, actor=actor, dns=dns
            )
        ingress = object_of(event, "Ingress")
        return Enrichment(
            request_uri=request_uri,
            dry_run=dry_run,
            field_manager=field_manager,
            actor=actor,
            ingress=ingress_summary(ingress) if ingress is not None else None,
            secret=secret,
            secret_list=secret_list(event, secrets),
            findings=self._rules.apply(findings),
            dropped=tuple(redacted.dropped),
            change=change,
            gateway=gateway_summary(new) if new is not None and kind == "Gateway" else None,
            route=route_summary(new) if new is not None and kind in ROUTE_KINDS else None,
            reference_grant=reference_grant_summary(new)
            if new is not None and kind == "ReferenceGrant"
            else None,
            ingress_class=ingress_class_summary(new) if new is not None and kind == "IngressClass" else None,
            dns=dns,
            state_updates=_learnt(event, previous, secret) if available else {},
        )

    def _change_findings(
        self,
        event: dict[str, Any],
        states: Mapping[str, StoredObject],
        *,
        kind: str | None,
        old: dict[str, Any] | None,
        new: dict[str, Any] | None,
        actor: Actor,
        dns: DnsChange | None,
    ) -> list[Finding]:
        """Findings of a successful write; a referenced Secret is known if it is stored, and
        its certificate's names are what its hosts are checked against."""
        referenced = [k for k in referenced_secret_keys(event) if k in states]
        sans = {k: s for k in referenced if (s := states[k].certificate_sans) is not None}
        return change_findings(
            self._rules,
            kind=kind,
            old=old,
            new=new,
            actor=actor,
            trust=actor.source_ip_trust,
            known_secrets=frozenset(referenced),
            secret_sans=sans,
            dns=dns,
        )


def _learnt(
    event: dict[str, Any], previous: StoredObject | None, secret: SecretSummary | None
) -> dict[str, StoredObject]:
    """The states the event reveals; a TLS Secret's own keeps its leaf certificate's names, for
    the Ingresses that will refer to it."""
    leaf = None
    if secret is not None:
        leaf = next((c for c in secret.certificates if c.key == "tls.crt" and c.position == 0), None)
    return observe(event, previous, certificate_sans=leaf.sans if leaf is not None else None).updates


def _request(event: dict[str, Any]) -> tuple[str, bool, str | None]:
    """The request URI as a record keeps it (sensitive query values replaced), whether it was a
    dry run, and its field manager."""
    uri: str = event["requestURI"]
    dry_run, field_manager = request_flags(uri)
    subresource = opt_str(opt_object(event, "objectRef", "objectRef"), "subresource", "objectRef.subresource")
    return redact_request_uri(uri, subresource), dry_run, field_manager
