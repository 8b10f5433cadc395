"""Every finding id with its default severity: the config is checked against this list, and
docs/findings.md documents each one (tests/enrich/test_rules.py keeps them in step)."""

from __future__ import annotations

from typing import Final

from webhook.core.findings import Severity

__all__ = ["CATALOG", "NGINX_CVE_ANNOTATIONS"]

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

# ingress-nginx annotations (without the ``nginx.ingress.kubernetes.io/`` prefix) that were
# the injection point of a published CVE; docs/findings.md cites each advisory.
NGINX_CVE_ANNOTATIONS: Final[dict[str, tuple[str, ...]]] = {
    "configuration-snippet": ("CVE-2021-25742", "CVE-2023-5043"),
    "server-snippet": ("CVE-2021-25742",),
    "auth-snippet": ("CVE-2021-25742",),
    "location-snippet": ("CVE-2021-25742",),
    "stream-snippet": ("CVE-2021-25742",),
    "modsecurity-snippet": ("CVE-2021-25742",),
    "permanent-redirect": ("CVE-2023-5044",),
    "auth-tls-match-cn": ("CVE-2025-1097",),
    "mirror-target": ("CVE-2025-1098",),
    "mirror-host": ("CVE-2025-1098",),
    "auth-url": ("CVE-2025-24514",),
    "auth-proxy-set-headers": ("CVE-2025-15566",),
}
