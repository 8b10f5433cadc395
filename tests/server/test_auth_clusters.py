"""Credentials bound to clusters: which cluster a request proves, and what is refused."""

from __future__ import annotations

import contextlib
import hmac
from pathlib import Path
from typing import Any, Final

import pytest
from structlog.testing import capture_logs

from webhook.config import AuthConfig, ClusterAuth, ServerConfig, TlsConfig
from webhook.errors import ConfigError, ForbiddenError, UnauthorizedError
from webhook.server.auth import Authenticator

GLOBAL: Final = "a-global-token-of-sufficient-length"
EU: Final = "prod-eu-token-of-sufficient-length"
US: Final = "prod-us-token-of-sufficient-length"


def _peer(name: str) -> dict[str, Any]:
    return {"subject": ((("commonName", name),),), "subjectAltName": (("DNS", f"{name}.internal"),)}


def _file(tmp_path: Path, name: str, *tokens: str) -> Path:
    path = tmp_path / name
    path.write_text("\n".join(tokens) + "\n")
    path.chmod(0o600)
    return path


def _bearer(token: str) -> str:
    return f"Bearer {token}"


def _tokens(tmp_path: Path, **clusters: str) -> Authenticator:
    """A global token file and one file per cluster, each holding its token."""
    return Authenticator(
        token_files=[_file(tmp_path, "global", GLOBAL)],
        clusters={
            name: ClusterAuth(bearer_token_files=(_file(tmp_path, name, token),))
            for name, token in clusters.items()
        },
    )


def _certs(*, allowed: tuple[str, ...] = (), **clusters: tuple[str, ...]) -> Authenticator:
    return Authenticator(
        client_certs=True,
        allowed_subjects=allowed,
        clusters={name: ClusterAuth(client_subjects=subjects) for name, subjects in clusters.items()},
    )


def test_a_token_proves_the_cluster_it_is_bound_to(tmp_path: Path) -> None:
    """A cluster's token proves that cluster; a global token the configured one (None)."""
    auth = _tokens(tmp_path, **{"prod-eu": EU, "prod-us": US})

    assert auth.authenticate(authorization=_bearer(EU), peercert=None).cluster == "prod-eu"
    assert auth.authenticate(authorization=_bearer(US), peercert=None).cluster == "prod-us"
    principal = auth.authenticate(authorization=_bearer(GLOBAL), peercert=None)
    assert (principal.method, principal.cluster) == ("token", None)
    with pytest.raises(UnauthorizedError, match=r"^a valid bearer token is required$"):
        auth.authenticate(authorization=_bearer(EU + "x"), peercert=None)


def test_cluster_tokens_alone_authenticate(tmp_path: Path) -> None:
    """Without global token files, the clusters' tokens still guard the endpoint."""
    auth = Authenticator(clusters={"prod-eu": ClusterAuth(bearer_token_files=(_file(tmp_path, "eu", EU),))})

    assert auth.enabled
    assert auth.authenticate(authorization=_bearer(EU), peercert=None).cluster == "prod-eu"
    with pytest.raises(UnauthorizedError):
        auth.authenticate(authorization=None, peercert=None)


def test_every_token_of_every_cluster_is_compared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Constant time across clusters: each offered token is compared with all of them, global and
    bound, whichever matches (or none), so the time taken says nothing about which cluster's it is."""
    auth = _tokens(tmp_path, **{"prod-eu": EU, "prod-us": US})
    calls: list[bytes] = []
    real = hmac.compare_digest

    def counted(a: bytes, b: bytes) -> bool:
        calls.append(b)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counted)
    for offered in (GLOBAL, EU, US, EU[:-1] + "x", "x"):
        calls.clear()
        with contextlib.suppress(UnauthorizedError):
            auth.authenticate(authorization=_bearer(offered), peercert=None)
        assert sorted(calls) == sorted(t.encode() for t in (GLOBAL, EU, US)), offered


@pytest.mark.parametrize(
    ("peer", "cluster"),
    [
        ("apiserver-eu-1", "prod-eu"),
        ("apiserver-us", "prod-us"),
        ("hub-apiserver", None),
    ],
)
def test_a_certificate_proves_the_cluster_its_subject_is_bound_to(peer: str, cluster: str | None) -> None:
    """Subjects match as in the global allow-list (CN and SANs, shell patterns)."""
    auth = _certs(
        allowed=("hub-apiserver",), **{"prod-eu": ("apiserver-eu-*",), "prod-us": ("*us.internal",)}
    )

    principal = auth.authenticate(authorization=None, peercert=_peer(peer))

    assert (principal.method, principal.name, principal.cluster) == ("client-cert", peer, cluster)


def test_bound_subjects_close_the_empty_global_allow_list() -> None:
    """Once clusters bind subjects, a certificate that matches none is refused (403), even
    though an empty global list alone admits every certificate the CA verified."""
    auth = _certs(**{"prod-eu": ("apiserver-eu",)})

    with pytest.raises(ForbiddenError, match=r"^client certificate is not allowed to post audit events$"):
        auth.authenticate(authorization=None, peercert=_peer("someone-else"))
    assert _certs().authenticate(authorization=None, peercert=_peer("someone-else")).cluster is None


def test_a_certificate_matching_two_clusters_is_refused() -> None:
    """Overlapping patterns cannot decide the cluster: 403."""
    auth = _certs(**{"prod-eu": ("apiserver-*",), "prod-us": ("*-eu",)})

    with pytest.raises(ForbiddenError):
        auth.authenticate(authorization=None, peercert=_peer("apiserver-eu"))


@pytest.mark.parametrize("require", ["any", "all"])
def test_a_cluster_binding_wins_over_a_global_credential(tmp_path: Path, require: Any) -> None:
    """A global certificate with a cluster's token (or the reverse) is that cluster's."""
    auth = Authenticator(
        token_files=[_file(tmp_path, "global", GLOBAL)],
        client_certs=True,
        allowed_subjects=("hub-apiserver",),
        require=require,
        clusters={
            "prod-eu": ClusterAuth(
                client_subjects=("apiserver-eu",), bearer_token_files=(_file(tmp_path, "eu", EU),)
            )
        },
    )

    global_cert = auth.authenticate(authorization=_bearer(EU), peercert=_peer("hub-apiserver"))
    global_token = auth.authenticate(authorization=_bearer(GLOBAL), peercert=_peer("apiserver-eu"))

    assert (global_cert.method, global_cert.cluster) == ("token", "prod-eu")
    assert (global_token.method, global_token.cluster) == ("client-cert", "prod-eu")


@pytest.mark.parametrize("require", ["any", "all"])
def test_credentials_of_two_clusters_are_refused(tmp_path: Path, require: Any) -> None:
    """A certificate of one cluster with a token of another: 403, whichever mode."""
    auth = Authenticator(
        client_certs=True,
        require=require,
        clusters={
            "prod-eu": ClusterAuth(client_subjects=("apiserver-eu",)),
            "prod-us": ClusterAuth(bearer_token_files=(_file(tmp_path, "us", US),)),
        },
    )

    with pytest.raises(ForbiddenError, match="different clusters") as refused:
        auth.authenticate(authorization=_bearer(US), peercert=_peer("apiserver-eu"))
    assert US not in str(refused.value)


def test_a_token_bound_twice_stops_the_start(tmp_path: Path) -> None:
    """The same token in files of two clusters (or of a cluster and the global list) is a
    ConfigError naming both files, never the token."""
    eu, us = _file(tmp_path, "eu", EU), _file(tmp_path, "us", US, EU)
    with pytest.raises(ConfigError, match="one cluster only") as twice:
        Authenticator(
            clusters={
                "prod-eu": ClusterAuth(bearer_token_files=(eu,)),
                "prod-us": ClusterAuth(bearer_token_files=(us,)),
            }
        )
    assert str(eu) in twice.value.message
    assert str(us) in twice.value.message
    assert EU not in twice.value.message
    with pytest.raises(ConfigError, match="one cluster only"):
        Authenticator(
            token_files=[_file(tmp_path, "global", GLOBAL, EU)],
            clusters={"prod-eu": ClusterAuth(bearer_token_files=(eu,))},
        )


def test_a_clusters_empty_token_files_stop_the_start(tmp_path: Path) -> None:
    """Each cluster with token files needs a token in them, like the global files."""
    with pytest.raises(ConfigError, match=r"^bearer token files of cluster prod-eu hold no token$"):
        Authenticator(
            token_files=[_file(tmp_path, "global", GLOBAL)],
            clusters={"prod-eu": ClusterAuth(bearer_token_files=(_file(tmp_path, "eu"),))},
        )


def test_cluster_token_files_are_reloaded(tmp_path: Path) -> None:
    """A rotated cluster token file is picked up; a rotation that would bind a token to two
    clusters is refused and the current tokens stay, with a warning that names no token."""
    auth = _tokens(tmp_path, **{"prod-eu": EU, "prod-us": US})
    rotated = "prod-eu-rotated-token-0123456789"
    _file(tmp_path, "prod-eu", EU, rotated)

    assert auth.reload_tokens()
    assert auth.authenticate(authorization=_bearer(rotated), peercert=None).cluster == "prod-eu"

    _file(tmp_path, "prod-us", US, rotated)
    with capture_logs() as logs:
        assert not auth.reload_tokens()
    assert auth.authenticate(authorization=_bearer(rotated), peercert=None).cluster == "prod-eu"
    assert auth.authenticate(authorization=_bearer(US), peercert=None).cluster == "prod-us"
    assert [log["event"] for log in logs] == ["auth.token_reload_failed"]
    assert rotated not in str(logs)


def test_for_server_reads_the_clusters_of_the_config(tmp_path: Path) -> None:
    """``Authenticator.for_server`` is what serve and check-config build from ``server:``."""
    tls = TlsConfig(cert_file=tmp_path / "c", key_file=tmp_path / "k", client_ca_file=tmp_path / "ca")
    server = ServerConfig(
        tls=tls,
        auth=AuthConfig(
            clusters={
                "prod-eu": ClusterAuth(
                    client_subjects=("apiserver-eu",), bearer_token_files=(_file(tmp_path, "eu", EU),)
                )
            }
        ),
    )
    auth = Authenticator.for_server(server)

    assert auth.authenticate(authorization=_bearer(EU), peercert=None).cluster == "prod-eu"
    assert auth.authenticate(authorization=None, peercert=_peer("apiserver-eu")).cluster == "prod-eu"
