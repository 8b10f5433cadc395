"""How the review reads one record: its time, the kind of object, who, what, and what changed.

Everything here names paths, keys, users and objects, never a value: change summaries list
operation paths and Secret key names only.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any, Final

__all__ = [
    "WRITES",
    "actor_name",
    "category",
    "change_summary",
    "get",
    "object_key",
    "object_name",
    "record_time",
]

WRITES: Final = frozenset({"create", "update", "patch", "delete", "deletecollection"})
_GATEWAY_GROUP: Final = "gateway.networking.k8s.io"
_TLS_TYPE: Final = "kubernetes.io/tls"


def get(doc: Any, *path: str) -> Any:
    for key in path:
        doc = doc.get(key) if isinstance(doc, dict) else None
    return doc


def _obj(doc: dict[str, Any]) -> dict[str, Any]:
    obj = doc.get("object")
    return obj if isinstance(obj, dict) else {}


def record_time(doc: dict[str, Any]) -> datetime | None:
    """The record's own time: ``time`` (or ``stage_timestamp``), else when it was received."""
    for key in ("time", "stage_timestamp", "received_at"):
        value = doc.get(key)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                when = datetime.fromisoformat(value)
                if when.tzinfo is not None:
                    return when
    return None


def category(doc: dict[str, Any], tls_secrets: set[str] | None = None) -> str | None:
    """Which reviewed kind of object a record is about: ingress, ingress-class, tls-secret, dns, gateway."""
    obj = _obj(doc)
    resource, group = obj.get("resource"), obj.get("api_group")
    if resource == "ingresses":
        return "ingress"
    if resource == "ingressclasses":
        return "ingress-class"
    if group == _GATEWAY_GROUP:
        return "gateway"
    if doc.get("dns") is not None or (
        resource == "configmaps"
        and not group
        and (obj.get("namespace"), obj.get("name")) == ("kube-system", "coredns")
    ):
        return "dns"
    if resource == "secrets":
        if get(doc, "secret", "type") == _TLS_TYPE or get(doc, "secret", "certificates"):
            return "tls-secret"
        ops = get(doc, "change", "operations") or ()
        if any(isinstance(op, dict) and _TLS_TYPE in (op.get("old"), op.get("new")) for op in ops):
            return "tls-secret"
        if tls_secrets is not None and object_key(doc) in tls_secrets:
            return "tls-secret"
    return None


def object_key(doc: dict[str, Any]) -> str:
    return "/".join(str(get(doc, "object", k) or "") for k in ("namespace", "name"))


def actor_name(doc: dict[str, Any]) -> str:
    user = get(doc, "actor", "user", "username") or "(unauthenticated)"
    impersonated = get(doc, "actor", "impersonated", "username")
    return f"{user} as {impersonated}" if impersonated else str(user)


def object_name(doc: dict[str, Any]) -> str:
    obj = _obj(doc)
    if not obj:
        return str(doc.get("request_uri") or "-")
    resource = "/".join(p for p in (obj.get("resource"), obj.get("subresource")) if p) or "-"
    name = "/".join(p for p in (obj.get("namespace"), obj.get("name")) if p)
    return f"{resource} {name}".rstrip()


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def change_summary(doc: dict[str, Any]) -> str:
    """How big the change was and what it touched, by path and key name: never a value."""
    parts: list[str] = []
    change = doc.get("change") if isinstance(doc.get("change"), dict) else None
    if change:
        ops = [op for op in change.get("operations") or () if isinstance(op, dict)]
        total = len(ops) + int(change.get("omitted_operations") or 0)
        marks = {"add": "+", "remove": "-", "replace": "~"}
        touched = [f"{marks.get(str(op.get('op')), '?')}{_short(str(op.get('path')))}" for op in ops[:3]]
        more = f" (+{total - len(touched)} more)" if total > len(touched) else ""
        baseline = change.get("baseline")
        if total:
            parts.append(f"{total} op{'s' if total != 1 else ''}: {', '.join(touched)}{more}")
        elif baseline == "none":
            parts.append("new: no earlier state to diff")
        if baseline not in ("none", "state"):
            parts.append(f"baseline {baseline}")
    keys = get(doc, "secret", "changes")
    if isinstance(keys, dict):
        for what in ("added", "changed", "removed"):
            names = [str(k) for k in keys.get(what) or ()]
            if names:
                parts.append(f"keys {what}: {', '.join(names[:5])}")
    directives = get(doc, "dns", "directives") or ()
    for d in list(directives)[:3]:
        if isinstance(d, dict):
            sign = "+" if d.get("change") == "added" else "-"
            parts.append(f"{sign}{_short(str(d.get('line', '')).strip(), 40)}")
    return "; ".join(parts) or "-"
