"""The state store in Redis, for several replicas behind one Service.

Keys are namespaced per cluster (``<prefix>:<cluster>:obj:…`` and ``…:dedupe:…``) and expire;
another cluster's objects (``cluster_key``) live under that cluster's name, where a receiver
configured with ``cluster: <name>`` keeps them too. Dedupe keys are record ids, which already
tell clusters apart.
A dedupe key is claimed with ``SET NX`` and a short TTL before the batch is written, made
durable (full TTL) once the spool has it, or deleted if the write failed: a retry that lands
on another replica is recognised, and a replica that dies mid-batch blocks nobody for long.
Objects are replaced by a Lua script that keeps the newer version (see ``is_newer``).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from webhook.errors import StateError
from webhook.state.base import StateStore, StoredObject, cluster_key, split_key

if TYPE_CHECKING:
    from webhook.state.settings import StateConfig

__all__ = ["RedisStore", "build"]

_PENDING_S: Final = 30.0  # shorter than the apiserver's retry schedule (~10, 16, 26, 35 s)

# KEYS[1] the object; ARGV: rv, time, deleted ("1"/"0"), audit_id, doc ("" = none), ttl ms,
# certificate SANs (JSON, "" = none).
_PUT_IF_NEWER: Final = """
local cur = redis.call('HMGET', KEYS[1], 'rv', 'time', 'deleted')
local newer = true
if cur[1] or cur[2] then
  local a, b = tonumber(ARGV[1]), tonumber(cur[1])
  if a and b and string.match(ARGV[1], '^%d+$') and string.match(cur[1], '^%d+$') then
    newer = a > b or (a == b and ARGV[3] == '1' and cur[3] ~= '1')
  else
    newer = ARGV[2] > (cur[2] or '')
  end
end
if newer then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'rv', ARGV[1], 'time', ARGV[2], 'deleted', ARGV[3],
             'audit_id', ARGV[4], 'doc', ARGV[5], 'sans', ARGV[7])
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
  return 1
end
return 0
"""
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def build(config: StateConfig, *, data_dir: Path, cluster: str, dedupe_ttl_s: float) -> StateStore:
    return RedisStore(
        url=config.url,
        password_file=config.password_file,
        key_prefix=config.key_prefix,
        cluster=cluster,
        max_age_s=config.max_age_s,
        dedupe_ttl_s=dedupe_ttl_s,
        timeout_s=config.timeout_s,
    )


class RedisStore:
    name = "redis"
    remote = True

    def __init__(
        self,
        *,
        url: str,
        password_file: Path | None,
        key_prefix: str,
        cluster: str,
        max_age_s: float,
        dedupe_ttl_s: float,
        timeout_s: float,
    ) -> None:
        self._url = url
        self._password_file = password_file
        self._key_prefix = key_prefix
        self._cluster = cluster
        self._prefix = f"{key_prefix}:{cluster}:"
        self._max_age_ms = int(max_age_s * 1000)
        self._ttl_ms = int(dedupe_ttl_s * 1000)
        self._timeout_s = timeout_s
        self._token = "pending:" + secrets.token_hex(8)  # this replica's claims
        self._client: aioredis.Redis | None = None
        self._error: str | None = None

    async def open(self) -> None:
        password = None
        if self._password_file is not None:
            try:
                password = self._password_file.read_text("utf-8").strip()
            except OSError as exc:
                raise StateError(f"cannot read state.password_file: {exc.strerror}") from None
        self._client = aioredis.Redis.from_url(
            self._url,
            password=password,
            socket_timeout=self._timeout_s,
            socket_connect_timeout=self._timeout_s,
            decode_responses=False,
        )
        self._put = self._client.register_script(_PUT_IF_NEWER)
        self._release = self._client.register_script(_RELEASE)

    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            raise StateError("state store is closed")
        return self._client

    def _fail(self, exc: Exception) -> StateError:
        self._error = type(exc).__name__
        return StateError(f"state store redis failed: {type(exc).__name__}")

    async def get_many(self, keys: Sequence[str]) -> dict[str, StoredObject]:
        if not keys:
            return {}
        fields = (b"rv", b"time", b"deleted", b"audit_id", b"doc", b"sans")
        try:
            async with self._redis().pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hmget(self._object(key), fields)
                rows: list[list[bytes | None]] = await pipe.execute()
        except RedisError as exc:
            raise self._fail(exc) from None
        self._error = None
        found: dict[str, StoredObject] = {}
        for key, (rv, when, deleted, audit_id, doc, sans) in zip(keys, rows, strict=True):
            if audit_id is None:
                continue
            found[key] = StoredObject(
                object=orjson.loads(doc) if doc else None,
                resource_version=rv.decode() if rv else None,
                audit_id=audit_id.decode(),
                time=when.decode() if when else None,
                deleted=deleted == b"1",
                certificate_sans=tuple(orjson.loads(sans)) if sans else None,
            )
        return found

    async def put_many(self, items: Mapping[str, StoredObject]) -> None:
        if not items:
            return
        try:
            async with self._redis().pipeline(transaction=False) as pipe:
                for key, item in items.items():
                    args: list[Any] = [
                        item.resource_version or "",
                        item.time or "",
                        "1" if item.deleted else "0",
                        item.audit_id,
                        b"" if item.object is None else orjson.dumps(item.object),
                        self._max_age_ms,
                        b"" if item.certificate_sans is None else orjson.dumps(item.certificate_sans),
                    ]
                    await self._put(keys=[self._object(key)], args=args, client=pipe)
                await pipe.execute()
        except RedisError as exc:
            raise self._fail(exc) from None

    def _object(self, key: str) -> str:
        cluster, local = split_key(key)
        return f"{self._key_prefix}:{cluster or self._cluster}:obj:{local}"

    async def scan(self, prefix: str, *, limit: int) -> dict[str, StoredObject]:
        cluster, local = split_key(prefix)
        head = f"{self._key_prefix}:{cluster or self._cluster}:obj:"
        pattern = _glob_escape(head + local) + "*"
        keys: list[str] = []
        try:
            async for raw in self._redis().scan_iter(match=pattern, count=500):
                keys.append(cluster_key(cluster, raw.decode()[len(head) :]))
                if len(keys) >= limit:
                    break
        except RedisError as exc:
            raise self._fail(exc) from None
        return await self.get_many(keys)

    async def claim(self, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        try:
            async with self._redis().pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.set(self._prefix + "dedupe:" + key, self._token, nx=True, px=int(_PENDING_S * 1000))
                claimed: list[bool | None] = await pipe.execute()
        except RedisError as exc:
            raise self._fail(exc) from None
        self._error = None
        return {key for key, ok in zip(keys, claimed, strict=True) if not ok}

    async def commit(self, keys: Iterable[str]) -> None:
        try:
            async with self._redis().pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.set(self._prefix + "dedupe:" + key, b"done", px=self._ttl_ms)
                await pipe.execute()
        except RedisError as exc:
            raise self._fail(exc) from None

    async def release(self, keys: Iterable[str]) -> None:
        try:
            async with self._redis().pipeline(transaction=False) as pipe:
                for key in keys:
                    await self._release(
                        keys=[self._prefix + "dedupe:" + key], args=[self._token], client=pipe
                    )
                await pipe.execute()
        except RedisError as exc:
            raise self._fail(exc) from None

    async def problem(self) -> str | None:
        try:
            await self._redis().ping()
        except RedisError as exc:
            return type(exc).__name__
        return None

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def _glob_escape(text: str) -> str:
    """Redis MATCH patterns treat ``*?[]\\`` specially; keys may contain them (names cannot)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
