"""Small pure helpers of the redaction walk: decoding values and recognising shapes."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any, Final

import orjson

from webhook.redact.certs import Finding

__all__ = [
    "PATCH_DIRECTIVES",
    "SECRET_KEEP",
    "copy_finding",
    "decoded",
    "is_dropped",
    "is_watch_event",
    "plain",
]

PATCH_DIRECTIVES: Final = frozenset({"replace", "merge", "delete"})  # strategic merge $patch
_SECRET_FIELDS: Final = frozenset(
    {"apiVersion", "kind", "metadata", "type", "immutable", "data", "stringData"}
)
_WATCH_FIELDS: Final = frozenset({"type", "object", "kind", "apiVersion"})


def _opt_str(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _retain_keys(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v in _SECRET_FIELDS for v in value)


# The top-level fields of a Secret (or of a patch of one) kept as they are; data, stringData and
# metadata are rebuilt by the walk, anything else is dropped.
SECRET_KEEP: Final[dict[str, Callable[[Any], bool]]] = {
    "apiVersion": _opt_str,
    "kind": _opt_str,
    "type": _opt_str,
    "immutable": lambda v: v is None or isinstance(v, bool),
    "$patch": lambda v: v in PATCH_DIRECTIVES,
    "$retainKeys": _retain_keys,
}


def is_dropped(value: Any) -> bool:
    return isinstance(value, dict) and value.get("redacted") == "dropped" and len(value) == 2


def is_watch_event(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and "object" in value
        and value.keys() <= _WATCH_FIELDS
        and value.get("kind") in (None, "WatchEvent")
    )


def decoded(value: Any) -> bytes:
    """What a ``data`` value stands for; an undecodable one is fingerprinted as it is."""
    if not isinstance(value, str):
        return plain(value)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        try:
            return base64.b64decode("".join(value.split()), validate=True)
        except (binascii.Error, ValueError):
            return value.encode()


def plain(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode()
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:  # nested deeper than orjson writes: no value anyone sends
        return b"<nested too deep>"


def copy_finding(manifest: dict[str, Any], path: str, annotation: str) -> list[Finding]:
    """kubectl apply (or kapp) keeps the whole manifest in an annotation ``kubectl describe`` shows."""
    count = sum(
        len(entries) for field in ("data", "stringData") if isinstance(entries := manifest.get(field), dict)
    )
    if not count:
        return []
    plain_text = "; stringData in plain text" if manifest.get("stringData") else ""
    return [
        Finding(
            id="secret-values-in-last-applied",
            severity="medium",
            message=(
                f"{annotation} copies {count} secret values{plain_text}; kubectl describe shows annotations"
            ),
            path=path,
        )
    ]
