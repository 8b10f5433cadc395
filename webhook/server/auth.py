"""Who may post events: client certificates (mutual TLS) and bearer tokens, and for which cluster.

Either method, or both (``require: all``), as the config enables. A request without valid
credentials gets 401; a client certificate that verified but is not on the allow-list gets
403. Tokens are compared in constant time against every configured token, and they are
re-read when their files change, so old and new are valid together during a rotation.
A credential bound to a cluster (``server.auth.clusters``) proves that cluster; a global one
the configured ``cluster``. Nothing here ever logs or echoes a credential.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal

import structlog

from webhook.config import ClusterAuth, ServerConfig
from webhook.core.files import read_secret_file
from webhook.core.patterns import Matcher
from webhook.errors import ConfigError, ForbiddenError, UnauthorizedError
from webhook.sources.base import Principal

__all__ = ["Authenticator", "cert_names"]

log = structlog.get_logger(__name__)
_MAX_TOKEN_FILE_BYTES = 1024 * 1024  # tokens, one a line: far below

_MIN_TOKEN_LENGTH = 16
_MIN_DISTINCT = 8  # "aaaaaaaaaaaaaaaa" is long enough but guessable; random tokens pass at once

# Who a credential speaks for: an index into ``Authenticator._owners``; 0 is the global one.
_GLOBAL: Final = 0
_REFUSED: Final = -1  # presented, but not one of ours (or bound to more than one owner)


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
        clusters: Mapping[str, ClusterAuth] | None = None,
    ) -> None:
        bound = dict(clusters or {})
        self._owners: tuple[str | None, ...] = (None, *bound)
        self._token_files = (
            *((_GLOBAL, path) for path in token_files),
            *((owner, path) for owner, c in enumerate(bound.values(), 1) for path in c.bearer_token_files),
        )
        self._client_certs = client_certs
        self._allowed = Matcher(tuple(allowed_subjects)) if allowed_subjects else None
        self._bound_subjects = tuple(
            (owner, Matcher(c.client_subjects))
            for owner, c in enumerate(bound.values(), 1)
            if c.client_subjects
        )
        self._require = require
        self._tokens: tuple[tuple[bytes, int], ...] = ()  # (token, its owner + 1)
        self._fingerprint: str | None = None
        if self._token_files:
            self.reload_tokens(strict=True)

    @classmethod
    def for_server(cls, server: ServerConfig) -> Authenticator:
        """The authenticator the ``server:`` section describes; ``ConfigError`` for unusable
        token files."""
        auth = server.auth
        return cls(
            token_files=auth.bearer_token_files,
            client_certs=server.tls is not None and server.tls.client_ca_file is not None,
            allowed_subjects=auth.client_subjects,
            require=auth.require,
            clusters=auth.clusters,
        )

    @property
    def enabled(self) -> bool:
        return self._client_certs or bool(self._token_files)

    def reload_tokens(self, *, strict: bool = False) -> bool:
        """Re-read the token files if they changed; True when the set of tokens changed."""
        tokens: dict[bytes, tuple[int, Path]] = {}
        counts = dict.fromkeys((owner for owner, _ in self._token_files), 0)
        twice: tuple[Path, Path] | None = None
        digest = hashlib.sha256()
        try:
            for owner, path in self._token_files:
                data = read_secret_file(path, "bearer token file", max_bytes=_MAX_TOKEN_FILE_BYTES)
                digest.update(b"%d %d\n" % (owner, len(data)))
                digest.update(data)
                for line in data.splitlines():
                    if not (token := line.strip()):
                        continue
                    counts[owner] += 1
                    first = tokens.setdefault(token, (owner, path))
                    if first[0] != owner and twice is None:
                        twice = (first[1], path)
        except OSError as exc:
            return self._refuse(f"cannot read bearer token file: {exc.strerror}", exc.strerror, strict)
        except ConfigError as exc:
            return self._refuse(exc.message, exc.message, strict)
        if empty := [owner for owner, count in counts.items() if not count]:
            cluster = self._owners[empty[0]]
            where = "" if cluster is None else f" of cluster {cluster}"
            return self._refuse(f"bearer token files{where} hold no token", "no token", strict)
        if any(len(token) < _MIN_TOKEN_LENGTH or len(set(token)) < _MIN_DISTINCT for token in tokens):
            message = (
                f"bearer tokens must be at least {_MIN_TOKEN_LENGTH} characters with at least "
                f"{_MIN_DISTINCT} different ones (e.g. head -c 32 /dev/urandom | base64)"
            )
            return self._refuse(message, "token too weak", strict)
        if twice is not None:
            message = (
                f"bearer token files {twice[0]} and {twice[1]} hold the same token: a token may "
                "speak for one cluster only"
            )
            return self._refuse(message, "token bound to two clusters", strict)
        fingerprint = digest.hexdigest()
        if fingerprint == self._fingerprint:
            return False
        changed = self._fingerprint is not None
        self._tokens = tuple((token, owner + 1) for token, (owner, _) in tokens.items())
        self._fingerprint = fingerprint
        if changed:
            log.info("auth.tokens_reloaded", tokens=len(tokens))
        return True

    @staticmethod
    def _refuse(message: str, reason: str | None, strict: bool) -> bool:
        """Token files unusable: a ConfigError at start-up; later, the old tokens stay valid."""
        if strict:
            raise ConfigError(message)
        log.warning("auth.token_reload_failed", error=reason)
        return False

    def _token(self, authorization: str | None) -> int | None:
        """None when no token was sent; else the owner of the token, or ``_REFUSED``."""
        if not authorization:
            return None
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            return _REFUSED
        # aiohttp decodes header bytes that are not UTF-8 as surrogate escapes: those bytes are
        # compared as sent (and never match a token, which is read from a file as bytes).
        try:
            offered = credential.strip().encode("utf-8", "surrogateescape")
        except UnicodeError:  # a lone surrogate no wire byte decodes to: not one of ours either
            return _REFUSED
        found = 0  # the owner + 1 of the matching token: tokens are unique, so at most one
        for token, slot in self._tokens:  # no early exit: the time taken does not depend on which
            found |= hmac.compare_digest(offered, token) * slot
        return found - 1 if found else _REFUSED

    def _cert(self, peercert: Mapping[str, Any] | None) -> int | None:
        """None when no certificate was presented; else the owner whose subjects its names
        match, or ``_REFUSED`` when none does or more than one does.

        The TLS layer has already verified a presented certificate against the CA. Without any
        subject list, every certificate it verified speaks for the configured cluster; once
        clusters bind subjects, an empty global list no longer admits the rest."""
        if not peercert:
            return None
        if self._allowed is None and not self._bound_subjects:
            return _GLOBAL
        names = cert_names(peercert)
        owners = {owner for owner, allowed in self._bound_subjects if any(map(allowed, names))}
        if self._allowed is not None and any(map(self._allowed, names)):
            owners.add(_GLOBAL)
        return owners.pop() if len(owners) == 1 else _REFUSED

    def authenticate(self, *, authorization: str | None, peercert: Mapping[str, Any] | None) -> Principal:
        """Return the principal or raise UnauthorizedError (401) / ForbiddenError (403).

        The principal's ``clusters`` hold the one its credentials are bound to: a cluster's
        credential wins over a global one presented with it; two clusters' is a 403."""
        if not self.enabled:
            return Principal("none", "")
        results: dict[str, int | None] = {}
        if self._client_certs:
            results["client-cert"] = self._cert(peercert)
        if self._token_files:
            results["token"] = self._token(authorization)
        passed = {method: owner for method, owner in results.items() if owner is not None and owner >= 0}
        if passed and (self._require == "any" or len(passed) == len(results)):
            bound = set(passed.values()) - {_GLOBAL}
            if len(bound) > 1:
                raise ForbiddenError(
                    "the client certificate and the bearer token speak for different clusters"
                )
            owner = bound.pop() if bound else _GLOBAL
            method = next(m for m, o in passed.items() if o == owner)
            name = _subject(peercert) if method == "client-cert" else "token"
            return Principal(method, name, _bound(self._owners[owner]))
        if results.get("client-cert") == _REFUSED:  # authenticated by the CA, but not allowed
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


def _bound(cluster: str | None) -> frozenset[str] | None:
    """A cluster's credential speaks for that cluster alone; a global one leaves it to the config."""
    return None if cluster is None else frozenset((cluster,))
