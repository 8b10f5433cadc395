"""How the review reads one record: its time, the kind of object, who, what, and what changed.

Everything here names paths, keys, users and objects, never a value: change data lists
operation paths and Secret key names only.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = [
    "TLS_TYPE",
    "WRITES",
    "actor_name",
    "category",
    "change_data",
    "get",
    "object_key",
    "object_name",
    "object_ref",
    "secret_keys",
    "secret_type",
]

WRITES: Final = frozenset({"create", "update", "patch", "delete", "deletecollection"})
TLS_TYPE: Final = "kubernetes.io/tls"
_GATEWAY_GROUP: Final = "gateway.networking.k8s.io"
_KEY_FIELDS: Final = ("/data", "/stringData")


def get(doc: Any, *path: str) -> Any:
    for key in path:
        doc = doc.get(key) if isinstance(doc, dict) else None
    return doc


def _obj(doc: dict[str, Any]) -> dict[str, Any]:
    obj = doc.get("object")
    return obj if isinstance(obj, dict) else {}


def category(doc: dict[str, Any], secret_types: dict[str, str | None] | None = None) -> str | None:
    """Which reviewed kind of object a record is about: ingress, ingress-class, tls-secret,
    secret, dns, gateway; ``None`` for anything else."""
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
    if resource == "secrets" and not group:
        known = (secret_types or {}).get(object_key(doc))
        return "tls-secret" if TLS_TYPE in (secret_type(doc), known) else "secret"
    return None


def secret_type(doc: dict[str, Any]) -> str | None:
    """The Secret's type when the record shows it: its body, or a change of ``/type``."""
    kind = get(doc, "secret", "type")
    if isinstance(kind, str):
        return kind
    if get(doc, "secret", "certificates"):
        return TLS_TYPE
    for op in get(doc, "change", "operations") or ():
        if isinstance(op, dict) and op.get("path") == "/type":
            value = op.get("new") if op.get("new") is not None else op.get("old")
            if isinstance(value, str):
                return value
    return None


def secret_keys(doc: dict[str, Any]) -> dict[str, list[str]]:
    """The key names a Secret write added, changed and removed: from what the redaction stage
    reported, else from the change's paths (``/data/<key>``); names only, never a value."""
    found: dict[str, set[str]] = {"added": set(), "changed": set(), "removed": set()}
    reported = get(doc, "secret", "changes")
    if isinstance(reported, dict):
        for change, names in found.items():
            names.update(str(k) for k in reported.get(change) or ())
    else:
        which = {"add": "added", "replace": "changed", "remove": "removed"}
        for op in get(doc, "change", "operations") or ():
            what: str | None = which.get(str(op.get("op"))) if isinstance(op, dict) else None
            if what is None:
                continue
            path = str(op.get("path") or "")
            if path in _KEY_FIELDS:
                whole = op.get("new") if what == "added" else op.get("old")
                if isinstance(whole, dict):
                    found[what].update(map(str, whole))
            elif path.startswith(tuple(f + "/" for f in _KEY_FIELDS)):
                found[what].add(_unescape(path.split("/", 2)[2]))
    return {what: sorted(names) for what, names in found.items()}


def _unescape(segment: str) -> str:
    return segment.replace("~1", "/").replace("~0", "~")


def object_key(doc: dict[str, Any]) -> str:
    return "/".join(str(get(doc, "object", k) or "") for k in ("namespace", "name"))


def object_ref(doc: dict[str, Any]) -> dict[str, str | None] | None:
    """The object as data: group, resource, subresource, namespace, name (``None`` if absent)."""
    obj = _obj(doc)
    if not obj:
        return None
    fields = ("api_group", "resource", "subresource", "namespace", "name")
    return {k: (str(obj[k]) if obj.get(k) is not None else None) for k in fields}


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


def change_data(doc: dict[str, Any]) -> dict[str, Any]:
    """What a write touched, as data: operations by op and path (all of them, never a value),
    Secret key names, Corefile lines added or removed."""
    found = doc.get("change")
    change: dict[str, Any] = found if isinstance(found, dict) else {}
    ops = [op for op in change.get("operations") or () if isinstance(op, dict)]
    omitted = change.get("omitted_operations")
    keys = secret_keys(doc) if get(doc, "object", "resource") == "secrets" else {}
    directives = [
        {"change": str(d.get("change") or ""), "line": str(d.get("line") or "").strip()}
        for d in get(doc, "dns", "directives") or ()
        if isinstance(d, dict)
    ]
    return {
        "baseline": change.get("baseline") if isinstance(change.get("baseline"), str) else None,
        "operations": [{"op": str(op.get("op")), "path": str(op.get("path"))} for op in ops],
        "operations_total": len(ops) + (omitted if isinstance(omitted, int) else 0),
        "keys_added": keys.get("added", []),
        "keys_changed": keys.get("changed", []),
        "keys_removed": keys.get("removed", []),
        "dns": directives,
    }
