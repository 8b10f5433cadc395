"""Counts what the records say, with label values from fixed sets only.

Runs once per batch over the built records (what the filter kept, ~5 % of traffic): a few
dict lookups per record. Finding ids, resources, verbs, caller kinds and clusters outside the
known sets count as ``other``; names of users, namespaces and objects never become labels.
Every series an alert rule watches starts at 0 (for each known cluster), so the first event
after a start already moves ``increase()``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final, get_args

from webhook.core.findings import CATALOG, SEVERITIES
from webhook.enrich.actor import ActorKind
from webhook.filter import DEFAULT_FILTER
from webhook.metrics import Metrics
from webhook.pipeline.cert_expiry import CertificateExpiry

__all__ = ["ACTOR_KINDS", "AUTH_REASONS", "OTHER", "RESOURCES", "WRITE_VERBS", "RecordMetrics"]

OTHER: Final = "other"
WRITE_VERBS: Final = frozenset({"create", "update", "patch", "delete", "deletecollection"})
AUTH_REASONS: Final = {401: "unauthenticated", 403: "forbidden"}
ACTOR_KINDS: Final = frozenset(get_args(ActorKind))
# The default filter's resources plus the ones docs/findings.md suggests adding.
RESOURCES: Final = frozenset(
    {r for rule in DEFAULT_FILTER.include for r in rule.resources or ()}
    | {"gatewayclasses", "udproutes", "middlewares", "ingressroutes"}
)
_SEVERITIES: Final = frozenset(SEVERITIES)
_TLS_KEY: Final = "tls.crt"


def _resource(ref: Mapping[str, Any] | None) -> str:
    if ref is None or ref.get("resource") not in RESOURCES:
        return OTHER
    subresource = ref.get("subresource")
    if subresource is None:
        return str(ref["resource"])
    return f"{ref['resource']}/status" if subresource == "status" else OTHER


class RecordMetrics:
    """Built once per ingestor (it registers the certificate expiry gauge on the registry);
    ``count`` takes each batch's records."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        clusters: Iterable[str],
        disabled: Iterable[str] = (),
        severity: Mapping[str, str] | None = None,
    ) -> None:
        """``clusters``: the ones the config names (``known_clusters``), the only label values
        besides ``other``."""
        self._metrics = metrics
        self._clusters = frozenset(clusters)
        self.certificates = CertificateExpiry()
        metrics.registry.register(self.certificates)
        self._severity = {**CATALOG, **(severity or {})}
        off = frozenset(disabled)
        for cluster in self._clusters:
            metrics.events.labels(cluster=cluster)
            metrics.records.labels(cluster=cluster)
            for finding, level in self._severity.items():
                if finding not in off:
                    metrics.findings.labels(finding=finding, severity=level, cluster=cluster)
            for reason in AUTH_REASONS.values():
                for kind in ACTOR_KINDS:
                    metrics.auth_failures.labels(reason=reason, actor_kind=kind, cluster=cluster)
            for resource in RESOURCES:
                metrics.untrusted_changes.labels(resource=resource, cluster=cluster)

    def cluster(self, name: str) -> str:
        """The ``cluster`` label of records of ``name``."""
        return name if name in self._clusters else OTHER

    def count(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Each record as its JSON document (the record schema)."""
        metrics = self._metrics
        for record in records:
            cluster = self.cluster(record["cluster"])
            for finding in record["findings"]:
                known = finding["id"] in CATALOG
                severity = finding["severity"]
                metrics.findings.labels(
                    finding=finding["id"] if known else OTHER,
                    severity=severity if severity in _SEVERITIES else OTHER,
                    cluster=cluster,
                ).inc()
            code = record["outcome"]["code"]
            actor = record["actor"]
            kind: str = actor["user"]["kind"]
            kind = kind if kind in ACTOR_KINDS else OTHER
            verb = record["verb"]
            if code in AUTH_REASONS:
                metrics.auth_failures.labels(
                    reason=AUTH_REASONS[code], actor_kind=kind, cluster=cluster
                ).inc()
            elif verb in WRITE_VERBS and not record["dry_run"] and (code is None or code < 400):
                ref = record["object"]
                resource = _resource(ref)
                metrics.changes.labels(resource=resource, verb=verb, actor_kind=kind).inc()
                if any(t["trust"] == "untrusted" for t in actor["source_ip_trust"]):
                    metrics.untrusted_changes.labels(resource=resource, cluster=cluster).inc()
                if ref is not None and ref["resource"] == "secrets":
                    self._certificates(record, ref)

    def _certificates(self, record: Mapping[str, Any], ref: Mapping[str, Any]) -> None:
        name = ref["name"]
        if name is None:
            return
        namespace = ref["namespace"] or ""
        tracker = self.certificates
        verb = record["verb"]
        if verb in ("delete", "deletecollection"):
            tracker.forget(namespace, name)
            return
        secret = record["secret"]
        if secret is None:
            return  # Metadata level: nothing known about its content
        not_after = [c["not_after"] for c in secret["certificates"] if c["key"] == _TLS_KEY]
        if not_after or verb in ("create", "update"):
            tracker.seen(namespace, name, not_after)  # a whole object: no tls.crt, no certificate
