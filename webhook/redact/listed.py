"""A redactor's memory of the list items it redacted, so that a Secret listed again unchanged
costs a digest and a decode instead of a walk.

Controllers and ``kubectl get secrets -A -o yaml`` list the same Secrets over and over; under an
audit policy that logs Secrets at RequestResponse level, each list carries every one of them,
and walking a Secret costs some 50 µs. An entry is what the walk made of one item, with
everything that depends on where the item sat or when it was read taken out:

- the redacted item, as ``orjson`` bytes (no value in it: it is what the records carry);
- each Secret found in it (the item, and the copies in its annotations): its name, type, key
  fingerprints and the parsed certificates, with paths relative to the item, so that days to
  expiry and the expiry findings are worked out afresh at each use;
- the paths the walk dropped, relative to the item.

Keys are SHA-256 digests of a random salt of its own (per process, never written anywhere) and the
item's exact ``orjson`` encoding, with its depth; no value of the item is kept. The walk uses
the memory only where the result cannot depend on anything but the item (see
``Walk.item``). Bounded by the bytes it holds; least recently used first out.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import orjson

from webhook.core.findings import Finding
from webhook.redact.certs import CertificateFacts
from webhook.redact.model import KeyFingerprint, SecretDetails

__all__ = ["DEFAULT_MAX_BYTES", "Entry", "Found", "ListItemCache", "entry_of"]

DEFAULT_MAX_BYTES: Final = 8 * 1024 * 1024
# Bytes counted beside the redacted item, per entry, per Secret in it and per key of each (its
# name and fingerprint): a little over what CPython takes for them.
_PER_ENTRY: Final = 400
_PER_SECRET: Final = 300
_PER_KEY: Final = 200


@dataclass(frozen=True, slots=True)
class Found:
    """One Secret the walk found in an item, where and when left out."""

    source: str  # after the item's path: "" for the item itself
    name: str | None
    namespace: str | None
    type: str | None
    keys: tuple[KeyFingerprint, ...]
    facts: CertificateFacts
    findings: tuple[Finding, ...]  # the walk's own (metadata), paths after the item's path

    def details(self, path: str, *, now: datetime, expiry_warning_days: int) -> SecretDetails:
        """The Secret, for the item at ``path``, with its certificates as they stand at ``now``."""
        source = path + self.source
        report = self.facts.report(now=now, expiry_warning_days=expiry_warning_days, path=source)
        findings = report.findings
        if self.findings:
            findings += tuple(
                Finding(id=f.id, severity=f.severity, message=f.message, path=_join(path, f.path))
                for f in self.findings
            )
        return SecretDetails(
            source=source,
            name=self.name,
            namespace=self.namespace,
            type=self.type,
            keys=self.keys,
            certificates=report.certificates,
            key_matches_certificate=report.key_matches_certificate,
            findings=findings,
        )


@dataclass(frozen=True, slots=True)
class Entry:
    redacted: bytes
    secrets: tuple[Found, ...]
    dropped: tuple[str, ...]  # after the item's path

    @property
    def size(self) -> int:
        """The bytes the entry counts for in the bound."""
        secrets = sum(_PER_SECRET + _PER_KEY * len(found.keys) for found in self.secrets)
        return len(self.redacted) + _PER_ENTRY + secrets


def _join(path: str, suffix: str | None) -> str | None:
    return None if suffix is None else path + suffix


def _suffix(path: str, full: str | None) -> str | None:
    """``full`` after ``path`` when ``full`` lies within it (``path``, ``path.…``, ``path[…``)."""
    if full is None or not full.startswith(path):
        return None
    rest = full[len(path) :]
    return rest if rest == "" or rest[0] in ".[" else None


def entry_of(
    redacted: Any,
    path: str,
    secrets: Sequence[SecretDetails],
    dropped: Sequence[str],
    facts: Mapping[int, tuple[CertificateFacts, tuple[Finding, ...]]],
) -> Entry | None:
    """What to remember of the item at ``path``: ``redacted``, and the ``secrets`` and ``dropped``
    paths the walk added for it (``facts``: each Secret's certificates and own findings, by
    ``id``). None when something in them cannot be told apart from where the item sat."""
    found: list[Found] = []
    for details in secrets:
        held = facts.get(id(details))
        source = _suffix(path, details.source)
        if held is None or source is None:
            return None
        certificates, own = held
        relative: list[Finding] = []
        for finding in own:
            where = _suffix(path, finding.path)
            if (finding.path is not None and where is None) or path in finding.message:
                return None
            relative.append(
                Finding(id=finding.id, severity=finding.severity, message=finding.message, path=where)
            )
        found.append(
            Found(
                source=source,
                name=details.name,
                namespace=details.namespace,
                type=details.type,
                keys=details.keys,
                facts=certificates,
                findings=tuple(relative),
            )
        )
    suffixes: list[str] = []
    for full in dropped:
        suffix = _suffix(path, full)
        if suffix is None:
            return None
        suffixes.append(suffix)
    try:
        encoded = orjson.dumps(redacted)
    except orjson.JSONEncodeError:
        return None
    # A copy: orjson's own bytes keep the whole buffer it wrote into, 4 KiB at least.
    return Entry(redacted=bytes(memoryview(encoded)), secrets=tuple(found), dropped=tuple(suffixes))


class ListItemCache:
    """Entries by the digest of the item and its depth; at most ``max_bytes`` of them (``Entry.size``)."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes < 1:
            raise ValueError("the list item cache holds at least one byte")
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._salted = hashlib.sha256(os.urandom(32))
        self._entries: OrderedDict[bytes, Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def key(self, item: dict[str, Any], depth: int) -> bytes | None:
        """The digest ``item`` is remembered by at ``depth``; None when it cannot be encoded."""
        try:
            encoded = orjson.dumps(item)
        except orjson.JSONEncodeError:
            return None
        digest = self._salted.copy()
        digest.update(encoded)
        return digest.digest() + depth.to_bytes(4, "big")

    def get(self, key: bytes) -> Entry | None:
        entry = self._entries.get(key)
        if entry is not None:
            try:
                self._entries.move_to_end(key)
            except KeyError:  # evicted by another thread meanwhile: walk it
                entry = None
        if entry is None:
            self.misses += 1
        else:
            self.hits += 1
        return entry

    def put(self, key: bytes, entry: Entry) -> None:
        size = entry.size
        if size > self.max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old.size
        self._entries[key] = entry
        self.bytes += size
        while self.bytes > self.max_bytes and self._entries:
            _, evicted = self._entries.popitem(last=False)
            self.bytes -= evicted.size

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0
