"""The OIDC token Pub/Sub attaches to every push: who sent it, proven before the body is read.

A push subscription with ``--push-auth-service-account`` sends ``Authorization: Bearer <JWT>``,
an RS256 ID token that Google signs for that service account, with ``aud`` the subscription's
``--push-auth-token-audience``. Anyone can mint such a token for their own service account, so
the signature alone proves nothing: the audience must be ours and the email one we listed.

::

    PushAuthError                 push-auth          401
    ├── MissingTokenError         missing-token      401  no Authorization header
    ├── MalformedTokenError       malformed-token    401  not a Bearer JWT
    ├── BadAlgorithmError         bad-algorithm      401  not RS256 (``none``, HS256, ...)
    ├── UnknownKeyError           unknown-key        401  no key with the token's ``kid``
    ├── BadSignatureError         bad-signature      401
    ├── MissingClaimError         missing-claim      401
    ├── WrongIssuerError          wrong-issuer       401
    ├── WrongAudienceError        wrong-audience     401
    ├── ExpiredTokenError         expired            401
    ├── NotYetValidError          not-yet-valid      401  issued in the future
    ├── EmailUnverifiedError      email-unverified   401
    ├── EmailNotAllowedError      email-not-allowed  403  a valid token, not one of ours
    └── KeysUnavailableError      keys-unavailable   503  Google's keys cannot be fetched

Messages name the claim and say what is wrong; they never quote the token or a claim's value.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Protocol

import jwt

from webhook.errors import WebhookError

__all__ = [
    "ISSUERS",
    "BadAlgorithmError",
    "BadSignatureError",
    "EmailNotAllowedError",
    "EmailUnverifiedError",
    "ExpiredTokenError",
    "KeySource",
    "KeysUnavailableError",
    "MalformedTokenError",
    "MissingClaimError",
    "MissingTokenError",
    "NotYetValidError",
    "PushAuthError",
    "PushVerifier",
    "UnknownKeyError",
    "VerifiedPush",
    "WrongAudienceError",
    "WrongIssuerError",
]

ISSUERS: Final = ("https://accounts.google.com", "accounts.google.com")
ALGORITHM: Final = "RS256"
_LEEWAY_S: Final = 60.0
_MAX_TOKEN: Final = 16 * 1024
_JWT: Final = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_REQUIRED: Final = ["iss", "aud", "exp", "iat", "email"]


class PushAuthError(WebhookError):
    """The push cannot be attributed to a listed service account; nothing of it is kept."""

    code: ClassVar[str] = "push-auth"
    http_status: ClassVar[int] = 401


class MissingTokenError(PushAuthError):
    code = "missing-token"


class MalformedTokenError(PushAuthError):
    code = "malformed-token"


class BadAlgorithmError(PushAuthError):
    code = "bad-algorithm"


class UnknownKeyError(PushAuthError):
    code = "unknown-key"


class BadSignatureError(PushAuthError):
    code = "bad-signature"


class MissingClaimError(PushAuthError):
    code = "missing-claim"


class WrongIssuerError(PushAuthError):
    code = "wrong-issuer"


class WrongAudienceError(PushAuthError):
    code = "wrong-audience"


class ExpiredTokenError(PushAuthError):
    code = "expired"


class NotYetValidError(PushAuthError):
    code = "not-yet-valid"


class EmailUnverifiedError(PushAuthError):
    code = "email-unverified"


class EmailNotAllowedError(PushAuthError):
    code = "email-not-allowed"
    http_status = 403


class KeysUnavailableError(PushAuthError):
    """Our side: no key set could be loaded yet; 503 has Pub/Sub deliver again later."""

    code = "keys-unavailable"
    http_status = 503


class KeySource(Protocol):
    """Where the RS256 public keys come from: a local JWKS file or Google's published set."""

    async def key(self, kid: str) -> jwt.PyJWK:
        """The key named ``kid``; raises UnknownKeyError, or KeysUnavailableError if none is known."""
        ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedPush:
    """What a verified token proves: the service account Pub/Sub pushed as, until when."""

    email: str
    subject: str | None
    audience: str
    expires_at: int


class PushVerifier:
    """Checks one push's ``Authorization`` header: signature, issuer, audience, email, times."""

    def __init__(
        self,
        *,
        audience: str,
        service_accounts: Collection[str],
        keys: KeySource,
        leeway_s: float = _LEEWAY_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.audience = audience
        self._allowed = frozenset(email.casefold() for email in service_accounts)
        self._keys = keys
        self._leeway_s = leeway_s
        self._clock = clock

    async def verify(self, authorization: str | None) -> VerifiedPush:
        """The verified push identity, or a ``PushAuthError`` saying which check failed."""
        token = _bearer(authorization)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise MalformedTokenError("the bearer token's header is not valid JWT") from None
        if header.get("alg") != ALGORITHM:
            raise BadAlgorithmError(f"the token is not signed with {ALGORITHM}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise UnknownKeyError("the token's header names no key (kid)")
        key = await self._keys.key(kid)
        claims = self._decode(token, key)
        self._check_times(claims)
        email = claims.get("email")
        if not isinstance(email, str) or not email:
            raise MissingClaimError("the token's email claim is missing or not a string")
        if claims.get("email_verified") not in (True, "true"):
            raise EmailUnverifiedError("the token's email_verified claim is not true")
        if email.casefold() not in self._allowed:
            raise EmailNotAllowedError("the token's email is not in sources.pubsub.service_accounts")
        subject = claims.get("sub")
        return VerifiedPush(
            email=email,
            subject=subject if isinstance(subject, str) else None,
            audience=self.audience,
            expires_at=int(_number(claims, "exp")),
        )

    def _decode(self, token: str, key: jwt.PyJWK) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key.key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=ISSUERS,
                # Times are checked against our own clock below, with the same leeway.
                options={
                    "require": _REQUIRED,
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "strict_aud": True,
                },
            )
        except jwt.InvalidSignatureError:
            raise BadSignatureError("the token's signature does not verify") from None
        except jwt.InvalidAlgorithmError:
            raise BadAlgorithmError(f"the token is not signed with {ALGORITHM}") from None
        except jwt.MissingRequiredClaimError as exc:
            raise MissingClaimError(f"the token has no {_claim_name(exc.claim)} claim") from None
        except jwt.InvalidIssuerError:
            raise WrongIssuerError("the token's iss is not Google's accounts issuer") from None
        except jwt.InvalidAudienceError:
            raise WrongAudienceError("the token's aud is not sources.pubsub.audience") from None
        except jwt.PyJWTError:
            raise MalformedTokenError("the bearer token is not a valid JWT") from None

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        now = self._clock()
        exp, iat, nbf = _number(claims, "exp"), _number(claims, "iat"), _number(claims, "nbf", 0)
        if exp + self._leeway_s <= now:
            raise ExpiredTokenError("the token has expired")
        if iat - self._leeway_s > now or nbf - self._leeway_s > now:
            raise NotYetValidError("the token is not valid yet (iat or nbf is in the future)")


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise MissingTokenError("the push has no Authorization header")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise MalformedTokenError("the Authorization header is not a Bearer token")
    if len(token) > _MAX_TOKEN or not _JWT.fullmatch(token):
        raise MalformedTokenError("the bearer token is not a signed JWT")
    return token


def _number(claims: Mapping[str, Any], name: str, default: float | None = None) -> float:
    value = claims.get(name, default)
    # JSON from Python's json module may hold NaN or Infinity, which every comparison would pass
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise MalformedTokenError(f"the token's {name} claim is not a number")
    return float(value)


def _claim_name(claim: object) -> str:
    """PyJWT names the missing claim; only our own required names are echoed."""
    return claim if isinstance(claim, str) and claim in _REQUIRED else "required"
