"""What the redaction stage says about the Secrets it saw; re-exported by ``webhook.redact.redactor``."""

from __future__ import annotations

from dataclasses import dataclass

from webhook.redact.certs import CertificateInfo, Finding

__all__ = ["KeyFingerprint", "SecretDetails"]


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyFingerprint:
    name: str
    fingerprint: str
    size: int  # of the decoded value, in bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretDetails:
    """One Secret object found in an event; ``source`` is its dotted path in the event."""

    source: str
    name: str | None
    namespace: str | None
    type: str | None
    keys: tuple[KeyFingerprint, ...]
    certificates: tuple[CertificateInfo, ...]
    key_matches_certificate: bool | None
    findings: tuple[Finding, ...]
