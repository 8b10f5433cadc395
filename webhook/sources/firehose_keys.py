"""Who may post to the Firehose endpoint: one access key per delivery stream, each bound to the
EKS clusters whose log groups it may carry.

Firehose copies the key configured on the stream verbatim into ``X-Amz-Firehose-Access-Key``.
The keys are read from files once, at start-up, and kept only as digests keyed with a random
salt; a request's key is compared with every one of them in constant time. Nothing here ever
logs or echoes a key: errors name the file.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from webhook.core.files import read_secret_file
from webhook.errors import ConfigError

__all__ = ["ACCESS_KEY_HEADER", "MAX_KEY_BYTES", "FirehoseGrant", "FirehoseKey", "FirehoseKeys"]

ACCESS_KEY_HEADER: Final = "X-Amz-Firehose-Access-Key"
MAX_KEY_BYTES: Final = 4096  # Firehose's own limit on the access key
_MIN_KEY_BYTES: Final = 16
_MIN_DISTINCT: Final = 8  # as for bearer tokens: long but guessable ("aaaa…") is refused
_CLUSTER: Final = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]{0,99}")  # EKS's rule for cluster names
_CONTROL_BYTES: Final = frozenset(range(0x20)) | {0x7F}


@dataclass(frozen=True, slots=True, kw_only=True)
class FirehoseKey:
    """One ``sources.firehose.access_keys`` entry: a key file and the clusters its key may carry."""

    key_file: Path
    clusters: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FirehoseGrant:
    """What a valid access key proves: which key file it is, and the clusters it may carry."""

    key_file: Path
    clusters: frozenset[str]

    @property
    def sole_cluster(self) -> str | None:
        """The one cluster of a key bound to exactly one: what extracted records are recorded as."""
        return next(iter(self.clusters)) if len(self.clusters) == 1 else None


class FirehoseKeys:
    """The configured access keys, held only as keyed digests (never the keys themselves)."""

    def __init__(self, salt: bytes, grants: Sequence[tuple[bytes, FirehoseGrant]]) -> None:
        self._salt = salt
        self._grants = tuple(grants)

    @classmethod
    def load(cls, entries: Sequence[FirehoseKey]) -> FirehoseKeys:
        """Read every key file; ``ConfigError`` names the file (never the key) of a bad one."""
        salt = secrets.token_bytes(32)
        grants: list[tuple[bytes, FirehoseGrant]] = []
        files: dict[bytes, Path] = {}
        for entry in entries:
            key = _read_key(entry.key_file)
            digest = hmac.digest(salt, key, hashlib.sha256)
            if digest in files:
                raise ConfigError(
                    f"Firehose access key files {files[digest]} and {entry.key_file} hold the same key"
                )
            files[digest] = entry.key_file
            grants.append((digest, FirehoseGrant(entry.key_file, _clusters(entry))))
        return cls(salt, grants)

    def __len__(self) -> int:
        return len(self._grants)

    def __repr__(self) -> str:
        return f"FirehoseKeys({len(self._grants)} keys)"

    def authenticate(self, header_value: str | None) -> FirehoseGrant | None:
        """The grant of the key sent in ``X-Amz-Firehose-Access-Key``, or None (answer 401).

        Every configured key is compared, in constant time and without an early exit, against a
        digest of fixed length: the time taken says neither which key matched nor how much."""
        if not header_value:
            return None
        try:
            # Header bytes that are not UTF-8 come as surrogate escapes: compare them as sent.
            offered = header_value.encode("utf-8", "surrogateescape")
        except UnicodeError:
            return None
        if len(offered) > MAX_KEY_BYTES:
            return None
        digest = hmac.digest(self._salt, offered, hashlib.sha256)
        found: FirehoseGrant | None = None
        for known, grant in self._grants:
            if hmac.compare_digest(digest, known):
                found = grant
        return found


def _read_key(path: Path) -> bytes:
    what = "Firehose access key file"
    try:
        data = read_secret_file(path, what, max_bytes=MAX_KEY_BYTES + 3)
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    key = data.removesuffix(b"\n").removesuffix(b"\r")
    if len(key) > MAX_KEY_BYTES:
        raise ConfigError(f"{what} {path} holds more than {MAX_KEY_BYTES} bytes, Firehose's limit")
    if any(byte in _CONTROL_BYTES for byte in key):
        raise ConfigError(f"{what} {path} holds more than one line or a control character")
    if key != key.strip():
        raise ConfigError(f"{what} {path}: the key begins or ends with a space, which HTTP drops")
    if len(key) < _MIN_KEY_BYTES or len(set(key)) < _MIN_DISTINCT:
        raise ConfigError(
            f"{what} {path} is empty or too weak: use at least {_MIN_KEY_BYTES} characters with "
            f"{_MIN_DISTINCT} different ones (e.g. openssl rand -hex 32)"
        )
    return key


def _clusters(entry: FirehoseKey) -> frozenset[str]:
    if not entry.clusters:
        raise ConfigError(f"Firehose access key {entry.key_file}: clusters is empty")
    for index, cluster in enumerate(entry.clusters):
        if not isinstance(cluster, str) or not _CLUSTER.fullmatch(cluster):
            raise ConfigError(
                f"Firehose access key {entry.key_file}: clusters[{index}] is not an EKS cluster name"
            )
    return frozenset(entry.clusters)
