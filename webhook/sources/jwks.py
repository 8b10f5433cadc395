"""The public keys that push tokens are checked against: a local JWKS file, or Google's set.

Google rotates its signing keys every few days and publishes the next one before using it, with
a ``Cache-Control: max-age`` of some hours. So the fetched set is kept until that age (bounded
both ways), refreshed early when a token names a key we do not have, and never fetched more
than once per ``min_refresh_s``: a flood of tokens with made-up ``kid``s costs one request to
Google per interval, not one per push. When a refresh fails, the keys we have stay in use.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import aiohttp
import jwt
import orjson
import structlog

from webhook.errors import ConfigError
from webhook.sources.oidc import ALGORITHM, KeysUnavailableError, UnknownKeyError

__all__ = ["GOOGLE_CERTS_URL", "JwksError", "JwksFile", "JwksUrl", "parse_jwks"]

log = structlog.get_logger(__name__)

GOOGLE_CERTS_URL: Final = "https://www.googleapis.com/oauth2/v3/certs"
_MAX_BYTES: Final = 1024 * 1024
_MIN_AGE_S: Final = 60.0
_MAX_AGE_S: Final = 24 * 3600.0
_DEFAULT_AGE_S: Final = 3600.0
_MAX_AGE: Final = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d{1,10})", re.IGNORECASE)


class JwksError(ValueError):
    """A key set that cannot be used; the message names what is wrong, never a key."""


def parse_jwks(data: bytes) -> dict[str, jwt.PyJWK]:
    """The RS256 signing keys of a JWKS document by ``kid``; other keys are skipped."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise JwksError("the key set is not JSON") from None
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(keys, list):
        raise JwksError("the key set has no keys list")
    found: dict[str, jwt.PyJWK] = {}
    for item in keys:
        if not isinstance(item, dict) or item.get("kty") != "RSA":
            continue
        kid = item.get("kid")
        if not isinstance(kid, str) or not kid or item.get("alg", ALGORITHM) != ALGORITHM:
            continue
        if item.get("use", "sig") != "sig":
            continue
        try:
            found[kid] = jwt.PyJWK(item, algorithm=ALGORITHM)
        except jwt.PyJWTError:
            continue  # its message quotes the key; one bad key does not spoil the others
    if not found:
        raise JwksError("the key set holds no RS256 signing key with a kid")
    return found


class JwksFile:
    """Keys from a local JWKS file (``sources.pubsub.jwks_file``), re-read when it changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys, self._mtime = self._read()

    def __len__(self) -> int:
        return len(self._keys)

    def _read(self) -> tuple[dict[str, jwt.PyJWK], int]:
        where = "sources.pubsub.jwks_file"
        try:
            mtime = self.path.stat().st_mtime_ns
            data = self.path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read {self.path}: {exc.strerror}") from None
        try:
            return parse_jwks(data), mtime
        except JwksError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    async def key(self, kid: str) -> jwt.PyJWK:
        found = self._keys.get(kid)
        if found is None:
            await asyncio.to_thread(self._reload)
            found = self._keys.get(kid)
        if found is None:
            raise UnknownKeyError("the token is signed by a key that is not in sources.pubsub.jwks_file")
        return found

    def _reload(self) -> None:
        try:
            if self.path.stat().st_mtime_ns == self._mtime:
                return
            self._keys, self._mtime = self._read()
        except (OSError, ConfigError) as exc:
            log.warning("pubsub.jwks_reload_failed", error=type(exc).__name__)
            return
        log.info("pubsub.jwks_reloaded", keys=len(self._keys))

    async def aclose(self) -> None:
        return None


class JwksUrl:
    """Keys fetched over HTTPS (Google's by default), cached per ``Cache-Control: max-age``."""

    def __init__(
        self,
        url: str = GOOGLE_CERTS_URL,
        *,
        ssl_context: ssl.SSLContext | None = None,
        min_refresh_s: float = 30.0,
        timeout_s: float = 5.0,
        trust_env: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._trust_env = trust_env
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._min_refresh_s = min_refresh_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fresh_until = float("-inf")
        self._last_attempt = float("-inf")
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None

    async def key(self, kid: str) -> jwt.PyJWK:
        if self._clock() >= self._fresh_until or kid not in self._keys:
            await self.refresh()
        found = self._keys.get(kid)
        if found is not None:
            return found
        if not self._keys:
            raise KeysUnavailableError(
                "no signing keys could be fetched yet (see pubsub.jwks_refresh_failed)"
            )
        raise UnknownKeyError("the token is signed by a key that is not in the published key set")

    async def refresh(self) -> bool:
        """Fetch the key set unless one was fetched or tried within ``min_refresh_s``.

        True if the set was replaced. Concurrent callers share one fetch."""
        started = self._clock()
        async with self._lock:
            if self._last_attempt >= started or started - self._last_attempt < self._min_refresh_s:
                return False  # someone else just fetched (or tried): do not hammer the server
            self._last_attempt = self._clock()
            try:
                keys, max_age = await self._fetch()
            except JwksError as exc:
                log.warning("pubsub.jwks_refresh_failed", error=str(exc), keys_kept=len(self._keys))
                return False
            self._keys = keys
            self._fresh_until = self._clock() + max_age
        log.info("pubsub.jwks_refreshed", keys=len(keys), max_age_s=int(max_age))
        return True

    async def _fetch(self) -> tuple[dict[str, jwt.PyJWK], float]:
        if self._session is None:
            # trust_env: a cluster that reaches Google through a proxy names it in HTTPS_PROXY
            self._session = aiohttp.ClientSession(timeout=self._timeout, trust_env=self._trust_env)
        try:
            async with self._session.get(self.url, ssl=self._ssl, allow_redirects=False) as resp:
                if resp.status != 200:
                    raise JwksError(f"the key server answered {resp.status}")
                data = bytearray()
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    data += chunk
                    if len(data) > _MAX_BYTES:
                        raise JwksError("the key set is larger than 1 MiB")
                headers: Mapping[str, str] = resp.headers
        except aiohttp.ClientSSLError:
            raise JwksError("the key server's certificate is not trusted") from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise JwksError(f"the key server cannot be reached ({type(exc).__name__})") from None
        return parse_jwks(bytes(data)), _max_age(headers)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _max_age(headers: Mapping[str, Any]) -> float:
    """How long a fetched key set stays fresh: ``max-age`` minus ``Age``, within sane bounds."""
    control = headers.get("Cache-Control")
    if not isinstance(control, str):
        return _DEFAULT_AGE_S
    if re.search(r"no-cache|no-store", control, re.IGNORECASE):
        return _MIN_AGE_S
    match = _MAX_AGE.search(control)
    if match is None:
        return _DEFAULT_AGE_S
    age = headers.get("Age")
    spent = int(age) if isinstance(age, str) and age.isdigit() else 0
    return min(max(float(int(match.group(1)) - spent), _MIN_AGE_S), _MAX_AGE_S)
