"""A Secret's metadata: which annotations are kept, and its values wherever else they occur.

Annotations of a Secret are fingerprinted unless their key is on ``KEPT_ANNOTATIONS``; those
that carry a copy of the manifest (``MANIFEST_ANNOTATIONS``) are parsed and redacted like the
Secret itself. Labels, kept annotations and the other metadata fields are searched for the
Secret's values (``Needles``) in every form a copy could take, and a string holding one is
fingerprinted. Used only by ``webhook.redact.walk`` and ``webhook.redact.shapes``.
"""

from __future__ import annotations

import base64
import contextlib
import json
from typing import TYPE_CHECKING, Any, Final

from webhook.redact.certs import Finding
from webhook.redact.values import PATCH_DIRECTIVES, plain

if TYPE_CHECKING:
    from webhook.redact.walk import Walk

__all__ = [
    "IDENTITY",
    "KEPT_ANNOTATIONS",
    "LAST_APPLIED",
    "MANIFEST_ANNOTATIONS",
    "MIN_CONTAINED",
    "Needles",
    "annotation_map",
    "annotation_value",
    "escaped_forms",
    "label_value",
    "metadata",
    "scrubbed",
]

LAST_APPLIED: Final = "kubectl.kubernetes.io/last-applied-configuration"
# Annotations holding a JSON copy of the object, by the pseudo-field that names them in paths.
MANIFEST_ANNOTATIONS: Final = {
    LAST_APPLIED: "last-applied-configuration",
    "kapp.k14s.io/original": "kapp-original",
}
# Written by controllers, never by hand: names and uids that say who owns the Secret.
KEPT_ANNOTATIONS: Final = frozenset(
    {
        "kubernetes.io/service-account.name",
        "kubernetes.io/service-account.uid",
        "cert-manager.io/certificate-name",
        "cert-manager.io/issuer-name",
        "cert-manager.io/issuer-kind",
        "cert-manager.io/issuer-group",
        "meta.helm.sh/release-name",
        "meta.helm.sh/release-namespace",
    }
)
# A value this long is removed from any string that contains it; a shorter one (1 or 2
# characters occur inside almost every name, uid and timestamp) only from a string equal to it.
MIN_CONTAINED: Final = 3
# Identity and server-assigned fields: the name and namespace are in objectRef and requestURI
# anyway, and the others have fixed formats (uid, integer, RFC 3339) no tool copies a value into.
IDENTITY: Final = frozenset(
    {
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    }
)
_MAX_DEPTH: Final = 32  # managedFields nest a few levels; anything deeper is no metadata
_ESCAPED: Final = frozenset('"\\<>&')
_NONE: Final = 1 << 62  # the length of the shortest value while there is none
_GO_ESCAPES: Final = tuple((c, f"\\u{ord(c):04x}") for c in "<>&\u2028\u2029")


def _json(text: str, *, ascii_only: bool = False) -> str:
    return json.dumps(text, ensure_ascii=ascii_only)[1:-1]


def _go(text: str) -> str:
    """Go's encoding/json is HTML-safe: ``< > &`` and the JS line separators as ``\\uXXXX``."""
    for char, escaped in _GO_ESCAPES:
        text = text.replace(char, escaped)
    return text


def escaped_forms(value: str) -> frozenset[str]:
    """The value as it reads inside a JSON string, once or twice nested, as Python, orjson or Go
    would have escaped it."""
    if value.isascii() and value.isprintable() and not _ESCAPED.intersection(value):
        return frozenset({value})  # the common case: every form is the value itself
    once = {_json(value), _json(value, ascii_only=True), _go(_json(value))}
    twice = {
        f(v) for v in once for f in (_json, lambda t: _json(t, ascii_only=True), lambda t: _go(_json(t)))
    }
    return frozenset({value, *once, *twice})


class Needles:
    """The values of one Secret (and of the copies nested in it), found lazily in strings."""

    __slots__ = ("_forms", "_shortest", "_values")

    def __init__(self, outer: Needles | None = None) -> None:
        self._values: set[str] = set(outer._values) if outer is not None else set()
        self._forms: dict[str, frozenset[str]] = {}
        # No form of a value is shorter than the value: a shorter text holds none of them.
        self._shortest: int = outer._shortest if outer is not None else _NONE

    def __bool__(self) -> bool:
        return bool(self._values)

    def add(self, raw: bytes, sent: Any = None) -> None:
        """A value: its decoded bytes, and the text it was sent as (base64 for ``data``)."""
        if isinstance(sent, str) and sent:
            self._put(sent)
        with contextlib.suppress(UnicodeDecodeError):
            if text := raw.decode():
                self._put(text)
        if raw:
            self._put(base64.b64encode(raw).decode())

    def _put(self, value: str) -> None:
        self._values.add(value)
        self._shortest = min(self._shortest, len(value))

    def update(self, other: Needles) -> None:
        self._values |= other._values
        self._shortest = min(self._shortest, other._shortest)

    def found_in(self, text: str) -> bool:
        if len(text) < self._shortest:
            return False
        for value in self._values:
            if len(value) > len(text):
                continue  # every form of it is at least as long
            forms = self._forms.get(value)
            if forms is None:
                forms = self._forms[value] = escaped_forms(value)
            if text in forms or (len(value) >= MIN_CONTAINED and any(f in text for f in forms)):
                return True
        return False


def metadata(walk: Walk, value: Any, path: str, findings: list[Finding]) -> Any:
    if value is None:
        return None
    if not isinstance(value, dict):
        return walk.drop(path, "not an object")
    out = dict(value)
    item = value.get("annotations")  # first: the values of the copies in it apply to the rest
    if isinstance(item, dict):
        out["annotations"] = annotation_map(walk, item, f"{path}.annotations", findings)
    elif item is not None:
        out["annotations"] = walk.drop(f"{path}.annotations", "not an object")
    for key, item in value.items():
        if key == "labels":
            if isinstance(item, dict):
                out[key] = {k: label_value(walk, k, v, f"{path}.labels", findings) for k, v in item.items()}
            elif item is not None:
                out[key] = walk.drop(f"{path}.labels", "not an object")
        elif key not in IDENTITY and key != "annotations":
            out[key] = scrubbed(walk, item, f"{path}.{key}", findings, 0)
    return out


def annotation_map(walk: Walk, value: dict[str, Any], path: str, findings: list[Finding]) -> dict[str, Any]:
    done = {
        name: annotation_value(walk, name, item, path, findings)
        for name, item in value.items()
        if name in MANIFEST_ANNOTATIONS
    }
    return {
        name: done[name] if name in done else annotation_value(walk, name, item, path, findings)
        for name, item in value.items()
    }


def annotation_value(walk: Walk, name: str, item: Any, path: str, findings: list[Finding]) -> Any:
    """One annotation of a Secret: a parsed copy, kept (names, uids), or fingerprinted."""
    if item is None or (name == "$patch" and item in PATCH_DIRECTIVES):
        return item  # a merge patch removing the annotation, or a directive
    if name in MANIFEST_ANNOTATIONS:
        apath = f"{path}.{MANIFEST_ANNOTATIONS[name]}"
        if isinstance(item, str):
            return walk.annotation(item, apath, strict=True, findings=findings, name=name)
        return walk.drop(apath, "not a string")
    held = isinstance(item, str) and _holds(walk, item, name, path, findings)
    if name in KEPT_ANNOTATIONS and isinstance(item, str) and not held:
        return item
    return walk.fingerprint(plain(item))


def label_value(walk: Walk, name: str, item: Any, path: str, findings: list[Finding]) -> Any:
    if isinstance(item, str):
        return walk.fingerprint(item.encode()) if _holds(walk, item, name, path, findings) else item
    return item if item is None else walk.fingerprint(plain(item))


def scrubbed(walk: Walk, value: Any, path: str, findings: list[Finding], depth: int = 0) -> Any:
    """Any other metadata (finalizers, ownerReferences, managedFields): strings holding a value."""
    needles = walk.needles
    if not needles or _clean(needles, value, depth):
        return value  # the common case, walked without building a path or a copy
    if isinstance(value, str):
        return walk.fingerprint(value.encode()) if _holds(walk, value, path, path, findings) else value
    if depth > _MAX_DEPTH:
        return walk.drop(path, "nested too deep")
    if isinstance(value, dict):
        return {k: scrubbed(walk, v, f"{path}.{k}", findings, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [scrubbed(walk, v, f"{path}[{i}]", findings, depth + 1) for i, v in enumerate(value)]
    return value


def _clean(needles: Needles, value: Any, depth: int) -> bool:
    """Whether ``scrubbed`` would return ``value`` as it is: no string in it holds a value,
    and nothing in it is nested too deep."""
    if isinstance(value, str):
        return not needles.found_in(value)
    if depth > _MAX_DEPTH:
        return False
    if isinstance(value, dict):
        for item in value.values():
            if not _clean(needles, item, depth + 1):
                return False
    elif isinstance(value, list):
        for item in value:
            if not _clean(needles, item, depth + 1):
                return False
    return True


def _holds(walk: Walk, text: str, name: str, path: str, findings: list[Finding]) -> bool:
    if not walk.needles.found_in(text):
        return False
    findings.append(
        Finding(
            id="secret-value-in-metadata",
            severity="high",
            message=f"metadata {name} holds a value of the Secret's data",
            path=path,
        )
    )
    return True
