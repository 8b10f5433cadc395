"""The single pass over an event's objects that replaces secret values (see ``webhook.redact.redactor``).

Two modes. ``scan`` runs on every kept event: it copies only what it changes (embedded Secrets,
``last-applied-configuration`` annotations, token-carrying objects) and hands back the very same
object when there is nothing to do. ``strict`` runs on the objects of a secrets request: it
rebuilds them from an allow-list, and replaces any shape it does not recognise by a marker.
Paths are dotted (``responseObject.items[3].data``); the annotation appears as the pseudo-field
``…annotations.last-applied-configuration``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, Final

import orjson

from webhook.core.values import as_str
from webhook.redact import meta as meta
from webhook.redact import shapes as shapes
from webhook.redact.certs import CertificateCache, CertificateFacts, Finding, read_certificates
from webhook.redact.listed import Entry, ListItemCache, entry_of
from webhook.redact.meta import LAST_APPLIED, Needles
from webhook.redact.model import KeyFingerprint, SecretDetails
from webhook.redact.values import (
    PATCH_DIRECTIVES,
    SECRET_KEEP,
    copy_finding,
    decoded,
    is_dropped,
    is_watch_event,
    plain,
)

__all__ = ["LAST_APPLIED", "Walk", "is_dropped", "scan_keeps"]

_LAST_APPLIED_POINTER: Final = "/kubectl.kubernetes.io~1last-applied-configuration"
_LAST_APPLIED_PATH: Final = "last-applied-configuration"
_MAX_DEPTH: Final = 200  # far below Python's recursion limit; real objects nest < 30 deep
_MAX_NESTING: Final = 4  # last-applied annotations inside last-applied annotations
_LIST_FIELDS: Final = frozenset({"kind", "apiVersion", "metadata", "items"})
# {kind: Secret, name: …} is a reference (Gateway certificateRefs, ObjectReference), no object
_REFERENCE_FIELDS: Final = frozenset(
    {"kind", "name", "namespace", "group", "apiGroup", "apiVersion", "uid", "resourceVersion"}
    | {"fieldPath", "sectionName", "port"}
)
_TOKEN_FIELDS: Final = {"TokenRequest": "status", "TokenReview": "spec"}  # … holds "token"
# What ``Walk.scan`` rebuilds, as orjson writes it: the kinds (an embedded Secret, a SecretList,
# a token request or review) and the last-applied manifest (the annotation's key, or a JSON
# patch's pointer to it). orjson writes a string one way only: no escape stands for a letter.
_SCANNED: Final = (
    *(orjson.dumps(kind) for kind in ("Secret", "SecretList", *_TOKEN_FIELDS)),
    _LAST_APPLIED_PATH.encode(),
)


def scan_keeps(encoded: bytes) -> bool:
    """Whether ``Walk.scan`` gives back unchanged every object of the event ``encoded`` (its
    ``orjson.dumps``): it names none of what the walk rebuilds, and has too few objects and
    arrays to nest deeper than the walk goes. False means: walk it."""
    for marker in _SCANNED:
        if marker in encoded:
            return False
    return encoded.count(b"{") + encoded.count(b"[") <= _MAX_DEPTH


class Walk:
    """State of one ``Redactor.redact`` call: the Secrets seen and the paths dropped."""

    def __init__(
        self,
        fingerprint: Callable[[bytes], str],
        *,
        now: Callable[[], datetime],
        expiry_warning_days: int,
        certificates: CertificateCache,
        items: ListItemCache | None = None,
    ) -> None:
        self.fingerprint = fingerprint
        # Where a list's items may come from (and go to) the redactor's memory: see ``item``.
        self.items = items
        self._facts: dict[int, tuple[CertificateFacts, tuple[Finding, ...]]] | None = None
        self._certificates = certificates
        self.secrets: list[SecretDetails] = []
        self.dropped: list[str] = []
        self._now = now
        self._moment: datetime | None = None
        self._expiry_warning_days = expiry_warning_days
        self._nesting = 0
        self._needles: Needles | None = None
        self.seen = Needles()  # every value of the event, for the status messages
        self._earlier = Needles()  # those of the event's objects walked before this one

    def next_object(self) -> None:
        """The request's values apply to the Secrets of the response (not one item's to the next)."""
        self._earlier = Needles(self.seen)

    @property
    def needles(self) -> Needles:
        """The values of the Secret (or patch) being walked, and of those it is nested in."""
        return self._needles if self._needles is not None else self.seen

    @contextlib.contextmanager
    def scope(self) -> Iterator[Needles]:
        """One Secret or patch: its values, plus the outer ones; given back to the outer one."""
        outer = self._needles
        mine = self._needles = Needles(outer if outer is not None else self._earlier)
        try:
            yield mine
        finally:
            self._needles = outer
            if outer is not None:
                outer.update(mine)
            self.seen.update(mine)

    def drop(self, path: str, reason: str) -> dict[str, Any]:
        self.dropped.append(path)
        return {"redacted": "dropped", "reason": reason}

    def fingerprint_value(self, value: Any, *, encoded: bool) -> str:
        """A value that may be secret: fingerprinted, and looked for in the metadata."""
        raw = decoded(value) if encoded else plain(value)
        self.needles.add(raw, value)
        return self.fingerprint(raw)

    # -- any kept event: copy on write ---------------------------------------------------------

    def scan(self, value: Any, path: str, depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            return self.drop(path, "nested too deep")
        if isinstance(value, list):
            out: list[Any] | None = None
            for index, item in enumerate(value):
                # An empty one is given back as it is (unless it is too deep): not walked.
                if isinstance(item, dict | list) and (item or depth >= _MAX_DEPTH):
                    new = self.scan(item, f"{path}[{index}]", depth + 1)
                    if new is not item:
                        out = out if out is not None else list(value)
                        out[index] = new
            return value if out is None else out
        if not isinstance(value, dict):
            return value
        kind = value.get("kind")
        if kind == "Secret" and not value.keys() <= _REFERENCE_FIELDS:
            return self.secret(value, path)
        if kind == "SecretList":
            return self.strict(value, path, depth)
        if isinstance(kind, str) and kind in _TOKEN_FIELDS:  # any JSON may be a kind
            value = self._token(value, _TOKEN_FIELDS[kind])
        changed: dict[str, Any] | None = None
        for key, item in value.items():
            if isinstance(item, str):
                if key == LAST_APPLIED or (
                    key == "value" and str(value.get("path")).endswith(_LAST_APPLIED_POINTER)
                ):
                    new = self.annotation(item, f"{path}.{_LAST_APPLIED_PATH}", strict=False)
                else:
                    continue
            elif isinstance(item, dict | list) and (item or depth >= _MAX_DEPTH):
                new = self.scan(item, f"{path}.{key}", depth + 1)
            else:
                continue
            if new is not item:
                changed = changed if changed is not None else dict(value)
                changed[key] = new
        return value if changed is None else changed

    def _token(self, value: dict[str, Any], field: str) -> dict[str, Any]:
        holder = value.get(field)
        if not isinstance(holder, dict) or "token" not in holder:
            return value
        token = holder["token"]
        redacted = self.fingerprint_value(token, encoded=False) if token else token
        return {**value, field: {**holder, "token": redacted}}

    # -- secrets requests: allow-list ----------------------------------------------------------

    def strict(self, value: Any, path: str, depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            return self.drop(path, "nested too deep")
        if isinstance(value, list):
            if all(isinstance(op, dict) and "op" in op for op in value):
                return shapes.json_patch(self, value, path)
            if all(is_watch_event(item) for item in value):
                return [self._watch(e, f"{path}[{i}]", depth) for i, e in enumerate(value)]
            return self.drop(path, "unrecognised list")
        if not isinstance(value, dict):
            return self.drop(path, "not an object")
        if is_watch_event(value):
            return self._watch(value, path, depth)
        kind = value.get("kind")
        if kind is None or kind == "Secret":
            return self.secret(value, path)
        if kind == "PartialObjectMetadata":
            return self.secret(value, path, record=False)
        if kind == "Table":
            return shapes.table(self, value, path, depth)
        if kind == "Status":
            return shapes.status(self, value, path)
        if kind == "DeleteOptions":
            return shapes.delete_options(self, value, path)
        if (
            isinstance(kind, str)
            and kind.endswith("List")
            and isinstance(value.get("items", []), list | None)
        ):
            return self._list(value, path, depth)
        return self.drop(path, "unrecognised kind in a secrets request")

    def _watch(self, value: dict[str, Any], path: str, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key == "object":
                out[key] = self.strict(item, f"{path}.object", depth + 1)
            elif isinstance(item, str):
                out[key] = item
            else:
                self.dropped.append(f"{path}.{key}")
        return out

    def _list(self, value: dict[str, Any], path: str, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key == "items":  # Go writes an empty list as null
                out[key] = [self.item(e, f"{path}.items[{i}]", depth + 1) for i, e in enumerate(item or ())]
            elif key in _LIST_FIELDS and (key != "metadata" or shapes.is_list_meta(item)):
                out[key] = item if isinstance(item, str | dict) else None
            else:
                self.dropped.append(f"{path}.{key}")
        return out

    def item(self, value: Any, path: str, depth: int) -> Any:
        """One item of a list, from the redactor's memory when it was walked before.

        Only where the walk of an item depends on nothing but the item and its depth: ``items``
        is set (by the redactor, for an event's last object when no status message is searched
        for its values afterwards), no outer Secret's or earlier object's values are looked
        for, no manifest copy is being walked, and the item is not within another one."""
        cache = self.items
        if (
            cache is None
            or not isinstance(value, dict)
            or self._needles is not None
            or self._nesting
            or self._earlier
            or self._facts is not None
        ):
            return self.strict(value, path, depth)
        key = cache.key(value, depth)
        if key is None:
            return self.strict(value, path, depth)
        entry = cache.get(key)
        if entry is not None:
            return self._remembered(entry, path)
        secrets, dropped = len(self.secrets), len(self.dropped)
        self._facts = {}
        try:
            out = self.strict(value, path, depth)
            made = entry_of(out, path, self.secrets[secrets:], self.dropped[dropped:], self._facts)
        finally:
            self._facts = None
        if made is not None:
            cache.put(key, made)
        return out

    def _remembered(self, entry: Entry, path: str) -> Any:
        """What ``item`` made of an item before, for the one at ``path``, its certificates now."""
        if entry.secrets:
            moment = self._moment = self._moment or self._now()
            for found in entry.secrets:
                self.secrets.append(
                    found.details(path, now=moment, expiry_warning_days=self._expiry_warning_days)
                )
        if entry.dropped:
            self.dropped.extend(path + suffix for suffix in entry.dropped)
        return orjson.loads(entry.redacted)

    def secret(self, value: dict[str, Any], path: str, *, record: bool = True) -> dict[str, Any]:
        """Rebuild a Secret (full, partial or a merge patch) keeping only known fields."""
        with self.scope():
            return self._secret(value, path, record=record)

    def _secret(self, value: dict[str, Any], path: str, *, record: bool) -> dict[str, Any]:
        slot = len(self.secrets)
        out: dict[str, Any] = {}
        values: dict[str, bytes] = {}
        plain: dict[str, bytes] = {}
        keys: list[KeyFingerprint] = []
        for field, item in value.items():
            fpath = f"{path}.{field}"
            if field == "data":
                out[field] = self.data_map(item, fpath, encoded=True, values=values, keys=keys)
            elif field == "stringData":
                out[field] = self.data_map(item, fpath, encoded=False, values=plain, keys=keys)
            elif field == "metadata":
                out[field] = None  # filled in below, once the values are known
            elif field in SECRET_KEEP and SECRET_KEEP[field](item):
                out[field] = item
            else:
                self.dropped.append(fpath)
        values.update(plain)  # the apiserver lets stringData win over data
        findings: list[Finding] = []
        if "metadata" in out:
            out["metadata"] = meta.metadata(self, value["metadata"], f"{path}.metadata", findings)
        if isinstance(out.get("type"), str):  # chosen by the user, like a label
            out["type"] = meta.label_value(self, "type", out["type"], path, findings)
        if record:
            self._record(slot, value, path, keys, values, findings)
        return out

    def _record(
        self,
        slot: int,
        value: dict[str, Any],
        path: str,
        keys: list[KeyFingerprint],
        values: dict[str, bytes],
        findings: list[Finding],
    ) -> None:
        if self._moment is None:
            self._moment = self._now()
        facts = read_certificates(values, cache=self._certificates)
        report = facts.report(now=self._moment, expiry_warning_days=self._expiry_warning_days, path=path)
        metadata = value.get("metadata")
        metadata = metadata if isinstance(metadata, dict) else {}
        details = SecretDetails(
            source=path,
            name=as_str(metadata.get("name")),
            namespace=as_str(metadata.get("namespace")),
            type=as_str(value.get("type")),
            keys=tuple(keys),
            certificates=report.certificates,
            key_matches_certificate=report.key_matches_certificate,
            findings=(*report.findings, *findings),
        )
        self.secrets.insert(slot, details)  # before the copies found in its annotations
        if self._facts is not None:  # an item the redactor will remember: see ``item``
            self._facts[id(details)] = (facts, tuple(findings))

    def data_map(
        self,
        value: Any,
        path: str,
        *,
        encoded: bool,
        values: dict[str, bytes],
        keys: list[KeyFingerprint],
    ) -> Any:
        if value is None:
            return None
        if not isinstance(value, dict):
            return self.drop(path, "not an object")
        out: dict[str, Any] = {}
        for name, item in value.items():
            if item is None or (name == "$patch" and item in PATCH_DIRECTIVES):
                out[name] = item  # a merge patch deleting the key, or a directive: no value
                continue
            raw = decoded(item) if encoded else plain(item)
            self.needles.add(raw, item)
            out[name] = fingerprint = self.fingerprint(raw)
            values[name] = raw
            keys.append(KeyFingerprint(name=name, fingerprint=fingerprint, size=len(raw)))
        return out

    def annotation(
        self,
        text: str,
        path: str,
        *,
        strict: bool,
        findings: list[Finding] | None = None,
        name: str = LAST_APPLIED,
    ) -> str:
        """The annotation with the manifest inside it redacted, or a marker if unreadable."""
        field = meta.MANIFEST_ANNOTATIONS[name]
        if self._nesting >= _MAX_NESTING:
            self.dropped.append(path)
            return f"<redacted: unrecognised {field}>"
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError:
            self.dropped.append(path)
            return f"<redacted: unparseable {field}>"
        self._nesting += 1
        try:
            if not strict:
                result = self.scan(parsed, path)
                if result is parsed:
                    return text
            elif not isinstance(parsed, dict):
                self.dropped.append(path)
                return f"<redacted: unrecognised {field}>"
            else:
                result = self.strict(parsed, path)
                if is_dropped(result):
                    return f"<redacted: unrecognised {field}>"
                if findings is not None:
                    findings.extend(copy_finding(parsed, path, name))
        finally:
            self._nesting -= 1
        dumped = orjson.dumps(result, option=orjson.OPT_SORT_KEYS).decode()
        return dumped + "\n" if text.endswith("\n") else dumped
