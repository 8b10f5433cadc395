"""Push-token verification: RS256 ID tokens checked against a JWKS file or a JWKS URL over TLS.

Tokens are signed here with throwaway RSA keys and checked at a fixed time, so no test depends
on today's date. The key server is a real HTTPS server on 127.0.0.1 with its own CA.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from pytest_aiohttp import AiohttpServer
from structlog.testing import capture_logs

from tests.conftest import scenario_secrets
from tests.sources.push_tokens import (
    AUDIENCE,
    NOW,
    PUSHER,
    Clock,
    Endpoint,
    bearer,
    claims,
    jwk,
    jwks,
    private_key,
    start_key_server,
    token,
    write_jwks,
)
from webhook.errors import ConfigError
from webhook.sources.jwks import JwksFile, JwksUrl, parse_jwks
from webhook.sources.oidc import KeySource, PushAuthError, PushVerifier, VerifiedPush

MARKER: Final = "m4rk3r-never-echoed"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def hs256_with_public_key(kid: str = "key-a") -> str:
    """The classic confusion attack: HMAC keyed with the RSA public key's PEM."""
    pem = (
        private_key(kid)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    head = _b64(orjson.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}))
    body = _b64(orjson.dumps(claims()))
    signature = hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(signature)}"


def unsigned(kid: str = "key-a") -> str:
    head = _b64(orjson.dumps({"alg": "none", "typ": "JWT", "kid": kid}))
    return f"{head}.{_b64(orjson.dumps(claims()))}."


def verifier(keys: KeySource, **options: Any) -> PushVerifier:
    return PushVerifier(audience=AUDIENCE, service_accounts=[PUSHER], keys=keys, clock=Clock(NOW), **options)


# --- a local JWKS file ---------------------------------------------------------------------------


async def test_a_token_signed_by_a_key_in_the_file_verifies(tmp_path: Path) -> None:
    """The happy path: the push's identity comes back."""
    keys = JwksFile(write_jwks(tmp_path / "jwks.json", "key-a"))

    found = await verifier(keys).verify(bearer(token()))

    assert found == VerifiedPush(
        email=PUSHER, subject="1234567890", audience=AUDIENCE, expires_at=int(NOW) + 3590
    )


async def test_the_file_is_read_again_when_a_new_kid_appears(tmp_path: Path) -> None:
    """Key rotation with a file: the replaced file is picked up for the unknown kid."""
    path = write_jwks(tmp_path / "jwks.json", "key-a")
    keys = JwksFile(path)
    check = verifier(keys)
    with pytest.raises(PushAuthError) as before:
        await check.verify(bearer(token("key-b")))
    assert before.value.code == "unknown-key"

    write_jwks(path, "key-a", "key-b")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000_000))

    assert (await check.verify(bearer(token("key-b")))).email == PUSHER


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not json", "not JSON"),
        (b'{"keys": {}}', "no keys list"),
        (orjson.dumps({"keys": [{"kty": "EC", "kid": "e", "crv": "P-256"}]}), "no RS256 signing key"),
        (orjson.dumps({"keys": [{**jwk("key-a"), "alg": "RS512"}]}), "no RS256 signing key"),
        (orjson.dumps({"keys": [{**jwk("key-a"), "use": "enc"}]}), "no RS256 signing key"),
        (orjson.dumps({"keys": [{"kty": "RSA", "kid": MARKER, "n": "!!", "e": "AQAB"}]}), "no RS256"),
    ],
)
def test_an_unusable_jwks_file_fails_at_start_naming_the_option(
    tmp_path: Path, content: bytes, message: str
) -> None:
    """A broken jwks_file is a ConfigError naming the option, never quoting the file."""
    path = tmp_path / "jwks.json"
    path.write_bytes(content)

    with pytest.raises(ConfigError, match=message) as info:
        JwksFile(path)

    assert "sources.pubsub.jwks_file" in info.value.message
    assert MARKER not in info.value.message


def test_a_missing_jwks_file_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sources\.pubsub\.jwks_file: cannot read"):
        JwksFile(tmp_path / "nope.json")


def test_other_keys_in_a_set_do_not_spoil_the_good_one() -> None:
    """EC keys, encryption keys and malformed RSA keys are skipped, the RS256 key kept."""
    doc = {
        "keys": [
            {"kty": "EC", "kid": "e", "crv": "P-256", "x": "AA", "y": "AA"},
            {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
            {**jwk("key-b"), "use": "enc"},
            jwk("key-a"),
        ]
    }
    assert list(parse_jwks(orjson.dumps(doc))) == ["key-a"]


# --- every check ----------------------------------------------------------------------------------

BAD_TOKENS: Final[list[tuple[str, Callable[[], str | None], str]]] = [
    ("no header", lambda: None, "missing-token"),
    ("empty header", lambda: "", "missing-token"),
    ("basic auth", lambda: f"Basic {_b64(b'user:' + MARKER.encode())}", "malformed-token"),
    ("bearer without token", lambda: "Bearer ", "malformed-token"),
    ("not a jwt", lambda: f"Bearer {MARKER}", "malformed-token"),
    (
        "header not json",
        lambda: f"Bearer {_b64(MARKER.encode())}.{_b64(b'{}')}.{_b64(b'x')}",
        "malformed-token",
    ),
    ("alg none", lambda: bearer(unsigned()), "bad-algorithm"),
    ("hs256 keyed with the public key", lambda: bearer(hs256_with_public_key()), "bad-algorithm"),
    ("no kid", lambda: bearer(token(None, signer="key-a")), "unknown-key"),
    ("unknown kid", lambda: bearer(token("key-z")), "unknown-key"),
    ("signed by another key", lambda: bearer(token("key-a", signer="key-b")), "bad-signature"),
    ("tampered claims", lambda: bearer(_tampered(token())), "bad-signature"),
    ("wrong audience", lambda: bearer(token(aud=f"https://{MARKER}.example/pubsub")), "wrong-audience"),
    ("audience list", lambda: bearer(token(aud=[AUDIENCE, MARKER])), "wrong-audience"),
    ("no audience", lambda: bearer(token(aud=None)), "missing-claim"),
    ("wrong issuer", lambda: bearer(token(iss=f"https://{MARKER}.example")), "wrong-issuer"),
    ("no issuer", lambda: bearer(token(iss=None)), "missing-claim"),
    ("expired", lambda: bearer(token(exp=int(NOW) - 61, iat=int(NOW) - 3661)), "expired"),
    ("no expiry", lambda: bearer(token(exp=None)), "missing-claim"),
    ("issued in the future", lambda: bearer(token(iat=int(NOW) + 120, exp=int(NOW) + 3720)), "not-yet-valid"),
    ("not before in the future", lambda: bearer(token(nbf=int(NOW) + 120)), "not-yet-valid"),
    ("exp not a number", lambda: bearer(token(exp=MARKER)), "malformed-token"),
    ("exp infinite", lambda: bearer(token(exp=float("inf"))), "malformed-token"),
    ("exp not a number at all", lambda: bearer(token(exp=float("nan"))), "malformed-token"),
    ("no email", lambda: bearer(token(email=None)), "missing-claim"),
    (
        "email not listed",
        lambda: bearer(token(email=f"{MARKER}@evil.iam.gserviceaccount.com")),
        "email-not-allowed",
    ),
    ("email unverified", lambda: bearer(token(email_verified=False)), "email-unverified"),
    ("email_verified missing", lambda: bearer(token(email_verified=None)), "email-unverified"),
]


def _tampered(raw: str) -> str:
    head, _, rest = raw.partition(".")
    _, _, signature = rest.partition(".")
    return (
        f"{head}.{_b64(orjson.dumps(claims(email='other@my-project.iam.gserviceaccount.com')))}.{signature}"
    )


@pytest.mark.parametrize(("case", "make", "code"), BAD_TOKENS, ids=[c[0] for c in BAD_TOKENS])
async def test_every_bad_token_is_refused_with_its_own_code(
    tmp_path: Path, case: str, make: Callable[[], str | None], code: str
) -> None:
    """Each failed check has a kebab-case code; the message quotes neither token nor claim."""
    keys = JwksFile(write_jwks(tmp_path / "jwks.json", "key-a", "key-b"))
    authorization = make()

    with pytest.raises(PushAuthError) as info:
        await verifier(keys).verify(authorization)

    assert info.value.code == code
    assert info.value.http_status == (403 if code == "email-not-allowed" else 401)
    message = str(info.value)
    assert MARKER not in message
    assert PUSHER not in message
    assert AUDIENCE not in message
    sent = (authorization or "").partition(" ")[2]
    assert not sent or (sent not in message and sent[:20] not in message)


@pytest.mark.parametrize("issuer", ["https://accounts.google.com", "accounts.google.com"])
async def test_both_google_issuers_are_accepted(tmp_path: Path, issuer: str) -> None:
    keys = JwksFile(write_jwks(tmp_path / "jwks.json", "key-a"))
    assert (await verifier(keys).verify(bearer(token(iss=issuer)))).email == PUSHER


@pytest.mark.parametrize(
    ("exp", "iat"),
    [(int(NOW) - 30, int(NOW) - 3630), (int(NOW) + 3600, int(NOW) + 30)],
    ids=["expired-within-leeway", "issued-within-leeway"],
)
async def test_a_small_clock_skew_is_tolerated(tmp_path: Path, exp: int, iat: int) -> None:
    """Clocks differ by seconds: up to a minute either way is accepted."""
    keys = JwksFile(write_jwks(tmp_path / "jwks.json", "key-a"))
    assert (await verifier(keys).verify(bearer(token(exp=exp, iat=iat)))).email == PUSHER


async def test_the_service_account_list_is_case_insensitive(tmp_path: Path) -> None:
    keys = JwksFile(write_jwks(tmp_path / "jwks.json", "key-a"))
    check = PushVerifier(audience=AUDIENCE, service_accounts=[PUSHER.upper()], keys=keys, clock=Clock(NOW))
    assert (await check.verify(bearer(token()))).email == PUSHER


async def test_secret_values_in_claims_never_reach_a_message(tmp_path: Path) -> None:
    """A token whose claims carry the captures' secret values: refused, no value echoed."""
    keys = JwksFile(write_jwks(tmp_path / "jwks.json", "key-a"))
    check = verifier(keys)
    for secret in scenario_secrets():
        cases: list[dict[str, Any]] = [{"aud": secret}, {"iss": secret}, {"email": secret}, {"exp": secret}]
        for changes in cases:
            with pytest.raises(PushAuthError) as info:
                await check.verify(bearer(token(**changes)))
            assert secret not in str(info.value), changes.keys()


# --- Google's published keys, fetched over HTTPS --------------------------------------------------


@pytest.fixture
async def endpoint(aiohttp_server: AiohttpServer) -> Endpoint:
    return await start_key_server(aiohttp_server)


def fetcher(endpoint: Endpoint, clock: Clock, **options: Any) -> JwksUrl:
    return JwksUrl(endpoint.url, ssl_context=endpoint.client_context, clock=clock, trust_env=False, **options)


async def test_keys_are_fetched_once_and_cached(endpoint: Endpoint) -> None:
    """One fetch serves every push until the key set's max-age is reached."""
    clock = Clock(5000.0)
    keys = fetcher(endpoint, clock)
    check = verifier(keys)
    try:
        for _ in range(5):
            assert (await check.verify(bearer(token()))).email == PUSHER
        assert endpoint.server.fetches == 1

        clock.now += 599
        await check.verify(bearer(token()))
        assert endpoint.server.fetches == 1
        clock.now += 2
        await check.verify(bearer(token()))
        assert endpoint.server.fetches == 2
    finally:
        await keys.aclose()


@pytest.mark.parametrize(
    ("cache_control", "age", "fresh_s"),
    [
        ("public, max-age=1", None, 60),  # too short: at least a minute
        ("public, max-age=999999999", None, 86400),  # too long: at most a day
        ("no-cache", None, 60),
        (None, None, 3600),
        ("public, max-age=20000, must-revalidate", "19000", 1000),
    ],
)
async def test_the_max_age_is_honoured_within_bounds(
    endpoint: Endpoint, cache_control: str | None, age: str | None, fresh_s: int
) -> None:
    endpoint.server.headers = {
        k: v for k, v in {"Cache-Control": cache_control, "Age": age}.items() if v is not None
    }
    clock = Clock(5000.0)
    keys = fetcher(endpoint, clock)
    try:
        await keys.key("key-a")
        clock.now += fresh_s - 1
        await keys.key("key-a")
        assert endpoint.server.fetches == 1
        clock.now += 2
        await keys.key("key-a")
        assert endpoint.server.fetches == 2
    finally:
        await keys.aclose()


async def test_an_unknown_kid_refreshes_the_keys(endpoint: Endpoint) -> None:
    """Key rotation: a token signed by a newly published key verifies after one refresh."""
    clock = Clock(5000.0)
    keys = fetcher(endpoint, clock, min_refresh_s=30)
    check = verifier(keys)
    try:
        await check.verify(bearer(token("key-a")))
        endpoint.server.body = jwks("key-a", "key-b")
        clock.now += 31

        assert (await check.verify(bearer(token("key-b")))).email == PUSHER
        assert endpoint.server.fetches == 2
    finally:
        await keys.aclose()


async def test_a_flood_of_bogus_kids_costs_one_fetch_per_interval(endpoint: Endpoint) -> None:
    """Unknown kids refresh at most once per ``min_refresh_s``, however many arrive."""
    clock = Clock(5000.0)
    keys = fetcher(endpoint, clock, min_refresh_s=30)
    check = verifier(keys)
    try:
        await check.verify(bearer(token("key-a")))
        clock.now += 31
        for n in range(50):
            with pytest.raises(PushAuthError) as info:
                await check.verify(bearer(token(f"bogus-{n}", signer="key-a")))
            assert info.value.code == "unknown-key"
            clock.now += 0.1
        assert endpoint.server.fetches == 2
    finally:
        await keys.aclose()


async def test_a_failed_refresh_keeps_the_keys_we_have(endpoint: Endpoint) -> None:
    """Google down (500, then unreachable): tokens still verify against the cached keys."""
    clock = Clock(5000.0)
    keys = fetcher(endpoint, clock, min_refresh_s=30)
    check = verifier(keys)
    try:
        await check.verify(bearer(token()))
        endpoint.server.status = 500
        clock.now += 601  # past max-age: a refresh is due
        with capture_logs() as logs:
            assert (await check.verify(bearer(token()))).email == PUSHER
        assert endpoint.server.fetches == 2
        assert [e["event"] for e in logs] == ["pubsub.jwks_refresh_failed"]
        assert logs[0]["keys_kept"] == 1

        endpoint.server.body = b"<html>oops</html>"
        endpoint.server.status = 200
        clock.now += 31
        assert (await check.verify(bearer(token()))).email == PUSHER
        assert endpoint.server.fetches == 3

        endpoint.server.body = jwks("key-b")
        clock.now += 31
        assert (await check.verify(bearer(token("key-b")))).email == PUSHER
        with pytest.raises(PushAuthError, match="not in the published key set"):
            await check.verify(bearer(token("key-a")))
    finally:
        await keys.aclose()


async def test_no_keys_at_all_is_503_not_a_refusal(endpoint: Endpoint) -> None:
    """Before any key set is fetched, an outage is ours: Pub/Sub should deliver again."""
    endpoint.server.status = 503
    keys = fetcher(endpoint, Clock(5000.0))
    try:
        with pytest.raises(PushAuthError) as info:
            await verifier(keys).verify(bearer(token()))
        assert (info.value.code, info.value.http_status) == ("keys-unavailable", 503)
    finally:
        await keys.aclose()


async def test_an_untrusted_key_server_is_never_believed(endpoint: Endpoint) -> None:
    """Without the test CA the system trust store refuses the certificate: no keys."""
    keys = JwksUrl(endpoint.url, clock=Clock(5000.0), trust_env=False)
    try:
        with capture_logs() as logs, pytest.raises(PushAuthError) as info:
            await verifier(keys).verify(bearer(token()))
        assert info.value.code == "keys-unavailable"
        assert endpoint.server.fetches == 0
        assert logs[0]["error"] == "the key server's certificate is not trusted"
    finally:
        await keys.aclose()


async def test_an_oversized_key_set_is_refused(endpoint: Endpoint) -> None:
    endpoint.server.body = b'{"keys": [' + b" " * (1024 * 1024) + b"]}"
    keys = fetcher(endpoint, Clock(5000.0))
    try:
        with capture_logs() as logs, pytest.raises(PushAuthError):
            await keys.key("key-a")
        assert logs[0]["error"] == "the key set is larger than 1 MiB"
    finally:
        await keys.aclose()


async def test_concurrent_pushes_share_one_fetch(endpoint: Endpoint) -> None:
    """A burst of pushes at start-up waits for one fetch instead of starting one each."""
    keys = fetcher(endpoint, Clock(5000.0))
    check = verifier(keys)
    try:
        found = await asyncio.gather(*(check.verify(bearer(token())) for _ in range(20)))
        assert {f.email for f in found} == {PUSHER}
        assert endpoint.server.fetches == 1
    finally:
        await keys.aclose()
