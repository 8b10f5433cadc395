"""The default state store: one SQLite file in the data dir, WAL mode, survives restarts.

Bounded: objects not written for ``max_age_s`` and the oldest beyond ``max_objects`` are
evicted, dedupe keys once their TTL has passed. Runs in a worker thread (one connection, one
lock), so the event loop never waits on the disk; only matched events ever reach it.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson

from webhook.core.files import open_private
from webhook.core.paths import in_data_dir
from webhook.errors import StateError, StorageError
from webhook.state.base import StateStore, StoredObject, is_newer

if TYPE_CHECKING:
    from webhook.state.settings import StateConfig

__all__ = ["SqliteStore", "build"]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS objects (
  key TEXT PRIMARY KEY, rv TEXT, time TEXT, deleted INTEGER NOT NULL, audit_id TEXT NOT NULL,
  doc BLOB, updated REAL NOT NULL, sans TEXT
);
CREATE INDEX IF NOT EXISTS objects_updated ON objects (updated);
CREATE TABLE IF NOT EXISTS dedupe (key TEXT PRIMARY KEY, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS dedupe_expires ON dedupe (expires);
"""
_INSERT: Final = (
    "INSERT OR REPLACE INTO objects (key, rv, time, deleted, audit_id, doc, updated, sans)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_EVICT_EVERY_S: Final = 60.0
_READ_BUSY_MS: Final = 200  # a reader waits only while a crashed writer's WAL is recovered
_CHUNK: Final = 500  # under SQLite's limit of bound parameters


def build(config: StateConfig, *, data_dir: Path, cluster: str, dedupe_ttl_s: float) -> StateStore:
    return SqliteStore(
        in_data_dir(data_dir, config.path),
        max_objects=config.max_objects,
        max_age_s=config.max_age_s,
        dedupe_ttl_s=dedupe_ttl_s,
    )


class SqliteStore:
    name = "sqlite"
    remote = False

    def __init__(self, path: Path, *, max_objects: int, max_age_s: float, dedupe_ttl_s: float) -> None:
        self.path = path
        self._max_objects = max_objects
        self._max_age_s = max_age_s
        self._ttl_s = dedupe_ttl_s
        self._db: sqlite3.Connection | None = None
        # Reads run in the event loop on their own connection: a WAL reader never waits for the
        # writer, and a lookup of a few keys costs less than the hand-off to a thread would.
        self._reader: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._last_evict = 0.0
        self._error: str | None = None

    async def open(self) -> None:
        await asyncio.to_thread(self._open)

    def _open(self) -> None:
        try:
            # Never through a symlink (a planted link would have us write elsewhere); SQLite
            # opens its -wal and -shm itself, so a link there is refused before it does.
            os.close(open_private(self.path, os.O_RDWR | os.O_CREAT))
            for suffix in ("-wal", "-shm"):
                if Path(f"{self.path}{suffix}").is_symlink():
                    raise StateError(f"{self.path.name}{suffix} is a symbolic link; refusing to follow it")
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=5000")
            db.executescript(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(objects)")}
            if "sans" not in columns:  # a store created before certificate SANs were kept
                db.execute("ALTER TABLE objects ADD COLUMN sans TEXT")
            reader = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            reader.execute(f"PRAGMA busy_timeout={_READ_BUSY_MS}")
            reader.execute("PRAGMA query_only=1")
        except StorageError as exc:
            raise StateError(f"cannot open state store: {exc.message}") from None
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"cannot open state store {self.path}: {type(exc).__name__}") from None
        self._db = db
        self._reader = reader

    def _run(self, fn: Any, *args: Any) -> Any:
        """``fn(db, *args)`` on the writer connection, one thread at a time."""
        if self._db is None:
            raise StateError("state store is closed")
        with self._lock:
            return self._call(self._db, fn, *args)

    def _read(self, fn: Any, *args: Any) -> Any:
        """``fn(reader, *args)`` on the read-only connection, in the caller's thread."""
        if self._reader is None:
            raise StateError("state store is closed")
        return self._call(self._reader, fn, *args)

    def _call(self, db: sqlite3.Connection, fn: Any, *args: Any) -> Any:
        try:
            result = fn(db, *args)
        except sqlite3.Error as exc:
            self._error = type(exc).__name__
            raise StateError(f"state store {self.path.name} failed: {type(exc).__name__}") from None
        self._error = None
        return result

    async def get_many(self, keys: Sequence[str]) -> dict[str, StoredObject]:
        if not keys:
            return {}
        result: dict[str, StoredObject] = self._read(_get_many, list(keys))
        return result

    async def put_many(self, items: Mapping[str, StoredObject]) -> None:
        if items:
            await asyncio.to_thread(self._run, self._put_many, dict(items))

    def _put_many(self, db: sqlite3.Connection, items: dict[str, StoredObject]) -> None:
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        try:
            current = _get_many(db, list(items))
            rows = [
                (
                    key,
                    item.resource_version,
                    item.time,
                    int(item.deleted),
                    item.audit_id,
                    None if item.object is None else orjson.dumps(item.object),
                    now,
                    None if item.certificate_sans is None else orjson.dumps(item.certificate_sans).decode(),
                )
                for key, item in items.items()
                if is_newer(item, current.get(key))
            ]
            db.executemany(_INSERT, rows)
            if now - self._last_evict > _EVICT_EVERY_S:
                self._last_evict = now
                _evict(db, now, self._max_age_s, self._max_objects)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def scan(self, prefix: str, *, limit: int) -> dict[str, StoredObject]:
        result: dict[str, StoredObject] = await asyncio.to_thread(self._run, _scan, prefix, limit)
        return result

    async def claim(self, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        found: set[str] = self._read(_present, list(keys), time.time())
        return found

    async def commit(self, keys: Iterable[str]) -> None:
        rows = [(key, time.time() + self._ttl_s) for key in keys]
        if rows:
            await asyncio.to_thread(self._run, _insert_keys, rows)

    async def release(self, keys: Iterable[str]) -> None:
        return None  # nothing was claimed on disk: one replica per data dir

    async def problem(self) -> str | None:
        if self._db is None:
            return "closed"
        return self._error

    async def aclose(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()
        db, self._db = self._db, None
        if db is not None:
            with self._lock:
                await asyncio.to_thread(db.close)


def _chunks(keys: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(keys), _CHUNK):
        yield keys[start : start + _CHUNK]


def _get_many(db: sqlite3.Connection, keys: list[str]) -> dict[str, StoredObject]:
    found: dict[str, StoredObject] = {}
    for chunk in _chunks(keys):
        marks = ",".join("?" * len(chunk))
        query = f"SELECT key, rv, time, deleted, audit_id, doc, sans FROM objects WHERE key IN ({marks})"  # noqa: S608 - only placeholders
        for key, rv, when, deleted, audit_id, doc, sans in db.execute(query, chunk):
            found[key] = StoredObject(
                object=None if doc is None else orjson.loads(doc),
                resource_version=rv,
                audit_id=audit_id,
                time=when,
                deleted=bool(deleted),
                certificate_sans=tuple(orjson.loads(sans)) if sans else None,
            )
    return found


def _scan(db: sqlite3.Connection, prefix: str, limit: int) -> dict[str, StoredObject]:
    # Keys sort byte-wise: every key with the prefix lies in [prefix, prefix + U+10FFFF).
    rows = db.execute(
        "SELECT key FROM objects WHERE key >= ? AND key < ? ORDER BY key LIMIT ?",
        (prefix, prefix + "\U0010ffff", limit),
    )
    return _get_many(db, [row[0] for row in rows])


def _present(db: sqlite3.Connection, keys: list[str], now: float) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(keys):
        marks = ",".join("?" * len(chunk))
        query = f"SELECT key FROM dedupe WHERE expires > ? AND key IN ({marks})"  # noqa: S608 - only placeholders
        found.update(row[0] for row in db.execute(query, [now, *chunk]))
    return found


def _insert_keys(db: sqlite3.Connection, rows: list[tuple[str, float]]) -> None:
    db.execute("BEGIN IMMEDIATE")
    try:
        db.executemany("INSERT OR REPLACE INTO dedupe VALUES (?, ?)", rows)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _evict(db: sqlite3.Connection, now: float, max_age_s: float, max_objects: int) -> None:
    db.execute("DELETE FROM dedupe WHERE expires <= ?", (now,))
    db.execute("DELETE FROM objects WHERE updated < ?", (now - max_age_s,))
    db.execute(
        "DELETE FROM objects WHERE key IN (SELECT key FROM objects ORDER BY updated DESC LIMIT -1 OFFSET ?)",
        (max_objects,),
    )
