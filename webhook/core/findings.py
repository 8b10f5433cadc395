"""A finding: something a record's reader should look at, with a stable id and a severity.

Every stage that raises findings uses this one type, and ``CATALOG`` lists every id with its
default severity: the config is checked against it, and docs/findings.md documents each one
(tests/enrich/test_findings.py keeps them in step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["CATALOG", "SEVERITIES", "Finding", "Severity"]

Severity = Literal["info", "low", "medium", "high", "critical"]
SEVERITIES: Final = ("info", "low", "medium", "high", "critical")


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    id: str  # kebab-case, stable: dashboards and alerts key on it
    severity: Severity
    message: str  # names keys, hosts and objects, never a secret value
    path: str | None = None


CATALOG: Final[dict[str, Severity]] = {
    # secrets and certificates (redaction stage, enrich/secrets.py)
    "certificate-expired": "high",
    "certificate-expiring": "medium",
    "certificate-key-mismatch": "high",
    "certificate-weak-key": "high",
    "certificate-sha1-signature": "medium",
    "certificate-md5-signature": "high",
    "certificate-self-signed": "low",
    "certificate-unparseable": "medium",
    "secret-values-in-last-applied": "medium",
    "secret-value-in-metadata": "high",
    "secrets-listed-across-namespaces": "medium",
    # TLS
    "ingress-without-tls": "medium",
    "listener-without-tls": "medium",
    "tls-removed": "high",
    "host-without-tls": "medium",
    "tls-secret-unknown": "low",
    "tls-host-not-in-certificate": "high",
    # exposure
    "wildcard-host": "medium",
    "catch-all-rule": "medium",
    "default-backend-added": "medium",
    "backend-changed": "medium",
    "ingress-class-changed": "medium",
    "default-ingress-class-changed": "high",
    # ingress-nginx annotations
    "nginx-snippet-annotation": "high",
    "nginx-auth-url-external": "high",
    "nginx-ssl-redirect-disabled": "medium",
    "nginx-source-range-widened": "high",
    "nginx-backend-protocol-http": "medium",
    "nginx-external-redirect": "medium",
    "nginx-mirror-target": "medium",
    "nginx-cve-annotation": "high",
    # Traefik
    "traefik-auth-removed": "high",
    # DNS
    "dns-forwarder-changed": "high",
    "dns-rewrite-changed": "medium",
    "dns-hosts-changed": "medium",
    "dns-stub-domain-changed": "medium",
    # who and from where
    "untrusted-source-ip": "high",
    "change-by-impersonation": "medium",
    "change-by-anonymous": "critical",
    "change-by-human": "low",
}
