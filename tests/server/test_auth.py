"""Authenticator decisions: which credentials pass, which get 401, which get 403."""

from __future__ import annotations

import contextlib
import hmac
from pathlib import Path
from typing import Any

import pytest

from webhook.errors import ConfigError, ForbiddenError, UnauthorizedError
from webhook.server.auth import Authenticator, cert_names

TOKEN = "a-token-of-sufficient-length-0001"
PEER = {
    "subject": ((("commonName", "kube-apiserver"),),),
    "subjectAltName": (("DNS", "apiserver.internal"), ("IP Address", "10.0.0.1")),
}


def _tokens(tmp_path: Path, *tokens: str) -> Path:
    path = tmp_path / "tokens"
    path.write_text("\n".join(tokens) + "\n")
    path.chmod(0o600)
    return path


def test_nothing_configured_lets_everything_through() -> None:
    """Without TLS auth configured (loopback HTTP), requests are not authenticated."""
    assert Authenticator().authenticate(authorization=None, peercert=None).method == "none"


def test_cert_names_reads_cn_and_sans() -> None:
    """The subject CN and the DNS/IP SANs are the names an allow-list matches."""
    assert cert_names(PEER) == ("kube-apiserver", "apiserver.internal", "10.0.0.1")


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (f"Bearer {TOKEN}", True),
        (f"bearer {TOKEN}", True),
        (f"Bearer {TOKEN}x", False),
        (f"Basic {TOKEN}", False),
        ("Bearer ", False),
        (None, False),
    ],
)
def test_bearer_tokens(tmp_path: Path, header: str | None, ok: bool) -> None:
    """Only the exact token, with the Bearer scheme, passes."""
    auth = Authenticator(token_files=[_tokens(tmp_path, TOKEN)])
    if ok:
        assert auth.authenticate(authorization=header, peercert=None).method == "token"
    else:
        with pytest.raises(UnauthorizedError) as caught:
            auth.authenticate(authorization=header, peercert=None)
        assert TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    ("allowed", "peer", "outcome"),
    [
        ((), PEER, "ok"),
        (("kube-apiserver",), PEER, "ok"),
        (("apiserver.*",), PEER, "ok"),
        (("someone-else",), PEER, 403),
        (("kube-apiserver",), None, 401),
        (("kube-apiserver",), {}, 401),
    ],
)
def test_client_certificates(allowed: tuple[str, ...], peer: dict[str, Any] | None, outcome: object) -> None:
    """A verified certificate passes if its subject is allowed, else 403; none at all is 401."""
    auth = Authenticator(client_certs=True, allowed_subjects=allowed)
    if outcome == "ok":
        principal = auth.authenticate(authorization=None, peercert=peer)
        assert principal.method == "client-cert"
        assert principal.name == "kube-apiserver"
    else:
        error = ForbiddenError if outcome == 403 else UnauthorizedError
        with pytest.raises(error):
            auth.authenticate(authorization=None, peercert=peer)


@pytest.mark.parametrize(
    ("require", "header", "peer", "outcome"),
    [
        ("any", f"Bearer {TOKEN}", None, "token"),
        ("any", None, PEER, "client-cert"),
        ("all", f"Bearer {TOKEN}", None, 401),
        ("all", None, PEER, 401),
        ("all", f"Bearer {TOKEN}", PEER, "client-cert"),
    ],
)
def test_combined_methods(
    tmp_path: Path, require: Any, header: str | None, peer: Any, outcome: object
) -> None:
    """`require: any` takes either credential; `require: all` needs both."""
    auth = Authenticator(token_files=[_tokens(tmp_path, TOKEN)], client_certs=True, require=require)
    if isinstance(outcome, str):
        assert auth.authenticate(authorization=header, peercert=peer).method == outcome
    else:
        with pytest.raises(UnauthorizedError):
            auth.authenticate(authorization=header, peercert=peer)


def test_token_files_are_checked_at_start(tmp_path: Path) -> None:
    """Missing, empty or short tokens stop the start instead of locking the apiserver out."""
    with pytest.raises(ConfigError):
        Authenticator(token_files=[tmp_path / "missing"])
    with pytest.raises(ConfigError):
        Authenticator(token_files=[_tokens(tmp_path, "")])
    with pytest.raises(ConfigError, match="at least 16"):
        Authenticator(token_files=[_tokens(tmp_path, "short")])


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o620, 0o666])
def test_token_files_readable_by_others_are_refused(tmp_path: Path, mode: int) -> None:
    """15(d): a token file others may read, or its group write, is refused like the fingerprint key."""
    path = _tokens(tmp_path, TOKEN)
    path.chmod(mode)
    with pytest.raises(ConfigError, match=f"mode {mode:04o}") as caught:
        Authenticator(token_files=[path])
    assert TOKEN not in str(caught.value)


def test_token_files_in_a_secret_volume_are_accepted(tmp_path: Path) -> None:
    """A 0440 file behind a symlink (a Kubernetes Secret volume with fsGroup) is fine."""
    path = _tokens(tmp_path, TOKEN)
    path.chmod(0o440)
    link = tmp_path / "link"
    link.symlink_to(path)
    auth = Authenticator(token_files=[link])
    assert auth.authenticate(authorization=f"Bearer {TOKEN}", peercert=None).method == "token"


def test_weak_tokens_are_refused(tmp_path: Path) -> None:
    """15(d): sixteen times the same character is long enough but no secret."""
    with pytest.raises(ConfigError, match="different ones") as caught:
        Authenticator(token_files=[_tokens(tmp_path, "a" * 16)])
    assert "aaaa" not in str(caught.value)


@pytest.mark.parametrize(
    "header",
    [
        "Bearer \udcff\udcfe-not-utf-8",  # how aiohttp hands over the bytes 0xff 0xfe
        f"Bearer {TOKEN}\udcff",
        "Bearer \ud800",  # a lone surrogate no wire byte decodes to
        "Bearer é-not-ascii",
    ],
)
def test_undecodable_authorization_is_401(tmp_path: Path, header: str) -> None:
    """A29: a non-UTF-8 or malformed Authorization header is a 401, not an internal error."""
    auth = Authenticator(token_files=[_tokens(tmp_path, TOKEN)])
    with pytest.raises(UnauthorizedError):
        auth.authenticate(authorization=header, peercert=None)


def test_a_bad_rotation_keeps_the_current_tokens(tmp_path: Path) -> None:
    """Emptying or breaking the token file at runtime keeps the tokens that work."""
    path = _tokens(tmp_path, TOKEN)
    auth = Authenticator(token_files=[path])
    path.write_text("")

    assert not auth.reload_tokens()
    assert auth.authenticate(authorization=f"Bearer {TOKEN}", peercert=None).method == "token"


@pytest.mark.parametrize(
    ("certs", "tokens", "require", "said"),
    [
        (True, True, "all", "a valid client certificate and a valid bearer token are required"),
        (True, True, "any", "a valid client certificate or a valid bearer token is required"),
        (True, False, "any", "a valid client certificate is required"),
        (False, True, "any", "a valid bearer token is required"),
    ],
)
def test_a_401_says_what_the_configuration_wants(
    tmp_path: Path, certs: bool, tokens: bool, require: Any, said: str
) -> None:
    """Under ``require: all`` a request with a certificate and no token is told both are needed."""
    files = [_tokens(tmp_path, TOKEN)] if tokens else []
    auth = Authenticator(token_files=files, client_certs=certs, require=require)

    with pytest.raises(UnauthorizedError) as refused:
        auth.authenticate(
            authorization=None, peercert=PEER if certs and require == "all" and tokens else None
        )

    assert str(refused.value.message) == said


def test_every_token_is_compared_whichever_matches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A35: the comparison takes the same path for a wrong token, a near miss and each valid one
    (constant-time ``compare_digest`` against every token, no early exit), so the answer's time
    says nothing about how much of a token was right."""
    tokens = [TOKEN, "second-token-of-sufficient-length", "third-token-of-sufficient-length!"]
    auth = Authenticator(token_files=[_tokens(tmp_path, *tokens)])
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counted(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counted)
    for offered in [*tokens, TOKEN[:-1] + "x", "x", TOKEN + "x"]:
        calls.clear()
        with contextlib.suppress(UnauthorizedError):
            auth.authenticate(authorization=f"Bearer {offered}", peercert=None)
        assert len(calls) == len(tokens), offered
