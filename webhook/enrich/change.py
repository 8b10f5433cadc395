"""Baselines: what an event says about an object's current state, and its change against the
previous state (fetched by the caller from the state store and passed in).

A create/update/patch's new object is its ``responseObject`` (a patch's ``requestObject`` is
the patch); a delete's ``responseObject`` is a ``Status``, so the deleted object is the stored
one. get/list responses refresh baselines. Only successful, non-dry-run requests move state.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import parse_qs, urlsplit

from webhook.core.values import as_list, as_str
from webhook.enrich.diff import DiffOp, IgnorePaths, diff_objects
from webhook.state.base import StoredObject, object_key

__all__ = [
    "WRITE_VERBS",
    "Change",
    "ChangeOptions",
    "Observation",
    "compute_change",
    "event_key",
    "observe",
    "referenced_secret_keys",
    "request_flags",
]

WRITE_VERBS: Final = frozenset({"create", "update", "patch", "delete"})
_OBJECT_VERBS: Final = frozenset({"create", "update", "patch", "get"})
_SUBRESOURCES: Final = frozenset({None, "status"})

Baseline = Literal["state", "none", "late", "unavailable"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangeOptions:
    ignored: IgnorePaths
    max_value_bytes: int = 1024
    max_operations: int = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """``baseline``: ``state`` (diffed against the stored object), ``none`` (nothing stored),
    ``late`` (the store already holds a newer version: this event arrived late, not diffed),
    ``unavailable`` (the state store could not be reached)."""

    baseline: Baseline
    baseline_audit_id: str | None = None
    baseline_time: str | None = None
    baseline_resource_version: str | None = None
    resource_version: str | None = None
    operations: tuple[DiffOp, ...] = ()
    omitted_operations: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Observation:
    """What an event says about objects' current state: a key → state to store if newer."""

    updates: dict[str, StoredObject]


def _ref(event: dict[str, Any]) -> dict[str, Any]:
    ref = event.get("objectRef")
    return ref if isinstance(ref, dict) else {}


def _meta(obj: object) -> dict[str, Any]:
    if isinstance(obj, dict) and isinstance(obj.get("metadata"), dict):
        meta: dict[str, Any] = obj["metadata"]
        return meta
    return {}


def _succeeded(event: dict[str, Any]) -> bool:
    status = event.get("responseStatus")
    code = status.get("code") if isinstance(status, dict) else None
    return isinstance(code, int) and 200 <= code < 300


def _dry_run(event: dict[str, Any]) -> bool:
    return request_flags(str(event.get("requestURI", "")))[0]


def request_flags(uri: str) -> tuple[bool, str | None]:
    """Whether the request was a dry run, and its field manager, from its URI's query."""
    query = urlsplit(uri).query if _UNUSUAL.intersection(uri) else uri.partition("?")[2]
    return _query_flags(query) if query else (False, None)


# Characters urlsplit cuts or strips: without them, the query is all after the first "?".
_UNUSUAL: Final = frozenset("#\t\r\n")


@functools.lru_cache(maxsize=256)
def _query_flags(query: str) -> tuple[bool, str | None]:
    """Cached: clients send the same few queries (fieldManager, dryRun, limit) again and again."""
    parsed = parse_qs(query)
    return "All" in parsed.get("dryRun", ()), next(iter(parsed.get("fieldManager", ())), None)


def _is_object(obj: object) -> bool:
    return (
        isinstance(obj, dict)
        and obj.get("kind") not in ("Status", "Table", "DeleteOptions")
        and not str(obj.get("kind", "")).endswith("List")
        and bool(_meta(obj))
    )


def new_object(event: dict[str, Any]) -> dict[str, Any] | None:
    """The object as stored after a create/update/patch/get, if the event carries it."""
    response = event.get("responseObject")
    if _is_object(response):
        assert isinstance(response, dict)  # noqa: S101 - checked by _is_object
        return response
    request = event.get("requestObject")
    if event.get("verb") in ("create", "update") and _is_object(request):
        assert isinstance(request, dict)  # noqa: S101 - checked by _is_object
        return request
    return None


def event_key(event: dict[str, Any]) -> str | None:
    """The state key of the one object an event is about (None for lists, watches, others)."""
    ref = _ref(event)
    resource = as_str(ref.get("resource"))
    if resource is None or ref.get("subresource") not in _SUBRESOURCES:
        return None
    name = as_str(ref.get("name")) or as_str(_meta(event.get("responseObject")).get("name"))
    if not name:
        return None
    return object_key(as_str(ref.get("apiGroup")) or "", resource, as_str(ref.get("namespace")), name)


def _stripped(obj: dict[str, Any]) -> dict[str, Any]:
    """Stored without managedFields: they are noise for diffs and the bulk of most objects."""
    meta = _meta(obj)
    if "managedFields" not in meta:
        return obj
    return {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}


def observe(
    event: dict[str, Any],
    previous: StoredObject | None = None,
    *,
    certificate_sans: tuple[str, ...] | None = None,
) -> Observation:
    """The states a (redacted, kept) event reveals; empty for failures, dry runs and watches.

    ``certificate_sans``: the names of the leaf certificate of the Secret the event holds, kept
    with its state for the Ingresses that will refer to it."""
    verb = event.get("verb")
    if not _succeeded(event) or _dry_run(event):
        return Observation(updates={})
    audit_id = str(event.get("auditID", ""))
    when = as_str(event.get("stageTimestamp"))
    if verb == "list":
        return Observation(updates=_list_items(event, audit_id, when))
    key = event_key(event)
    if key is None:
        return Observation(updates={})
    if verb == "delete":
        rv = previous.resource_version if previous is not None else None
        tomb = StoredObject(object=None, resource_version=rv, audit_id=audit_id, time=when, deleted=True)
        return Observation(updates={key: tomb})
    if verb not in _OBJECT_VERBS:
        return Observation(updates={})
    obj = new_object(event)
    if obj is None:
        if verb == "get":
            return Observation(updates={})  # a Table, or Metadata level: nothing learnt
        ref_rv = as_str(_ref(event).get("resourceVersion"))
        known = StoredObject(object=None, resource_version=ref_rv, audit_id=audit_id, time=when)
        return Observation(updates={key: known})
    rv = as_str(_meta(obj).get("resourceVersion"))
    state = StoredObject(
        object=_stripped(obj),
        resource_version=rv,
        audit_id=audit_id,
        time=when,
        certificate_sans=certificate_sans,
    )
    return Observation(updates={key: state})


def _list_items(event: dict[str, Any], audit_id: str, when: str | None) -> dict[str, StoredObject]:
    ref = _ref(event)
    resource = as_str(ref.get("resource"))
    response = event.get("responseObject")
    items = response.get("items") if isinstance(response, dict) else None
    if resource is None or not isinstance(items, list):
        return {}
    group = as_str(ref.get("apiGroup")) or ""
    found: dict[str, StoredObject] = {}
    for item in items:
        meta = _meta(item)
        name = as_str(meta.get("name"))
        if not name:
            continue
        key = object_key(group, resource, as_str(meta.get("namespace")), name)
        rv = as_str(meta.get("resourceVersion"))
        found[key] = StoredObject(object=_stripped(item), resource_version=rv, audit_id=audit_id, time=when)
    return found


def _late(event_rv: str | None, when: str | None, previous: StoredObject, audit_id: str) -> bool:
    if previous.audit_id == audit_id:
        return False
    if event_rv and previous.resource_version and event_rv.isdigit() and previous.resource_version.isdigit():
        return int(event_rv) <= int(previous.resource_version)
    return (previous.time or "") > (when or "")


def _skeleton(obj: dict[str, Any]) -> dict[str, Any]:
    """What is left of an object once deleted: its identity, so the diff lists the rest."""
    meta = _meta(obj)
    keep = {k: meta[k] for k in ("name", "namespace") if k in meta}
    return {k: obj[k] for k in ("apiVersion", "kind") if k in obj} | {"metadata": keep}


def compute_change(
    event: dict[str, Any], previous: StoredObject | None, options: ChangeOptions, *, available: bool = True
) -> Change | None:
    """The change a successful write made, against ``previous``; None for other events."""
    verb = event.get("verb")
    if verb not in WRITE_VERBS or not _succeeded(event) or event_key(event) is None:
        return None
    if not available:
        return Change(baseline="unavailable")
    audit_id = str(event.get("auditID", ""))
    when = as_str(event.get("stageTimestamp"))
    new = None if verb == "delete" else new_object(event)
    rv = as_str(_meta(new).get("resourceVersion")) if new is not None else None
    old = previous.object if previous is not None and not previous.deleted else None
    if previous is None or old is None or verb == "create":
        return Change(baseline="none", resource_version=rv)  # a create has no previous version
    ops: tuple[DiffOp, ...] = ()
    omitted = 0
    late = _late(rv, when, previous, audit_id)
    if not late and (verb == "delete" or new is not None):  # at Metadata level: nothing to compare
        target = _skeleton(old) if new is None else _stripped(new)
        ops, omitted = diff_objects(
            old,
            target,
            ignored=options.ignored,
            max_value_bytes=options.max_value_bytes,
            max_operations=options.max_operations,
        )
    return Change(
        baseline="late" if late else "state",
        baseline_audit_id=previous.audit_id,
        baseline_time=previous.time,
        baseline_resource_version=previous.resource_version,
        resource_version=rv,
        operations=ops,
        omitted_operations=omitted,
    )


def referenced_secret_keys(event: dict[str, Any]) -> list[str]:
    """State keys of the Secrets an Ingress or Gateway in the event refers to (TLS)."""
    obj = new_object(event)
    if obj is None:
        return []
    namespace = as_str(_meta(obj).get("namespace"))
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    assert isinstance(spec, dict)  # noqa: S101 - narrowed above
    names: list[tuple[str | None, str]] = []
    kind = obj.get("kind")
    if kind == "Ingress":
        names.extend(
            (namespace, entry["secretName"])
            for entry in as_list(spec.get("tls"))
            if isinstance(entry, dict) and isinstance(entry.get("secretName"), str)
        )
    elif kind == "Gateway":
        for listener in as_list(spec.get("listeners")):
            tls = listener.get("tls") if isinstance(listener, dict) else None
            refs = tls.get("certificateRefs") if isinstance(tls, dict) else None
            names.extend(
                (as_str(ref.get("namespace")) or namespace, ref["name"])
                for ref in as_list(refs)
                if isinstance(ref, dict)
                and ref.get("kind", "Secret") == "Secret"
                and isinstance(ref.get("name"), str)
            )
    return [object_key("", "secrets", ns, name) for ns, name in dict.fromkeys(names)]
