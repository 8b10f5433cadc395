"""How far the AKS storage follower has read each blob, kept across restarts in one small file.

A position is the byte offset up to which a blob's lines were handed on, with the blob's size,
creation time and last write as of the last listing. The file stays small: a blob read in full
and not written since a horizon is dropped, and its hour becomes the high-water mark of its
cluster's blob names. A blob at or below the mark with no position is never read again. That
is safe because Azure writes only the current hour's blob of a cluster: no blob of an older
hour appears once a later one has gone quiet. The file is replaced whole, atomically (written,
fsync'd, renamed, directory fsync'd).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import orjson

from webhook.core.files import ensure_private_dir, fsync_dir, replace_private
from webhook.errors import StorageError
from webhook.sources.aks import cluster_of

__all__ = ["BlobPath", "Position", "Positions", "iso"]

_BLOB: Final = re.compile(
    r"(?P<prefix>resourceId=(?P<rid>/SUBSCRIPTIONS/[^/]+/RESOURCEGROUPS/[^/]+/PROVIDERS"
    r"/MICROSOFT\.CONTAINERSERVICE/MANAGEDCLUSTERS/[^/]+))"
    r"/y=(?P<y>\d{4})/m=(?P<mo>\d\d)/d=(?P<d>\d\d)/h=(?P<h>\d\d)/m=(?P<mi>\d\d)/[^/]+\.json",
    re.IGNORECASE,
)
_VERSION: Final = 1


def iso(moment: datetime | None) -> str:
    """A UTC timestamp that sorts as text (empty for none)."""
    return moment.astimezone(UTC).isoformat() if moment is not None else ""


@dataclass(frozen=True, slots=True)
class BlobPath:
    """A diagnostic setting's blob name, read: ``resourceId=<id>/y=…/m=…/d=…/h=…/m=00/PT1H.json``."""

    name: str
    prefix: str  # ``resourceId=<id>``: one cluster's blobs
    resource_id: str
    cluster: str  # lower case
    hour: str  # ``YYYY-MM-DDTHH:MM``, sorts as text

    @classmethod
    def parse(cls, name: str) -> BlobPath | None:
        match = _BLOB.fullmatch(name)
        cluster = cluster_of(match["rid"]) if match is not None else None
        if match is None or cluster is None:
            return None
        hour = f"{match['y']}-{match['mo']}-{match['d']}T{match['h']}:{match['mi']}"
        return cls(name=name, prefix=match["prefix"], resource_id=match["rid"], cluster=cluster, hour=hour)


@dataclass(slots=True)
class Position:
    offset: int
    size: int
    created: str
    modified: str


class Positions:
    """The positions of one container's blobs, and its clusters' high-water marks."""

    def __init__(self, path: Path, container: str) -> None:
        self.path = path
        self.container = container
        self.blobs: dict[str, Position] = {}
        self.marks: dict[str, str] = {}  # blob name prefix → the highest hour forgotten

    @classmethod
    def load(cls, path: Path, container: str) -> Positions:
        """The saved positions (none when there is no file); ``StorageError`` for a file that
        is not one, or belongs to another container: it is left for the operator."""
        positions = cls(path, container)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return positions
        try:
            doc = orjson.loads(raw)
            if doc.get("version") != _VERSION or doc.get("container") != container:
                raise StorageError(f"{path}: the state of another container, or of another version")
            positions.blobs = {name: Position(**fields) for name, fields in doc["blobs"].items()}
            positions.marks = {str(prefix): str(hour) for prefix, hour in doc["marks"].items()}
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
            raise StorageError(
                f"{path}: not an AKS storage state file; move it away to read the container from the start"
            ) from None
        return positions

    def track(self, blob: BlobPath, created: str) -> Position | None:
        """The blob's position: the saved one, a new one at 0, or None for a blob read in full
        and forgotten (at or below its cluster's mark)."""
        position = self.blobs.get(blob.name)
        if position is None:
            if blob.hour <= self.marks.get(blob.prefix, ""):
                return None
            position = self.blobs[blob.name] = Position(offset=0, size=0, created=created, modified="")
        return position

    def forget(self, listed: Collection[str], horizon: str) -> int:
        """Drop blobs read in full and not written since ``horizon``, and blobs no longer
        ``listed``; raise their clusters' marks. Returns how many were dropped."""
        dropped = 0
        for name, position in list(self.blobs.items()):
            quiet = position.offset >= position.size and position.modified < horizon
            if name in listed and not quiet:
                continue
            blob = BlobPath.parse(name)
            if blob is not None:
                self.marks[blob.prefix] = max(blob.hour, self.marks.get(blob.prefix, ""))
            del self.blobs[name]
            dropped += 1
        return dropped

    def save(self) -> None:
        """Replace the file atomically. Raises ``OSError`` when it cannot be written."""
        doc = {
            "version": _VERSION,
            "container": self.container,
            "blobs": {name: asdict(position) for name, position in self.blobs.items()},
            "marks": self.marks,
        }
        ensure_private_dir(self.path.parent)
        replace_private(self.path, orjson.dumps(doc, option=orjson.OPT_SORT_KEYS))
        fsync_dir(self.path.parent)
