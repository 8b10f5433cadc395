"""Who may post events: client certificates (mutual TLS) and bearer tokens.

Either method, or both (``require: all``), as the config enables. A request without valid
credentials gets 401; a client certificate that verified but is not on the allow-list gets
403. Tokens are compared in constant time against every configured token, and they are
re-read when their files change, so old and new are valid together during a rotation.
Nothing here ever logs or echoes a credential.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import structlog

from webhook.core.files import read_secret_file
from webhook.core.patterns import Matcher
from webhook.errors import ConfigError, ForbiddenError, UnauthorizedError
from webhook.sources.base import Principal

__all__ = ["Authenticator", "cert_names"]

log = structlog.get_logger(__name__)
_MAX_TOKEN_FILE_BYTES = 1024 * 1024  # tokens, one a line: far below

_MIN_TOKEN_LENGTH = 16
_MIN_DISTINCT = 8  # "aaaaaaaaaaaaaaaa" is long enough but guessable; random tokens pass at once


def cert_names(peercert: Mapping[str, Any]) -> tuple[str, ...]:
    """The subject common name and DNS/URI/IP SANs of a verified peer certificate."""
    names: list[str] = []
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                names.append(value)
    for kind, value in peercert.get("subjectAltName", ()):
        if kind in ("DNS", "URI", "IP Address"):
            names.append(value)
    return tuple(names)


class Authenticator:
    def __init__(
        self,
        *,
        token_files: Sequence[Path] = (),
        client_certs: bool = False,
        allowed_subjects: Sequence[str] = (),
        require: Literal["any", "all"] = "any",
    ) -> None:
        self._token_files = tuple(token_files)
        self._client_certs = client_certs
        self._allowed = Matcher(tuple(allowed_subjects)) if allowed_subjects else None
        self._require = require
        self._tokens: tuple[bytes, ...] = ()
        self._fingerprint: str | None = None
        if self._token_files:
            self.reload_tokens(strict=True)

    @property
    def enabled(self) -> bool:
        return self._client_certs or bool(self._token_files)

    def reload_tokens(self, *, strict: bool = False) -> bool:
        """Re-read the token files if they changed; True when the set of tokens changed."""
        tokens: list[bytes] = []
        digest = hashlib.sha256()
        try:
            for path in self._token_files:
                data = read_secret_file(path, "bearer token file", max_bytes=_MAX_TOKEN_FILE_BYTES)
                digest.update(data)
                tokens.extend(line.strip() for line in data.splitlines() if line.strip())
        except OSError as exc:
            if strict:
                raise ConfigError(f"cannot read bearer token file: {exc.strerror}") from None
            log.warning("auth.token_reload_failed", error=exc.strerror)
            return False
        except ConfigError as exc:
            if strict:
                raise
            log.warning("auth.token_reload_failed", error=exc.message)
            return False
        if not tokens:
            if strict:
                raise ConfigError("bearer token files hold no token")
            log.warning("auth.token_reload_failed", error="no token")
            return False
        if any(len(token) < _MIN_TOKEN_LENGTH or len(set(token)) < _MIN_DISTINCT for token in tokens):
            if strict:
                raise ConfigError(
                    f"bearer tokens must be at least {_MIN_TOKEN_LENGTH} characters with at least "
                    f"{_MIN_DISTINCT} different ones (e.g. head -c 32 /dev/urandom | base64)"
                )
            log.warning("auth.token_reload_failed", error="token too weak")
            return False
        fingerprint = digest.hexdigest()
        if fingerprint == self._fingerprint:
            return False
        changed = self._fingerprint is not None
        self._tokens, self._fingerprint = tuple(tokens), fingerprint
        if changed:
            log.info("auth.tokens_reloaded", tokens=len(tokens))
        return True

    def _token_ok(self, authorization: str | None) -> bool | None:
        """None when no token was sent; else whether it is one of ours."""
        if not authorization:
            return None
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            return False
        # aiohttp decodes header bytes that are not UTF-8 as surrogate escapes: those bytes are
        # compared as sent (and never match a token, which is read from a file as bytes).
        try:
            offered = credential.strip().encode("utf-8", "surrogateescape")
        except UnicodeError:  # a lone surrogate no wire byte decodes to: not one of ours either
            return False
        match = False
        for token in self._tokens:  # no early exit: the time taken does not depend on which
            match |= hmac.compare_digest(offered, token)
        return match

    def _cert_ok(self, peercert: Mapping[str, Any] | None) -> bool | None:
        """None when no certificate was presented; else whether its subject is allowed.

        The TLS layer has already verified a presented certificate against the CA.
        """
        if not peercert:
            return None
        if self._allowed is None:
            return True
        return any(self._allowed(name) for name in cert_names(peercert))

    def authenticate(self, *, authorization: str | None, peercert: Mapping[str, Any] | None) -> Principal:
        """Return the principal or raise UnauthorizedError (401) / ForbiddenError (403)."""
        if not self.enabled:
            return Principal("none", "")
        results: dict[str, bool | None] = {}
        if self._client_certs:
            results["client-cert"] = self._cert_ok(peercert)
        if self._token_files:
            results["token"] = self._token_ok(authorization)
        passed = [method for method, ok in results.items() if ok]
        if passed and (self._require == "any" or len(passed) == len(results)):
            method = passed[0]
            return Principal(method, _subject(peercert) if method == "client-cert" else "token")
        if results.get("client-cert") is False:  # authenticated by the CA, but not allowed
            raise ForbiddenError("client certificate is not allowed to post audit events")
        raise UnauthorizedError(self._wanted)

    @property
    def _wanted(self) -> str:
        """What a request must bring, as configured: said in every 401."""
        if self._client_certs and self._token_files:
            both = "and a valid bearer token are" if self._require == "all" else "or a valid bearer token is"
            return f"a valid client certificate {both} required"
        return (
            "a valid client certificate is required"
            if self._client_certs
            else "a valid bearer token is required"
        )


def _subject(peercert: Mapping[str, Any] | None) -> str:
    names = cert_names(peercert or {})
    return names[0] if names else ""
