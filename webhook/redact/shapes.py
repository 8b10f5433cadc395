"""Allow-lists for the non-Secret shapes of a secrets request: JSON patches, Tables, Status.

Each function rebuilds its object from fields known to hold no value, or hands the whole object
to ``Walk.drop`` when something is unexpected. Used only by ``webhook.redact.walk``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from webhook.redact import meta as meta
from webhook.redact.certs import Finding
from webhook.redact.meta import LAST_APPLIED, MANIFEST_ANNOTATIONS

if TYPE_CHECKING:
    from webhook.redact.walk import Walk

__all__ = [
    "LAST_APPLIED",
    "delete_options",
    "is_list_meta",
    "json_patch",
    "status",
    "status_message",
    "table",
]

_OPS: Final = frozenset({"add", "remove", "replace", "move", "copy", "test"})
_OP_FIELDS: Final = frozenset({"op", "path", "from", "value"})
_SCALAR_FIELDS: Final = frozenset({"type", "immutable", "kind", "apiVersion"})
_LIST_META: Final = frozenset({"resourceVersion", "continue", "remainingItemCount", "selfLink"})
_TABLE_FIELDS: Final = frozenset({"kind", "apiVersion", "metadata", "columnDefinitions", "rows"})
_COLUMN_FIELDS: Final = frozenset({"name", "type", "format", "description", "priority"})
_CELLS: Final[dict[str, Callable[[Any], bool]]] = {  # kubectl get secret: the only columns
    "Name": lambda cell: isinstance(cell, str),
    "Type": lambda cell: isinstance(cell, str),
    "Data": lambda cell: isinstance(cell, int) and not isinstance(cell, bool),
    "Age": lambda cell: isinstance(cell, str),
}
# Messages of these reasons are built from names only; others (Invalid, BadRequest) may quote
# what was sent, e.g. a patch that failed to decode.
_SAFE_REASONS: Final = frozenset(
    {"NotFound", "AlreadyExists", "Forbidden", "Unauthorized", "Conflict", "Gone", "Timeout"}
)
_REDACTED_MESSAGE: Final = "<redacted: status message of a secrets request>"
_ROOT: Final[tuple[str, ...]] = ()


def is_list_meta(value: Any) -> bool:
    return isinstance(value, dict) and value.keys() <= _LIST_META


def status_message(walk: Walk, reason: Any, message: str) -> str:
    """Kept when its reason builds it from names only and it quotes no value of the event."""
    if not message:
        return message
    return message if reason in _SAFE_REASONS and not walk.seen.found_in(message) else _REDACTED_MESSAGE


def json_patch(walk: Walk, ops: list[Any], path: str) -> Any:
    """RFC 6902 ops: ``value`` is kept only where it cannot be a secret value."""
    for op in ops:
        if not (
            isinstance(op, dict)
            and op.keys() <= _OP_FIELDS
            and op.get("op") in _OPS
            and isinstance(op.get("path"), str)
            and isinstance(op.get("from", ""), str)
        ):
            return walk.drop(path, "unrecognised JSON patch")
    out: list[Any] = [dict(op) for op in ops]
    targets = [_pointer(op["path"]) for op in ops]
    # The values first, then the copies of the manifest, then the metadata that may echo either.
    order = sorted(range(len(ops)), key=lambda i: _rank(targets[i]))
    secrets, dropped = len(walk.secrets), len(walk.dropped)
    found: dict[int, tuple[list[Any], list[str]]] = {}
    with walk.scope():
        for index in order:
            if "value" in ops[index]:
                value = _patch_value(walk, targets[index], ops[index]["value"], f"{path}[{index}].value")
                out[index]["value"] = value
                found[index] = (walk.secrets[secrets:], walk.dropped[dropped:])
                del walk.secrets[secrets:], walk.dropped[dropped:]
    for index in sorted(found):  # reported in the order of the ops
        walk.secrets.extend(found[index][0])
        walk.dropped.extend(found[index][1])
    return out


def _rank(target: tuple[str, ...] | None) -> int:
    if not target or target[0] != "metadata":
        return 0
    if len(target) == 1 or target[1:] == ("annotations",):
        return 1
    if target[1] == "annotations" and target[2] in MANIFEST_ANNOTATIONS:
        return 1
    return 2


def _pointer(text: str) -> tuple[str, ...] | None:
    if text == "":
        return _ROOT
    if not text.startswith("/"):
        return None
    return tuple(s.replace("~1", "/").replace("~0", "~") for s in text[1:].split("/"))


def _patch_value(walk: Walk, target: tuple[str, ...] | None, value: Any, path: str) -> Any:
    if target is None:
        return walk.fingerprint_value(value, encoded=False)
    if target == _ROOT:
        if isinstance(value, dict):
            return walk.strict(value, path)
        return walk.fingerprint_value(value, encoded=False)
    head = target[0]
    if head in ("data", "stringData"):
        encoded = head == "data"
        if len(target) == 1 and isinstance(value, dict):
            return walk.data_map(value, path, encoded=encoded, values={}, keys=[])
        return walk.fingerprint_value(value, encoded=encoded and len(target) == 2)
    if head == "metadata":
        return _patch_metadata(walk, target[1:], value, path)
    if len(target) == 1 and head in _SCALAR_FIELDS and (value is None or _scalar(value)):
        return value
    return walk.fingerprint_value(value, encoded=False)


def _patch_metadata(walk: Walk, target: tuple[str, ...], value: Any, path: str) -> Any:
    """A value patched into a Secret's metadata: treated as in the Secret (``webhook.redact.meta``)."""
    findings: list[Finding] = []  # a patch is no Secret to report them on
    field = target[0] if target else None
    if field is None:
        return meta.metadata(walk, value, path, findings)
    if field == "annotations":
        if len(target) == 1 and isinstance(value, dict):
            return meta.annotation_map(walk, value, path, findings)
        if len(target) == 2 and target[1] in MANIFEST_ANNOTATIONS and isinstance(value, str):
            return walk.annotation(value, path, strict=True, name=target[1])
        if len(target) == 2:
            return meta.annotation_value(walk, target[1], value, path, findings)
    elif field == "labels":
        if len(target) == 1 and isinstance(value, dict):
            return {k: meta.label_value(walk, k, v, path, findings) for k, v in value.items()}
        if len(target) == 2:
            return meta.label_value(walk, target[1], value, path, findings)
    elif field in meta.IDENTITY:
        return walk.scan(value, path)
    else:
        return meta.scrubbed(walk, value, path, findings)
    return value if value is None else walk.fingerprint_value(value, encoded=False)


def table(walk: Walk, value: dict[str, Any], path: str, depth: int) -> Any:
    """``kubectl get`` output: known columns only; row objects are redacted like any other."""
    api_version = value.get("apiVersion")
    columns = value.get("columnDefinitions")
    rows = value.get("rows") or []
    if not (
        value.keys() <= _TABLE_FIELDS
        and isinstance(api_version, str)
        and api_version.startswith("meta.k8s.io/")
        and isinstance(columns, list)
        and isinstance(rows, list)
        and (value.get("metadata") is None or is_list_meta(value["metadata"]))
        and all(_column_ok(column) for column in columns)
    ):
        return walk.drop(path, "unexpected Table content")
    checks = [_CELLS[column["name"]] for column in columns]
    for row in rows:
        if not (
            isinstance(row, dict)
            and row.keys() <= {"cells", "object"}
            and isinstance(row.get("cells"), list)
            and len(row["cells"]) == len(checks)
            and all(check(cell) for check, cell in zip(checks, row["cells"], strict=True))
        ):
            return walk.drop(path, "unexpected Table content")
    out = dict(value)
    out["columnDefinitions"] = [dict(column) for column in columns]
    out["rows"] = [
        {
            key: item
            if key == "cells" or item is None
            else walk.strict(item, f"{path}.rows[{index}].object", depth + 2)
            for key, item in row.items()
        }
        for index, row in enumerate(rows)
    ]
    return out


def _column_ok(column: Any) -> bool:
    return (
        isinstance(column, dict)
        and column.keys() <= _COLUMN_FIELDS
        and column.get("name") in _CELLS
        and all(_scalar(v) for v in column.values())
    )


def status(walk: Walk, value: dict[str, Any], path: str) -> dict[str, Any]:
    """A ``Status`` (a delete's answer, an error): names and codes, messages only when safe."""
    reason = value.get("reason")
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key == "message" and isinstance(item, str):
            out[key] = status_message(walk, reason, item)
        elif key == "details" and isinstance(item, dict):
            out[key] = _details(walk, item, reason, f"{path}.details")
        elif _STATUS_KEEP.get(key, _never)(item):
            out[key] = item
        else:
            walk.dropped.append(f"{path}.{key}")
    return out


def _details(walk: Walk, value: dict[str, Any], reason: Any, path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key == "causes" and isinstance(item, list) and all(_cause_ok(c) for c in item):
            out[key] = [
                {k: status_message(walk, reason, v) if k == "message" else v for k, v in c.items()}
                for c in item
            ]
        elif _DETAILS_KEEP.get(key, _never)(item):
            out[key] = item
        else:
            walk.dropped.append(f"{path}.{key}")
    return out


def _cause_ok(cause: Any) -> bool:
    return (
        isinstance(cause, dict)
        and cause.keys() <= {"reason", "message", "field"}
        and all(isinstance(v, str) for v in cause.values())
    )


def delete_options(walk: Walk, value: dict[str, Any], path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if _DELETE_KEEP.get(key, _never)(item):
            out[key] = item
        else:
            walk.dropped.append(f"{path}.{key}")
    return out


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _never(value: Any) -> bool:
    return False


def _opt_str(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _preconditions(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and value.keys() <= {"uid", "resourceVersion"}
        and all(_opt_str(v) for v in value.values())
    )


_STATUS_KEEP: Final[dict[str, Callable[[Any], bool]]] = {
    "kind": _opt_str,
    "apiVersion": _opt_str,
    "status": _opt_str,
    "reason": _opt_str,
    "code": _int,
    "metadata": is_list_meta,
}
_DETAILS_KEEP: Final[dict[str, Callable[[Any], bool]]] = {
    "name": _opt_str,
    "group": _opt_str,
    "kind": _opt_str,
    "uid": _opt_str,
    "retryAfterSeconds": _int,
}
_DELETE_KEEP: Final[dict[str, Callable[[Any], bool]]] = {
    "kind": _opt_str,
    "apiVersion": _opt_str,
    "gracePeriodSeconds": lambda v: v is None or _int(v),
    "orphanDependents": lambda v: v is None or isinstance(v, bool),
    "propagationPolicy": _opt_str,
    "dryRun": _strings,
    "preconditions": _preconditions,
}
