"""Secret values → keyed fingerprints, right after the filter and before anything else.

Every later stage (state, diffs, findings, logs, dead letters, sinks) sees only the redacted
event, so none of them can leak a value by mistake. A fingerprint is an HMAC under a key kept
on disk, so equal values can be told apart from changed ones without being recoverable by
anyone who lacks the key. Certificates are read here, before their values are replaced.

In a secrets request (``objectRef.resource == "secrets"``) every object is rebuilt from an
allow-list and any shape not recognised is dropped whole; in other events only embedded
Secrets and ``last-applied-configuration`` annotations are rewritten. A Secret's annotations
and the rest of its metadata are handled by ``webhook.redact.meta``. The input is never
mutated; an event with nothing to redact comes back as the very same object.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from webhook.core.files import fsync_dir, read_secret_file
from webhook.errors import ConfigError
from webhook.redact import shapes as shapes
from webhook.redact.certs import CertificateCache
from webhook.redact.listed import ListItemCache
from webhook.redact.model import KeyFingerprint, SecretDetails
from webhook.redact.walk import Walk, scan_keeps

__all__ = [
    "KeyFingerprint",
    "RedactionResult",
    "Redactor",
    "SecretDetails",
    "load_or_create_key",
]

_PREFIX: Final = "hmac-sha256:"
_HEX_CHARS: Final = 32  # 128 bits: collisions are not a concern, and records stay short
_KEY_BYTES: Final = 32
_MIN_KEY_BYTES: Final = 16
_OBJECTS: Final = ("requestObject", "responseObject")


@dataclass(frozen=True, slots=True, kw_only=True)
class RedactionResult:
    event: dict[str, Any]
    secrets: tuple[SecretDetails, ...]
    dropped: tuple[str, ...]  # paths of objects or fields removed because not recognised


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Redactor:
    """Built once at start-up; ``redact`` is pure apart from reading the clock for expiry."""

    __slots__ = ("_expiry_warning_days", "_mac", "_now", "certificates", "list_items")

    def __init__(
        self,
        key: bytes,
        *,
        expiry_warning_days: int = 30,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        if len(key) < _MIN_KEY_BYTES:
            raise ConfigError(f"the fingerprint key must be at least {_MIN_KEY_BYTES} bytes")
        self._mac = hmac.new(key, digestmod=hashlib.sha256)
        self._expiry_warning_days = expiry_warning_days
        self._now = now
        # One per process (each worker builds its own redactor): the certificates seen before,
        # and the items of secrets lists walked before.
        self.certificates = CertificateCache()
        self.list_items = ListItemCache()

    def __repr__(self) -> str:
        return "Redactor(key=**********)"

    def fingerprint(self, value: bytes) -> str:
        mac = self._mac.copy()
        mac.update(value)
        return _PREFIX + mac.hexdigest()[:_HEX_CHARS]

    def redact(self, event: dict[str, Any], *, encoded: bytes | None = None) -> RedactionResult:
        """``event`` with every secret value fingerprinted. ``encoded``: its ``orjson.dumps``,
        if at hand: an event that is not a Secret's and names nothing the walk rebuilds is given
        back without a walk."""
        ref = event.get("objectRef")
        strict = isinstance(ref, dict) and ref.get("resource") == "secrets"
        if not strict and encoded is not None and scan_keeps(encoded):
            return RedactionResult(event=event, secrets=(), dropped=())
        walk = Walk(
            self.fingerprint,
            now=self._now,
            expiry_warning_days=self._expiry_warning_days,
            certificates=self.certificates,
        )
        status = event.get("responseStatus")
        searched = status if strict and isinstance(status, dict) and "message" in status else None
        changes: dict[str, Any] = {}
        for field in _OBJECTS:
            value = event.get(field)
            if value is None:
                continue
            walk.next_object()
            # A list item from memory adds none of its values to those a later object and the
            # status message are searched for: only the response, and only with no message.
            walk.items = (
                self.list_items if strict and field == "responseObject" and searched is None else None
            )
            new = walk.strict(value, field) if strict else walk.scan(value, field)
            if new is not value:
                changes[field] = new
        if searched is not None:
            changes["responseStatus"] = shapes.status(walk, searched, "responseStatus")
        if not changes:
            return RedactionResult(event=event, secrets=(), dropped=())
        out = dict(event)
        out.update(changes)
        return RedactionResult(event=out, secrets=tuple(walk.secrets), dropped=tuple(walk.dropped))


def load_or_create_key(path: Path) -> bytes:
    """The fingerprint key: read if present, else 32 random bytes written once, mode 0600.

    Created under a temporary name and hard-linked into place, so a reader never sees a partial
    key and two replicas starting together agree on one key instead of overwriting each other.
    """
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, secrets.token_bytes(_KEY_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        with contextlib.suppress(FileExistsError):  # another process won the race: use its key
            os.link(temporary, path)
        fsync_dir(path.parent)
    except OSError as exc:
        raise ConfigError(f"cannot create key file {path}: {exc.strerror}") from None
    finally:
        temporary.unlink(missing_ok=True)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    try:
        key = read_secret_file(path, "key file", max_bytes=4096)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ConfigError(f"cannot open key file {path}: {exc.strerror}") from None
    if len(key) < _MIN_KEY_BYTES:
        raise ConfigError(f"key file {path} holds fewer than {_MIN_KEY_BYTES} bytes")
    return key
