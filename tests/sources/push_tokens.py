"""Pub/Sub push tokens for tests: RS256 ID tokens signed with throwaway keys, the JWKS that
publishes them, and a real HTTPS key server on 127.0.0.1 with its own CA.

Tokens are issued at ``NOW`` unless a test gives another time (a server started as a
subprocess checks them against the host's clock), so no test depends on today's date.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Final

import jwt
import orjson
import trustme
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from pytest_aiohttp import AiohttpServer

__all__ = [
    "AUDIENCE",
    "NOW",
    "PUSHER",
    "Clock",
    "Endpoint",
    "KeyServer",
    "bearer",
    "claims",
    "jwk",
    "jwks",
    "private_key",
    "start_key_server",
    "token",
    "write_jwks",
]

NOW: Final = 1_800_000_000.0  # 2027-01-15, a fixed "now" for every token
AUDIENCE: Final = "https://audit.example.com/pubsub"
PUSHER: Final = "push@my-project.iam.gserviceaccount.com"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@cache
def private_key(name: str) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk(name: str) -> dict[str, Any]:
    """The public half of test key ``name`` as Google publishes its keys."""
    public = RSAAlgorithm.to_jwk(private_key(name).public_key(), as_dict=True)
    return {**public, "kid": name, "alg": "RS256", "use": "sig"}


def jwks(*names: str) -> bytes:
    return orjson.dumps({"keys": [jwk(n) for n in names]})


def write_jwks(path: Path, *names: str) -> Path:
    path.write_bytes(jwks(*names))
    return path


def claims(now: float = NOW, **changes: Any) -> dict[str, Any]:
    """Claims as Pub/Sub's token carries them, issued at ``now``; a value of None drops the claim."""
    base: dict[str, Any] = {
        "aud": AUDIENCE,
        "azp": "1234567890",
        "email": PUSHER,
        "email_verified": True,
        "exp": int(now) + 3590,
        "iat": int(now) - 10,
        "iss": "https://accounts.google.com",
        "sub": "1234567890",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def token(kid: str | None = "key-a", *, signer: str | None = None, now: float = NOW, **changes: Any) -> str:
    """A bearer token signed by key ``signer`` (default: the key ``kid`` names)."""
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(claims(now, **changes), private_key(signer or kid or "key-a"), "RS256", headers)


def bearer(raw: str) -> str:
    return f"Bearer {raw}"


@dataclass
class KeyServer:
    """A JWKS endpoint: what it serves and how often it was asked."""

    body: bytes
    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"Cache-Control": "public, max-age=600"})
    fetches: int = 0

    def app(self) -> web.Application:
        async def certs(_: web.Request) -> web.Response:
            self.fetches += 1
            return web.Response(
                status=self.status, body=self.body, headers=self.headers, content_type="application/json"
            )

        app = web.Application()
        app.router.add_get("/oauth2/v3/certs", certs)
        return app


@dataclass
class Endpoint:
    server: KeyServer
    url: str
    client_context: ssl.SSLContext


async def start_key_server(aiohttp_server: AiohttpServer, *names: str) -> Endpoint:
    """An HTTPS key server publishing ``names`` (key-a by default), and a client context that
    trusts its CA."""
    ca = trustme.CA()
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(served)
    keys = KeyServer(jwks(*(names or ("key-a",))))
    server: TestServer = await aiohttp_server(keys.app(), ssl=served)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return Endpoint(keys, f"https://127.0.0.1:{server.port}/oauth2/v3/certs", client)
