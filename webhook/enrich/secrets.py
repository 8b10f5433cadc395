"""What a redacted event says about Secrets: which one, its keys' fingerprints, its certificates,
which keys the request changed, and who read secrets across namespaces.

Works only on what the redaction stage produced (``SecretDetails`` and the redacted event),
so no value can reach a record from here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from webhook.core.findings import Finding
from webhook.core.values import as_dict
from webhook.enrich.actor import Actor
from webhook.redact.certs import CertificateInfo
from webhook.redact.redactor import KeyFingerprint, SecretDetails

__all__ = ["KeyChanges", "SecretList", "SecretSummary", "key_changes", "secret_findings", "secret_summary"]

_NAMES_LIMIT: Final = 200
_ITEM: Final = re.compile(r"responseObject\.items\[\d+\](\.object)?")
_PREFERRED_SOURCES: Final = ("responseObject", "requestObject")

Basis = Literal["create", "json-patch", "merge-patch", "delete"]


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyChanges:
    """Keys the request added, removed or changed, as far as the request itself shows it.

    ``merge-patch`` (merge, strategic merge, apply) cannot tell an added key from a changed
    one without the previous object: both are listed as ``changed``.
    """

    basis: Basis
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretSummary:
    type: str | None
    keys: tuple[str, ...]
    fingerprints: tuple[KeyFingerprint, ...] = ()
    certificates: tuple[CertificateInfo, ...] = ()
    key_matches_certificate: bool | None = None
    changes: KeyChanges | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SecretList:
    """A list or watch response: how many Secrets were read, and their names (capped)."""

    count: int
    names: tuple[str, ...]
    truncated: bool


def _primary(secrets: Sequence[SecretDetails]) -> SecretDetails | None:
    for source in _PREFERRED_SOURCES:
        for details in secrets:
            if details.source == source:
                return details
    return None


def _json_pointer_key(path: object) -> tuple[str, str] | None:
    """``/data/tls.crt`` → ("data", "tls.crt"); RFC 6901 escapes undone."""
    if not isinstance(path, str):
        return None
    parts = path.split("/")
    if len(parts) == 3 and parts[0] == "" and parts[1] in ("data", "stringData"):
        return parts[1], parts[2].replace("~1", "/").replace("~0", "~")
    return None


def key_changes(event: dict[str, Any], summary_keys: Sequence[str]) -> KeyChanges | None:
    """Key changes read from the (redacted) request; None where the request does not say."""
    verb = event.get("verb")
    request = event.get("requestObject")
    if verb == "create":
        return KeyChanges(basis="create", added=tuple(sorted(summary_keys)))
    if verb != "patch":
        return None
    if isinstance(request, list):
        added: set[str] = set()
        removed: set[str] = set()
        changed: set[str] = set()
        for op in request:
            op = as_dict(op)
            target = _json_pointer_key(op.get("path"))
            if target is None:
                continue
            key = target[1]
            kind = op.get("op")
            if kind == "remove":
                removed.add(key)
            elif kind in ("add", "copy", "move"):
                added.add(key)
            elif kind == "replace":
                changed.add(key)
            source = _json_pointer_key(op.get("from")) if kind == "move" else None
            if source is not None:
                removed.add(source[1])
        return KeyChanges(
            basis="json-patch",
            added=tuple(sorted(added)),
            removed=tuple(sorted(removed)),
            changed=tuple(sorted(changed)),
        )
    if isinstance(request, dict):
        removed = set()
        changed = set()
        for field in ("data", "stringData"):
            for key, value in as_dict(request.get(field)).items():
                (removed if value is None else changed).add(key)
        if not removed and not changed:
            return None
        return KeyChanges(basis="merge-patch", removed=tuple(sorted(removed)), changed=tuple(sorted(changed)))
    return None


def secret_summary(event: dict[str, Any], secrets: Sequence[SecretDetails]) -> SecretSummary | None:
    """The summary of the event's own Secret (the stored one, else the one sent)."""
    primary = _primary(secrets)
    if primary is None:
        return None
    keys = tuple(sorted(k.name for k in primary.keys))
    return SecretSummary(
        type=primary.type,
        keys=keys,
        fingerprints=tuple(sorted(primary.keys, key=lambda k: k.name)),
        certificates=primary.certificates,
        key_matches_certificate=primary.key_matches_certificate,
        changes=key_changes(event, keys),
    )


def secret_list(event: dict[str, Any], secrets: Sequence[SecretDetails]) -> SecretList | None:
    """For a list or watch of secrets: which ones were read."""
    response = as_dict(event.get("responseObject"))
    if not str(response.get("kind", "")).endswith("List"):
        return None
    items = [d for d in secrets if _ITEM.fullmatch(d.source)]
    names = [f"{d.namespace}/{d.name}" if d.namespace else str(d.name) for d in items]
    return SecretList(
        count=len(items), names=tuple(names[:_NAMES_LIMIT]), truncated=len(names) > _NAMES_LIMIT
    )


def secret_findings(
    event: dict[str, Any], actor: Actor, secrets: Sequence[SecretDetails]
) -> tuple[Finding, ...]:
    """Certificate findings of the event's Secrets, and a human listing secrets cluster-wide."""
    findings: list[Finding] = [finding for details in secrets for finding in details.findings]
    ref = as_dict(event.get("objectRef"))
    if (
        ref.get("resource") == "secrets"
        and event.get("verb") in ("list", "watch")
        and not ref.get("namespace")
        and actor.effective.kind == "user"
        and as_dict(event.get("responseStatus")).get("code") in (None, 200)
    ):
        findings.append(
            Finding(
                id="secrets-listed-across-namespaces",
                severity="medium",
                message=f"user {actor.effective.username} read secrets in all namespaces",
                path="objectRef",
            )
        )
    unique: dict[tuple[str, str | None], Finding] = {}
    for finding in findings:
        unique.setdefault((finding.id, finding.path), finding)
    return tuple(unique.values())
